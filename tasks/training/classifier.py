"""What the classification kinds share in training (text, images): split indices of the
prepared arrays, the head width, scoring from predicted probabilities (the formulas of
:mod:`dlpipe.ensembles.metrics`, as the ensemble stage scores), a saved classifier's
scores, and the majority-class baseline (book ch. 3.5)."""

from __future__ import annotations

import math

import numpy as np

from dlpipe.tasks.training.tf_setup import setup_tensorflow

#: the ``split`` code of each row of a classification kind's prepared arrays
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}


def head_classes(num_classes: int) -> int:
    """The builders' ``num_classes``: 1 (one sigmoid unit) for two classes, else k."""
    return 1 if num_classes == 2 else num_classes


def split_index(arrays: dict, split: str, cap: int | None = None) -> np.ndarray:
    """Rows of ``split``; with ``cap``, at most that many spread evenly over the split
    (sources are often ordered by class: the first rows would hold one class only)."""
    index = np.flatnonzero(arrays["split"] == SPLIT_CODES[split])
    if cap is None or cap >= len(index):
        return index
    return index[np.linspace(0, len(index) - 1, cap).round().astype(np.int64)]


def score_classifier_split(
    model, batches, index: np.ndarray, data: dict, split: str, run_id: str, width: int
) -> tuple[float, float, list[dict]]:
    """``(crossentropy, accuracy, prediction rows)`` of ``model`` on one split, computed
    from the predicted probabilities (:mod:`dlpipe.ensembles.metrics`, the same formulas
    the ensemble stage scores with)."""
    prob = model.predict(batches, verbose=0)
    return score_probabilities(prob, index, data, split, run_id, width)


def score_probabilities(
    prob, index: np.ndarray, data: dict, split: str, run_id: str, width: int
) -> tuple[float, float, list[dict]]:
    """:func:`score_classifier_split` from the predicted probabilities ``prob``
    (``(len(index), width)``) of rows ``index``."""
    from dlpipe.ensembles.metrics import accuracy, log_loss

    prob = np.asarray(prob, np.float64)
    labels = np.asarray(data["labels"])[index]
    if width == 1:
        prob = prob.reshape(-1)
        rows = [
            {
                "run_id": run_id,
                "split": split,
                "sample_index": int(i),
                "prediction": p,
                "target": float(y),
            }
            for i, p, y in zip(index, prob, labels)
        ]
    else:
        rows = [
            {
                "run_id": run_id,
                "split": split,
                "sample_index": int(i),
                "prediction": float(np.argmax(p)),
                "target": float(y),
                "probabilities": p.tolist(),
            }
            for i, p, y in zip(index, prob, labels)
        ]
    if not np.all(np.isfinite(prob)):
        return math.nan, math.nan, rows
    return log_loss(labels, prob), accuracy(labels, prob), rows


def baseline_scores(data: dict, num_classes: int) -> dict:
    """The majority-class baseline (book 3.5: "a purely random classifier" / the
    most frequent class): predict the training split's most frequent class; its loss
    is the crossentropy of predicting the training class frequencies.

    Returns:
        ``{"val_loss", "test_loss", "val_metric", "test_metric", "majority_class",
        "frequencies"}``.
    """
    from dlpipe.ensembles.metrics import log_loss

    labels = np.asarray(data["labels"])
    train = labels[split_index(data, "train")]
    freq = np.bincount(train, minlength=num_classes) / len(train)
    majority = int(np.argmax(freq))
    out = {"majority_class": majority, "frequencies": freq.tolist()}
    for split, short in (("validation", "val"), ("test", "test")):
        y = labels[split_index(data, split)]
        prob = np.full(len(y), freq[1]) if num_classes == 2 else np.tile(freq, (len(y), 1))
        out[f"{short}_metric"] = float(np.mean(y == majority))
        out[f"{short}_loss"] = log_loss(y, prob)
    return out


