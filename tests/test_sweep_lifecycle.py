"""Shared case C18: a sweep that grows (a larger ``--num-trials`` on a finished sweep)
and one stopped by a signal (exit 130, outstanding trials named, nothing scored on
test, the printed command resumes it); plus the pieces they rest on, tested without
Ray: the fingerprint that ignores the trial count and time budget, the searcher that
starts from a history, the outstanding-trial names."""

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dlpipe.pipelines.config import ConfigError
from dlpipe.pipelines.sweeps import command, recorder, searcher, summary
from dlpipe.pipelines.sweeps import stamp as sweep_stamp
from dlpipe.tasks.reports import tables as reports

BIN = Path(sys.executable).parent

STUDY = """
study: {name}
output_dir: out
data: {{format: tmy3, path: "pvlib:723170TYA.CSV"}}
split: {{train_fraction: 0.6, validation_fraction: 0.2, blocks: 4}}
windows: {{lookback: 48, step: 2, delay: 24, batch_size: 32}}
training: {{epochs: 2, max_batches_per_epoch: {batches}}}
resources: {{num_cpus: 1}}
models: [{{family: dense}}]
sweep:
  families: [dense]
  num_trials: {trials}
  max_concurrent_trials: 1
  n_initial_points: 2
  test_top_k: 2
  spaces:
    dense: {{units: {{quniform: [8, 64, 8]}}, learning_rate: {{loguniform: [0.0001, 0.01]}}}}
"""


def write_study(tmp_path, name, trials, batches=3):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(STUDY.format(name=name, trials=trials, batches=batches)))
    return path


