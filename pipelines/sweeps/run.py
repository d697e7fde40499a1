"""Running a sweep on Ray Tune: prepare once, Tune trials until ``num_trials`` are
recorded (restoring an unfinished experiment, then extending), the best K scored once
on the test split."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

from dlpipe.pipelines.config import sweep_spaces
from dlpipe.pipelines.interrupt import (
    Interrupted,
    TuneStop,
)
from dlpipe.pipelines.kinds import get_kind
from dlpipe.pipelines.sections import StudyCommon
from dlpipe.pipelines.sweeps.kfold import (
    check_kfold_sweep,
    evaluate_top_k_kfold,
    fold_parallelism,
    kfold_context,
)
from dlpipe.pipelines.sweeps.recorder import (
    OBJECTIVE,
    TrialRecorder,
    last_lines,
    recorded_trials,
    trial_history,
)
from dlpipe.pipelines.sweeps.searcher import searcher_class
from dlpipe.pipelines.sweeps.stamp import open_stamp, sweep_dir_of, write_stamp
from dlpipe.pipelines.sweeps.summary import top_k, write_sweep_outputs
from dlpipe.pipelines.sweeps.workers import pool_size, uses_warm_workers, worker_pool
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.sweep.space import is_constant, sweep_space, warm_start_point
from dlpipe.tasks.sweep.trial import METRIC, TrialContext


class SweepError(RuntimeError):
    """The sweep produced no usable trial (e.g. every trial failed)."""


class SweepInterrupted(Interrupted):
    """The sweep stopped on SIGINT/SIGTERM before its ``num_trials`` trials ended.

    Attributes:
        signum: the signal; ``exit_code`` is 130 (SIGINT) or 143 (SIGTERM).
        scored: whether the finished trials were scored on test (``--score-partial``).
    """

    def __init__(self, signum: int, scored: bool = False):
        super().__init__(signum)
        self.scored = scored


class TuneStopFilter:
    """Drops Ray Tune's own stop/resume lines: dlpipe prints the outstanding trials and
    its own resume command (Tune's `Tuner.restore(...)` advice would bypass dlpipe)."""

    PHRASES = ("Stop signal received", "Experiment has been interrupted", "Resume experiment with")

    def filter(self, record) -> bool:
        return not any(p in str(record.getMessage()) for p in self.PHRASES)


def quiet_tune_stop_messages() -> None:
    import logging

    logger = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, TuneStopFilter) for f in logger.filters):
        logger.addFilter(TuneStopFilter())


def run_sweep(
    cfg: StudyCommon,
    *,
    score_partial: bool = False,
    stop: TuneStop | None = None,
) -> Path:
    """Run, resume or extend the study's sweep on the connected Ray; returns the sweep
    dir.

    Args:
        cfg: the study (its ``sweep`` section).
        score_partial: score the best finished trials on test even when a signal
            stopped the sweep before ``num_trials`` trials ended.
        stop: the signal handling around Tune's loop (one is made when None).

    Raises:
        ConfigError: the stored sweep was started with other settings.
        SweepError: every trial failed (the message points at the trial errors).
        SweepInterrupted: SIGINT/SIGTERM stopped the sweep (finished trials recorded).
    """
    import ray

    from dlpipe.pipelines.study import record_dataset, write_baseline

    # Tune's default console output (a config box, a TensorBoard tip for a package we do
    # not install) gives way to the progress lines of TrialRecorder.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    quiet_tune_stop_messages()
    stop = stop or TuneStop()

    sweep = cfg.sweep
    sweep_dir = sweep_dir_of(cfg)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    stamp = open_stamp(cfg, sweep_dir)
    check_kfold_sweep(cfg)
    uses_warm_workers(cfg)  # `reuse_workers: true` with GPUs is refused before training

    prepared = get_kind(cfg).prepare(cfg, sweep_dir)
    record_dataset(sweep_dir, prepared)
    baseline = write_baseline(sweep_dir, cfg, prepared, ray.get(prepared.data))
    folds = None if cfg.evaluation.is_holdout else get_kind(cfg).fold_datasets(cfg, prepared)
    spaces = sweep_spaces(cfg)
    if len(spaces) == 1 and is_constant(next(iter(spaces.values()))) and sweep.num_trials > 1:
        print(
            "warning: the search space holds a single configuration (every range has one "
            "value); the first trial trains it and the others reuse its result",
            file=sys.stderr,
        )
    run_trials(cfg, sweep_dir, stamp, spaces, prepared, stop, folds)
    trials = reports.read_table(sweep_dir, "trials")
    ok = trials[trials["status"].isin(["ok", "reused"])]
    if ok.empty and not stop.signum:
        raise SweepError(
            f"no trial of {len(trials)} finished ({trials['status'].value_counts().to_dict()}); "
            f"first error: "
            f"{last_lines(trials['error'].dropna().iloc[0] if len(trials) else None, 2)} "
            f"(every error is in {sweep_dir / 'reports' / 'trials'})"
        )
    complete = trials["trial"].nunique() >= sweep.num_trials
    scored = not ok.empty and (complete or not stop.signum or score_partial)
    if scored and folds is not None:  # K-fold: the best K's final models
        evaluate_top_k_kfold(cfg, sweep_dir, ok, prepared, folds[-1].prepared, baseline)
    elif scored:  # a partial sweep is scored on test only when the user asks
        evaluate_top_k(cfg, sweep_dir, ok, prepared)
    if len(trials):
        write_sweep_outputs(sweep_dir)
    if stop.signum and not complete:
        raise SweepInterrupted(stop.signum, scored=scored)
    return sweep_dir


