"""Hyperparameter sweep (book ch. 7.3.2): Hyperopt's TPE proposing trials, run by
Ray Tune (``HyperOptSearch``), each trial a Keras training run.

Flow: prepare the dataset once (Ray task, array to the object store) -> Tune trials
(:func:`dlpipe.tasks.sweep.sweep_trial`) with the searcher's history -> a ``trials``
report row per trial as it ends, with live progress -> the best ``test_top_k``
configurations scored once on the test split -> plots.

The sweep directory is ``<output_dir>/<study>-sweep``. Running the same study again
resumes the stored sweep (Tune restores its trials and the searcher's history;
finished runs are found by key and not trained again) and ends with exactly
``num_trials`` trials. Changing the sweep settings of an existing sweep is an error:
give the study a new name.

Runs as a script for ``ray submit``::

    python pipelines/sweep.py --config STUDY.yaml [--smoke-test]
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from dlpipe.pipelines.config import ConfigError, StudyConfig, sweep_spaces
from dlpipe.tasks import reports
from dlpipe.tasks.search_space import decode, is_constant, sweep_space, warm_start_point
from dlpipe.tasks.sweep import METRIC, TrialContext


class SweepError(RuntimeError):
    """The sweep produced no usable trial (e.g. every trial failed)."""


EXIT_TRIALS_FAILED = 3  # `dlpipe sweep` exit code: finished, but some trials failed


def sweep_dir_of(cfg: StudyConfig) -> Path:
    """``<output_dir>/<study>-sweep`` (absolute: Ray Tune needs absolute storage)."""
    return (Path(cfg.output_dir) / f"{cfg.study}-sweep").resolve()


def trial_number(trial) -> int:
    """1-based trial number in proposal order: the counter Tune's search generator puts
    at the front of ``experiment_tag`` (``"7_model=..."``); it survives a resume."""
    return int(str(trial.experiment_tag).split("_", 1)[0])


def _fingerprint(cfg: StudyConfig) -> str:
    inputs = "windows" if cfg.pipeline == "timeseries" else cfg.pipeline
    keep = {"data": asdict(cfg.data), "split": asdict(cfg.split),
            inputs: asdict(cfg.inputs), "training": asdict(cfg.training),
            "sweep": asdict(cfg.sweep), "seed": cfg.seed, "resources": asdict(cfg.resources)}
    if not cfg.sweep.max_failures:  # the default: sweeps stored before the field match
        del keep["sweep"]["max_failures"]
    return hashlib.sha256(reports.dumps(keep).encode()).hexdigest()[:16]


class TrialRecorder:
    """Ray Tune callback: a ``trials`` row per finished/failed trial, written at once
    (atomically, one part per trial number), and a progress line per event."""

    def __init__(self, sweep_dir: Path, sweep_id: str, searcher: str, num_trials: int,
                 warm_starts: int, resources: dict, units: str):
        self.sweep_dir, self.sweep_id, self.searcher = str(sweep_dir), sweep_id, searcher
        self.num_trials, self.warm_starts, self.resources = num_trials, warm_starts, resources
        self.units = units
        self.started: dict[str, datetime] = {}
        self.counts = {"done": 0, "failed": 0}
        self.best = math.inf

    def _callback(self):
        from ray.tune import Callback

        recorder = self

        class _Callback(Callback):
            def on_trial_start(self, iteration, trials, trial, **info):
                recorder.started[trial.trial_id] = datetime.now(timezone.utc)

            def on_trial_complete(self, iteration, trials, trial, **info):
                recorder.record(trial, trials, error=None)

            def on_trial_error(self, iteration, trials, trial, **info):
                recorder.record(trial, trials, error=_trial_error_text(trial))

            def on_trial_recover(self, iteration, trials, trial, **info):
                # sweep.max_failures: Tune runs the trial again under the same number;
                # nothing is recorded until its last attempt ends
                print(f"[trial {trial_number(trial):>3}/{recorder.num_trials}] retrying "
                      f"after failure {trial.run_metadata.num_failures} (max_failures "
                      f"{trial.max_failures}): "
                      f"{_last_lines(_trial_error_text(trial), 1)}", flush=True)

        return _Callback()

    def record(self, trial, trials, error: str | None) -> None:
        number = trial_number(trial)
        result = trial.last_result or {}
        family, hp = decode(trial.config)
        hyper = result.get("hyperparameters") or reports.dumps(hp)
        loss = result.get(METRIC) if error is None else None
        if loss is not None and not math.isfinite(loss):
            error, loss = "non-finite validation loss", None
        reused_from = result.get("reused_from") or None
        if reused_from and not error and not self._claimed_by_other(reused_from, number):
            reused_from = None  # this trial's own result, stored before a crash/resume
        if error:
            status = "failed"
        elif not result.get("final", True):
            status = "stopped"  # ended early by the scheduler (ASHA): no model kept
        else:
            status = "reused" if reused_from else "ok"
        row = {
            "sweep_id": self.sweep_id, "trial": number, "run_id": result.get("run_id"),
            "family": family, "hyperparameters": hyper, "val_loss": loss,
            "val_mae_units": result.get("val_mae_units") if not error else None,
            "val_metric": result.get("val_metric") if not error else None,
            "status": status, "error": _last_lines(error), "searcher": self.searcher,
            "warm_start": number <= self.warm_starts,
            "reused_from": reused_from,
            "resources": self.resources, "node": result.get("node"),
            "started_at": self.started.get(trial.trial_id), "ended_at": datetime.now(timezone.utc),
        }
        reports.write_part(self.sweep_dir, "trials", f"{number:05d}", [row])
        if error:
            self.counts["failed"] += 1
        else:
            self.counts["done"] += 1
            if status != "stopped":
                self.best = min(self.best, loss)
        running = sum(t.status == "RUNNING" for t in trials)
        shown = compact_hp(hyper)
        outcome = f"FAILED: {_last_lines(error, 1)}" if error else f"val_loss {loss:.4f}" + (
            f" ({status})" if status in ("reused", "stopped") else "")
        print(f"[trial {number:>3}/{self.num_trials}] {family} {shown} -> {outcome} | done "
              f"{self.counts['done']}, failed {self.counts['failed']}, running {running}, "
              f"best {self.best:.4f}", flush=True)

    def _claimed_by_other(self, run_id: str, number: int) -> bool:
        """Whether another trial already recorded ``run_id`` as its own result."""
        trials = reports.read_table(self.sweep_dir, "trials")
        mine = trials[(trials["run_id"] == run_id) & (trials["trial"] != number)]
        return bool((mine["status"] == "ok").any())

    def __getstate__(self):  # Tune pickles callbacks with the experiment state
        return self.__dict__


def _trial_error_text(trial) -> str:
    """The error Tune wrote for a failed trial (its local ``error.txt``), else a stub."""
    path = trial.error_file
    if path and Path(path).is_file():
        return Path(path).read_text(errors="replace")
    err = trial.get_error()
    return str(err) if err else "trial failed (no error text recorded)"


def _last_lines(text: str | None, n: int = 3) -> str | None:
    if not text:
        return None
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return "\n".join(lines[-n:])[-2000:]


def _searcher_class():
    from ray.tune.search.hyperopt import HyperOptSearch

    class ConditionalHyperOptSearch(HyperOptSearch):
        """``HyperOptSearch`` whose warm-start points may leave out the labels of
        inactive conditional branches (Hyperopt's TPE expects every label in every
        trial's ``misc``, empty when inactive)."""

        def _setup_hyperopt(self) -> None:
            super()._setup_hyperopt()
            labels = list(self.domain.params)
            for doc in self._hpopt_trials._dynamic_trials:
                for key in ("idxs", "vals"):
                    for label in labels:
                        doc["misc"][key].setdefault(label, [])
            self._hpopt_trials.refresh()

    return ConditionalHyperOptSearch


def run_sweep(cfg: StudyConfig, *, progress: bool = True) -> Path:
    """Run (or resume) the study's sweep on the connected Ray; returns the sweep dir.

    Raises:
        ConfigError: the stored sweep was started with other settings.
        SweepError: every trial failed (the message points at the trial errors).
    """
    import ray
    from ray import tune

    from dlpipe.pipelines.study import pipeline_module
    from dlpipe.tasks.sweep import sweep_trial

    # Tune's default console output (a config box, a TensorBoard tip for a package we do
    # not install) gives way to the progress lines of TrialRecorder.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

    sweep = cfg.sweep
    sweep_dir = sweep_dir_of(cfg)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(cfg)
    stamp = sweep_dir / "sweep.json"
    if stamp.is_file() and json.loads(stamp.read_text())["fingerprint"] != fingerprint:
        raise ConfigError(f"{sweep_dir} holds a sweep started with other settings; give the "
                          "study a new `study` name (or delete that folder) to start anew")
    reports.atomic_write_bytes(stamp, json.dumps(
        {"fingerprint": fingerprint, "study": asdict(cfg)}, indent=1, default=str).encode())

    module = pipeline_module(cfg.pipeline)
    data_ref, meta = module.prepare_dataset(cfg, sweep_dir)
    module.write_baseline(sweep_dir, cfg, ray.get(data_ref), meta)
    spaces = sweep_spaces(cfg)
    if len(spaces) == 1 and is_constant(next(iter(spaces.values()))) and sweep.num_trials > 1:
        print("warning: the search space holds a single configuration (every range has one "
              "value); the first trial trains it and the others reuse its result",
              file=sys.stderr)
    seed = cfg.seed if sweep.seed is None else sweep.seed
    res = cfg.resources
    ctx = TrialContext(sweep_dir=str(sweep_dir), study=cfg.study, inputs=cfg.inputs,
                       training=cfg.training, seed=seed, num_cpus=res.num_cpus,
                       num_gpus=res.num_gpus, report_epochs=sweep.scheduler is not None,
                       pipeline=cfg.pipeline)
    units = meta.get("target", "")
    recorder = TrialRecorder(sweep_dir, fingerprint, sweep.searcher, sweep.num_trials,
                             len(sweep.warm_start), asdict(res), units)
    trainable = tune.with_resources(
        tune.with_parameters(sweep_trial, data=data_ref, meta=meta, ctx=ctx),
        {"cpu": res.num_cpus, "gpu": res.num_gpus})
    tune_path = sweep_dir / "tune"
    finished = len(list((sweep_dir / "reports" / "trials").glob("part-*.parquet"))) \
        if (sweep_dir / "reports" / "trials").is_dir() else 0
    if finished >= sweep.num_trials:
        print(f"sweep complete: {finished} trials in {sweep_dir}")
    elif tune.Tuner.can_restore(str(tune_path)):
        print(f"resuming the sweep in {sweep_dir}: {finished} trial(s) already recorded")
        tune.Tuner.restore(str(tune_path), trainable, resume_unfinished=True,
                           resume_errored=False, restart_errored=False).fit()
    else:
        searcher = _searcher_class()(
            sweep_space(spaces), metric=METRIC, mode="min",
            points_to_evaluate=[warm_start_point(spaces, p) for p in sweep.warm_start] or None,
            n_initial_points=sweep.num_trials if sweep.searcher == "random"
            else sweep.n_initial_points,
            random_state_seed=seed)
        scheduler = None
        if sweep.scheduler is not None:
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(
                time_attr="training_iteration", max_t=cfg.training.epochs + 1,
                grace_period=sweep.scheduler.grace_period,
                reduction_factor=sweep.scheduler.reduction_factor)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=METRIC, mode="min", search_alg=searcher, scheduler=scheduler,
                num_samples=sweep.num_trials, max_concurrent_trials=sweep.max_concurrent_trials,
                time_budget_s=sweep.time_budget_s, reuse_actors=True),
            run_config=tune.RunConfig(
                name="tune", storage_path=str(sweep_dir), verbose=0,
                callbacks=[recorder._callback()],
                # a retried trial keeps its number (one `trials` part) and run key
                failure_config=tune.FailureConfig(max_failures=sweep.max_failures,
                                                  fail_fast=False)))
        tuner.fit()
    trials = reports.read_table(sweep_dir, "trials")
    ok = trials[trials["status"].isin(["ok", "reused"])]
    if ok.empty:
        raise SweepError(
            f"no trial of {len(trials)} finished ({trials['status'].value_counts().to_dict()}); "
            f"first error: "
            f"{_last_lines(trials['error'].dropna().iloc[0] if len(trials) else None, 2)} "
            f"(every error is in {sweep_dir / 'reports' / 'trials'})")
    evaluate_top_k(cfg, sweep_dir, ok, data_ref, meta)
    write_sweep_plots(sweep_dir)
    return sweep_dir