def env():
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def dlpipe(args, cwd, check=True):
    proc = subprocess.run(
        [str(BIN / "dlpipe"), *args],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# ---- without Ray --------------------------------------------------------------------


def load(tmp_path, trials=3):
    from dlpipe.pipelines.config import load_study

    return load_study(write_study(tmp_path, "fp", trials))


def test_c18_fingerprint_ignores_only_trial_count_and_time_budget(tmp_path):
    cfg = load(tmp_path)
    grown = replace(cfg, sweep=replace(cfg.sweep, num_trials=6, time_budget_s=120.0))
    assert sweep_stamp.fingerprint(grown) == sweep_stamp.fingerprint(cfg)
    other = replace(cfg, sweep=replace(cfg.sweep, test_top_k=1))
    assert sweep_stamp.fingerprint(other) != sweep_stamp.fingerprint(cfg)

    sweep_dir = tmp_path / "sw"
    sweep_dir.mkdir()
    stamp = sweep_stamp.open_stamp(cfg, sweep_dir)
    assert stamp["segments"] == [] and stamp["sweep_id"] == sweep_stamp.fingerprint(cfg)
    sweep_stamp.write_stamp(
        sweep_dir, dict(stamp, segments=[{"name": "tune", "first": 1, "trials": 3}])
    )
    again = sweep_stamp.open_stamp(grown, sweep_dir)  # accepted, segments kept
    assert again["segments"] == [{"name": "tune", "first": 1, "trials": 3}]
    assert json.loads((sweep_dir / "sweep.json").read_text())["study"]["sweep"]["num_trials"] == 6
    changed = replace(
        cfg, training=replace(cfg.training, epochs=5), sweep=replace(cfg.sweep, test_top_k=1)
    )
    with pytest.raises(ConfigError) as err:
        sweep_stamp.open_stamp(changed, sweep_dir)
    assert "(changed: sweep.test_top_k, training.epochs)" in str(err.value)
    assert "only `sweep.num_trials` and `sweep.time_budget_s` may change" in str(err.value)


def test_c18_sweep_stored_by_an_older_version_still_matches(tmp_path):
    """A stamp whose fingerprint covered every sweep field (before extensions) is
    accepted with a larger num_trials and keeps its sweep id."""
    cfg = load(tmp_path)
    sweep_dir = tmp_path / "old"
    sweep_dir.mkdir()
    legacy = sweep_stamp.fingerprint(cfg, legacy=True)
    (sweep_dir / "sweep.json").write_text(
        json.dumps(
            {"fingerprint": legacy, "study": {"sweep": {"num_trials": 3, "time_budget_s": None}}}
        )
    )
    stamp = sweep_stamp.open_stamp(replace(cfg, sweep=replace(cfg.sweep, num_trials=8)), sweep_dir)
    assert stamp["sweep_id"] == legacy
    assert stamp["segments"] == [{"name": "tune", "first": 1, "trials": 3}]


def test_c18_outstanding_trials_and_their_names(tmp_path):
    for n in (1, 2, 4):
        reports.write_part(tmp_path, "trials", f"{n:05d}", [{"trial": n, "status": "ok"}])
    sweep_stamp.write_stamp(
        tmp_path,
        {
            "segments": [
                {"name": "tune", "first": 1, "trials": 4},
                {"name": "tune-from-5", "first": 5, "trials": 2},
            ]
        },
    )
    assert recorder.recorded_trials(tmp_path) == {1, 2, 4}
    assert recorder.outstanding_trials(tmp_path, 6) == [3, 5, 6]
    assert recorder.outstanding_trials(tmp_path, 8) == [3, 5, 6, 7, 8]
    assert command.ranges([3, 5, 6, 7, 9]) == "trials 3, 5-7, 9"
    assert command.ranges([2]) == "trial 2"


def test_c18_searcher_starts_from_the_history_and_proposes_warm_starts_first():
    """The extension's searcher holds the earlier results as finished Hyperopt trials
    (TPE models them; they are never proposed again) and proposes warm starts first."""
    from dlpipe.tasks.sweep.space import decode, sweep_space, validate_space

    spaces = {
        "dense": validate_space(
            {"units": {"quniform": [8, 64, 8]}, "learning_rate": {"loguniform": [1e-4, 1e-2]}}
        )
    }
    history = [
        ({"dense/units": 16.0, "dense/learning_rate": 0.001}, 0.9),
        ({"dense/units": 48.0, "dense/learning_rate": 0.005}, 0.3),
    ]
    warm = [{"dense/units": 32.0, "dense/learning_rate": 0.002}]
    search = searcher.searcher_class()(
        sweep_space(spaces),
        metric="val_loss",
        mode="min",
        history=history,
        points_to_evaluate=warm,
        n_initial_points=1,
        random_state_seed=0,
    )
    done = [t for t in search._hpopt_trials.trials if t["result"].get("status") == "ok"]
    assert sorted(t["result"]["loss"] for t in done) == [0.3, 0.9]
    assert sorted(t["misc"]["vals"]["dense/units"][0] for t in done) == [16.0, 48.0]
    assert decode(search.suggest("a"))[1] == {"units": 32.0, "learning_rate": 0.002}
    proposed = decode(search.suggest("b"))[1]  # TPE now, not a history point
    assert (proposed["units"], proposed["learning_rate"]) not in [(16.0, 0.001), (48.0, 0.005)]
    assert len(search._hpopt_trials.trials) == 4
    # a maximized objective would enter Hyperopt negated (the metric table's mode)
    up = searcher.searcher_class()(
        sweep_space(spaces),
        metric="val_accuracy",
        mode="max",
        history=history[:1],
        random_state_seed=0,
    )
    assert up._hpopt_trials.trials[0]["result"]["loss"] == -0.9


def test_c18_top_k_and_summary_order_follow_the_metric_table(tmp_path):
    import pandas as pd

    ok = pd.DataFrame(
        {"trial": [1, 2, 3, 4], "run_id": ["a", "b", "b", "c"], "val_loss": [0.5, 0.2, 0.2, np.nan]}
    )
    assert list(summary.top_k(ok, 2)["trial"]) == [2, 1]  # b once (trial 2), then a
    assert recorder.OBJECTIVE.mode == "min"


# ---- through local Ray ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.ray
def test_c18_finished_3_trial_sweep_extended_to_6(tmp_path):
    path = write_study(tmp_path, "grow", trials=3)
    sweep_dir = tmp_path / "out" / "grow-sweep"
    dlpipe(["sweep", str(path)], tmp_path)
    first = reports.read_table(sweep_dir, "trials").set_index("trial").sort_index()
    assert list(first.index) == [1, 2, 3]
    parts = {
        n: (sweep_dir / "reports" / "trials" / f"part-{n:05d}.parquet").stat().st_mtime_ns
        for n in (1, 2, 3)
    }

    proc = dlpipe(["sweep", str(path), "--num-trials", "6"], tmp_path)
    assert "extending the sweep" in proc.stdout and "trials 4-6" in proc.stdout
    trials = reports.read_table(sweep_dir, "trials").set_index("trial").sort_index()
    assert list(trials.index) == [1, 2, 3, 4, 5, 6]  # 6 distinct trials
    cols = ["run_id", "family", "hyperparameters", "val_loss", "status", "sweep_id"]
    # the first 3 unchanged: numbers, run keys, values (their parts not rewritten)
    assert trials.loc[[1, 2, 3], cols].equals(first[cols])
    for n, mtime in parts.items():
        assert (
            sweep_dir / "reports" / "trials" / f"part-{n:05d}.parquet"
        ).stat().st_mtime_ns == mtime
    assert trials.loc[[4, 5, 6], "run_id"].notna().all()
    assert (trials["status"] != "failed").all()
    assert trials["sweep_id"].nunique() == 1
    stamp = json.loads((sweep_dir / "sweep.json").read_text())
    assert stamp["segments"] == [
        {"name": "tune", "first": 1, "trials": 3},
        {"name": "tune-from-4", "first": 4, "trials": 3},
    ]
    # the searcher of the extension started from the 3 earlier results
    assert "3 recorded, 3 of them given to the searcher" in proc.stdout
    # the test split scored for the best 2 of all 6 (chosen on validation); the test
    # figures of the first 3's best 2 stay as written
    runs = reports.read_table(sweep_dir, "runs")
    runs = runs[runs["family"] != "baseline"]
    scored = set(runs[np.isfinite(runs["test_mae"])]["run_id"])

    def best(frame):
        ok = frame[frame["status"].isin(["ok", "reused"])].reset_index()
        ranked = ok.sort_values(["val_loss", "trial"]).drop_duplicates("run_id")
        return set(ranked["run_id"].head(2))

    assert scored == best(trials) | best(first)
    # any other change is still refused, naming the field
    path.write_text(path.read_text().replace("test_top_k: 2", "test_top_k: 1"))
    bad = dlpipe(["sweep", str(path), "--num-trials", "7"], tmp_path, check=False)
    assert bad.returncode == 2 and "changed: sweep.test_top_k" in bad.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_c18_sigint_after_the_first_trial_exits_130_and_resumes(tmp_path):
    # longer trials (several seconds each): the signal arrives while trial 2 runs
    path = write_study(tmp_path, "stop", trials=3, batches=150)
    sweep_dir = tmp_path / "out" / "stop-sweep"
    trials_dir = sweep_dir / "reports" / "trials"
    proc = subprocess.Popen(
        [str(BIN / "dlpipe"), "sweep", str(path)],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 400
    while time.time() < deadline and not list(trials_dir.glob("part-*")) and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-3000:] + err[-3000:]
    trials = reports.read_table(sweep_dir, "trials")
    assert len(trials) < 3
    done = sorted(trials["trial"])
    left = [n for n in (1, 2, 3) if n not in done]
    # one trial at a time: the outstanding ones are the last, consecutive numbers
    names = f"trial {left[0]}" if len(left) == 1 else f"trials {left[0]}-{left[-1]}"
    assert f"outstanding: {names}" in err, err[-3000:]
    assert "nothing was scored on the test split" in err
    runs = reports.read_table(sweep_dir, "runs")
    runs = runs[runs["family"] != "baseline"]  # the baseline is always scored
    assert len(runs) >= 1 and not np.isfinite(runs["test_mae"].astype(float)).any()
    assert not (sweep_dir / "reports" / "predictions").is_dir() or "test" not in set(
        reports.read_table(sweep_dir, "predictions")["split"]
    )
    assert "Traceback" not in err and "*** SIG" not in err
    (command,) = [
        line.split("resume with: ", 1)[1]
        for line in err.splitlines()
        if line.startswith("resume with: ")
    ]
    args = shlex.split(command)
    assert args[:2] == ["dlpipe", "sweep"] and "--resume" in args

    again = dlpipe(args[1:], tmp_path)  # the printed command, as printed
    trials = reports.read_table(sweep_dir, "trials").set_index("trial").sort_index()
    assert list(trials.index) == [1, 2, 3]
    assert (trials["status"] != "failed").all()
    runs = reports.read_table(sweep_dir, "runs")
    runs = runs[runs["family"] != "baseline"]
    assert np.isfinite(runs["test_mae"].astype(float)).sum() == 2  # complete: top 2 scored
    assert "resuming the sweep" in again.stdout


# ---- clean workers (issue 11, section 3): the trial only coordinates -------------------


def test_trial_resources_leave_the_training_bundle_to_the_task():
    from ray.tune import PlacementGroupFactory

    from dlpipe.tasks.sweep.trial import trial_resources

    assert trial_resources(2, 0.5, False) == {"cpu": 2, "gpu": 0.5}
    pgf = trial_resources(2, 0.5, True)
    assert isinstance(pgf, PlacementGroupFactory)
    assert pgf.head_bundle_is_empty and pgf.bundles == [{"CPU": 2.0, "GPU": 0.5}]
    assert trial_resources(1, 0, True).bundles == [{"CPU": 1.0}]


def test_trial_resolves_hyperparameters_like_the_registry_without_keras():
    """What the trial computes from the context's specs equals the registry's
    ``resolved_hparams`` (run keys stay the same), and the trial module and the
    coercion import no Keras/TensorFlow (checked in a fresh interpreter)."""
    from dlpipe.models.registry import resolved_hparams
    from dlpipe.tasks.sweep.trial import TrialContext, hparam_specs, resolve_hparams

    ctx = TrialContext(
        sweep_dir="x",
        study="s",
        inputs=None,
        training=None,
        seed=0,
        train=None,
        hparam_specs=hparam_specs("timeseries", ["dense", "gru"]),
    )
    for family, hp in [
        ("dense", {"units": 32.0, "learning_rate": np.float64(0.002)}),
        ("gru", {"units": np.int64(16)}),
    ]:
        got = resolve_hparams(ctx, family, hp)
        assert got == resolved_hparams(family, hp, "timeseries")
        assert all(type(v) in (int, float, str, bool) for v in got.values())
    code = (
        "import sys, dlpipe.tasks.sweep.trial, dlpipe.models.hparams; "
        "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env()
    )
    assert out.stdout.strip() == "[]", out.stderr[-2000:]
