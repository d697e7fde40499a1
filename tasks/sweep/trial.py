"""One sweep trial: the Ray Tune trainable, thin over the kind's training function.

A trial decodes its sampled configuration into ``(family, hp)``, converts the
hyperparameters to Python types once (case C09), and derives the run key from the
resolved values. If a run with that key already finished (an identical proposal, or a
trial re-run after a resume), its stored result is reported instead of training again.
Otherwise the model is trained (validation only: test data is never used to choose),
kept for the final test evaluation (its training returns the ``.keras`` bytes, which
the trial's recorder writes as ``models/<run_id>.keras``), and its
``runs``/``history``/``predictions`` parts are written before the metric is reported.
A diverged (NaN/inf) or crashed training raises, so Tune and Hyperopt record the trial
as failed (case C12).

Clean workers (issue 11, section 3): Ray Tune loads pyarrow into a trial's process
itself, and TensorFlow >= 2.20 with pyarrow in one process has aborted at exit. So a
trial (``TrialContext.isolated``) only coordinates and writes: its training runs in the
fresh training worker that studies use (:func:`dlpipe.tasks.remote.train_model_task`,
``max_calls=1``, no pyarrow, plain rows back), scheduled in the trial's own placement
group (an empty head bundle for the trial, one bundle with the run's CPUs/GPUs for the
task: see :func:`trial_resources`), so it lands on the trial's node and cannot
deadlock. The trial imports neither TensorFlow nor Keras: the family defaults and
parameter types that resolve a trial's hyperparameters come in the context
(``hparam_specs``). A sweep with an early-termination scheduler (ASHA) needs per-epoch
reports from inside training, so its trials still train in their own process.

Warm workers (issue 17): in a CPU sweep (``sweep.reuse_workers``) the training runs
instead in a warm worker leased from the sweep's pool (:mod:`dlpipe.tasks.sweep.pool`,
``ctx.pool``; same results), which holds the CPUs; the trial then holds none.

K-fold sweeps use their own trainable, :func:`dlpipe.tasks.sweep.kfold_trial.kfold_sweep_trial`
(one training task per fold, the fold mean as objective).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.sweep.space import decode
from dlpipe.tasks.training.fit import TrainingSpec
from dlpipe.tasks.training.records import RunResult, record_run, run_key, stored_run
from dlpipe.tasks.training.saved import train_keeping_model
from dlpipe.tasks.training.tf_setup import setup_tensorflow

METRIC = "val_loss"  # the model's validation loss (weather: normalized MAE), minimized


class TrialFailed(RuntimeError):
    """A trial's training diverged or produced no finite validation loss."""


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a sweep shares (passed once through ``tune.with_parameters``)."""

    sweep_dir: str
    study: str
    inputs: object  # what the model sees: WindowSpec (weather), TextSpec, ImageSpec
    training: TrainingSpec
    seed: int
    #: the kind's trainer (a plain module-level function: ``train(**kwargs) -> RunResult``)
    train: Callable[..., RunResult]
    num_cpus: float = 1
    num_gpus: float = 0
    report_epochs: bool = False  # per-epoch results, for an early-termination scheduler
    pipeline: str = "timeseries"
    #: the kind's own ``runs`` columns for ``inputs`` (weather: lookback, step, delay)
    input_columns: dict = field(default_factory=dict)
    isolated: bool = False  # train in train_model_task (see the module docstring)
    #: family -> (defaults, parameter types) of the registry, so that a trial resolves
    #: hyperparameters without importing Keras; None: ask the registry
    hparam_specs: dict | None = None
    #: K-fold sweeps: the fold datasets (:class:`dlpipe.tasks.sweep.kfold_trial.TrialFold`)
    #: a trial trains on, and the evaluation payload of their run keys; () under hold-out
    folds: tuple = ()
    evaluation: dict | None = None
    #: name of the sweep's warm worker pool (:mod:`dlpipe.tasks.sweep.pool`, CPU runs);
    #: None: every run in a fresh worker
    pool: str | None = None


#: what a trial that trains in the warm pool holds itself (bytes of Ray's ``memory``
#: resource): Tune needs a non-empty bundle, and a CPU share would count twice against
#: the pool's workers, which hold the runs' CPUs
POOLED_TRIAL_BUNDLE = {"memory": 1024**2}


def trial_resources(num_cpus: float, num_gpus: float, isolated: bool, pooled: bool = False):
    """The resources of a trial for ``tune.with_resources``.

    Isolated trials: ``PlacementGroupFactory([{}, {"CPU": n, "GPU": g}])``, the trial
    actor in the empty head bundle (no resources), its training task in the other one
    (Ray Tune's way to give a trainable resources for the tasks it starts); otherwise the
    trial itself holds ``{"cpu": n, "gpu": g}``. Pooled trials (their runs train in the
    warm pool's workers, which hold the CPUs): :data:`POOLED_TRIAL_BUNDLE` only.
    """
    if not isolated and not pooled:
        return {"cpu": num_cpus, "gpu": num_gpus}
    from ray.tune import PlacementGroupFactory

    if pooled:
        return PlacementGroupFactory([dict(POOLED_TRIAL_BUNDLE)])
    bundle = {"CPU": num_cpus, **({"GPU": num_gpus} if num_gpus else {})}
    return PlacementGroupFactory([{}, bundle])


def resolve_hparams(ctx: TrialContext, family: str, hp: dict) -> dict:
    """The family defaults overridden by ``hp``, coerced to Python types (what the
    registry's ``resolved_hparams`` returns), from ``ctx.hparam_specs`` when given."""
    if ctx.hparam_specs is None or family not in ctx.hparam_specs:
        from dlpipe.models.registry import resolved_hparams

        return resolved_hparams(family, hp, ctx.pipeline)
    from dlpipe.models.hparams import coerce_hparams

    defaults, types = ctx.hparam_specs[family]
    return {**defaults, **coerce_hparams(hp or {}, types, family=family)}


def hparam_specs(pipeline: str, families) -> dict:
    """``{family: (defaults, parameter types)}`` of the registry, for
    :attr:`TrialContext.hparam_specs` (computed where Keras is already loaded)."""
    from dlpipe.models.registry import get_family

    return {
        name: (
            dict(get_family(name, pipeline).defaults),
            dict(get_family(name, pipeline).param_types),
        )
        for name in families
    }


def train_in_worker(ctx: TrialContext, data, **kwargs):
    """Run the training in :func:`dlpipe.tasks.remote.train_model_task` inside the
    trial's placement group (any bundle: the head one holds no resources) and wait.
    Returns its :class:`RunResult`."""
    from dlpipe.tasks.sweep.pool import run_result

    return run_result(launch_in_worker(ctx, data, **kwargs))


def launch_in_worker(ctx: TrialContext, data, **kwargs):
    """Start the training of :func:`train_in_worker` (an ObjectRef for
    :func:`dlpipe.tasks.sweep.pool.run_result`): a K-fold trial starts one per fold, all
    at once. In the sweep's warm pool when ``ctx.pool`` names one, else in a fresh
    worker."""
    if ctx.pool is not None:
        from dlpipe.tasks.sweep.pool import launch_in_pool

        keep_model = kwargs.pop("keep_model", False)
        return launch_in_pool(
            ctx.pool, ctx.train, keep_model, data=data, inputs=ctx.inputs, **kwargs
        )
    from ray.util import get_current_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from dlpipe.tasks.remote import tf_task, train_model_task

    options = {"num_cpus": ctx.num_cpus, "num_gpus": ctx.num_gpus}
    group = get_current_placement_group()
    if group is not None:
        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            group, placement_group_bundle_index=-1
        )
    task = tf_task(train_model_task, **options)
    return task.remote(ctx.train, data=data, inputs=ctx.inputs, **kwargs)


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

    isolated = ctx.isolated and not ctx.report_epochs
    if isinstance(data, ray.ObjectRef) and not isolated:
        data = ray.get(data)  # the array stays in the object store once (C14)
    devices = [] if isolated else setup_tensorflow(ctx.num_cpus, ctx.num_gpus)

    family, hp = decode(config)
    hp_resolved = resolve_hparams(ctx, family, hp)
    run_id = run_key(meta["key"], family, hp_resolved, ctx.inputs, ctx.training, ctx.seed)
    base = {
        "run_id": run_id,
        "family": family,
        "hyperparameters": reports.dumps(hp_resolved),
        "node": socket.gethostname(),
        "devices": ",".join(devices),
    }
    previous = stored_run(ctx.sweep_dir, run_id)
    if previous is not None:
        base["hyperparameters"] = previous["hyperparameters"]  # incl. data-fixed values
        tune.report(final_result(previous, base, reused_from=run_id))
        return
    hook = _epoch_hook(base) if ctx.report_epochs else None
    run_args = dict(
        meta=meta,
        family=family,
        hp=hp_resolved,
        training=ctx.training,
        seed=ctx.seed,
        run_id=run_id,
        num_cpus=ctx.num_cpus,
        num_gpus=ctx.num_gpus,
        evaluate_test=False,
        keep_model=True,  # its bytes come back; record_run writes models/<run_id>.keras
    )
    if isolated:  # TensorFlow in a fresh worker without pyarrow (module docstring)
        result = train_in_worker(ctx, data, **run_args)
    else:
        result = train_keeping_model(
            ctx.train, data=data, inputs=ctx.inputs, epoch_hook=hook, **run_args
        )
    run = record_run(
        ctx.sweep_dir, result, pipeline=ctx.pipeline, study=ctx.study, dataset_key=meta["key"]
    )
    base["hyperparameters"] = reports.dumps(run["hyperparameters"])
    base["devices"] = run.get("devices") or base["devices"]
    if run["status"] != "ok":
        raise TrialFailed(f"{run['error']} (family {family}, hp {reports.dumps(hp_resolved)})")
    tune.report(final_result(run, base, reused_from=""))


def final_result(run: dict, base: dict, *, reused_from: str) -> dict:
    """The trial's final Tune result from its ``runs`` row (trained now or stored)."""
    value = run.get("val_mae_units")
    return {
        METRIC: run["val_loss"],
        "val_metric": run["val_metric"],
        "val_mae_units": float("nan") if value is None else value,
        "reused_from": reused_from,
        "final": True,
        **base,
    }


def _epoch_hook(base: dict):
    """Per-epoch Tune results (``final`` False) for an early-termination scheduler."""
    from ray import tune

    def hook(epoch, logs):
        tune.report(
            {
                METRIC: float(logs.get("val_loss", float("nan"))),
                "epoch": epoch,
                "val_mae_units": float("nan"),
                "val_metric": float("nan"),
                "reused_from": "",
                "final": False,
                **base,
            }
        )

    return hook
