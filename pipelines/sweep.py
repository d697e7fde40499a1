"""Hyperparameter sweep (book ch. 7.3.2): Hyperopt's TPE proposing trials, run by
Ray Tune (``HyperOptSearch``), each trial a Keras training run.

Flow: prepare the dataset once (Ray task, array to the object store) -> Tune trials
(:func:`dlpipe.tasks.sweep.trial.sweep_trial`) with the searcher's history -> a ``trials``
report row per trial as it ends, with live progress -> the best ``test_top_k``
configurations scored once on the test split -> plots.

The sweep directory is ``<output_dir>/<study>-sweep``. Running the same study again
resumes the stored sweep (Tune restores its trials and the searcher's history;
finished runs are found by key and not trained again) and ends with exactly
``num_trials`` trials. A larger ``num_trials`` (``--num-trials N``) extends a stored
sweep: every recorded trial keeps its number, run key and values, and the new trials
are proposed by a searcher that holds every earlier result (a new Tune experiment,
``tune-from-<first number>``, per extension). Only ``num_trials`` and
``time_budget_s`` may change on a stored sweep; any other change is an error naming
the changed fields: give the study a new name.

Ctrl-C or SIGTERM stops the sweep (see :mod:`dlpipe.pipelines.interrupt`): Tune ends
its loop and saves its state, the finished trials stay recorded, nothing is scored on
the test split (unless ``--score-partial``), and the command names the outstanding
trials and the command that resumes the sweep; exit code 130 / 143.

Every comparison of trials (Tune's ``mode``, the best trial, the top K, the summary's
order) takes its direction from :func:`dlpipe.metrics.get_metric` of the objective
(``val_loss``: lower is better).

Runs as a script for ``ray submit``::

    python pipelines/sweep.py --config STUDY.yaml [--smoke-test]
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import sys
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from dlpipe.metrics import get_metric
from dlpipe.pipelines.config import ConfigError, sweep_spaces
from dlpipe.pipelines.interrupt import (
    Interrupted,
    TuneStop,
    exit_code,
    quiet_exit,
    signal_name,
    signum_of,
)
from dlpipe.pipelines.kinds import get_kind
from dlpipe.pipelines.sections import StudyCommon
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.sweep.space import SpaceError, decode, is_constant, sweep_space, warm_start_point
from dlpipe.tasks.sweep.trial import METRIC, TrialContext

#: the sweep's objective and its direction (``val_loss``: lower is better)
OBJECTIVE = get_metric(METRIC)


class SweepError(RuntimeError):
    """The sweep produced no usable trial (e.g. every trial failed)."""


EXIT_TRIALS_FAILED = 3  # `dlpipe sweep` exit code: finished, but some trials failed

#: sweep settings that may change on a stored sweep (how long it goes on); any other
#: change is refused
GROWABLE = ("num_trials", "time_budget_s")


class SweepInterrupted(Interrupted):
    """The sweep stopped on SIGINT/SIGTERM before its ``num_trials`` trials ended.

    Attributes:
        signum: the signal; ``exit_code`` is 130 (SIGINT) or 143 (SIGTERM).
        scored: whether the finished trials were scored on test (``--score-partial``).
    """

    def __init__(self, signum: int, scored: bool = False):
        super().__init__(signum)
        self.scored = scored


def sweep_dir_of(cfg: StudyCommon) -> Path:
    """``<output_dir>/<study>-sweep`` (absolute: Ray Tune needs absolute storage)."""
    return (Path(cfg.output_dir) / f"{cfg.study}-sweep").resolve()


def trial_number(trial) -> int:
    """1-based trial number in proposal order: the counter Tune's search generator puts
    at the front of ``experiment_tag`` (``"7_model=..."``); it survives a resume."""
    return int(str(trial.experiment_tag).split("_", 1)[0])


def _settings(cfg: StudyCommon, *, legacy: bool = False) -> dict:
    """What a stored sweep must agree on (JSON types): everything but :data:`GROWABLE`
    (``legacy``: with them, the fingerprint of sweeps stored before extension existed)."""
    inputs = get_kind(cfg).inputs_name
    keep = {
        "data": asdict(cfg.data),
        "split": asdict(cfg.split),
        inputs: asdict(cfg.inputs),
        "training": asdict(cfg.training),
        "sweep": asdict(cfg.sweep),
        "seed": cfg.seed,
        "resources": asdict(cfg.resources),
    }
    if not cfg.sweep.max_failures:  # the default: sweeps stored before the field match
        del keep["sweep"]["max_failures"]
    if not legacy:
        for name in GROWABLE:
            del keep["sweep"][name]
    return json.loads(reports.dumps(keep))


def _fingerprint(cfg: StudyCommon, *, legacy: bool = False) -> str:
    """Hash of :func:`_settings`: a stored sweep continues only with the same one."""
    text = reports.dumps(_settings(cfg, legacy=legacy))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _changed_fields(old, new, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two settings dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _changed_fields(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def open_stamp(cfg: StudyCommon, sweep_dir: Path) -> dict:
    """The sweep's ``sweep.json`` for ``cfg``: checked against the stored one, written.

    Returns:
        ``{"fingerprint", "sweep_id", "settings", "segments", "study"}``; ``segments``
        lists the Tune experiments of the sweep (``name``, ``first`` trial number,
        ``trials``), empty for a new sweep.

    Raises:
        ConfigError: the stored sweep was started with other settings than
            ``num_trials`` / ``time_budget_s``; the message names the changed fields.
    """
    path = sweep_dir / "sweep.json"
    fingerprint, settings = _fingerprint(cfg), _settings(cfg)
    stamp = {
        "fingerprint": fingerprint,
        "sweep_id": fingerprint,
        "settings": settings,
        "segments": [],
    }
    if path.is_file():
        stored = json.loads(path.read_text())
        old = stored.get("study", {}).get("sweep", {})
        if stored["fingerprint"] != fingerprint and not _legacy_match(cfg, stored):
            before = stored.get("settings")  # absent in stamps of older versions
            changed = _changed_fields(before, settings) if before else []
            raise ConfigError(
                f"{sweep_dir} holds a sweep started with other settings"
                + (f" (changed: {', '.join(changed)})" if changed else "")
                + "; only `sweep.num_trials` and `sweep.time_budget_s` may change on a "
                "stored sweep: give the study a new `study` name (or delete that folder) "
                "to start anew"
            )
        stamp["sweep_id"] = stored.get("sweep_id", stored["fingerprint"])
        stamp["segments"] = stored.get("segments") or [
            {"name": "tune", "first": 1, "trials": int(old.get("num_trials", 0))}
        ]
    stamp["study"] = asdict(cfg)
    write_stamp(sweep_dir, stamp)
    return stamp


def write_stamp(sweep_dir: Path, stamp: dict) -> None:
    """Write ``sweep.json`` atomically."""
    reports.atomic_write_bytes(
        sweep_dir / "sweep.json", json.dumps(stamp, indent=1, default=str).encode()
    )


def _legacy_match(cfg: StudyCommon, stored: dict) -> bool:
    """A sweep stored before extension existed (fingerprint over every sweep field)
    matches ``cfg`` with the stored trial count and time budget."""
    old = stored.get("study", {}).get("sweep", {})
    try:
        then = replace(cfg, sweep=replace(cfg.sweep, **{k: old[k] for k in GROWABLE}))
    except KeyError:
        return False
    return _fingerprint(then, legacy=True) == stored["fingerprint"]


class TrialRecorder:
    """Ray Tune callback: a ``trials`` row per finished/failed trial, written at once
    (atomically, one part per trial number), and a progress line per event.

    ``offset``: the number of trials before this Tune experiment (an extension of a
    stored sweep numbers its trials on from there)."""

    def __init__(
        self,
        sweep_dir: Path,
        sweep_id: str,
        searcher: str,
        num_trials: int,
        warm_starts: int,
        resources: dict,
        units: str,
        offset: int = 0,
        kind: str | None = None,
    ):
        self.sweep_dir, self.sweep_id, self.searcher = str(sweep_dir), sweep_id, searcher
        self.num_trials, self.warm_starts, self.resources = num_trials, warm_starts, resources
        self.units, self.offset, self.kind = units, offset, kind
        self.started: dict[str, datetime] = {}
        self.counts = {"done": 0, "failed": 0}
        self.best = OBJECTIVE.worst

    def number(self, trial) -> int:
        """The trial's number in the whole sweep (1-based, kept across extensions)."""
        return getattr(self, "offset", 0) + trial_number(trial)

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
                print(
                    f"[trial {recorder.number(trial):>3}/{recorder.num_trials}] retrying "
                    f"after failure {trial.run_metadata.num_failures} (max_failures "
                    f"{trial.max_failures}): "
                    f"{_last_lines(_trial_error_text(trial), 1)}",
                    flush=True,
                )

        return _Callback()

    def record(self, trial, trials, error: str | None) -> None:
        """Write the ``trials`` row of an ended trial and print its progress line."""
        number = self.number(trial)
        result = trial.last_result or {}
        family, hp = decode(trial.config)
        hyper = result.get("hyperparameters") or reports.dumps(hp)
        loss = result.get(METRIC) if error is None else None
        if loss is not None and not math.isfinite(loss):
            error, loss = "non-finite validation loss", None
        elif loss is None and error is None:
            error = "the trial ended without reporting a validation loss"
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
            "sweep_id": self.sweep_id,
            "trial": number,
            "run_id": result.get("run_id"),
            "family": family,
            "hyperparameters": hyper,
            "val_loss": loss,
            "val_mae_units": result.get("val_mae_units") if not error else None,
            "val_metric": result.get("val_metric") if not error else None,
            "status": status,
            "error": _last_lines(error),
            "searcher": self.searcher,
            "warm_start": number <= self.warm_starts,
            "reused_from": reused_from,
            "resources": self.resources,
            "node": result.get("node"),
            "started_at": self.started.get(trial.trial_id),
            "ended_at": datetime.now(timezone.utc),
        }
        reports.write_part(self.sweep_dir, "trials", f"{number:05d}", [row], kind=self.kind)
        if error:
            self.counts["failed"] += 1
        else:
            self.counts["done"] += 1
            if status != "stopped" and OBJECTIVE.is_better(loss, self.best):
                self.best = loss
        running = sum(t.status == "RUNNING" for t in trials)
        shown = compact_hp(hyper)
        outcome = (
            f"FAILED: {_last_lines(error, 1)}"
            if error
            else f"val_loss {loss:.4f}"
            + (f" ({status})" if status in ("reused", "stopped") else "")
        )
        print(
            f"[trial {number:>3}/{self.num_trials}] {family} {shown} -> {outcome} | done "
            f"{self.counts['done']}, failed {self.counts['failed']}, running {running}, "
            f"best {self.best:.4f}",
            flush=True,
        )

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
    import hyperopt
    from ray.tune.search.hyperopt import HyperOptSearch

    class ConditionalHyperOptSearch(HyperOptSearch):
        """``HyperOptSearch`` whose warm-start points may leave out the labels of
        inactive conditional branches (Hyperopt's TPE expects every label in every
        trial's ``misc``, empty when inactive), and which starts with a history.

        Args:
            history: ``[(point, value)]``: configurations already evaluated (Hyperopt
                label values, as for ``points_to_evaluate``) and their objective
                values; they enter Hyperopt's trials as finished (TPE models them,
                they are not proposed again). Ray's ``HyperOptSearch`` has no
                ``evaluated_rewards``.
            points_to_evaluate: warm-start points, proposed first, in order.
        """

        def __init__(self, *args, history=(), points_to_evaluate=None, **kwargs):
            self._history = list(history)
            self._n_warm = len(points_to_evaluate or [])
            # HyperOptSearch reverses the list and proposes from its end: history
            # first here puts the warm starts first in line (see _setup_hyperopt)
            points = [p for p, _ in self._history] + list(points_to_evaluate or [])
            super().__init__(*args, points_to_evaluate=points or None, **kwargs)

        def _setup_hyperopt(self) -> None:
            super()._setup_hyperopt()
            labels = list(self.domain.params)
            docs = self._hpopt_trials._dynamic_trials
            for doc in docs:
                for key in ("idxs", "vals"):
                    for label in labels:
                        doc["misc"][key].setdefault(label, [])
            # docs = reversed(warm) + reversed(history): mark the history done
            for doc, (_, value) in zip(docs[self._n_warm :], reversed(self._history)):
                doc["state"] = hyperopt.JOB_STATE_DONE
                doc["result"] = {
                    "loss": self.metric_op * float(value),
                    "status": hyperopt.STATUS_OK,
                }
            self._points_to_evaluate = self._n_warm
            self._hpopt_trials.refresh()

    return ConditionalHyperOptSearch


