"""Sweeps: seeding (C11), failed and diverged trials (C12), the whole sweep through
local Ray (smoke mode), and a driver killed mid-sweep then resumed."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dlpipe.models.spaces import TIMESERIES_SPACES
from dlpipe.pipelines.sweeps.recorder import TrialRecorder
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.sweep.space import decode, sweep_space, validate_space

BIN = Path(sys.executable).parent


def proposals(seed, n, searcher="tpe"):
    from ray.tune.search.hyperopt import HyperOptSearch

    spaces = {
        "gru": validate_space(TIMESERIES_SPACES["gru"]),
        "conv1d": validate_space(TIMESERIES_SPACES["conv1d"]),
    }
    search = HyperOptSearch(
        sweep_space(spaces),
        metric="val_loss",
        mode="min",
        n_initial_points=n,
        random_state_seed=seed,
    )
    out = []
    for i in range(n):
        family, hp = decode(search.suggest(f"t{i}"))
        out.append((family, sorted(hp.items())))
    return out


def test_c11_int_seed_same_first_configurations():
    first, again, other = proposals(42, 6), proposals(42, 6), proposals(43, 6)
    assert first == again
    assert first != other
    assert len({str(p) for p in first}) > 1  # the proposals really vary


def fake_trial(number, config, result, status="TERMINATED"):
    return SimpleNamespace(
        experiment_tag=f"{number}_x",
        trial_id=f"id{number}",
        config=config,
        last_result=result,
        status=status,
    )


def test_c12_nan_and_errors_are_failed_trials_with_their_text(tmp_path):
    rec = TrialRecorder(tmp_path, "s", "tpe", 4, 0, {"num_cpus": 1}, "degC")
    config = {"model": {"family": "dense", "hp": {"units": 32.0}}}
    base = {"run_id": "r", "hyperparameters": '{"units": 32}', "val_mae_units": 1.0}
    trials = []
    rec.record(fake_trial(1, config, dict(base, val_loss=float("nan"))), trials, error=None)
    rec.record(fake_trial(2, config, dict(base, val_loss=1.0, run_id="r2")), trials, error=None)
    rec.record(fake_trial(3, config, {}), trials, error="Traceback...\nValueError: boom 3")
    rec.record(
        fake_trial(4, config, dict(base, val_loss=0.5, run_id="r2", reused_from="r2")),
        trials,
        error=None,
    )
    t = reports.read_table(tmp_path, "trials").set_index("trial")
    assert list(t["status"]) == ["failed", "ok", "failed", "reused"]
    assert t.loc[1, "error"] == "non-finite validation loss" and math.isnan(t.loc[1, "val_loss"])
    assert "ValueError: boom 3" in t.loc[3, "error"]
    assert t.loc[4, "reused_from"] == "r2"
    # C15: the hyperparameters are the resolved values, and 32 stays an int
    assert json.loads(t.loc[2, "hyperparameters"]) == {"units": 32}
    assert rec.best == 0.5


def test_sweep_command_exits_3_naming_the_failed_trials(tmp_path, monkeypatch, capsys):
    """A sweep that finished with a trial that raised: exit code 3 after the reports,
    with the failed trial and its error last on stderr; all ok: exit 0."""
    from dlpipe.pipelines import command, console
    from dlpipe.pipelines.sweeps import command as sweep_mod

    rec = TrialRecorder(tmp_path, "s", "tpe", 3, 0, {"num_cpus": 1}, "degC")
    config = {"model": {"family": "dense", "hp": {"units": 32.0}}}
    base = {
        "run_id": "r1",
        "hyperparameters": '{"units": 32}',
        "val_mae_units": 1.0,
        "val_loss": 0.5,
    }
    rec.record(fake_trial(1, config, base), [], error=None)
    rec.record(fake_trial(2, config, dict(base, run_id="r2")), [], error=None)
    cfg = SimpleNamespace(sweep=SimpleNamespace(num_trials=3))
    monkeypatch.setattr(command, "prepare_command", lambda *a, **k: cfg)
    monkeypatch.setattr(console, "print_frame", lambda *a, **k: None)
    monkeypatch.setattr(sweep_mod, "run_sweep", lambda cfg, **kw: tmp_path)
    monkeypatch.setattr(sweep_mod, "sweep_summary", lambda *a, **k: (None, ""))
    assert sweep_mod.sweep_command("study.yaml") == 0
    assert "failed" not in capsys.readouterr().err

    rec.record(
        fake_trial(3, config, {}),
        [],
        error="Traceback (most recent call last):\n...\nValueError: boom in trial 3",
    )
    assert sweep_mod.sweep_command("study.yaml") == sweep_mod.EXIT_TRIALS_FAILED == 3
    out, err = capsys.readouterr()
    assert "trials:" in out  # the report locations come first
    assert "error: 1 of 3 trial(s) failed" in err
    assert "trial 3 (dense): ValueError: boom in trial 3" in err


STUDY = """
study: {name}
output_dir: out
data: {{format: tmy3, path: "pvlib:723170TYA.CSV"}}
split: {{train_fraction: 0.6, validation_fraction: 0.2, blocks: 4}}
windows: {{lookback: 48, step: 2, delay: 24, batch_size: 32}}
training: {{epochs: 2, max_batches_per_epoch: 3}}
resources: {{num_cpus: 1}}
models: [{{family: dense}}]
sweep:
  families: {families}
  num_trials: {trials}
  max_concurrent_trials: {concurrent}
  n_initial_points: 2
  test_top_k: 2
  spaces:
    dense: {{units: {{quniform: [8, 64, 8]}}, learning_rate: {{loguniform: [0.0001, 0.01]}}}}
    conv1d: {{filters: {{choice: [8, 16]}}}}
  warm_start: {warm}
