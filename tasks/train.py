"""One training run: a plain function (no Ray) that builds, trains and scores a model.

:func:`train_model` is what a Ray training task runs (see :mod:`dlpipe.tasks.remote`),
and what tests call directly. TensorFlow is imported only inside it, after
:func:`setup_tensorflow` has fixed the devices and thread counts of the process (shared
case C13): importing this module never loads TensorFlow.
"""

from __future__ import annotations

import hashlib
import math
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dlpipe.tasks import reports
from dlpipe.tasks.tf_setup import setup_tensorflow
from dlpipe.tasks.windows import WindowBatches, WindowSpec, split_window_rows


@dataclass(frozen=True)
class EarlyStoppingSpec:
    """``keras.callbacks.EarlyStopping`` settings (book ch. 7.2.1)."""

    enabled: bool = True
    monitor: str = "val_loss"
    patience: int = 4
    restore_best_weights: bool = True


@dataclass(frozen=True)
class ReduceLROnPlateauSpec:
    """``keras.callbacks.ReduceLROnPlateau`` settings (book ch. 7.2.1)."""

    enabled: bool = True
    monitor: str = "val_loss"
    factor: float = 0.5
    patience: int = 2
    min_lr: float = 1e-6


@dataclass(frozen=True)
class TrainingSpec:
    """How a model is trained.

    Attributes:
        epochs: maximum epochs (one epoch = every training window once, shuffled).
        early_stopping: EarlyStopping settings.
        reduce_lr_on_plateau: ReduceLROnPlateau settings.
        max_batches_per_epoch: cap on batches per epoch and per evaluated split
            (smoke tests); ``None`` = all windows.
    """

    epochs: int = 20
    early_stopping: EarlyStoppingSpec = field(default_factory=EarlyStoppingSpec)
    reduce_lr_on_plateau: ReduceLROnPlateauSpec = field(default_factory=ReduceLROnPlateauSpec)
    max_batches_per_epoch: int | None = None


def run_key(dataset_key: str, family: str, hp_resolved: dict, windows: WindowSpec,
            training: TrainingSpec, seed: int) -> str:
    """Key of a training run from everything that determines its result."""
    payload = {"dataset": dataset_key, "family": family, "hp": hp_resolved,
               "windows": asdict(windows), "training": asdict(training), "seed": seed}
    return f"{family}-{hashlib.sha256(reports.dumps(payload).encode()).hexdigest()[:12]}"


def stored_run(run_dir: str | Path, run_id: str) -> dict | None:
    """The stored ``runs`` row of ``run_id`` if it finished with status ok, else None."""
    if not reports.part_exists(run_dir, "runs", run_id):
        return None
    import pyarrow.parquet as pq

    row = pq.read_table(Path(run_dir) / "reports" / "runs" / f"part-{run_id}.parquet"
                        ).to_pylist()[0]
    return row if row["status"] == "ok" else None


def _py_dataset(batches: WindowBatches):
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

    return WindowDataset()


def split_batches(data, meta: dict, spec: WindowSpec, split: str, *, shuffle: bool = False,
                  seed: int = 0, max_batches: int | None = None) -> WindowBatches:
    """Windows of one split of a prepared dataset (see :mod:`dlpipe.tasks.weather_data`)."""
    rows = split_window_rows(spec, meta["splits"][split], split=split)
    return WindowBatches(data, rows, spec, target_column=meta["target_column"],
                         shuffle=shuffle, seed=seed, max_batches=max_batches)


