"""One tabular run (book ch. 3.5-3.6, 4.4): a plain function, no Ray.

The model sees the prepared float32 rows (:func:`dlpipe.tasks.tabular.data.prepare_tabular`);
``task`` and ``num_classes`` come from the data, not from the user. Headline metric:
regression MAE in the target's units (the loss, ``val_loss``, is the MSE of the raw
target, as in the book's Boston housing study); classification accuracy (the loss is
the model's crossentropy, scored as the text studies score theirs).
"""

from __future__ import annotations

import math
import time

import numpy as np

from dlpipe.tasks.training.arrays import array_batches
from dlpipe.tasks.training.classifier import (
    score_classifier_split,
    score_saved_classifier,
    split_index,
)
from dlpipe.tasks.training.fit import TrainingSpec, fit_model, run_row
from dlpipe.tasks.training.records import RunResult
from dlpipe.tasks.training.tf_setup import setup_tensorflow

SPLITS = (("validation", "val"), ("test", "test"))


def data_hparams(hp: dict, meta: dict) -> dict:
    """``hp`` with what the data fixes: ``task`` and ``num_classes`` (1 for regression
    and binary; the number of classes for multiclass)."""
    task = meta["task"]
    return {**hp, "task": task, "num_classes": meta["num_classes"] if task == "multiclass" else 1}


def headline_metric(task: str) -> str:
    """``mae`` (regression, in the target's units) or ``accuracy``."""
    return "mae" if task == "regression" else "accuracy"


def score_regression(
    model, x: np.ndarray, index: np.ndarray, data: dict, split: str, run_id: str, batch_size: int
) -> tuple[float, float, list[dict]]:
    """``(MSE, MAE, prediction rows)`` of a regression model on the rows ``index``, in
    the target's units; NaN scores when a prediction is not finite."""
    predicted = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), np.float64)
    predicted = predicted.reshape(-1)
    target = np.asarray(data["labels"], np.float64)[index]
    rows = [
        {
            "run_id": run_id,
            "split": split,
            "sample_index": int(r),
            "prediction": float(p),
            "target": float(y),
        }
        for r, p, y in zip(np.asarray(data["rows"])[index], predicted, target)
    ]
    if not np.all(np.isfinite(predicted)):
        return math.nan, math.nan, rows
    error = predicted - target
    return float(np.mean(error**2)), float(np.mean(np.abs(error))), rows


def score_split(model, data: dict, index: np.ndarray, split: str, run_id: str, meta: dict, bs: int):
    """``(loss, headline metric, prediction rows)`` on one split; prediction rows name
    the table row (``sample_index``), and the target in its units or class code."""
    x = np.asarray(data["x"])[index]
    if meta["task"] == "regression":
        return score_regression(model, x, index, data, split, run_id, bs)
    width = 1 if meta["task"] == "binary" else meta["num_classes"]
    loss, accuracy, rows = score_classifier_split(model, x, index, data, split, run_id, width)
    table_rows = np.asarray(data["rows"])[index]
    for row, r in zip(rows, table_rows):
        row["sample_index"] = int(r)
    return loss, accuracy, rows


def score_splits(model, data, meta, run_id, cap, batch_size, evaluate_test=True):
    """``(scores, prediction rows)`` on validation and (``evaluate_test``) test, each
    split capped at ``cap`` rows; ``scores``: ``val_loss``, ``test_loss``, ``val_metric``,
    ``test_metric`` (NaN for a split not scored)."""
    scores = {k: math.nan for k in ("val_loss", "test_loss", "val_metric", "test_metric")}
    predictions = []
    for name, short in SPLITS:
        if name == "test" and not evaluate_test:
            continue
        index = split_index(data, name, cap)
        if not len(index):  # a K-fold final model has no validation rows
            continue
        loss, metric, rows = score_split(model, data, index, name, run_id, meta, batch_size)
        scores[f"{short}_loss"], scores[f"{short}_metric"] = loss, metric
        predictions += rows
    return scores, predictions