def run_trials(
    cfg: StudyCommon,
    sweep_dir: Path,
    stamp: dict,
    spaces: dict,
    prepared,
    stop: TuneStop,
    folds=None,
) -> None:
    """Run Tune until the sweep holds ``num_trials`` recorded trials: restore its last
    Tune experiment if that one is unfinished, then start one more experiment for the
    trials still missing (numbered on from the last recorded trial; its searcher
    starts from every recorded result). Returns early when ``stop`` caught a signal.
    ``folds``: a K-fold sweep's fold datasets (the kind's ``fold_datasets``), else None.
    The runs train in the sweep's warm worker pool while Tune runs when
    :func:`~dlpipe.pipelines.sweeps.workers.uses_warm_workers` says so."""
    pool = contextlib.nullcontext()
    if uses_warm_workers(cfg):
        parallel = 1 if folds is None else fold_parallelism(cfg, len(folds) - 1)
        pool = worker_pool(cfg, pool_size(cfg, parallel))
    with pool as pool_name:
        trainable = make_trainable(cfg, sweep_dir, prepared, folds, pool=pool_name)
        tune_trials(cfg, sweep_dir, stamp, spaces, prepared, stop, trainable)


def tune_trials(
    cfg: StudyCommon, sweep_dir: Path, stamp: dict, spaces: dict, prepared, stop, trainable
) -> None:
    """The Tune experiments of :func:`run_trials` with its ``trainable``."""
    from ray import tune

    sweep, res = cfg.sweep, cfg.resources
    target = sweep.num_trials
    done = _restore_unfinished(sweep_dir, stamp["segments"], target, trainable, stop)
    if done is None:
        return
    if len(done) >= target:
        print(f"sweep complete: {len(done)} trials in {sweep_dir}", flush=True)
        return
    first, count = max(done, default=0) + 1, target - len(done)
    name = "tune" if first == 1 else f"tune-from-{first}"
    segments = [s for s in stamp["segments"] if s["name"] != name] + [
        {"name": name, "first": first, "trials": count}
    ]
    write_stamp(sweep_dir, dict(stamp, segments=segments))
    history = trial_history(sweep_dir, spaces) if first > 1 else []
    if first > 1:
        print(
            f"extending the sweep in {sweep_dir} to {target} trials: trials {first}-"
            f"{first + count - 1} ({len(done)} recorded, {len(history)} of them given to "
            f"the searcher)",
            flush=True,
        )
    searcher = _searcher(cfg, spaces, history, first)
    scheduler = _scheduler(cfg)
    recorder = TrialRecorder(
        sweep_dir,
        stamp["sweep_id"],
        sweep.searcher,
        target,
        len(sweep.warm_start),
        asdict(res),
        prepared.meta.get("target", ""),
        offset=first - 1,
        kind=cfg.pipeline,
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=OBJECTIVE.mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=count,
            max_concurrent_trials=sweep.max_concurrent_trials,
            time_budget_s=sweep.time_budget_s,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(sweep_dir),
            verbose=0,
            callbacks=[recorder.tune_callback()],
            # a retried trial keeps its number (one `trials` part) and run key
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures, fail_fast=False),
        ),
    )
    with stop.tune_loop():
        tuner.fit()


def _restore_unfinished(sweep_dir: Path, segments: list, target: int, trainable, stop):
    """Run the last Tune experiment of the sweep on if it holds fewer trials than it was
    started with. Returns the recorded trial numbers, or None when a signal stopped it."""
    from ray import tune

    done = recorded_trials(sweep_dir)
    if segments and len(done) < target:
        last = segments[-1]
        mine = [n for n in done if last["first"] <= n < last["first"] + last["trials"]]
        path = sweep_dir / last["name"]
        if len(mine) < last["trials"] and tune.Tuner.can_restore(str(path)):
            print(
                f"resuming the sweep in {sweep_dir}: {len(done)} trial(s) already recorded",
                flush=True,
            )
            with stop.tune_loop():
                tune.Tuner.restore(
                    str(path),
                    trainable,
                    resume_unfinished=True,
                    resume_errored=False,
                    restart_errored=False,
                ).fit()
            if stop.signum:
                return None
            done = recorded_trials(sweep_dir)
    return done