class _TuneStopFilter:
    """Drops Ray Tune's own stop/resume lines: dlpipe prints the outstanding trials and
    its own resume command (Tune's `Tuner.restore(...)` advice would bypass dlpipe)."""

    PHRASES = ("Stop signal received", "Experiment has been interrupted", "Resume experiment with")

    def filter(self, record) -> bool:
        return not any(p in str(record.getMessage()) for p in self.PHRASES)


def _quiet_tune_stop_messages() -> None:
    import logging

    logger = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _TuneStopFilter) for f in logger.filters):
        logger.addFilter(_TuneStopFilter())


def run_sweep(
    cfg: StudyCommon,
    *,
    progress: bool = True,
    score_partial: bool = False,
    stop: TuneStop | None = None,
) -> Path:
    """Run, resume or extend the study's sweep on the connected Ray; returns the sweep
    dir.

    Args:
        cfg: the study (its ``sweep`` section).
        progress: unused (the progress lines are always printed).
        score_partial: score the best finished trials on test even when a signal
            stopped the sweep before ``num_trials`` trials ended.
        stop: the signal handling around Tune's loop (one is made when None).

    Raises:
        ConfigError: the stored sweep was started with other settings.
        SweepError: every trial failed (the message points at the trial errors).
        SweepInterrupted: SIGINT/SIGTERM stopped the sweep (finished trials recorded).
    """
    import ray

    from dlpipe.pipelines.study import write_baseline

    # Tune's default console output (a config box, a TensorBoard tip for a package we do
    # not install) gives way to the progress lines of TrialRecorder.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    _quiet_tune_stop_messages()
    stop = stop or TuneStop()

    sweep = cfg.sweep
    sweep_dir = sweep_dir_of(cfg)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    stamp = open_stamp(cfg, sweep_dir)

    prepared = get_kind(cfg).prepare(cfg, sweep_dir)
    write_baseline(sweep_dir, cfg, prepared, ray.get(prepared.data))
    spaces = sweep_spaces(cfg)
    if len(spaces) == 1 and is_constant(next(iter(spaces.values()))) and sweep.num_trials > 1:
        print(
            "warning: the search space holds a single configuration (every range has one "
            "value); the first trial trains it and the others reuse its result",
            file=sys.stderr,
        )
    run_trials(cfg, sweep_dir, stamp, spaces, prepared, stop)
    trials = reports.read_table(sweep_dir, "trials")
    ok = trials[trials["status"].isin(["ok", "reused"])]
    if ok.empty and not stop.signum:
        raise SweepError(
            f"no trial of {len(trials)} finished ({trials['status'].value_counts().to_dict()}); "
            f"first error: "
            f"{_last_lines(trials['error'].dropna().iloc[0] if len(trials) else None, 2)} "
            f"(every error is in {sweep_dir / 'reports' / 'trials'})"
        )
    complete = trials["trial"].nunique() >= sweep.num_trials
    scored = not ok.empty and (complete or not stop.signum or score_partial)
    if scored:  # a partial sweep is scored on test only when the user asks
        evaluate_top_k(cfg, sweep_dir, ok, prepared)
    if len(trials):
        write_sweep_plots(sweep_dir)
    if stop.signum and not complete:
        raise SweepInterrupted(stop.signum, scored=scored)
    return sweep_dir