"""


def write_study(tmp_path, name, families="[dense, conv1d]", trials=4, concurrent=2, warm="[]"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            STUDY.format(
                name=name, families=families, trials=trials, concurrent=concurrent, warm=warm
            )
        )
    )
    return path


def sweep(path, *args, check=True):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [str(BIN / "dlpipe"), "sweep", str(path), *args],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.ray
def test_sweep_smoke_failed_trials_best_and_test_top_k(tmp_path):
    # warm start 1 cannot build (24 timesteps < the 61 conv1d needs): a failed trial
    warm = "[{family: conv1d, filters: 8}, {family: dense, units: 16, learning_rate: 0.001}]"
    proc = sweep(write_study(tmp_path, "sw", warm=warm), check=False)
    # a failed trial: every report and plot written, then exit 3 naming it
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep_dir = tmp_path / "out" / "sw-sweep"
    trials = reports.read_table(sweep_dir, "trials").set_index("trial")
    assert sorted(trials.index) == [1, 2, 3, 4]
    assert trials.loc[1, "status"] == "failed" and trials.loc[1, "warm_start"]
    assert "timesteps" in trials.loc[1, "error"]
    assert trials.loc[2, "family"] == "dense"
    assert json.loads(trials.loc[2, "hyperparameters"])["units"] == 16  # int, C09/C15
    ok = trials[trials["status"] != "failed"]
    assert len(ok) >= 1 and np.isfinite(ok["val_loss"]).all()
    # every trained trial has its run, history and validation predictions
    runs = reports.read_table(sweep_dir, "runs")
    assert (runs["family"] == "baseline").sum() == 1  # the common-sense baseline row
    runs = runs[runs["family"] != "baseline"].set_index("run_id")
    for run_id in ok["run_id"]:
        assert runs.loc[run_id, "status"] == "ok"
        assert runs.loc[run_id, "val_mae"] == pytest.approx(
            trials[trials["run_id"] == run_id]["val_loss"].iloc[0]
        )
    # test scored only for the best K = 2 distinct configurations, chosen on validation
    best = ok.sort_values("val_loss").drop_duplicates("run_id")["run_id"].head(2)
    scored = runs[np.isfinite(runs["test_mae"])].index
    assert sorted(scored) == sorted(best)
    preds = reports.read_table(sweep_dir, "predictions")
    assert set(preds[preds["split"] == "test"]["run_id"]) == set(best)
    assert "[trial" in proc.stdout and "best" in proc.stdout  # live progress lines
    n_failed = (trials["status"] == "failed").sum()  # conv1d proposals fail too
    assert f"error: {n_failed} of 4 trial(s) failed (the sweep went on; exit code 3)" in proc.stderr
    assert "trial 1 (conv1d):" in proc.stderr and "timesteps" in proc.stderr
    for png in ("trials.png", "hyperparameters.png"):
        assert (sweep_dir / "plots" / png).stat().st_size > 5000
    # issue 16: every trained trial's event files; TensorBoard's HParams lists every
    # trial, failed ones included, with its hyperparameters; the sweep's HTML page
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import metadata

    for run_id in ok["run_id"]:
        assert list((sweep_dir / "tensorboard" / run_id / "validation").iterdir())
    hparams = sweep_dir / "tensorboard" / "hparams"
    sessions = sorted(p.name for p in hparams.iterdir() if p.is_dir())
    assert sessions == [f"trial-{t:04d}" for t in sorted(trials.index)]
    acc = event_accumulator.EventAccumulator(str(hparams / "trial-0002"))
    acc.Reload()
    start = metadata.parse_session_start_info_plugin_data(
        acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    )
    assert start.hparams["hp.units"].number_value == 16
    assert start.hparams["family"].string_value == "dense"
    assert f"html:    {sweep_dir / 'reports' / 'index.html'}" in proc.stdout


@pytest.mark.slow
@pytest.mark.ray
def test_c12_all_trials_failing_is_a_clear_error(tmp_path):
    proc = sweep(write_study(tmp_path, "bad", families="[conv1d]", trials=2), check=False)
    assert proc.returncode == 1
    assert "no trial of 2 finished ({'failed': 2})" in proc.stderr
    assert "timesteps" in proc.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_killed_driver_resumes_without_training_twice(tmp_path):
    path = write_study(tmp_path, "rs", families="[dense]", trials=6, concurrent=1)
    sweep_dir = tmp_path / "out" / "rs-sweep"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [str(BIN / "dlpipe"), "sweep", str(path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    trials_dir = sweep_dir / "reports" / "trials"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(trials_dir.glob("part-*"))) < 2:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    proc.wait()
    runs_dir = sweep_dir / "reports" / "runs"
    before = {
        p.name: reports.read_part(sweep_dir, "runs", p.stem[5:])[0]["finished_at"]
        for p in runs_dir.glob("part-*.parquet")
    }
    assert 2 <= len(before) < 6

    sweep(path, "--resume")  # also automatic: the sweep directory exists
    trials = reports.read_table(sweep_dir, "trials")
    assert sorted(trials["trial"]) == [1, 2, 3, 4, 5, 6]  # exactly num_trials, distinct
    assert (trials["status"] != "failed").all()
    after = {
        p.name: reports.read_part(sweep_dir, "runs", p.stem[5:])[0]["finished_at"]
        for p in runs_dir.glob("part-*.parquet")
    }
    for name, finished in before.items():  # finished runs kept, none trained twice
        assert after[name] == finished
    assert set(trials["run_id"]) == {n[5:-8] for n in after if not n.startswith("part-baseline")}


@pytest.mark.slow
@pytest.mark.ray
def test_asha_scheduler_on_top_of_early_stopping(tmp_path):
    path = write_study(tmp_path, "asha", families="[dense]", trials=4, concurrent=2)
    text = path.read_text().replace(
        "training: {epochs: 2, max_batches_per_epoch: 3}",
        "training: {epochs: 4, max_batches_per_epoch: 3}",
    )
    path.write_text(text + "  scheduler: {type: asha, grace_period: 1, reduction_factor: 2}\n")
    sweep(path)
    sweep_dir = tmp_path / "out" / "asha-sweep"
    trials = reports.read_table(sweep_dir, "trials")
    assert sorted(trials["trial"]) == [1, 2, 3, 4]
    assert set(trials["status"]) <= {"ok", "reused", "stopped"}
    for row in trials.itertuples():  # a stopped trial keeps no model and no run
        has_run = (sweep_dir / "models" / f"{row.run_id}.keras").is_file()
        assert has_run == (row.status != "stopped") or row.status == "reused"


@pytest.mark.train
def test_resume_without_a_stored_sweep_is_an_error(tmp_path):
    proc = sweep(write_study(tmp_path, "none", families="[dense]"), "--resume", check=False)
    assert proc.returncode == 2 and "no sweep to resume" in proc.stderr


def test_progress_line_does_not_count_the_ending_trial_as_running(tmp_path, capsys):
    """Tune calls the recorder while the ending trial still shows RUNNING: the progress
    line counts it done, not running (fresh-user pass: "done 3, failed 0, running 1" of
    3 trials). The other running trial is counted."""
    rec = TrialRecorder(tmp_path, "s", "tpe", 3, 0, {"num_cpus": 1}, "degC")
    config = {"model": {"family": "dense", "hp": {"units": 32.0}}}
    result = {"run_id": "r1", "hyperparameters": '{"units": 32}', "val_loss": 0.5}
    ending = fake_trial(1, config, result, status="RUNNING")
    other = fake_trial(2, config, {}, status="RUNNING")
    rec.record(ending, [ending, other], error=None)
    assert "done 1, failed 0, running 1," in capsys.readouterr().out
