"""A sweep trial under K-fold (issue 14; book ch. 3.6.4): the objective of one proposed
configuration is its fold mean.

The trial trains the configuration once per fold, every fold as its own training task
(:func:`dlpipe.tasks.sweep.trial.launch_in_worker`: the fresh worker studies use),
all started at once inside the trial's placement group, which holds one bundle per fold
run that may run at the same time (:func:`kfold_trial_resources`), and waits for them.
In a CPU sweep with warm workers (issue 17) the fold runs are calls to the sweep's
warm pool instead (:mod:`dlpipe.tasks.sweep.pool`: as many workers as fold runs fit on
the cluster at once, shared by the trials, which then hold no CPUs), started at once
as well: the pool trains them as its workers come free.
Each fold run is recorded as a study's fold run is (``runs``/``history``/
``predictions``, ``evaluation`` = ``fold``, ``repeat``, ``fold``; its key is the one a
study of the same configuration gives it), then the trial's aggregate row
(``evaluation`` = ``mean``, keyed by the trial's run id). The trial reports the fold
mean of ``val_loss`` (the searched objective, as in hold-out sweeps) and of
``val_metric``, and the fold scores themselves (``val_loss_folds``,
``val_metric_folds``, ``val_metric_std``), which the ``trials`` report records.

A fold run finished before (a resumed trial, or another trial of the same
configuration) is not trained again; a trial whose aggregate row is stored reports it
(``reused_from``). The trainable is :func:`kfold_sweep_trial`.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

import numpy as np

from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.sweep.space import decode
from dlpipe.tasks.sweep.trial import TrialFailed, final_result, launch_in_worker, resolve_hparams
from dlpipe.tasks.training.folds import aggregate_row
from dlpipe.tasks.training.records import record_run, run_key, stored_run, tag_result


@dataclass(frozen=True)
class TrialFold:
    """One fold dataset of a K-fold sweep (a kind's ``fold_datasets`` entry).

    Attributes:
        repeat: 0-based repeat.
        fold: 0-based fold within its repeat.
        data: ObjectRef to the fold's arrays (encoded with its training rows only).
        meta: the fold's dataset meta (its encoding).
    """

    repeat: int
    fold: int
    data: object
    meta: dict


def kfold_trial_resources(num_cpus: float, num_gpus: float, parallel: int):
    """A K-fold trial's ``PlacementGroupFactory``: an empty head bundle for the trial,
    then ``parallel`` bundles of one fold run's CPUs/GPUs (its fold tasks share them,
    ``parallel`` at a time)."""
    from ray.tune import PlacementGroupFactory

    bundle = {"CPU": num_cpus, **({"GPU": num_gpus} if num_gpus else {})}
    return PlacementGroupFactory([{}] + [dict(bundle) for _ in range(max(1, parallel))])


def fold_key(ctx, meta: dict, family: str, hp: dict, **place) -> str:
    """Run key of the configuration at ``place`` (``repeat``/``fold``, or
    ``aggregate=True``): the key a study's K-fold run of it has."""
    evaluation = {**ctx.evaluation, **place}
    return run_key(meta["key"], family, hp, ctx.inputs, ctx.training, ctx.seed, evaluation)


def fold_runs(ctx, meta: dict, family: str, hp: dict) -> list[dict]:
    """The ``runs`` rows of the configuration's fold runs: the stored ones, and the
    others trained now (all at once) and recorded as they are collected."""
    from dlpipe.tasks.sweep.pool import run_result

    rows, pending = [], {}
    for fd in ctx.folds:
        run_id = fold_key(ctx, meta, family, hp, repeat=fd.repeat, fold=fd.fold)
        stored = stored_run(ctx.sweep_dir, run_id)
        if stored is not None:
            rows.append(stored)
            continue
        ref = launch_in_worker(
            ctx,
            fd.data,
            meta={**meta, **fd.meta},
            family=family,
            hp=hp,
            training=ctx.training,
            seed=ctx.seed,
            run_id=run_id,
            num_cpus=ctx.num_cpus,
            num_gpus=ctx.num_gpus,
            evaluate_test=False,
        )
        pending[ref] = fd
    for ref, fd in pending.items():
        columns = {"evaluation": "fold", "repeat": fd.repeat, "fold": fd.fold}
        result = tag_result(run_result(ref), columns)
        rows.append(
            record_run(
                ctx.sweep_dir,
                result,
                pipeline=ctx.pipeline,
                study=ctx.study,
                dataset_key=meta["key"],
            )
        )
    return sorted(rows, key=lambda row: (row["repeat"], row["fold"]))


def kfold_trial(ctx, meta: dict, family: str, hp: dict, base: dict) -> dict:
    """The trial's final Tune result (module docstring).

    Args:
        ctx: the sweep's :class:`~dlpipe.tasks.sweep.trial.TrialContext` (``folds``,
            ``evaluation``).
        meta: the dataset meta (its ``key``).
        family, hp: the configuration (resolved hyperparameters).
        base: the result's common fields (``family``, ``hyperparameters``, ``node``...).

    Returns:
        The result: ``val_loss``/``val_metric`` = fold means, ``val_metric_std``,
        ``val_loss_folds``/``val_metric_folds`` (JSON lists in (repeat, fold) order),
        ``run_id`` = the aggregate row's.

    Raises:
        TrialFailed: a fold run failed (its error) or the fold mean is not finite.
    """
    import pandas as pd

    agg_id = fold_key(ctx, meta, family, hp, aggregate=True)
    base = {**base, "run_id": agg_id}
    stored = stored_run(ctx.sweep_dir, agg_id)
    rows = fold_runs(ctx, meta, family, hp)
    failed = [row for row in rows if row["status"] != "ok"]
    if failed:
        raise TrialFailed(
            f"{len(failed)} of {len(rows)} fold run(s) failed, first: {failed[0]['error']} "
            f"(family {family}, hp {reports.dumps(hp)})"
        )
    reused = stored is not None
    if not reused:
        stored = record_run(
            ctx.sweep_dir,
            aggregate_row(agg_id, pd.DataFrame(rows)),
            pipeline=ctx.pipeline,
            study=ctx.study,
            dataset_key=meta["key"],
        )
    result = final_result(stored, base, reused_from=agg_id if reused else "")
    if not np.isfinite(result["val_loss"]):
        raise TrialFailed(f"non-finite fold mean validation loss (family {family})")
    result.update(
        val_metric_std=float(stored["val_metric_std"]),
        val_loss_folds=json.dumps([float(row["val_loss"]) for row in rows]),
        val_metric_folds=json.dumps([float(row["val_metric"]) for row in rows]),
    )
    return result


def kfold_sweep_trial(config: dict, *, data, meta: dict, ctx) -> None:
    """Ray Tune function trainable of a K-fold sweep (the hold-out sweep's is
    :func:`dlpipe.tasks.sweep.trial.sweep_trial`): decode the configuration, train its
    fold runs (:func:`kfold_trial`) and report their mean. The trial imports neither
    TensorFlow nor Keras; ``data`` (the hold-out dataset) is not used.

    Raises:
        TrialFailed: a fold run failed or the fold mean is not finite.
        ValueError: a hyperparameter cannot be converted.
    """
    from ray import tune

    family, hp = decode(config)
    hp_resolved = resolve_hparams(ctx, family, hp)
    base = {
        "family": family,
        "hyperparameters": reports.dumps(hp_resolved),
        "node": socket.gethostname(),
        "devices": "",
    }
    tune.report(kfold_trial(ctx, meta, family, hp_resolved, base))