def evaluate_top_k(cfg: StudyConfig, sweep_dir: Path, ok, data_ref, meta: dict) -> list[str]:
    """Score the best ``test_top_k`` distinct configurations once on the test split
    (chosen on validation loss only) and write their test figures and predictions."""
    import ray

    from dlpipe.tasks.remote import evaluate_model_task

    best = ok.sort_values("val_loss").drop_duplicates("run_id").head(cfg.sweep.test_top_k)
    refs = {}
    for run_id in best["run_id"]:
        if not reports.part_exists(sweep_dir, "runs", run_id):
            continue
        (row,) = reports.read_part(sweep_dir, "runs", run_id)
        if any(row.get(k) is not None and not math.isnan(row[k])
               for k in ("test_mae", "test_metric")):
            continue  # already scored (a resumed sweep)
        extra = ({} if cfg.pipeline == "timeseries" else
                 {"batch_size": cfg.training.batch_size, "family": row["family"]})
        refs[run_id] = (row, evaluate_model_task.options(
            num_cpus=cfg.resources.num_cpus, num_gpus=cfg.resources.num_gpus).remote(
            pipeline=cfg.pipeline, data=data_ref, meta=meta,
            model_path=str(sweep_dir / "models" / f"{run_id}.keras"),
            inputs=cfg.inputs, run_id=run_id, split="test",
            max_batches=cfg.training.max_batches_per_epoch,
            num_cpus=cfg.resources.num_cpus, num_gpus=cfg.resources.num_gpus, **extra))
    for run_id, (row, ref) in refs.items():
        scored = ray.get(ref)
        reports.write_part(sweep_dir, "predictions", f"{run_id}-test", scored["predictions"])
        row.update(test_loss=scored["loss"], test_metric=scored["metric"])
        if cfg.pipeline == "timeseries":
            row.update(test_mae=scored["loss"], test_mae_units=scored["metric"])
        reports.write_part(sweep_dir, "runs", run_id, [row])
    return list(best["run_id"])


