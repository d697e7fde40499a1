"""The training core every pipeline shares: fit with the study's callbacks, record each
epoch, restore the best weights, and assemble the ``runs`` row.

Pipeline trainers (:mod:`dlpipe.tasks.weather.train` for weather windows,
:mod:`dlpipe.tasks.text.train`, :mod:`dlpipe.tasks.images.train`) turn their prepared data
into Keras inputs and call :func:`fit_model`; :func:`run_row` gives every pipeline the
same generic columns (``metric``, ``val_loss``, ``val_metric``, ...), so sweeps, reports
and ensembles read any study the same way. TensorFlow is imported inside the functions
only, after :func:`dlpipe.tasks.training.tf_setup.setup_tensorflow` (shared case C13).
"""

from __future__ import annotations

import contextlib
import math
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlpipe.metrics import get_metric


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
class TensorBoardSpec:
    """``keras.callbacks.TensorBoard`` settings (book ch. 7.2.2).

    Every run's event files (per-epoch scalars: loss, the metrics Keras logs, learning
    rate; step = epoch - 1, Keras's numbering) land in ``<run_dir>/tensorboard/<run_id>/``
    (``train/`` and ``validation/``). They do not change a run's result, so they are no
    part of its key.

    Attributes:
        enabled: write event files.
        histogram_freq: epochs between weight histograms (0: none; study file
            ``training.tensorboard: {histogram_freq: 1}``).
    """

    enabled: bool = True
    histogram_freq: int = 0

    def __post_init__(self):
        value = self.histogram_freq
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`histogram_freq` must be an integer >= 0. Received: {value!r}")


@dataclass(frozen=True)
class TrainingSpec:
    """How a model is trained.

    Attributes:
        epochs: maximum epochs (one epoch = every training sample once, shuffled).
        early_stopping: EarlyStopping settings.
        reduce_lr_on_plateau: ReduceLROnPlateau settings.
        max_batches_per_epoch: cap on batches per epoch and per evaluated split
            (smoke tests); ``None`` = all samples.
        batch_size: samples per batch for text and image studies (weather studies take
            theirs from ``windows.batch_size``).
        steps_per_execution: batches per compiled call (Keras ``compile`` argument):
            > 1 cuts the per-step overhead that bounds small models such as heads on
            cached features.
        tensorboard: TensorBoard event files of every run.
        joint_heads: heads on cached features (images ``features_head``) of a grouped
            task train together in one compiled step, each with its own loss, optimizer,
            learning rate, callbacks and rows, all on the same batches
            (:mod:`dlpipe.tasks.training.multihead`; issue 17). Results are identical in
            kind to separate runs, not bit-identical (the batch order is shared), so it
            is part of the run key when on. Other families ignore it.
    """

    epochs: int = 20
    early_stopping: EarlyStoppingSpec = field(default_factory=EarlyStoppingSpec)
    reduce_lr_on_plateau: ReduceLROnPlateauSpec = field(default_factory=ReduceLROnPlateauSpec)
    max_batches_per_epoch: int | None = None
    batch_size: int = 32
    steps_per_execution: int = 1
    tensorboard: TensorBoardSpec = field(default_factory=TensorBoardSpec)
    joint_heads: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size", "steps_per_execution"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1. Received: {value!r}")
        if not isinstance(self.joint_heads, bool):
            raise ValueError(f"`joint_heads` must be true or false. Received: {self.joint_heads!r}")


def callbacks(training: TrainingSpec, recorder, log_dir: str | None = None) -> list:
    """The study's Keras callbacks: the recorder, TensorBoard (when ``log_dir`` is
    given), TerminateOnNaN, EarlyStopping and ReduceLROnPlateau as configured, each with
    the ``mode`` (min/max) of its monitored metric from :mod:`dlpipe.metrics` (shared
    case C16). TensorBoard comes before ReduceLROnPlateau, so it logs the learning rate
    of the epoch that ran, as the recorder does.

    Raises:
        ValueError: a monitor name that is not in the metric table.
    """
    import keras

    out = [recorder]
    if log_dir is not None:
        out.append(
            keras.callbacks.TensorBoard(
                log_dir=log_dir,
                histogram_freq=training.tensorboard.histogram_freq,
                write_graph=False,
            )
        )
    out.append(keras.callbacks.TerminateOnNaN())
    es = training.early_stopping
    if es.enabled:
        out.append(
            keras.callbacks.EarlyStopping(
                monitor=es.monitor, patience=es.patience, mode=get_metric(es.monitor).mode
            )
        )
    rl = training.reduce_lr_on_plateau
    if rl.enabled:
        out.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=rl.monitor,
                factor=rl.factor,
                patience=rl.patience,
                min_lr=rl.min_lr,
                mode=get_metric(rl.monitor).mode,
            )
        )
    return out


def fit_model(
    model,
    train,
    validation,
    *,
    training: TrainingSpec,
    run_id: str,
    epoch_hook: Callable[[int, dict], None] | None = None,
    **fit_kwargs,
):
    """``model.fit`` with the study's callbacks; the best epoch's weights restored.

    Args:
        model: a compiled Keras model.
        train, validation: Keras inputs (a ``PyDataset``, a ``tf.data.Dataset``, or for
            ``validation`` an ``(x, y)`` tuple); ``fit_kwargs`` pass ``y``,
            ``batch_size``, ``steps_per_epoch``... through.
        training: epochs and callbacks.
        run_id: copied into every history row.
        epoch_hook: called after every epoch with ``(epoch, logs)`` (1-based).

    Returns:
        The epoch recorder: ``rows`` (``history`` report rows), ``best_epoch``,
        ``diverged`` (a monitored value became NaN/inf), ``tensorboard`` (the run's
        event files, ``{path relative to its log folder: bytes}``; empty when
        ``training.tensorboard.enabled`` is false). The worker returns the files and the
        driver writes them (:func:`dlpipe.tasks.training.records.record_run`), so they
        reach the run directory from any node.
    """
    recorder = epoch_recorder(run_id, training.early_stopping, epoch_hook)
    with tensorboard_folder(training.tensorboard) as log_dir:
        model.fit(
            train,
            validation_data=validation,
            epochs=training.epochs,
            callbacks=callbacks(training, recorder, log_dir),
            verbose=0,
            **fit_kwargs,
        )
        recorder.tensorboard = read_folder(log_dir) if log_dir else {}
    recorder.restore_best(model)
    return recorder


