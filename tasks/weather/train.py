"""One training run: a plain function (no Ray) that builds, trains and scores a model.

:func:`train_model` is what a Ray training task runs (see :mod:`dlpipe.tasks.remote`),
and what tests call directly. TensorFlow is imported only inside it, after
:func:`setup_tensorflow` has fixed the devices and thread counts of the process (shared
case C13): importing this module never loads TensorFlow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from dlpipe.tasks.training.arrays import py_dataset_batches
from dlpipe.tasks.training.fit import (
    EarlyStoppingSpec,
    ReduceLROnPlateauSpec,
    TrainingSpec,
    fit_model,
    run_row,
)
from dlpipe.tasks.training.records import RunResult
from dlpipe.tasks.training.tf_setup import setup_tensorflow
from dlpipe.tasks.weather.windows import WindowBatches, WindowSpec, split_window_rows

__all__ = [
    "EarlyStoppingSpec",
    "ReduceLROnPlateauSpec",
    "TrainingSpec",
    "train_model",
    "score_split",
    "evaluate_saved_model",
]


def _py_dataset(batches: WindowBatches):
    """The batches as Keras reads them (fit shuffles the training split's batch order
    too), fed in the training thread
    (:func:`~dlpipe.tasks.training.arrays.py_dataset_batches`)."""
    import keras

    class WindowDataset(keras.utils.PyDataset):
        """Keras adapter over :class:`WindowBatches` (reshuffles every epoch)."""

        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)

        def __len__(self):
            return len(batches)

        def __getitem__(self, index):
            return batches.batch(index)

        def on_epoch_end(self):
            batches.on_epoch_end()

    return py_dataset_batches(WindowDataset(), shuffle=batches.shuffle)


def split_batches(
    data,
    meta: dict,
    spec: WindowSpec,
    split: str,
    *,
    shuffle: bool = False,
    seed: int = 0,
    max_batches: int | None = None,
) -> WindowBatches:
    """Windows of one split of a prepared dataset (see :mod:`dlpipe.tasks.weather.prepare`)."""
    rows = split_window_rows(spec, meta["splits"][split], split=split)
    return WindowBatches(
        data,
        rows,
        spec,
        target_column=meta["target_column"],
        shuffle=shuffle,
        seed=seed,
        max_batches=max_batches,
    )


def cost_model(family: str, hp: dict, inputs: WindowSpec, meta: dict):
    """The untrained model :func:`train_model` builds for these arguments (input
    ``(inputs.timesteps, len(meta["columns"]))``), for its cost estimate
    (:func:`dlpipe.tasks.training.costs.estimate_costs`). Call in a TensorFlow worker.

    Raises:
        ValueError: bad hyperparameter, or windows too short for the family.
    """
    from dlpipe.models.registry import build_model, resolved_hparams

    shape = (inputs.timesteps, len(meta["columns"]))
    return build_model(family, shape, resolved_hparams(family, hp))


def train_model(
    *,
    data: np.ndarray,
    meta: dict,
    family: str,
    hp: dict,
    inputs: WindowSpec,
    training: TrainingSpec,
    seed: int,
    run_id: str,
    num_cpus: float = 1,
    num_gpus: float = 0,
    evaluate_test: bool = True,
    model_path: str | None = None,
    epoch_hook: Callable[[int, dict], None] | None = None,
) -> RunResult:
    """Train one model of ``family`` on windows of ``data`` and score it.

    Args:
        data: normalized float32 (rows, features), read-only when it comes from Ray
            (never modified, case C14).
        meta: the prepared dataset's description (``splits``, ``target_column``,
            ``mean``/``std`` for conversion to target units, ``key``).
        family: model family name (:mod:`dlpipe.models.registry`).
        hp: hyperparameters (merged with the family defaults, coerced to Python types).
        inputs: the window geometry of this model (its own ``step`` for conv_gru).
        training: epochs and callbacks.
        seed: seeds Python, numpy and the backend (``keras.utils.set_random_seed``)
            and the window shuffling.
        run_id: the run's key, copied into every row.
        num_cpus, num_gpus: the resources the task holds (threads, devices).
        evaluate_test: score the test split too (sweeps leave it for the chosen few:
            test data is never used to choose).
        model_path: save the trained model (best weights) there as ``.keras``.
        epoch_hook: called after every epoch with ``(epoch, logs)`` (1-based epoch;
            logs hold ``loss`` and ``val_loss``), e.g. to report to Ray Tune.

    Returns:
        A :class:`RunResult` (``run``, ``history``, ``predictions`` rows) in the schemas of
        :mod:`dlpipe.tasks.reports.tables`. MAE is given in normalized units (``val_mae``) and
        in the target's units (``val_mae_units``: normalized MAE x the target's train
        std). ``status`` is ``"failed"`` with ``error`` set when the loss diverged.

    Raises:
        DeviceError: GPUs requested but none visible (C13).
        SplitTooShortError: a split holds no window (C08).
    """
    started = time.perf_counter()
    devices = setup_tensorflow(num_cpus, num_gpus)
    import keras

    from dlpipe.models.registry import build_model, resolved_hparams

    keras.utils.set_random_seed(seed)
    cap = training.max_batches_per_epoch
    train = split_batches(data, meta, inputs, "train", shuffle=True, seed=seed, max_batches=cap)
    # a K-fold final model has no validation rows (every non-test row trains)
    has_val = bool(meta["splits"]["validation"])
    val = split_batches(data, meta, inputs, "validation", max_batches=cap) if has_val else None
    test = split_batches(data, meta, inputs, "test", max_batches=cap)
    hp_resolved = resolved_hparams(family, hp)
    model = build_model(family, (inputs.timesteps, data.shape[1]), hp_resolved)

    recorder = fit_model(
        model,
        _py_dataset(train),
        _py_dataset(val) if has_val else None,
        training=training,
        run_id=run_id,
        epoch_hook=epoch_hook,
        shuffle=False,  # the batches come in fit's shuffled order already
    )
    if model_path:
        model.save(model_path)

    scores = {"test": float("nan"), "validation": float("nan")}
    predictions = []
    if has_val:
        scores["validation"], predictions = score_split(model, val, "validation", run_id, meta)
    if evaluate_test:
        scores["test"], test_rows = score_split(model, test, "test", run_id, meta)
        predictions += test_rows
    std = float(meta["std"][meta["target_column"]])
    if meta.get("fold") is not None:
        history_in_units(recorder.rows, std)
    run = run_row(
        run_id=run_id,
        family=family,
        hp_resolved=hp_resolved,
        seed=seed,
        model=model,
        recorder=recorder,
        metric="mae",
        scores={
            "val_loss": scores["validation"],
            "test_loss": scores["test"],
            "val_metric": scores["validation"] * std,
            "test_metric": scores["test"] * std,
        },
        started=started,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        devices=devices,
        checked="val_loss" if has_val else "test_loss",
    )
    run.update(
        {
            "lookback": inputs.lookback,
            "step": inputs.step,
            "delay": inputs.delay,
            "val_mae": scores["validation"],
            "test_mae": scores["test"],
            "val_mae_units": scores["validation"] * std,
            "test_mae_units": scores["test"] * std,
            "inputs": asdict(inputs),
        }
    )
    return RunResult(run, recorder.rows, predictions, recorder.tensorboard)


def history_in_units(rows: list[dict], std: float) -> None:
    """A K-fold fold run's ``history`` rows with the headline per epoch: the MAE in the
    target's units in ``metric``/``val_metric`` (the loss, a normalized MAE, times the
    target's training std), the curve the folds are averaged over (book listing 3.29).
    """
    for row in rows:
        for name in ("loss", "val_loss"):
            value = row.get(name)
            row[name.replace("loss", "metric")] = None if value is None else value * std


def score_split(model, batches: WindowBatches, split: str, run_id: str, meta: dict):
    """MAE of ``model`` on a split's windows and its prediction rows.

    Returns:
        ``(mae in normalized units, rows)``; rows are ``predictions`` report rows with
        ``sample_index`` = the target's row and values in the target's units.
    """
    std = float(meta["std"][meta["target_column"]])
    mean = float(meta["mean"][meta["target_column"]])
    pred = model.predict(_py_dataset(batches), verbose=0).reshape(-1).astype(np.float64)
    true = batches.targets().astype(np.float64)
    rows = [
        {
            "run_id": run_id,
            "split": split,
            "sample_index": int(r),
            "prediction": p * std + mean,
            "target": y * std + mean,
        }
        for r, p, y in zip(batches.rows + batches.spec.delay, pred, true)
    ]
    return float(np.mean(np.abs(pred - true))), rows


def evaluate_saved_model(
    *,
    data: np.ndarray,
    meta: dict,
    model_path: str,
    inputs: WindowSpec,
    run_id: str,
    split: str = "test",
    max_batches: int | None = None,
    batch_size: int | None = None,
    family: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
) -> dict:
    """Score a saved model once on one split (the sweep's final test evaluation).

    ``batch_size`` and ``family`` are part of every kind's evaluator signature; windows
    carry their own batch size and every family reads the same windows, so both are
    unused here.

    Returns:
        ``{"loss": normalized MAE, "metric": MAE in the target's units, "predictions":
        rows}``.
    """
    setup_tensorflow(num_cpus, num_gpus)
    import keras

    from dlpipe.models.timeseries import reverse_time_layer

    reverse_time_layer()  # registers the custom layer before loading

    model = keras.saving.load_model(model_path)
    batches = split_batches(data, meta, inputs, split, max_batches=max_batches)
    mae, rows = score_split(model, batches, split, run_id, meta)
    std = float(meta["std"][meta["target_column"]])
    return {"loss": mae, "metric": mae * std, "predictions": rows}