def write_sweep_plots(sweep_dir: Path) -> list[Path]:
    """Validation loss by trial with the running best, and loss against each numeric
    hyperparameter."""
    from dlpipe.tasks.plots import plot_hp_effects, plot_trials

    trials = reports.read_table(sweep_dir, "trials")
    return [plot_trials(trials, sweep_dir / "plots" / "trials.png"),
            plot_hp_effects(trials, sweep_dir / "plots" / "hyperparameters.png")]


def sweep_summary(sweep_dir: str | Path, top: int = 10):
    """The best trials with their resolved hyperparameters and, for the top K, test MAE.

    Returns:
        ``(frame, title)``.
    """
    import pandas as pd

    from dlpipe.pipelines.study import baseline_kind, headline

    trials = reports.read_table(sweep_dir, "trials")
    all_runs = reports.read_table(sweep_dir, "runs")
    _, name, _ = headline(all_runs)
    label = f"val {name}"
    runs = all_runs.assign(test=all_runs["test_metric"].fillna(all_runs["test_mae_units"]))
    merged = trials.merge(runs[["run_id", "test", "epochs_run"]], on="run_id",
                          how="left").sort_values(["val_loss", "trial"], na_position="last")
    frame = pd.DataFrame({
        "trial": merged["trial"], "family": merged["family"],
        "hyperparameters": [compact_hp(h) for h in merged["hyperparameters"]],
        "val_loss": merged["val_loss"],
        label: merged["val_metric"].fillna(merged["val_mae_units"]),
        f"test {name}": merged["test"], "epochs": merged["epochs_run"],
        "status": merged["status"]}).head(top)
    counts = trials["status"].value_counts().to_dict()
    base = runs[runs["family"] == "baseline"]
    values, _, _ = headline(base) if len(base) else (None, None, None)
    kind = baseline_kind(name)
    base_text = (f"{kind} baseline {label} {values.iloc[-1]:.3f} / test "
                 f"{base['test'].iloc[-1]:.3f}; " if len(base) else "")
    loss_text = "normalized validation MAE" if name == "MAE" else "validation crossentropy"
    title = (f"{Path(sweep_dir).name}: {len(trials)} trials ({counts}); {base_text}val_loss = "
             f"{loss_text}; test {name} only for the best K")
    return frame.reset_index(drop=True), title