def train_model(*, data: np.ndarray, meta: dict, family: str, hp: dict, windows: WindowSpec,
                training: TrainingSpec, seed: int, run_id: str, num_cpus: float = 1,
                num_gpus: float = 0, evaluate_test: bool = True, model_path: str | None = None,
                epoch_hook: Callable[[int, dict], None] | None = None) -> dict:
    """Train one model of ``family`` on windows of ``data`` and score it.

    Args:
        data: normalized float32 (rows, features), read-only when it comes from Ray
            (never modified, case C14).
        meta: the prepared dataset's description (``splits``, ``target_column``,
            ``mean``/``std`` for conversion to target units, ``key``).
        family: model family name (:mod:`dlpipe.models.registry`).
        hp: hyperparameters (merged with the family defaults, coerced to Python types).
        windows: window geometry for this model (its own ``step`` for conv_gru).
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
        ``{"run": row, "history": rows, "predictions": rows}`` in the report schemas of
        :mod:`dlpipe.tasks.reports`. MAE is given in normalized units (``val_mae``) and
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
    train = split_batches(data, meta, windows, "train", shuffle=True, seed=seed, max_batches=cap)
    val = split_batches(data, meta, windows, "validation", max_batches=cap)
    test = split_batches(data, meta, windows, "test", max_batches=cap)
    hp_resolved = resolved_hparams(family, hp)
    model = build_model(family, (windows.timesteps, data.shape[1]), hp_resolved)

    recorder = _epoch_recorder(run_id, training.early_stopping, epoch_hook)
    callbacks = [recorder, keras.callbacks.TerminateOnNaN()]
    es = training.early_stopping
    if es.enabled:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=es.monitor, patience=es.patience))
    rl = training.reduce_lr_on_plateau
    if rl.enabled:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=rl.monitor, factor=rl.factor, patience=rl.patience, min_lr=rl.min_lr))
    model.fit(_py_dataset(train), validation_data=_py_dataset(val), epochs=training.epochs,
              callbacks=callbacks, verbose=0)
    recorder.restore_best(model)
    if model_path:
        model.save(model_path)

    scores = {"test": float("nan")}
    scores["validation"], predictions = score_split(model, val, "validation", run_id, meta)
    if evaluate_test:
        scores["test"], test_rows = score_split(model, test, "test", run_id, meta)
        predictions += test_rows
    std = float(meta["std"][meta["target_column"]])
    failed = not math.isfinite(scores["validation"]) or recorder.diverged
    run = {
        "run_id": run_id,
        "family": family,
        "hyperparameters": hp_resolved,
        "seed": seed,
        "lookback": windows.lookback,
        "step": windows.step,
        "delay": windows.delay,
        "epochs_run": len(recorder.rows),
        "best_epoch": recorder.best_epoch,
        "params": int(model.count_params()),
        "val_mae": scores["validation"],
        "test_mae": scores["test"],
        "val_mae_units": scores["validation"] * std,
        "test_mae_units": scores["test"] * std,
        "wall_time_s": time.perf_counter() - started,
        "node": socket.gethostname(),
        "resources": {"num_cpus": num_cpus, "num_gpus": num_gpus},
        "devices": ",".join(devices),
        "status": "failed" if failed else "ok",
        "error": "loss diverged (NaN/inf)" if failed else None,
    }
    return {"run": run, "history": recorder.rows, "predictions": predictions}


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
    rows = [{"run_id": run_id, "split": split, "sample_index": int(r),
             "prediction": p * std + mean, "target": y * std + mean}
            for r, p, y in zip(batches.rows + batches.spec.delay, pred, true)]
    return float(np.mean(np.abs(pred - true))), rows


def evaluate_saved_model(*, data: np.ndarray, meta: dict, model_path: str,
                         windows: WindowSpec, run_id: str, split: str = "test",
                         max_batches: int | None = None, num_cpus: float = 1,
                         num_gpus: float = 0) -> dict:
    """Score a saved model once on one split (the sweep's final test evaluation).

    Returns:
        ``{"mae": normalized MAE, "mae_units": MAE in target units, "predictions": rows}``.
    """
    setup_tensorflow(num_cpus, num_gpus)
    import keras

    import dlpipe.models.timeseries  # noqa: F401  registers the custom layers

    model = keras.saving.load_model(model_path)
    batches = split_batches(data, meta, windows, split, max_batches=max_batches)
    mae, rows = score_split(model, batches, split, run_id, meta)
    std = float(meta["std"][meta["target_column"]])
    return {"mae": mae, "mae_units": mae * std, "predictions": rows}


def failed_run(run_id: str, family: str, hp: dict, seed: int, windows: WindowSpec,
               error: BaseException | str, resources: dict) -> dict:
    """Report rows for a run that raised: status ``failed``, the error text, NaN metrics."""
    text = error if isinstance(error, str) else "".join(
        traceback.format_exception_only(type(error), error)).strip()
    return {"run": {"run_id": run_id, "family": family, "hyperparameters": hp, "seed": seed,
                    "lookback": windows.lookback, "step": windows.step, "delay": windows.delay,
                    "status": "failed", "error": text[-4000:], "resources": resources},
            "history": [], "predictions": []}


def _epoch_recorder(run_id: str, early_stopping: EarlyStoppingSpec, epoch_hook=None):
    """A Keras callback recording history rows (loss, val_loss, lr, seconds) and the
    weights of the best epoch (restored at the end when ``restore_best_weights``)."""
    import keras

    class EpochRecorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.monitor = early_stopping.monitor
            self.restore = early_stopping.enabled and early_stopping.restore_best_weights
            self.rows: list[dict] = []
            self.best, self.best_epoch, self.best_weights = math.inf, 0, None
            self.diverged = False
            self._t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            lr = logs.get("learning_rate")
            if lr is None:
                lr = np.asarray(self.model.optimizer.learning_rate)
            self.rows.append({"run_id": run_id, "epoch": epoch + 1, "loss": logs.get("loss"),
                              "val_loss": logs.get("val_loss"), "lr": float(lr),
                              "seconds": time.perf_counter() - self._t0})
            if epoch_hook is not None:
                epoch_hook(epoch + 1, dict(logs))
            value = logs.get(self.monitor)
            if value is None:
                return
            if not math.isfinite(value):
                self.diverged = True
            elif value < self.best:
                self.best, self.best_epoch = float(value), epoch + 1
                if self.restore:
                    self.best_weights = self.model.get_weights()

        def restore_best(self, model) -> None:
            if self.restore and self.best_weights is not None:
                model.set_weights(self.best_weights)

    return EpochRecorder()
