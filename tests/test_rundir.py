"""A run directory holds one study, run by one driver; strict inputs refused in one line
before Ray starts (issue 11, sections 6 and 7)."""

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dlpipe.pipelines.config import ConfigError, load_study
from dlpipe.pipelines.rundir import (
    DriverLock,
    RunDirError,
    check_report_parts,
    check_same_study,
    study_differences,
    study_record,
)

from conftest import jena_like, write_jena

BIN = Path(sys.executable).parent
STUDY = """
study: one
output_dir: OUT
data: {format: jena, path: jena.csv}
split: {train_fraction: 0.5, validation_fraction: 0.25}
windows: {lookback: 12, step: 6, delay: 6, batch_size: 16}
models:
  - {family: dense, hp: {units: 4}}
"""


@pytest.fixture
def study(tmp_path):
    write_jena(tmp_path / "jena.csv", jena_like(600, seed=2))
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY).replace("OUT", str(tmp_path / "out")))
    return path


def cli(*args, cwd, env=None, timeout=120):
    env = dict(os.environ if env is None else env)
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [str(BIN / "dlpipe"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def one_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_study_differences_lists_dataset_fields_only():
    stored = {
        "study": "a",
        "data": {"path": "x.csv", "format": "jena"},
        "split": {"train_fraction": 0.5},
        "models": [{"family": "gru"}],
        "training": {"epochs": 20},
    }
    current = {
        "study": "a",
        "data": {"path": "y.csv", "format": "jena", "new_key": 1},
        "split": {"train_fraction": 0.6},
        "models": [{"family": "gru"}, {"family": "lstm"}],
        "training": {"epochs": 5},
    }
    assert study_differences(stored, current) == [
        "data.path: 'x.csv' -> 'y.csv'",
        "split.train_fraction: 0.5 -> 0.6",
    ]


def test_changed_study_refused_with_its_fields_added_models_allowed(study):
    cfg = load_study(study)
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "study.json").write_text(json.dumps(study_record(cfg)))
    more = study.read_text() + "  - {family: gru, hp: {units: 4}}\n"
    study.write_text(more)
    check_same_study(cfg.run_dir, load_study(study))  # a model added: allowed
    study.write_text(
        more.replace("lookback: 12", "lookback: 18").replace(
            "train_fraction: 0.5", "train_fraction: 0.6"
        )
    )
    with pytest.raises(RunDirError) as err:
        check_same_study(cfg.run_dir, load_study(study))
    text = str(err.value)
    assert "split.train_fraction: 0.5 -> 0.6" in text and "windows.lookback: 12 -> 18" in text
    assert "new `study` name" in text


def test_changed_study_cli_exit_2_one_line(study, tmp_path):
    cfg = load_study(study)
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "study.json").write_text(json.dumps(study_record(cfg)))
    study.write_text(study.read_text().replace("delay: 6", "delay: 12"))
    proc = cli("run", str(study), cwd=tmp_path)
    assert proc.returncode == 2
    line = one_line(proc)
    assert "prepared with other settings (windows.delay: 6 -> 12)" in line


def test_second_driver_refused_while_the_first_runs(study, tmp_path):
    run_dir = load_study(study).run_dir
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from dlpipe.pipelines.rundir import DriverLock
        from pathlib import Path
        Path({str(run_dir)!r}).mkdir(parents=True, exist_ok=True)
        DriverLock(Path({str(run_dir)!r})).acquire()
        print("held", flush=True)
        time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = cli("run", str(study), cwd=tmp_path)
        assert proc.returncode == 2
        line = one_line(proc)
        assert f"is in use by another dlpipe driver (pid {holder.pid} on " in line
        with pytest.raises(RunDirError, match=f"pid {holder.pid}"):
            DriverLock(run_dir).acquire()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and taken over
    lock = DriverLock(run_dir).acquire()
    assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock.path.exists()


def test_truncated_report_part_is_named(tmp_path):
    from dlpipe.tasks.reports import tables as reports

    part = reports.write_part(
        tmp_path,
        "history",
        "run-1",
        [{"run_id": "run-1", "epoch": 1, "loss": 0.5, "val_loss": 0.6, "lr": 1e-3, "seconds": 1.0}],
    )
    check_report_parts(tmp_path)  # whole: fine
    part.write_bytes(part.read_bytes()[:-20])
    with pytest.raises(RunDirError) as err:
        check_report_parts(tmp_path)
    assert str(err.value).startswith(f"{part}: truncated or corrupt report part")
    assert "part-run-1.parquet and run again" in str(err.value)