def score_saved_classifier(
    model_path: str,
    data: dict,
    split: str,
    run_id: str,
    *,
    make_inputs,
    batch_size: int = 32,
    max_batches: int | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
) -> dict:
    """Load a saved classifier and score it once on ``split`` (text and image studies).

    Args:
        make_inputs: ``(index, width) -> Keras input`` of the documents/images ``index``
            (width: 1 for a sigmoid head, else the number of classes).
        max_batches: cap the split at that many batches of ``batch_size`` (smoke tests).

    Returns:
        ``{"loss": crossentropy, "metric": accuracy, "predictions": rows}``.
    """
    setup_tensorflow(num_cpus, num_gpus)
    import keras

    model = keras.saving.load_model(model_path)
    width = int(model.output_shape[-1])
    cap = None if max_batches is None else max_batches * batch_size
    index = split_index(data, split, cap)
    loss, accuracy, rows = score_classifier_split(
        model, make_inputs(index, width), index, data, split, run_id, width
    )
    return {"loss": loss, "metric": accuracy, "predictions": rows}


def score_classifier_splits(
    model,
    inputs_of,
    indices: dict,
    data: dict,
    run_id: str,
    width: int,
    *,
    evaluate_test=True,
    probabilities: dict | None = None,
) -> tuple[dict, list[dict]]:
    """Score a trained classifier on validation and (``evaluate_test``) test.

    Args:
        inputs_of: ``inputs_of(split) -> Keras input`` of that split's rows.
        probabilities: ``{split: predicted probabilities}`` already computed (jointly
            trained heads: :func:`dlpipe.tasks.training.multihead.predict_heads`), used
            in place of ``model.predict`` (``model`` and ``inputs_of`` may be None).
        indices: ``{split: row indices}`` of the prepared arrays.
        width: 1 for a sigmoid head, else the number of classes.

    Returns:
        ``(scores, prediction rows)``; ``scores``: ``val_loss``/``test_loss``
        (crossentropy) and ``val_metric``/``test_metric`` (accuracy), NaN for a split
        not scored or without rows (:func:`score_classifier_split`).
    """
    scores = {k: math.nan for k in ("val_loss", "test_loss", "val_metric", "test_metric")}
    predictions = []
    for name, short in (("validation", "val"), ("test", "test")):
        if name == "test" and not evaluate_test:
            continue
        if not len(indices[name]):  # a K-fold final model has no validation rows
            continue
        if probabilities is not None:
            loss, accuracy, rows = score_probabilities(
                probabilities[name], indices[name], data, name, run_id, width
            )
        else:
            loss, accuracy, rows = score_classifier_split(
                model, inputs_of(name), indices[name], data, name, run_id, width
            )
        scores[f"{short}_loss"], scores[f"{short}_metric"] = loss, accuracy
        predictions += rows
    return scores, predictions


def class_columns(class_names: list[str], raw) -> dict:
    """Output columns of a classifier's raw outputs for new inputs (issue 15).

    Args:
        class_names: the study's classes in label order.
        raw: ``(n,)`` or ``(n, 1)`` P(class 1) of a sigmoid head (two classes), or
            ``(n, k)`` probabilities of a softmax head.

    Returns:
        ``prediction`` as the ``predictions`` report holds it (P(class 1) for two
        classes, the argmax class index otherwise), ``class_name`` (the most probable
        class) and ``prob_<class>`` per class.
    """
    prob = np.asarray(raw, np.float64)
    if len(class_names) == 2:
        p1 = prob.reshape(-1)
        prob, prediction = np.stack([1.0 - p1, p1], axis=1), p1
    else:
        prediction = np.argmax(prob, axis=1).astype(np.float64)
    best = np.argmax(prob, axis=1)
    out = {"prediction": prediction, "class_name": [class_names[i] for i in best]}
    for j, name in enumerate(class_names):
        out[f"prob_{name}"] = prob[:, j]
    return out