def smoke_sweep(cfg: StudyConfig) -> StudyConfig:
    """Smoke mode for a sweep: the study's smoke settings and at most 4 trials."""
    from dlpipe.pipelines.config import smoke_test

    cfg = smoke_test(cfg)
    return replace(cfg, sweep=replace(cfg.sweep, num_trials=min(cfg.sweep.num_trials, 4),
                                      n_initial_points=min(cfg.sweep.n_initial_points, 4)))


def sweep_command(config: str | Path, *, smoke: bool = False, address: str | None = None,
                  output_dir: str | None = None, num_cpus: int | None = None,
                  num_trials: int | None = None, resume: bool = False) -> int:
    """``dlpipe sweep``: validate, run or resume the sweep, print the best trials.

    ``resume=True`` insists on an existing sweep (an error when there is none to
    resume); without it an existing sweep is resumed all the same.

    Returns the exit code: 0 every trial ok (or reused, or stopped by the scheduler);
    :data:`EXIT_TRIALS_FAILED` (3) some trials failed (after every report and plot is
    written; the failed trials and their errors are printed last); 1 no trial
    finished; 2 a bad study file, data or setting."""
    from dlpipe.pipelines.cli import prepare_command, print_frame

    cfg = prepare_command(config, smoke_mode=smoke_sweep if smoke else None,
                          output_dir=output_dir, address=address, num_cpus=num_cpus)
    if cfg is None:
        return 2
    if num_trials:
        cfg = replace(cfg, sweep=replace(cfg.sweep, num_trials=num_trials))
    if resume and not (sweep_dir_of(cfg) / "sweep.json").is_file():
        print(f"error: --resume: no sweep to resume in {sweep_dir_of(cfg)}; run without "
              "--resume to start it", file=sys.stderr)
        return 2
    try:
        sweep_dir = run_sweep(cfg)
    except (ConfigError, SweepError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, SweepError) else 2
    print_frame(*sweep_summary(sweep_dir))
    print(f"\ntrials:  {sweep_dir / 'reports' / 'trials'}\nplots:   {sweep_dir / 'plots'}\n"
          f"runs:    {sweep_dir / 'reports' / 'runs'} (history, predictions beside it)")
    trials = reports.read_table(sweep_dir, "trials")
    failed = trials[trials["status"] == "failed"].sort_values("trial")
    if len(failed):  # Tune reports trial errors instead of raising them: say which
        print(f"\nerror: {len(failed)} of {len(trials)} trial(s) failed (the sweep went on; "
              f"exit code {EXIT_TRIALS_FAILED}):", file=sys.stderr)
        for row in failed.itertuples():
            print(f"  trial {row.trial} ({row.family}): {_last_lines(row.error, 1)}",
                  file=sys.stderr)
        return EXIT_TRIALS_FAILED
    return 0


def compact_hp(text: str) -> str:
    """``{"learning_rate": 0.00123456, "units": 32}`` -> ``learning_rate=0.00123 units=32``."""
    values = json.loads(text)
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in values.items())


def main(argv: list[str] | None = None) -> int:
    """Script entry point (``ray submit cluster.yaml pipelines/sweep.py -- --config X``)."""
    from dlpipe.pipelines.cli import script_main

    return script_main("sweep", "Run or resume the hyperparameter sweep of a study file.", argv)


if __name__ == "__main__":
    sys.exit(main())
