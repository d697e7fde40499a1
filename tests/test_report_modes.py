"""Report files follow the user's umask like the plots do (issue 11, section 7): a team
sharing a folder reads the Parquet parts as it reads the PNGs."""

from __future__ import annotations

import os
import stat

import pytest

from dlpipe.tasks.reports import tables as reports


@pytest.fixture
def umask():
    """Set the process umask for one test, restored after it."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_report_part_mode_follows_umask(tmp_path, umask, mask, mode):
    """A part file written under umask ``mask`` has mode 0o666 & ~mask (what ``open()``
    gives a plot); no temporary file is left beside it."""
    umask(mask)
    path = reports.write_part(
        tmp_path / "run",
        "history",
        "r1",
        [{"run_id": "r1", "epoch": 1, "loss": 0.5, "val_loss": 0.6}],
    )
    plain = tmp_path / "plain.png"
    plain.write_bytes(b"x")  # what matplotlib's savefig does: open(path, "wb")
    assert stat.S_IMODE(path.stat().st_mode) == mode == 0o666 & ~mask
    assert stat.S_IMODE(plain.stat().st_mode) == mode
    assert reports.read_part(tmp_path / "run", "history", "r1")[0]["val_loss"] == 0.6
    assert sorted(p.name for p in path.parent.iterdir()) == ["part-r1.parquet"]


def test_atomic_write_replaces_and_cleans_up_on_error(tmp_path, umask):
    """A rewrite replaces the file in one rename; a failed write leaves no temporary."""
    umask(0o022)
    target = tmp_path / "d" / "study.json"
    reports.atomic_write_bytes(target, b"one")
    reports.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    with pytest.raises(TypeError):
        reports.atomic_write_bytes(target, "not bytes")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["study.json"]