def _searcher(cfg: StudyCommon, spaces: dict, history: list, first: int):
    """The TPE (or random) searcher of the experiment whose first trial is ``first``:
    warm starts only in the first experiment, the recorded results as its history."""
    sweep = cfg.sweep
    target = sweep.num_trials
    seed = cfg.seed if sweep.seed is None else sweep.seed
    return searcher_class()(
        sweep_space(spaces),
        metric=METRIC,
        mode=OBJECTIVE.mode,
        history=history,
        points_to_evaluate=[warm_start_point(spaces, p) for p in sweep.warm_start]
        if first == 1 and sweep.warm_start
        else None,
        n_initial_points=target if sweep.searcher == "random" else sweep.n_initial_points,
        # an extension draws other random numbers than the experiment before it
        random_state_seed=seed + first - 1,
    )


def _scheduler(cfg: StudyCommon):
    """ASHA when the study asks for early termination (``sweep.scheduler``), else None."""
    sweep = cfg.sweep
    if sweep.scheduler is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=cfg.training.epochs + 1,
        grace_period=sweep.scheduler.grace_period,
        reduction_factor=sweep.scheduler.reduction_factor,
    )


def make_trainable(cfg: StudyCommon, sweep_dir: Path, prepared, folds=None, pool=None):
    """The Tune trainable of the sweep: :func:`dlpipe.tasks.sweep.trial.sweep_trial` with the
    dataset and the :class:`TrialContext`, and the trial's resources (K-fold, ``folds``
    given: the fold datasets, and a bundle per fold run that may run at once,
    :func:`dlpipe.pipelines.sweeps.kfold.kfold_context`). ``pool``: the name of the
    warm worker pool the runs train in (the trials then hold no CPUs), or None."""
    from ray import tune

    from dlpipe.tasks.sweep.trial import hparam_specs, sweep_trial, trial_resources

    sweep, res = cfg.sweep, cfg.resources
    # trials train in a fresh pyarrow-free worker, except under an early-termination
    # scheduler, which needs per-epoch reports from inside training
    isolated = sweep.scheduler is None
    ctx = TrialContext(
        sweep_dir=str(sweep_dir),
        study=cfg.study,
        inputs=cfg.inputs,
        training=cfg.training,
        seed=cfg.seed if sweep.seed is None else sweep.seed,
        num_cpus=res.num_cpus,
        num_gpus=res.num_gpus,
        report_epochs=sweep.scheduler is not None,
        pipeline=cfg.pipeline,
        train=get_kind(cfg).train,
        input_columns=get_kind(cfg).input_columns(cfg.inputs),
        isolated=isolated,
        hparam_specs=hparam_specs(cfg.pipeline, sweep_spaces(cfg)),
        pool=pool if isolated else None,
    )
    trial = sweep_trial
    resources = trial_resources(res.num_cpus, res.num_gpus, isolated, pooled=bool(ctx.pool))
    if folds is not None:
        trial, ctx, resources = kfold_context(cfg, ctx, folds)
    return tune.with_resources(
        tune.with_parameters(trial, data=prepared.data, meta=prepared.meta, ctx=ctx),
        resources,
    )


def evaluate_top_k(cfg: StudyCommon, sweep_dir: Path, ok, prepared) -> list[str]:
    """Score the best ``test_top_k`` distinct configurations once on the test split
    (chosen on validation loss only, best first by :data:`OBJECTIVE`, ties by trial
    number) and write their test figures and predictions."""
    import ray

    from dlpipe.tasks.remote import evaluate_model_task, tf_task

    kind = get_kind(cfg)
    best = top_k(ok, cfg.sweep.test_top_k)
    refs = {}
    for run_id in best["run_id"]:
        if not reports.part_exists(sweep_dir, "runs", run_id):
            continue
        (row,) = reports.read_part(sweep_dir, "runs", run_id)
        if row.get("test_metric") is not None and not math.isnan(row["test_metric"]):
            continue  # already scored (a resumed sweep)
        refs[run_id] = (
            row,
            tf_task(
                evaluate_model_task,
                num_cpus=cfg.resources.num_cpus,
                num_gpus=cfg.resources.num_gpus,
            ).remote(
                kind.evaluate,
                data=prepared.data,
                meta=prepared.meta,
                model_path=str(sweep_dir / "models" / f"{run_id}.keras"),
                inputs=cfg.inputs,
                run_id=run_id,
                split="test",
                max_batches=cfg.training.max_batches_per_epoch,
                num_cpus=cfg.resources.num_cpus,
                num_gpus=cfg.resources.num_gpus,
                batch_size=cfg.training.batch_size,
                family=row["family"],
            ),
        )
    for run_id, (row, ref) in refs.items():
        scored = ray.get(ref)
        reports.write_part(sweep_dir, "predictions", f"{run_id}-test", scored["predictions"])
        row.update(test_loss=scored["loss"], test_metric=scored["metric"])
        row.update(kind.score_columns("test", scored["loss"], scored["metric"]))
        reports.write_part(sweep_dir, "runs", run_id, [row], kind=cfg.pipeline)
    return list(best["run_id"])
