"""What the classification kinds (text, images) share: the majority-class baseline and
the K-fold datasets put in the object store."""

from __future__ import annotations

from dlpipe.tasks.training.records import (
    FoldDataset,
    PreparedDataset,
    RunResult,
    baseline_result,
)


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


def put_fold_datasets(prepared: PreparedDataset, entries) -> list[FoldDataset]:
    """Each fold's arrays put in the object store once (passed to its training tasks by
    reference, case C14), its meta the dataset's with the fold's ``info``.

    Args:
        prepared: the study's prepared dataset.
        entries: ``(arrays, info)`` per fold then the final model's; ``info`` holds
            ``repeat`` and ``fold`` (None for the final) and what the fold changes.
    """
    import ray

    return [
        FoldDataset(
            info["repeat"],
            info["fold"],
            PreparedDataset(ray.put(arrays), {**prepared.meta, **info}, prepared.units),
        )
        for arrays, info in entries
    ]
