"""A study killed mid-way and run again skips its finished stages, asserted by
counting the executions of each stage (issue 7).

The study (two models, ensemble on) runs through the ``dlpipe`` CLI in its own process
group. Its second model's training hangs on purpose; once the first model's run is
written, the group (driver and the local Ray it started) is killed with SIGKILL. The
same command is then run again, and a third time once everything has finished.

Stages run in several processes (the driver; Ray workers for preparation and
training), so a ``sitecustomize`` module on ``PYTHONPATH`` (inherited by the local
Ray's workers) wraps the plain stage functions as their modules are imported and
appends one line per call to ``$DLPIPE_TEST_COUNT_DIR/<stage>.log``:

* ``prepare``: :func:`dlpipe.tasks.weather.prepare.prepare_weather` (the Ray task ran)
* ``load``: :func:`dlpipe.tasks.weather.read.load_series` (the dataset was really
  computed: a cache miss of ``artifacts/dataset-<key>.npz``)
* ``baseline``: :func:`dlpipe.tasks.weather.prepare.baseline_mae` (baseline computed)
* ``train``: :func:`dlpipe.tasks.weather.train.train_model` (one line per run key trained)
* ``ensemble``: :func:`dlpipe.tasks.ensembling.build.build_ensembles`
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dlpipe.tasks.reports import tables as reports

from conftest import jena_like, write_jena

pytestmark = [pytest.mark.slow, pytest.mark.ray]
BIN = Path(sys.executable).parent

SITECUSTOMIZE = '''
"""Test hook (tests/test_resume_stages.py): counts stage executions in every process."""
import importlib.abc
import os
import sys
import time

COUNT_DIR = os.environ.get("DLPIPE_TEST_COUNT_DIR")
STAGES = {
    "dlpipe.tasks.weather.prepare": {"prepare_weather": "prepare", "baseline_mae": "baseline"},
    "dlpipe.tasks.weather.read": {"load_series": "load"},
    "dlpipe.tasks.weather.train": {"train_model": "train"},
    "dlpipe.tasks.ensembling.build": {"build_ensembles": "ensemble"},
}


def _count(stage, detail):
    with open(os.path.join(COUNT_DIR, stage + ".log"), "a") as f:
        f.write(f"{detail} {os.getpid()}\\n")


def _hang_once(kwargs):
    """The training of family $DLPIPE_TEST_HANG_FAMILY hangs the first time (marker
    file), until the test kills the study (or 300 s)."""
    marker = os.path.join(COUNT_DIR, "hung")
    if kwargs.get("family") != os.environ.get("DLPIPE_TEST_HANG_FAMILY") \\
            or os.path.exists(marker):
        return
    open(marker, "w").close()
    deadline = time.time() + 300
    while time.time() < deadline and not os.path.exists(marker + ".release"):
        time.sleep(0.2)


def _wrap(fn, stage):
    def wrapper(*args, **kwargs):
        _count(stage, kwargs.get("run_id", "-"))
        if stage == "train":
            _hang_once(kwargs)
        return fn(*args, **kwargs)

    wrapper.__wrapped__ = fn
    return wrapper


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in STAGES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            for attr, stage in STAGES[name].items():
                setattr(module, attr, _wrap(getattr(module, attr), stage))

        spec.loader.exec_module = patched
        return spec


if COUNT_DIR:
    sys.meta_path.insert(0, _Finder())
'''

STUDY = """
    study: resume
    output_dir: out
    data: {format: jena, path: jena.csv}
    split: {train_fraction: 0.5, validation_fraction: 0.25}
    windows: {lookback: 72, step: 6, delay: 12, batch_size: 16}
    training: {epochs: 2, max_batches_per_epoch: 3}
    resources: {num_cpus: 1}
    ensemble: {enabled: true, n_folds: 2}
    models:
      - {family: dense, hp: {units: 8}}
      - {family: gru, hp: {units: 8}}
