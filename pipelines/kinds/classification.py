"""What the classification kinds (text, images) share: the majority-class baseline."""

from __future__ import annotations

from dlpipe.tasks.training.records import PreparedDataset, RunResult, baseline_result


def majority_baseline(run_id: str, cfg, prepared: PreparedDataset, data: dict) -> RunResult:
    """The majority-class baseline (book ch. 3.5) as a ``runs`` row (family
    ``baseline``; scores by :func:`dlpipe.tasks.training.classifier.baseline_scores`):
    predict the training split's most frequent class; its loss is the crossentropy of predicting the
    training class frequencies.

    Args:
        run_id: the baseline's run id.
        prepared: the prepared dataset (``meta``: ``num_classes``, ``class_names``).
        data: the prepared arrays (``labels`` and the split codes).
    """
    from dlpipe.tasks.training.classifier import baseline_scores

    meta = prepared.meta
    scores = baseline_scores(data, meta["num_classes"])
    majority = meta["class_names"][scores.pop("majority_class")]
    return baseline_result(
        run_id,
        cfg.seed,
        {
            "rule": f"majority class of the training split ({majority})",
            "frequencies": scores.pop("frequencies"),
        },
        "accuracy",
        scores,
    )