def recorded_trials(sweep_dir: Path) -> set[int]:
    """Numbers of the trials with a ``trials`` part (finished, failed or stopped)."""
    folder = Path(sweep_dir) / "reports" / "trials"
    if not folder.is_dir():
        return set()
    return {int(p.stem[5:]) for p in folder.glob("part-*.parquet") if p.stem[5:].isdigit()}


def outstanding_trials(sweep_dir: Path, num_trials: int) -> list[int]:
    """Numbers of the trials still to run for a sweep of ``num_trials`` trials: those of
    its Tune experiments not recorded, then new numbers after the last one."""
    done = recorded_trials(sweep_dir)
    stamp_path = Path(sweep_dir) / "sweep.json"
    segments = (
        json.loads(stamp_path.read_text()).get("segments", []) if stamp_path.is_file() else []
    )
    planned = [n for seg in segments for n in range(seg["first"], seg["first"] + seg["trials"])]
    out = [n for n in sorted(set(planned)) if n not in done]
    after = max([*done, *planned], default=0)
    while len(done) + len(out) < num_trials:
        after += 1
        out.append(after)
    return out[: max(num_trials - len(done), 0)]


def trial_history(sweep_dir: Path, spaces: dict) -> list[tuple[dict, float]]:
    """The recorded trials as ``(Hyperopt point, val_loss)`` for the searcher of an
    extension: every trial that reported a finite validation loss (ok, reused, or
    stopped early by the scheduler, which Tune also reports to the searcher); a
    configuration the current space cannot express is left out."""
    if not recorded_trials(sweep_dir):
        return []
    trials = reports.read_table(sweep_dir, "trials").sort_values("trial")
    history = []
    for row in trials.itertuples():
        if (
            row.status not in ("ok", "reused", "stopped")
            or row.val_loss is None
            or not math.isfinite(row.val_loss)
        ):
            continue
        try:
            point = warm_start_point(
                spaces, {"family": row.family, **json.loads(row.hyperparameters)}
            )
        except (SpaceError, ValueError):
            continue
        history.append((point, float(row.val_loss)))
    return history