"""


def counts(count_dir: Path) -> dict[str, list[str]]:
    """``{stage: [run_id or "-", ...]}`` of the calls logged in ``count_dir``."""
    return {
        p.stem: [line.split()[0] for line in p.read_text().splitlines()]
        for p in count_dir.glob("*.log")
    }


@pytest.fixture
def study(tmp_path):
    write_jena(tmp_path / "jena.csv", jena_like(2400, seed=5))
    (tmp_path / "study.yaml").write_text(textwrap.dedent(STUDY))
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return tmp_path


def env_for(study: Path, count_dir: Path) -> dict:
    count_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(study / "hook"), env.get("PYTHONPATH")])),
        DLPIPE_TEST_COUNT_DIR=str(count_dir),
        DLPIPE_TEST_HANG_FAMILY="gru",
    )
    return env


def run_study(study: Path, count_dir: Path) -> dict[str, list[str]]:
    env = env_for(study, count_dir)
    (count_dir / "hung").touch()  # reruns: never hang again
    proc = subprocess.run(
        [str(BIN / "dlpipe"), "run", "study.yaml"],
        cwd=study,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return counts(count_dir)


def assert_no_duplicate_rows(run_dir: Path) -> None:
    keys = {
        "runs": ["run_id"],
        "history": ["run_id", "epoch"],
        "predictions": ["run_id", "split", "sample_index"],
        "datasets": ["dataset_key"],
        "ensembles": ["ensemble_id", "method"],
    }
    for table, key in keys.items():
        frame = reports.read_table(run_dir, table)
        assert len(frame), table
        assert not frame.duplicated(key).any(), (table, frame[frame.duplicated(key)])


def test_killed_study_rerun_skips_finished_stages(study):
    run_dir = study / "out" / "resume"
    runs_dir = run_dir / "reports" / "runs"
    first = study / "count-1"
    env = env_for(study, first)
    proc = subprocess.Popen(
        [str(BIN / "dlpipe"), "run", "study.yaml"],
        cwd=study,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # killed once the dense run is written while the GRU training hangs
        deadline = time.time() + 300
        while (
            time.time() < deadline
            and proc.poll() is None
            and not (
                (first / "hung").exists()
                and len([p for p in runs_dir.glob("part-dense-*.parquet")]) == 1
            )
        ):
            time.sleep(0.2)
        assert proc.poll() is None, "the study ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        proc.wait()
    finally:
        (first / "hung.release").touch()  # frees a hanging worker that outlived the kill
    killed = counts(first)
    assert len(killed["load"]) == 1 and len(killed["baseline"]) == 2  # validation + test
    assert len(killed["train"]) == 2 and "ensemble" not in killed
    dense_id, gru_id = sorted(killed["train"])  # both started; in either order
    assert dense_id.startswith("dense-") and gru_id.startswith("gru-")
    assert sorted(p.name for p in runs_dir.glob("part-*.parquet") if "baseline" not in p.name) == [
        f"part-{dense_id}.parquet"
    ]
    dense_part = runs_dir / f"part-{dense_id}.parquet"
    cache = sorted((run_dir / "artifacts").glob("dataset-*.npz"))
    assert len(cache) == 1
    stamps = {p: p.stat().st_mtime_ns for p in [dense_part, cache[0]]}

    # rerun: prepare hits its cache, the baseline and the dense run are kept, only the
    # GRU trains, then the ensemble stage (never reached before the kill) runs once
    again = run_study(study, study / "count-2")
    assert len(again["prepare"]) == 1 and "load" not in again  # task ran, cache hit
    assert "baseline" not in again
    assert again["train"] == [gru_id]
    assert len(again["ensemble"]) == 1
    for path, stamp in stamps.items():  # not rewritten
        assert path.stat().st_mtime_ns == stamp, path
    runs = reports.read_table(run_dir, "runs")
    assert sorted(runs["family"]) == ["baseline", "dense", "gru"]
    assert (runs["status"] == "ok").all()
    assert_no_duplicate_rows(run_dir)

    # once everything finished, a rerun trains nothing and computes nothing again
    third = run_study(study, study / "count-3")
    print("stage calls: killed", killed, "\nrerun", again, "\nthird run", third)
    assert "load" not in third and "baseline" not in third and "train" not in third
    assert len(third["prepare"]) == 1  # the task runs, and loads its cached array
    # same members, predictions and settings: the stored ensembles are kept, not refitted
    assert "ensemble" not in third
    assert_no_duplicate_rows(run_dir)