def test_duplicate_yaml_key_names_both_lines(study):
    study.write_text(study.read_text().replace("study: one\n", "study: one\nseed: 1\nseed: 2\n"))
    with pytest.raises(
        ConfigError,
        match=r"study.yaml: line 4: duplicated key `seed` \(first "
        r"given on line 3\)",
    ):
        load_study(study)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text"),
        (b"study: caf\xe9\n", "line 1: not UTF-8 text (byte 0xe9"),
        (b"study: x\x00\n", "is a binary file"),
    ],
)
def test_binary_or_non_utf8_study_file(tmp_path, content, message):
    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_study(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


@pytest.mark.train
def test_cli_strict_inputs_one_line_exit_2(study, tmp_path):
    proc = cli("run", str(tmp_path), cwd=tmp_path)  # a directory
    assert proc.returncode == 2 and "is a directory, not a study file" in one_line(proc)

    (tmp_path / "file").write_text("x")
    proc = cli("run", str(study), "--output-dir", str(tmp_path / "file" / "sub"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "cannot write the run directory" in one_line(proc)

    def comm(proc: Path) -> str:
        try:
            return (proc / "comm").read_text().strip()
        except OSError:
            return ""

    if any(comm(p) == "gcs_server" for p in Path("/proc").iterdir() if p.name.isdigit()):
        return  # `auto` finds any Ray running on this machine by its processes
    env = dict(os.environ, RAY_TMPDIR=str(tmp_path), TMPDIR=str(tmp_path))
    proc = cli("run", str(study), "--address", "auto", cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "--address auto: no running Ray cluster could be joined" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_imagenet_weights_without_network_or_file(tmp_path, monkeypatch):
    from dlpipe.models.weights import imagenet_weights_available

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(host):
        raise OSError("Name or service not known")

    problem = imagenet_weights_available("vgg16", "imagenet", resolve=offline)
    assert "not in " + str(tmp_path / "models") in problem and "no network" in problem
    assert imagenet_weights_available("vgg16", "none", resolve=offline) is None
    assert imagenet_weights_available("vgg16", "imagenet", resolve=lambda h: None) is None
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"")
    assert imagenet_weights_available("vgg16", "imagenet", resolve=offline) is None


def test_token_file_owner_only(tmp_path):
    from dlpipe.pipelines.runtime import ensure_private_token

    token = tmp_path / "home" / ".ray" / "auth_token"
    assert ensure_private_token(token) == token
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    assert len(token.read_text()) == 64  # 32 random bytes as hex, as Ray's own tokens
    before = token.read_text()
    token.chmod(0o644)  # a token Ray wrote with the default umask
    ensure_private_token(token)
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text() == before


@pytest.mark.ray
def test_local_ray_token_file_is_mode_600(tmp_path):
    import tempfile

    short = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # AF_UNIX paths: <= 107 bytes
    env = dict(os.environ, HOME=str(tmp_path), RAY_TMPDIR=short)
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_MODE", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
        import ray
        from dlpipe.pipelines.runtime import init_ray
        init_ray(num_cpus=1)
        ray.shutdown()
    """),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    token = tmp_path / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600


def test_changed_data_under_the_same_study_is_refused(tmp_path):
    """Same study file, other data content: the dataset key changes; the reports of the
    old key are not mixed with the new ones (found by a fresh-user run)."""
    from dlpipe.pipelines.rundir import check_dataset_key
    from dlpipe.tasks.reports import tables as reports

    reports.write_part(tmp_path, "datasets", "key-a", [{"dataset_key": "key-a"}])
    check_dataset_key(tmp_path, "key-a")  # the same data: fine
    with pytest.raises(
        RunDirError, match="holds runs on dataset key-a, but the data now gives dataset key-b"
    ):
        check_dataset_key(tmp_path, "key-b")
    check_dataset_key(tmp_path / "empty", "key-b")  # no reports yet: fine


def test_explicit_address_with_nothing_listening_fails_in_seconds():
    import socket

    from dlpipe.pipelines.runtime import RayStartError, check_reachable

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.perf_counter()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(RayStartError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
            check_reachable(address)
    assert time.perf_counter() - started < 10
    with pytest.raises(RayStartError, match="expected host:port"):
        check_reachable("headnode")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}")  # something answers


def test_quiet_exit_releases_the_driver_lock(tmp_path):
    """A run stopped by a signal leaves through os._exit (no atexit): the lock must go
    with it, or another host would have to delete it by hand."""
    code = textwrap.dedent(f"""
        from pathlib import Path
        from dlpipe.pipelines.rundir import DriverLock
        from dlpipe.pipelines.interrupt import quiet_exit
        DriverLock(Path({str(tmp_path)!r})).acquire()
        assert Path({str(tmp_path)!r}, "driver.lock").exists()
        quiet_exit(130, "interrupted")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert not (tmp_path / "driver.lock").exists()