def run_trials(
    cfg: StudyCommon,
    sweep_dir: Path,
    stamp: dict,
    spaces: dict,
    prepared,
    stop: TuneStop,
) -> None:
    """Run Tune until the sweep holds ``num_trials`` recorded trials: restore its last
    Tune experiment if that one is unfinished, then start one more experiment for the
    trials still missing (numbered on from the last recorded trial; its searcher
    starts from every recorded result). Returns early when ``stop`` caught a signal."""
    from ray import tune

    sweep, res = cfg.sweep, cfg.resources
    target = sweep.num_trials
    segments = stamp["segments"]
    done = recorded_trials(sweep_dir)
    trainable = make_trainable(cfg, sweep_dir, prepared)
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
                return
            done = recorded_trials(sweep_dir)
    if len(done) >= target:
        print(f"sweep complete: {len(done)} trials in {sweep_dir}", flush=True)
        return
    first, count = max(done, default=0) + 1, target - len(done)
    name = "tune" if first == 1 else f"tune-from-{first}"
    segments = [s for s in segments if s["name"] != name] + [
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
    seed = cfg.seed if sweep.seed is None else sweep.seed
    searcher = _searcher_class()(
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
    scheduler = None
    if sweep.scheduler is not None:
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=cfg.training.epochs + 1,
            grace_period=sweep.scheduler.grace_period,
            reduction_factor=sweep.scheduler.reduction_factor,
        )
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
            callbacks=[recorder._callback()],
            # a retried trial keeps its number (one `trials` part) and run key
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures, fail_fast=False),
        ),
    )
    with stop.tune_loop():
        tuner.fit()


