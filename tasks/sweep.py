"""One sweep trial: the Ray Tune trainable, thin over :func:`dlpipe.tasks.trainers.train_run`.

A trial decodes its sampled configuration into ``(family, hp)``, converts the
hyperparameters to Python types once (case C09), and derives the run key from the
resolved values. If a run with that key already finished (an identical proposal, or a
trial re-run after a resume), its stored result is reported instead of training again.
Otherwise the model is trained (validation only: test data is never used to choose),
saved for the final test evaluation, and its ``runs``/``history``/``predictions`` parts
are written before the metric is reported. A diverged (NaN/inf) or crashed training
raises, so Tune and Hyperopt record the trial as failed (case C12).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from dlpipe.tasks import reports
from dlpipe.tasks.search_space import decode
from dlpipe.tasks.tf_setup import setup_tensorflow
from dlpipe.tasks.train import TrainingSpec, run_key, stored_run
from dlpipe.tasks.trainers import train_run

METRIC = "val_loss"  # the model's validation loss (weather: normalized MAE), minimized


class TrialFailed(RuntimeError):
    """A trial's training diverged or produced no finite validation loss."""


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a sweep shares (passed once through ``tune.with_parameters``)."""

    sweep_dir: str
    study: str
    inputs: object  # the input geometry: WindowSpec (weather) or TextSpec (text)
    training: TrainingSpec
    seed: int
    num_cpus: float = 1
    num_gpus: float = 0
    report_epochs: bool = False  # per-epoch results, for an early-termination scheduler
    pipeline: str = "timeseries"


def sweep_trial(config: dict, *, data, meta: dict, ctx: TrialContext) -> None:
    """Ray Tune function trainable of a sweep (see the module docstring).

    ``data`` is the prepared dataset (weather: the normalized float32 (rows, features)
    array; text: the arrays of ``prepare_text``) or an ObjectRef to it (resolved
    zero-copy, read-only).

    Reports ``val_loss`` (the model's validation loss: normalized MAE for weather,
    crossentropy for text), ``val_metric`` (MAE in the target's units, or accuracy),
    ``val_mae_units`` (weather), ``run_id``,
    ``family``, ``hyperparameters`` (resolved, JSON), ``reused_from``, ``node``,
    ``devices`` and ``final`` (False for the per-epoch results an early-termination
    scheduler reads; a trial it stops never reports a final result).

    Raises:
        TrialFailed: the loss diverged (NaN/inf).
        ValueError: a hyperparameter cannot be converted (e.g. 32.5 for ``units``).
    """
    import ray
    from ray import tune

    if isinstance(data, ray.ObjectRef):  # the array stays in the object store once (C14)
        data = ray.get(data)
    devices = setup_tensorflow(ctx.num_cpus, ctx.num_gpus)
    from dlpipe.models.registry import resolved_hparams

    family, hp = decode(config)
    hp_resolved = resolved_hparams(family, hp, ctx.pipeline)
    run_id = run_key(meta["key"], family, hp_resolved, ctx.inputs, ctx.training, ctx.seed)
    base = {"run_id": run_id, "family": family, "hyperparameters": reports.dumps(hp_resolved),
            "node": socket.gethostname(), "devices": ",".join(devices)}
    previous = stored_run(ctx.sweep_dir, run_id)
    if previous is not None:
        base["hyperparameters"] = previous["hyperparameters"]  # incl. data-fixed values
        tune.report({METRIC: _first(previous, "val_loss", "val_mae"),
                     "val_metric": _first(previous, "val_metric", "val_mae_units"),
                     "val_mae_units": previous["val_mae_units"],
                     "reused_from": run_id, "final": True, **base})
        return

    hook = None
    if ctx.report_epochs:
        def hook(epoch, logs):
            tune.report({METRIC: float(logs.get("val_loss", float("nan"))), "epoch": epoch,
                         "val_mae_units": float("nan"), "val_metric": float("nan"),
                         "reused_from": "", "final": False,
                         **base})

    models_dir = Path(ctx.sweep_dir) / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    result = train_run(ctx.pipeline, data=data, meta=meta, family=family, hp=hp_resolved,
                       inputs=ctx.inputs, training=ctx.training, seed=ctx.seed,
                       run_id=run_id, num_cpus=ctx.num_cpus, num_gpus=ctx.num_gpus,
                       evaluate_test=False, model_path=str(models_dir / f"{run_id}.keras"),
                       epoch_hook=hook)
    run = dict(result["run"], pipeline=ctx.pipeline, study=ctx.study, dataset_key=meta["key"],
               finished_at=datetime.now(timezone.utc))
    reports.write_part(ctx.sweep_dir, "history", run_id, result["history"])
    reports.write_part(ctx.sweep_dir, "predictions", run_id, result["predictions"])
    reports.write_part(ctx.sweep_dir, "runs", run_id, [run])
    base["hyperparameters"] = reports.dumps(run["hyperparameters"])
    if run["status"] != "ok":
        raise TrialFailed(f"{run['error']} (family {family}, hp {reports.dumps(hp_resolved)})")
    tune.report({METRIC: run["val_loss"], "val_metric": run["val_metric"],
                 "val_mae_units": run.get("val_mae_units", float("nan")),
                 "reused_from": "", "final": True, **base})


def _first(row: dict, *names: str) -> float:
    """The first of ``names`` that holds a finite number in ``row`` (NaN if none):
    rows stored before the generic columns existed hold only the weather ones."""
    for name in names:
        value = row.get(name)
        if value is not None and value == value:
            return float(value)
    return float("nan")