def fit_arrays(
    data: dict, split: str, cap: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(index, x, y)`` of one split (at most ``cap`` rows spread over it); ``y`` as
    the model's loss expects it (float32 values/0-1 labels, int64 class codes)."""
    index = split_index(data, split, cap)
    labels = np.asarray(data["labels"])[index]
    y = labels.astype(np.int64 if labels.dtype.kind == "i" else np.float32)
    return index, np.asarray(data["x"])[index], y


def cost_model(family: str, hp: dict, inputs, meta: dict):
    """The untrained model :func:`train_tabular_model` builds for these arguments (input
    ``(len(meta["input_columns"]),)``), for its cost estimate
    (:func:`dlpipe.tasks.training.costs.estimate_costs`). Call in a TensorFlow worker.

    Raises:
        ValueError: bad hyperparameter.
    """
    from dlpipe.models.registry import build_model, resolved_hparams

    hp_resolved = resolved_hparams(family, data_hparams(hp, meta), "tabular")
    return build_model(family, (len(meta["input_columns"]),), hp_resolved, "tabular")


def train_tabular_model(
    *,
    data: dict,
    meta: dict,
    family: str,
    hp: dict,
    inputs,
    training: TrainingSpec,
    seed: int,
    run_id: str,
    num_cpus: float = 1,
    num_gpus: float = 0,
    evaluate_test: bool = True,
    model_path: str | None = None,
    epoch_hook=None,
) -> RunResult:
    """Train one tabular model on the prepared rows and score it.

    Args:
        data: :func:`dlpipe.tasks.tabular.data.prepare_tabular` arrays (read-only from
            Ray, never modified, case C14).
        meta: its description (``task``, ``num_classes``, ``input_columns``).
        family: a tabular family (:data:`dlpipe.models.registry.TABULAR_FAMILIES`).
        hp: hyperparameters over the family defaults (coerced, case C09).
        inputs: the study's inputs (``task`` as configured; stored in the row).
        training: epochs, callbacks, ``batch_size``, ``max_batches_per_epoch`` (caps
            every split at that many batches: smoke tests).
        seed, run_id, num_cpus, num_gpus, evaluate_test, model_path, epoch_hook: as
            :func:`dlpipe.tasks.weather.train.train_model`.

    Returns:
        a :class:`RunResult`; ``metric`` = ``mae`` (target units) or ``accuracy``,
        ``val_loss`` = MSE (regression) or crossentropy. Prediction rows:
        ``sample_index`` = the table's data row, ``prediction`` in the target's units,
        P(class 1) (binary) or the argmax class with ``probabilities`` (multiclass).

    Raises:
        DeviceError: GPUs requested but none visible (C13).
        ValueError: bad hyperparameter.
    """
    started = time.perf_counter()
    devices = setup_tensorflow(num_cpus, num_gpus)
    import keras

    from dlpipe.models.registry import build_model, resolved_hparams

    keras.utils.set_random_seed(seed)
    hp_resolved = resolved_hparams(family, data_hparams(hp, meta), "tabular")
    model = build_model(family, (len(meta["input_columns"]),), hp_resolved, "tabular")
    bs = training.batch_size
    cap = None if training.max_batches_per_epoch is None else training.max_batches_per_epoch * bs
    _, x_train, y_train = fit_arrays(data, "train", cap)
    _, x_val, y_val = fit_arrays(data, "validation", cap)
    headline = []  # per-epoch headline logs of a K-fold fold run (history_headline)
    recorder = fit_model(  # fit(x, y, shuffle=True)'s batches, fed in this thread
        model,
        array_batches(x_train, y_train, bs, shuffle=True),
        array_batches(x_val, y_val, bs, shuffle=False) if len(x_val) else None,
        training=training,
        run_id=run_id,
        epoch_hook=chain_hook(epoch_hook, headline),
        shuffle=False,  # the batches shuffle themselves (Keras would warn, then ignore it)
    )
    if meta.get("fold") is not None:
        history_headline(recorder.rows, headline, meta["task"])
    if model_path:
        model.save(model_path)
    scores, predictions = score_splits(model, data, meta, run_id, cap, bs, evaluate_test)
    run = run_row(
        run_id=run_id,
        family=family,
        hp_resolved=hp_resolved,
        seed=seed,
        model=model,
        recorder=recorder,
        metric=headline_metric(meta["task"]),
        scores=scores,
        started=started,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        devices=devices,
        checked="val_loss" if len(x_val) else "test_loss",
    )
    run["inputs"] = {"task": meta["task"], "input_columns": meta["input_columns"]}
    return RunResult(run, recorder.rows, predictions, recorder.tensorboard)


def chain_hook(epoch_hook, logs: list):
    """An epoch hook that keeps every epoch's logs in ``logs``, then calls ``epoch_hook``."""

    def hook(epoch: int, epoch_logs: dict) -> None:
        logs.append(epoch_logs)
        if epoch_hook is not None:
            epoch_hook(epoch, epoch_logs)

    return hook


def history_headline(rows: list[dict], logs: list[dict], task: str) -> None:
    """A K-fold fold run's ``history`` rows with the headline metric per epoch: MAE (target
    units) for regression in ``metric``/``val_metric`` (accuracy is already there), the
    curve the folds are averaged over (book listing 3.29)."""
    if task != "regression":
        return
    for row, epoch_logs in zip(rows, logs):
        row["metric"], row["val_metric"] = epoch_logs.get("mae"), epoch_logs.get("val_mae")


def evaluate_saved_tabular_model(
    *,
    data: dict,
    meta: dict,
    model_path: str,
    inputs,
    run_id: str,
    split: str = "test",
    max_batches: int | None = None,
    batch_size: int = 32,
    family: str = "dense",
    num_cpus: float = 1,
    num_gpus: float = 0,
) -> dict:
    """Score a saved tabular model once on one split (the sweep's final test evaluation).

    Returns:
        ``{"loss": MSE or crossentropy, "metric": MAE (target units) or accuracy,
        "predictions": rows}``.
    """
    cap = None if max_batches is None else max_batches * batch_size
    if meta["task"] != "regression":
        scored = score_saved_classifier(
            model_path,
            data,
            split,
            run_id,
            batch_size=batch_size,
            max_batches=max_batches,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            make_inputs=lambda index, width: np.asarray(data["x"])[index],
        )
        table_rows = np.asarray(data["rows"])[split_index(data, split, cap)]
        for row, r in zip(scored["predictions"], table_rows):
            row["sample_index"] = int(r)
        return scored
    setup_tensorflow(num_cpus, num_gpus)
    import keras

    model = keras.saving.load_model(model_path)
    index = split_index(data, split, cap)
    x = np.asarray(data["x"])[index]
    loss, metric, rows = score_regression(model, x, index, data, split, run_id, batch_size)
    return {"loss": loss, "metric": metric, "predictions": rows}


def mean_baseline_scores(data: dict) -> dict:
    """The mean predictor (regression baseline): predict the training targets' mean.

    Returns:
        ``{"val_loss", "test_loss"}`` (MSE), ``{"val_metric", "test_metric"}`` (MAE in
        the target's units) and ``mean``.
    """
    labels = np.asarray(data["labels"], np.float64)
    mean = float(np.mean(labels[split_index(data, "train")]))
    out = {"mean": mean}
    for split, short in SPLITS:
        error = labels[split_index(data, split)] - mean
        out[f"{short}_loss"] = float(np.mean(error**2))
        out[f"{short}_metric"] = float(np.mean(np.abs(error)))
    return out
