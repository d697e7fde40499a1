"""Sweeps of K-fold studies (issue 14): each trial's objective is its fold mean
(:mod:`dlpipe.tasks.sweep.kfold_trial`), and the best K configurations are scored on the
test split as a K-fold study scores its models: a final model trained on every non-test
row for the best epoch of the configuration's fold-averaged validation curve
(:mod:`dlpipe.pipelines.kfold`), its test figures copied onto the trial's aggregate row.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from dlpipe.metrics import get_metric
from dlpipe.pipelines.jobs import TrainingJob, collect_jobs, launch_jobs
from dlpipe.pipelines.kfold import averaged_curve, choose_epochs, final_training
from dlpipe.pipelines.kinds import get_kind
from dlpipe.pipelines.sections import ConfigError, ModelSpec, StudyCommon
from dlpipe.pipelines.sweeps.summary import top_k
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.records import run_key, stored_run


def check_kfold_sweep(cfg: StudyCommon) -> None:
    """A K-fold sweep has no early-termination scheduler (ASHA stops a trial from the
    per-epoch reports of one training; a K-fold trial trains its folds at once).

    Raises:
        ConfigError: naming ``sweep.scheduler`` and the evaluation mode.
    """
    if not cfg.evaluation.is_holdout and cfg.sweep.scheduler is not None:
        raise ConfigError(
            f"{cfg.source_file}: `sweep.scheduler` (ASHA) needs the per-epoch results of "
            f"one training; a trial of an `evaluation: {cfg.evaluation.mode}` sweep trains "
            "its folds at once and reports their mean: leave `sweep.scheduler` out"
        )


def fold_parallelism(cfg: StudyCommon, count: int) -> int:
    """How many of a trial's ``count`` fold runs may train at once: as many as the
    connected Ray's CPUs (and GPUs) hold of one run's resources, at least 1."""
    import ray

    res, total = cfg.resources, ray.cluster_resources()
    fits = [int(total.get("CPU", 1) // res.num_cpus)] if res.num_cpus else []
    if res.num_gpus:
        fits.append(int(total.get("GPU", 0) // res.num_gpus))
    return max(1, min([count, *fits]))


def kfold_context(cfg: StudyCommon, ctx, folds: list):
    """``(trainable, ctx, resources)`` of a K-fold sweep's trials: the K-fold trainable
    (:func:`dlpipe.tasks.sweep.kfold_trial.kfold_sweep_trial`); the context with the
    fold datasets (``folds``: the kind's ``fold_datasets``, the final one last) and the
    evaluation payload of their run keys; a placement group of one bundle per fold run
    that may train at once (:func:`fold_parallelism`), or, when the runs train in the
    sweep's warm pool (``ctx.pool``), the pooled trial's bundle (the workers hold the
    CPUs)."""
    from dataclasses import replace

    from dlpipe.tasks.sweep.kfold_trial import (
        TrialFold,
        kfold_sweep_trial,
        kfold_trial_resources,
    )
    from dlpipe.tasks.sweep.trial import trial_resources

    trial_folds = tuple(
        TrialFold(fd.repeat, fd.fold, fd.prepared.data, fd.prepared.meta) for fd in folds[:-1]
    )
    ctx = replace(ctx, folds=trial_folds, evaluation=cfg.evaluation.key_payload(), isolated=True)
    res = cfg.resources
    if ctx.pool is not None:
        return kfold_sweep_trial, ctx, trial_resources(res.num_cpus, res.num_gpus, True, True)
    parallel = fold_parallelism(cfg, len(trial_folds))
    return kfold_sweep_trial, ctx, kfold_trial_resources(res.num_cpus, res.num_gpus, parallel)


def final_job(cfg: StudyCommon, prepared, data, trial, seed: int, epochs: int) -> TrainingJob:
    """The final model of a trial's configuration (``trial``: its ``trials`` row):
    every non-test row of ``data`` trains it for ``epochs`` epochs; its key is the one a
    K-fold study of the configuration gives its final model."""
    hp = json.loads(trial.hyperparameters)
    training = final_training(cfg.training, epochs)
    evaluation = {**cfg.evaluation.key_payload(), "final": True}
    run_id = run_key(prepared.key, trial.family, hp, cfg.inputs, training, seed, evaluation)
    return TrainingJob(
        run_id,
        ModelSpec(trial.family, hp),
        seed,
        cfg.inputs,
        data,
        training,
        {"evaluation": "final"},
        {"final_epochs": epochs},
    )


def trial_epochs(cfg: StudyCommon, prepared, history, trial, seed: int, metric) -> int | None:
    """The best epoch of the trial's fold-averaged validation curve (None: no curve)."""
    ev = cfg.evaluation
    hp = json.loads(trial.hyperparameters)
    ids = [
        run_key(
            prepared.key,
            trial.family,
            hp,
            cfg.inputs,
            cfg.training,
            seed,
            {**ev.key_payload(), "repeat": repeat, "fold": fold},
        )
        for repeat in range(ev.repeats)
        for fold in range(ev.k)
    ]
    curve = averaged_curve(history, ids)
    return choose_epochs(curve, metric) if len(curve) else None


def evaluate_top_k_kfold(
    cfg: StudyCommon, sweep_dir: Path, ok, prepared, final_data, baseline: dict
) -> list[str]:
    """Score the best ``test_top_k`` configurations once on the test split (chosen on
    the fold-mean validation loss only): train each one's final model on every
    non-test row (``final_data``), then copy its test figures onto the trial's
    aggregate ``runs`` row. A configuration already scored is skipped (a resumed sweep).

    Returns:
        The run ids of the best K aggregate rows, best first.
    """
    kind = get_kind(cfg)
    best = top_k(ok, cfg.sweep.test_top_k)
    history = reports.read_table(sweep_dir, "history")
    metric = get_metric(baseline["metric"])
    seed = cfg.seed if cfg.sweep.seed is None else cfg.sweep.seed
    jobs, finals = [], {}
    for trial in best.itertuples():
        (row,) = reports.read_part(sweep_dir, "runs", trial.run_id)
        if row.get("test_metric") is not None and not math.isnan(row["test_metric"]):
            continue
        epochs = trial_epochs(cfg, prepared, history, trial, seed, metric)
        if epochs is None:
            continue
        job = final_job(cfg, prepared, final_data, trial, seed, epochs)
        finals[trial.run_id] = (row, job.run_id)
        if stored_run(sweep_dir, job.run_id) is None and job.run_id not in {j.run_id for j in jobs}:
            jobs.append(job)
    pending = launch_jobs(cfg, jobs, sweep_dir)
    collect_jobs(sweep_dir, cfg, prepared, pending, baseline, progress=False)
    for run_id, (row, final_id) in finals.items():
        final = stored_run(sweep_dir, final_id)
        if final is None:
            continue
        row.update(test_loss=final["test_loss"], test_metric=final["test_metric"])
        row.update(kind.score_columns("test", final["test_loss"], final["test_metric"]))
        reports.write_part(sweep_dir, "runs", run_id, [row], kind=cfg.pipeline)
    return list(best["run_id"])