@contextlib.contextmanager
def tensorboard_folder(spec: TensorBoardSpec):
    """A temporary folder for one run's event files (None when TensorBoard is off)."""
    if not spec.enabled:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="dlpipe-tb-") as folder:
        yield folder


def read_folder(folder: str | Path) -> dict[str, bytes]:
    """Every file under ``folder`` as ``{relative POSIX path: bytes}``."""
    root = Path(folder)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def gpu_details(devices: list[str]) -> str:
    """Name of the GPU model(s) TF uses (e.g. ``"NVIDIA H200"``), ``""`` without one."""
    if not any(d.startswith("GPU") for d in devices):
        return ""
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", "GPU"))
        except (RuntimeError, ValueError):
            names.append("GPU")
    return ",".join(dict.fromkeys(names))


def run_row(
    *,
    run_id: str,
    family: str,
    hp_resolved: dict,
    seed: int,
    model,
    recorder,
    metric: str,
    scores: dict,
    started: float,
    num_cpus: float,
    num_gpus: float,
    devices: list[str],
    diverged_text: str = "loss diverged (NaN/inf)",
    checked: str = "val_loss",
) -> dict:
    """The generic columns of a ``runs`` row.

    Args:
        metric: name of the headline metric (``mae`` in the target's units, ``accuracy``).
        scores: ``{"val_loss", "test_loss", "val_metric", "test_metric"}`` (NaN when a
            split was not scored).
        started: ``time.perf_counter()`` at the start of the run.
        checked: the score whose non-finite value fails the run (``test_loss`` for a
            run without validation rows: a K-fold study's final model).

    Returns:
        The row; ``status`` is ``failed`` (with ``error``) when the validation loss is
        not finite or training diverged. ``gpu_seconds`` = wall time x GPUs held.
    """
    wall = time.perf_counter() - started
    failed = not math.isfinite(scores[checked]) or recorder.diverged
    return {
        "run_id": run_id,
        "family": family,
        "hyperparameters": hp_resolved,
        "seed": seed,
        "epochs_run": len(recorder.rows),
        "best_epoch": recorder.best_epoch,
        "params": int(model.count_params()),
        "metric": metric,
        **scores,
        "wall_time_s": wall,
        "node": socket.gethostname(),
        "resources": {"num_cpus": num_cpus, "num_gpus": num_gpus},
        "devices": ",".join(devices),
        "gpu_type": gpu_details(devices),
        "gpu_seconds": wall * float(num_gpus),
        "status": "failed" if failed else "ok",
        "error": diverged_text if failed else None,
    }


def error_text(error: BaseException | str) -> str:
    """The last 4000 characters of an exception's one-line description."""
    text = (
        error
        if isinstance(error, str)
        else "".join(traceback.format_exception_only(type(error), error)).strip()
    )
    return text[-4000:]


def epoch_recorder(run_id: str, early_stopping: EarlyStoppingSpec, epoch_hook=None):
    """A Keras callback recording history rows (loss, val_loss, lr, seconds and any
    metric Keras logs) and the weights of the best epoch (restored at the end when
    ``restore_best_weights``).

    "Best" follows the monitored metric's direction in :mod:`dlpipe.metrics`: the
    lowest ``val_loss``/``val_mae``, the highest ``val_accuracy`` (shared case C16);
    the first best epoch wins ties, as in Keras's EarlyStopping."""
    import keras

    class EpochRecorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.monitor = early_stopping.monitor
            self.metric = get_metric(self.monitor)
            self.restore = early_stopping.enabled and early_stopping.restore_best_weights
            self.rows: list[dict] = []
            self.best, self.best_epoch, self.best_weights = self.metric.worst, 0, None
            self.diverged = False
            self.tensorboard: dict[str, bytes] = {}
            self._t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            lr = logs.get("learning_rate")
            if lr is None:
                lr = np.asarray(self.model.optimizer.learning_rate)
            self.rows.append(
                {
                    "run_id": run_id,
                    "epoch": epoch + 1,
                    "loss": logs.get("loss"),
                    "val_loss": logs.get("val_loss"),
                    "lr": float(lr),
                    "metric": logs.get("accuracy"),
                    "val_metric": logs.get("val_accuracy"),
                    "seconds": time.perf_counter() - self._t0,
                }
            )
            if epoch_hook is not None:
                epoch_hook(epoch + 1, dict(logs))
            value = logs.get(self.monitor)
            if value is None:
                return
            if not math.isfinite(value):
                self.diverged = True
            elif self.metric.is_better(value, self.best):
                self.best, self.best_epoch = float(value), epoch + 1
                if self.restore:
                    self.best_weights = self.model.get_weights()

        def restore_best(self, model) -> None:
            if self.restore and self.best_weights is not None:
                model.set_weights(self.best_weights)

    return EpochRecorder()
