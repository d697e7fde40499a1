"""The weather study end to end in smoke mode through a local Ray instance, as a
copied script (the way `ray submit` runs it) and through the `dlpipe` CLI."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlpipe.tasks.reports import tables as reports

from conftest import jena_like, write_jena

pytestmark = [pytest.mark.slow, pytest.mark.ray]
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    values = jena_like(2400, seed=3)
    values[100, 11] = -9999.0  # a wind sentinel (C07) in the training rows
    write_jena(root / "jena.csv", values)
    (root / "study.yaml").write_text(
        textwrap.dedent("""
        study: e2e
        output_dir: out
        data: {format: jena, path: jena.csv}
        split: {train_fraction: 0.5, validation_fraction: 0.25}
        windows: {lookback: 72, step: 6, delay: 12, batch_size: 16}
        training: {epochs: 5}
        resources: {num_cpus: 1}
        models:
          - {family: gru, hp: {units: 8}}
          - {family: dense, hp: {units: 8}}
          - {family: conv_gru, step: 3, hp: {filters: 8, units: 8}}
    """)
    )
    return root


def run(cmd, cwd):
    env = dict(os.environ, RAY_ADDRESS="")
    env.pop("RAY_ADDRESS")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def first_run(study):
    # `ray submit` copies the one script to the head node: it must work alone
    script = study / "elsewhere" / "weather.py"
    script.parent.mkdir()
    shutil.copy(REPO / "pipelines" / "weather.py", script)
    out = run(
        [sys.executable, str(script), "--config", str(study / "study.yaml"), "--smoke-test"],
        cwd=script.parent,
    )
    return out, study / "elsewhere" / "out" / "e2e-smoke"


def test_smoke_run_reports(first_run):
    out, run_dir = first_run
    assert "plots:" in out and str(run_dir.name) in out
    # stdout is a pipe here, as in a log file: one plain line per finished run (issue 16)
    finished = re.findall(r"^\[\d+:\d\d:\d\d\] run (\d)/3 ok: \S+ val MAE", out, re.M)
    assert finished == ["1", "2", "3"]
    runs = reports.read_table(run_dir, "runs")
    assert sorted(runs["family"]) == ["baseline", "conv_gru", "dense", "gru"]
    assert (runs["status"] == "ok").all() and runs["run_id"].is_unique
    models = runs[runs["family"] != "baseline"]
    assert (models["epochs_run"] == 2).all()  # smoke: 2 epochs
    assert (models["devices"].str.startswith("CPU:0")).all()  # C13: what it really used
    assert json.loads(models.set_index("family").loc["gru", "hyperparameters"])["units"] == 8
    assert models.set_index("family").loc["conv_gru", "step"] == 3

    history = reports.read_table(run_dir, "history")
    assert history.groupby("run_id")["epoch"].apply(list).to_dict() == {
        r: [1, 2] for r in models["run_id"]
    }

    preds = reports.read_table(run_dir, "predictions")
    data = pd.read_csv(run_dir.parents[2] / "jena.csv")
    for row in models.itertuples():
        p = preds[(preds["run_id"] == row.run_id) & (preds["split"] == "validation")]
        assert len(p) == 3 * 16  # smoke: 3 batches of 16 windows
        # targets are the raw file's temperature at the sample row (independent read)
        np.testing.assert_allclose(
            p["target"], data["T (degC)"].to_numpy()[p["sample_index"]], atol=1e-3
        )
        mae = np.mean(np.abs(p["prediction"] - p["target"]))
        assert row.val_mae_units == pytest.approx(mae, rel=1e-5)

    # the baseline, recomputed from the raw file on the same validation windows
    base = runs[runs["family"] == "baseline"].iloc[0]
    temp = data["T (degC)"].to_numpy()
    t = np.arange(1200 + 72 - 6, 1200 + 72 - 6 + 48)  # first 3 batches of validation
    assert base["val_mae_units"] == pytest.approx(np.mean(np.abs(temp[t + 12] - temp[t])), rel=1e-4)

    datasets = reports.read_table(run_dir, "datasets")
    assert json.loads(datasets["sentinel_counts"].iloc[0])["wv (m/s)"] == 1
    for png in ("loss_curves.png", "val_mae.png"):
        assert (run_dir / "plots" / png).stat().st_size > 10_000


def test_html_report_in_chromium(first_run):
    """The page the study wrote, in a real browser (issue 16; skipped without Chromium)."""
    from browser import check_report

    out, run_dir = first_run
    assert re.search(rf"^html: +\S*{run_dir.name}/reports/index.html$", out, re.M)
    check_report(run_dir, reports.read_table(run_dir, "runs"), "weather.png")


def test_event_files_equal_the_history_of_every_run(first_run):
    from event_files import assert_events_match_history

    assert assert_events_match_history(first_run[1]) == 3


def test_rerun_skips_finished_runs_and_report_command(first_run, study):
    _, run_dir = first_run
    before = sorted(p.name for p in (run_dir / "reports" / "runs").iterdir())
    out = run(
        [
            str(BIN / "dlpipe"),
            "run",
            str(study / "study.yaml"),
            "--smoke-test",
            "--output-dir",
            str(run_dir.parent),
        ],
        cwd=study,
    )
    assert "resuming: 3 finished run(s)" in out
    assert sorted(p.name for p in (run_dir / "reports" / "runs").iterdir()) == before
    report = run([str(BIN / "dlpipe"), "report", str(run_dir)], cwd=study)
    for family in ("baseline", "gru", "dense", "conv_gru"):
        assert family in report


def test_cli_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: x\nwindows: {lookback: 10}\n")
    proc = subprocess.run(
        [str(BIN / "dlpipe"), "run", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "bad.yaml: missing required key `data`" in proc.stderr
    proc = subprocess.run(
        [str(BIN / "dlpipe"), "report", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "no runs report" in proc.stderr


def test_c13_gpu_request_on_a_machine_without_gpu_fails_fast(study, tmp_path):
    text = (
        (study / "study.yaml")
        .read_text()
        .replace("resources: {num_cpus: 1}", "resources: {num_cpus: 1, num_gpus: 1}")
    )
    (tmp_path / "gpu.yaml").write_text(
        text.replace("path: jena.csv", f"path: {study / 'jena.csv'}")
    )
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    proc = subprocess.run(
        [str(BIN / "dlpipe"), "run", str(tmp_path / "gpu.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
    )
    assert proc.returncode == 2
    assert "resources.num_gpus=1.0 but the Ray cluster has 0 GPU(s)" in proc.stderr


def test_data_errors_are_one_clean_line(tmp_path):
    values = jena_like(2400, seed=3)
    times = [
        f"{1 + i // 144:02d}.01.2009 {(i % 144) // 6:02d}:{(i % 6) * 10:02d}:00"
        for i in range(2400)
    ]
    times[1234] = "32.01.2009 00:10:00"
    write_jena(tmp_path / "jena.csv", values, times=times)
    (tmp_path / "s.yaml").write_text(
        textwrap.dedent("""
        study: bad
        output_dir: out
        data: {format: jena, path: jena.csv}
        split: {train_fraction: 0.5, validation_fraction: 0.25}
        windows: {lookback: 72, step: 6, delay: 12}
        models: [{family: dense}]
    """)
    )
    proc = subprocess.run(
        [str(BIN / "dlpipe"), "run", str(tmp_path / "s.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
    )
    assert proc.returncode == 2
    assert "line 1236: column `Date Time` value '32.01.2009 00:10:00'" in proc.stderr
    assert "Traceback" not in proc.stderr and "ray::" not in proc.stderr