def make_trainable(cfg: StudyCommon, sweep_dir: Path, prepared):
    """The Tune trainable of the sweep: :func:`dlpipe.tasks.sweep.trial.sweep_trial` with the
    dataset and the :class:`TrialContext`, and the trial's resources."""
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
    )
    return tune.with_resources(
        tune.with_parameters(sweep_trial, data=prepared.data, meta=prepared.meta, ctx=ctx),
        trial_resources(res.num_cpus, res.num_gpus, isolated),
    )


def evaluate_top_k(cfg: StudyCommon, sweep_dir: Path, ok, prepared) -> list[str]:
    """Score the best ``test_top_k`` distinct configurations once on the test split
    (chosen on validation loss only, best first by :data:`OBJECTIVE`, ties by trial
    number) and write their test figures and predictions."""
    import ray

    from dlpipe.tasks.remote import evaluate_model_task

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
            evaluate_model_task.options(
                num_cpus=cfg.resources.num_cpus, num_gpus=cfg.resources.num_gpus
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


def top_k(ok, k: int):
    """The best ``k`` distinct runs (by ``run_id``) of the finished trials ``ok``,
    ordered by :data:`OBJECTIVE` on ``val_loss`` (ties: the earlier trial)."""
    return OBJECTIVE.sort(ok, "val_loss", then=["trial"]).drop_duplicates("run_id").head(k)


def write_sweep_plots(sweep_dir: Path) -> list[Path]:
    """Validation loss by trial with the running best, and loss against each numeric
    hyperparameter."""
    from dlpipe.tasks.reports.plots import plot_hp_effects, plot_trials

    trials = reports.read_table(sweep_dir, "trials")
    return [
        plot_trials(trials, sweep_dir / "plots" / "trials.png"),
        plot_hp_effects(trials, sweep_dir / "plots" / "hyperparameters.png"),
    ]


def sweep_summary(sweep_dir: str | Path, top: int = 10):
    """The best trials with their resolved hyperparameters and, for the top K, test MAE.

    Returns:
        ``(frame, title)``.
    """
    import pandas as pd

    from dlpipe.pipelines.study import headline, kind_of_runs

    trials = reports.read_table(sweep_dir, "trials")
    all_runs = reports.read_table(sweep_dir, "runs")
    name = headline(all_runs)[1].display
    label = f"val {name}"
    runs = all_runs.assign(test=all_runs["test_metric"])
    merged = OBJECTIVE.sort(
        trials.merge(runs[["run_id", "test", "epochs_run"]], on="run_id", how="left"),
        "val_loss",
        then=["trial"],
    )
    frame = pd.DataFrame(
        {
            "trial": merged["trial"],
            "family": merged["family"],
            "hyperparameters": [compact_hp(h) for h in merged["hyperparameters"]],
            "val_loss": merged["val_loss"],
            label: merged["val_metric"],
            f"test {name}": merged["test"],
            "epochs": merged["epochs_run"],
            "status": merged["status"],
        }
    ).head(top)
    counts = trials["status"].value_counts().to_dict()
    base = runs[runs["family"] == "baseline"]
    values = headline(base)[0] if len(base) else None
    kind = kind_of_runs(all_runs)
    base_text = (
        f"{kind.baseline_name} baseline {label} {values.iloc[-1]:.3f} / "
        f"test {base['test'].iloc[-1]:.3f}; "
        if len(base)
        else ""
    )
    loss_text = f"validation {kind.loss_label}"
    title = (
        f"{Path(sweep_dir).name}: {len(trials)} trials ({counts}); {base_text}val_loss = "
        f"{loss_text}; test {name} only for the best K"
    )
    return frame.reset_index(drop=True), title


def smoke_sweep(cfg: StudyCommon) -> StudyCommon:
    """Smoke mode for a sweep: the study's smoke settings and at most 4 trials."""
    from dlpipe.pipelines.config import smoke_test

    cfg = smoke_test(cfg)
    return replace(
        cfg,
        sweep=replace(
            cfg.sweep,
            num_trials=min(cfg.sweep.num_trials, 4),
            n_initial_points=min(cfg.sweep.n_initial_points, 4),
        ),
    )


def sweep_command(
    config: str | Path,
    *,
    smoke: bool = False,
    address: str | None = None,
    output_dir: str | None = None,
    num_cpus: int | None = None,
    num_trials: int | None = None,
    resume: bool = False,
    score_partial: bool = False,
) -> int:
    """``dlpipe sweep``: validate, run, resume or extend the sweep, print the best trials.

    ``resume=True`` insists on an existing sweep (an error when there is none to
    resume); without it an existing sweep is resumed all the same. ``num_trials``
    larger than the stored sweep's extends it. SIGINT/SIGTERM: the finished trials are
    printed with the outstanding ones and the command that resumes the sweep, and the
    process exits 130 / 143 (:func:`dlpipe.pipelines.interrupt.quiet_exit`); the test
    split is scored only with ``score_partial``.

    Returns the exit code: 0 every trial ok (or reused, or stopped by the scheduler);
    :data:`EXIT_TRIALS_FAILED` (3) some trials failed (after every report and plot is
    written; the failed trials and their errors are printed last); 1 no trial
    finished; 2 a bad study file, data or setting."""
    from dlpipe.pipelines.command import prepare_command
    from dlpipe.pipelines.console import print_frame

    cfg = prepare_command(
        config,
        smoke_mode=smoke_sweep if smoke else None,
        output_dir=output_dir,
        address=address,
        num_cpus=num_cpus,
        run_dir_of=sweep_dir_of,
        same_study=False,
    )
    if cfg is None:
        return 2
    if num_trials:
        cfg = replace(cfg, sweep=replace(cfg.sweep, num_trials=num_trials))
    if resume and not (sweep_dir_of(cfg) / "sweep.json").is_file():
        print(
            f"error: --resume: no sweep to resume in {sweep_dir_of(cfg)}; run without "
            "--resume to start it",
            file=sys.stderr,
        )
        return 2
    stop = TuneStop()
    stop.install()  # after ray.init (in prepare_command), which sets its own SIGTERM handler
    try:
        sweep_dir = run_sweep(cfg, score_partial=score_partial, stop=stop)
    except (ConfigError, SweepError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, SweepError) else 2
    except KeyboardInterrupt as exc:  # SIGINT/SIGTERM: say what is left, leave quietly
        signum = signum_of(exc)
        again = resume_command(
            config,
            smoke=smoke,
            address=address,
            output_dir=output_dir,
            num_cpus=num_cpus,
            num_trials=num_trials,
        )
        quiet_exit(
            exit_code(signum),
            interrupted_message(
                cfg,
                signum,
                again,
                scored=getattr(exc, "scored", False),
                printed=lambda: _print_partial(cfg, print_frame),
            ),
        )
    print_frame(*sweep_summary(sweep_dir))
    print(
        f"\ntrials:  {sweep_dir / 'reports' / 'trials'}\nplots:   {sweep_dir / 'plots'}\n"
        f"runs:    {sweep_dir / 'reports' / 'runs'} (history, predictions beside it)"
    )
    trials = reports.read_table(sweep_dir, "trials")
    failed = trials[trials["status"] == "failed"].sort_values("trial")
    if len(failed):  # Tune reports trial errors instead of raising them: say which
        print(
            f"\nerror: {len(failed)} of {len(trials)} trial(s) failed (the sweep went on; "
            f"exit code {EXIT_TRIALS_FAILED}):",
            file=sys.stderr,
        )
        for row in failed.itertuples():
            print(
                f"  trial {row.trial} ({row.family}): {_last_lines(row.error, 1)}", file=sys.stderr
            )
        return EXIT_TRIALS_FAILED
    return 0


def resume_command(
    config: str | Path,
    *,
    smoke: bool = False,
    address: str | None = None,
    output_dir: str | None = None,
    num_cpus: int | None = None,
    num_trials: int | None = None,
) -> str:
    """The shell command that resumes a sweep started with these arguments."""
    args = ["dlpipe", "sweep", str(config), "--resume"]
    if num_trials:
        args += ["--num-trials", str(num_trials)]
    if smoke:
        args.append("--smoke-test")
    if address:
        args += ["--address", address]
    if output_dir:
        args += ["--output-dir", str(output_dir)]
    if num_cpus:
        args += ["--num-cpus", str(num_cpus)]
    return shlex.join(args)


def _print_partial(cfg: StudyCommon, print_frame) -> None:
    """The summary table of the trials that finished before a signal (if any)."""
    sweep_dir = sweep_dir_of(cfg)
    if recorded_trials(sweep_dir):
        try:
            print_frame(*sweep_summary(sweep_dir))
        except Exception as exc:  # a summary must not hide the resume command
            print(f"(no summary: {exc})", file=sys.stderr)


def interrupted_message(
    cfg: StudyCommon, signum: int, again: str, *, scored: bool = False, printed=None
) -> str:
    """What an interrupted sweep tells its user (returned for stderr): how many trials
    finished, which are outstanding, whether the test split was scored, and the
    command that resumes the sweep. ``printed`` (a function) prints to stdout first."""
    if printed is not None:
        printed()
    sweep_dir = sweep_dir_of(cfg)
    done = recorded_trials(sweep_dir)
    left = outstanding_trials(sweep_dir, cfg.sweep.num_trials)
    test = (
        "the best finished trials were scored on the test split (--score-partial)"
        if scored
        else "nothing was scored on the test split (a partial sweep is "
        "scored only with --score-partial, or when a resumed run completes)"
    )
    return (
        f"\ninterrupted by {signal_name(signum)}: {len(done)} of {cfg.sweep.num_trials} "
        f"trial(s) recorded in {sweep_dir / 'reports' / 'trials'}; outstanding: "
        f"{_ranges(left) or 'none'}; {test}\nresume with: {again}"
    )


def _ranges(numbers: list[int]) -> str:
    """``[2, 3, 4, 7]`` -> ``"trials 2-4, 7"``."""
    if not numbers:
        return ""
    parts, start, prev = [], numbers[0], numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ("trial " if len(numbers) == 1 else "trials ") + ", ".join(parts)


def compact_hp(text: str) -> str:
    """``{"learning_rate": 0.00123456, "units": 32}`` -> ``learning_rate=0.00123 units=32``."""
    values = json.loads(text)
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


def main(argv: list[str] | None = None) -> int:
    """Script entry point (``ray submit cluster.yaml pipelines/sweep.py -- --config X``)."""
    from dlpipe.pipelines.cli import script_main

    return script_main("sweep", "Run or resume the hyperparameter sweep of a study file.", argv)


if __name__ == "__main__":
    sys.exit(main())
