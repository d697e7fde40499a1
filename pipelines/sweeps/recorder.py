"""The ``trials`` report: one row per ended trial, written as it ends, with the progress
lines; which trials are recorded and which are outstanding."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

from dlpipe.metrics import get_metric
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.sweep.space import SpaceError, decode, warm_start_point
from dlpipe.tasks.sweep.trial import METRIC

#: the sweep's objective and its direction (``val_loss``: lower is better)
OBJECTIVE = get_metric(METRIC)


def trial_number(trial) -> int:
    """1-based trial number in proposal order: the counter Tune's search generator puts
    at the front of ``experiment_tag`` (``"7_model=..."``); it survives a resume."""
    return int(str(trial.experiment_tag).split("_", 1)[0])


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

    def tune_callback(self):
        """The Ray Tune callback that records each trial as it starts and ends."""
        from ray.tune import Callback

        recorder = self

        class _Callback(Callback):
            def on_trial_start(self, iteration, trials, trial, **info):
                recorder.started[trial.trial_id] = datetime.now(timezone.utc)

            def on_trial_complete(self, iteration, trials, trial, **info):
                recorder.record(trial, trials, error=None)

            def on_trial_error(self, iteration, trials, trial, **info):
                recorder.record(trial, trials, error=trial_error_text(trial))

            def on_trial_recover(self, iteration, trials, trial, **info):
                # sweep.max_failures: Tune runs the trial again under the same number;
                # nothing is recorded until its last attempt ends
                print(
                    f"[trial {recorder.number(trial):>3}/{recorder.num_trials}] retrying "
                    f"after failure {trial.run_metadata.num_failures} (max_failures "
                    f"{trial.max_failures}): "
                    f"{last_lines(trial_error_text(trial), 1)}",
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
            "error": last_lines(error),
            "searcher": self.searcher,
            "warm_start": number <= self.warm_starts,
            "reused_from": reused_from,
            **kfold_scores(result, error),
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
        # Tune calls back before it marks the ending trial terminated: not counted
        running = sum(t.status == "RUNNING" and t is not trial for t in trials)
        shown = compact_hp(hyper)
        outcome = (
            f"FAILED: {last_lines(error, 1)}"
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


def kfold_scores(result: dict, error: str | None) -> dict:
    """A K-fold trial's fold scores for its ``trials`` row (``val_loss_folds``,
    ``val_metric_folds``, ``val_metric_std``); none for hold-out trials or on error."""
    names = ("val_loss_folds", "val_metric_folds", "val_metric_std")
    if error or "val_loss_folds" not in result:
        return {}
    return {name: result[name] for name in names}


def trial_error_text(trial) -> str:
    """The error Tune wrote for a failed trial (its local ``error.txt``), else a stub."""
    path = trial.error_file
    if path and Path(path).is_file():
        return Path(path).read_text(errors="replace")
    err = trial.get_error()
    return str(err) if err else "trial failed (no error text recorded)"


def last_lines(text: str | None, n: int = 3) -> str | None:
    if not text:
        return None
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return "\n".join(lines[-n:])[-2000:]


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


def compact_hp(text: str) -> str:
    """``{"learning_rate": 0.00123456, "units": 32}`` -> ``learning_rate=0.00123 units=32``."""
    values = json.loads(text)
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
