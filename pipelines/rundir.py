"""A run directory holds one study, run by one driver (issue 11, section 6).

Checked by the driver before Ray starts, in this order:

1. the directory can be created and written (:func:`check_writable`);
2. a study already stored there (``study.json``) was prepared with the same data,
   splits, windows and preprocessing (:func:`check_same_study`): a changed study is
   refused with the fields that differ; adding models or changing the training settings
   stays allowed (every run has its own key);
3. no other driver is using it (:class:`DriverLock`, ``driver.lock`` holding the
   holder's pid, host and start time; a lock whose process is gone is stale and taken
   over);
4. every report part file is readable (:func:`check_report_parts`): a truncated or
   corrupt part is one line naming the file and what to do.

After preparation, :func:`check_dataset_key` refuses a directory whose reports were
made from other data (same study file, but the data file's content or the reader
changed), so the baseline and runs shown always belong to the current settings.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

#: study-file sections that may change between runs of one run directory: the models
#: and how they are trained (each run has its own key), where things go, and the
#: closing stages. Everything else (pipeline, data, split, windows / text / images,
#: seed) defines the prepared dataset and must stay the same.
MAY_CHANGE = frozenset(
    {"study", "output_dir", "source_file", "models", "training", "resources", "ensemble", "sweep"}
)

LOCK_NAME = "driver.lock"

_HELD: list = []  # locks this process holds (released by release_all on a quiet exit)


class RunDirError(ValueError):
    """The run directory cannot be used for this study (one line, exit 2)."""


def study_record(cfg) -> dict:
    """The study as stored in ``study.json``: ``asdict(cfg)`` through JSON (tuples
    become lists, paths strings)."""
    return json.loads(json.dumps(asdict(cfg), default=str))


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def study_differences(stored: dict, current: dict) -> list[str]:
    """Dotted fields whose values differ between a stored study record and the current
    one, outside :data:`MAY_CHANGE`, as ``"field: stored -> now"``. A field the stored
    record lacks (written by an older dlpipe) is not a difference."""
    old = _flatten({k: v for k, v in stored.items() if k not in MAY_CHANGE})
    new = _flatten({k: v for k, v in current.items() if k not in MAY_CHANGE})
    return [
        f"{name}: {old[name]!r} -> {new.get(name)!r}"
        for name in sorted(old)
        if name in new and old[name] != new[name]
    ]


def check_same_study(run_dir: Path, cfg) -> None:
    """Refuse a study whose dataset-defining settings differ from the one stored in
    ``run_dir/study.json``.

    Raises:
        RunDirError: naming the run directory and every field that differs.
    """
    path = Path(run_dir) / "study.json"
    if not path.is_file():
        return
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDirError(
            f"{path}: unreadable ({exc}); delete it to reuse the run directory"
        ) from None
    diffs = study_differences(stored, study_record(cfg))
    if diffs:
        raise RunDirError(
            f"{run_dir} holds study {stored.get('study')!r} prepared with other settings "
            f"({'; '.join(diffs)}): its runs and baseline would be mixed with these. Give "
            "the study a new `study` name, or delete the run directory to start over"
        )


def check_dataset_key(run_dir: Path, key: str) -> None:
    """Refuse a run directory whose ``datasets`` report holds another dataset key than
    ``key`` (the data file's content or its reading changed under one study file).

    Raises:
        RunDirError: naming the run directory and both keys.
    """
    from dlpipe.tasks.reports import tables as reports

    try:
        datasets = reports.read_table(run_dir, "datasets")
    except (OSError, ValueError):
        return
    if "dataset_key" not in datasets or datasets.empty:
        return
    other = sorted(set(datasets["dataset_key"].dropna()) - {key})
    if other:
        raise RunDirError(
            f"{run_dir} holds runs on dataset {other[-1]}, but the data now gives dataset "
            f"{key} (the data file's content or how it is read changed): give the study a "
            "new `study` name, or delete the run directory to start over"
        )


def check_writable(run_dir: Path, field: str = "output_dir") -> None:
    """Create ``run_dir`` (and parents) and check that files can be written there.

    Raises:
        RunDirError: naming the folder and ``field``.
    """
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunDirError(
            f"cannot write the run directory {run_dir} (`{field}`): {exc.strerror or exc}"
        ) from None


def check_report_parts(run_dir: Path) -> None:
    """Read the footer of every Parquet part under ``run_dir/reports``.

    Raises:
        RunDirError: naming the first truncated or corrupt part file, and the files to
            delete so that its run is trained again.
    """
    import pyarrow.parquet as pq

    root = Path(run_dir) / "reports"
    if not root.is_dir():
        return
    for part in sorted(root.glob("*/*.parquet")):
        try:
            pq.read_metadata(part)
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for torn files
            name = part.name
            raise RunDirError(
                f"{part}: truncated or corrupt report part ({' '.join(str(exc).split())[:120]}). "
                f"Delete {root}/*/{name} and run again: that run is trained again"
            ) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class DriverLock:
    """``run_dir/driver.lock``: one driver per run directory.

    Created atomically (``O_CREAT | O_EXCL``) with the holder's pid, host and start
    time; released at exit. A lock held by a live process refuses; a lock on this host
    whose process is gone (a killed driver) is stale and taken over. A lock from
    another host cannot be checked: it refuses, naming the file to delete.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.held = False

    def acquire(self) -> "DriverLock":
        """Take the lock.

        Raises:
            RunDirError: another live driver holds it (one line naming it).
        """
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            self.held = True
            atexit.register(self.release)
            _HELD.append(self)
            return self
        raise RunDirError(f"{self.path}: could not take the driver lock")

    def _take_over_if_stale(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
            pid, host = int(holder["pid"]), str(holder["host"])
        except (OSError, ValueError, KeyError, TypeError):
            holder, pid, host = {}, -1, ""
        if host == socket.gethostname() and pid > 0 and _alive(pid) and pid != os.getpid():
            raise RunDirError(
                f"{self.path.parent} is in use by another dlpipe driver (pid {pid} on "
                f"{host}, since {holder.get('started', '?')}): wait for it to finish or "
                "stop it"
            )
        if host and host != socket.gethostname():
            raise RunDirError(
                f"{self.path.parent} is in use by a dlpipe driver on host {host} (pid "
                f"{pid}, since {holder.get('started', '?')}); if that driver is gone, "
                f"delete {self.path}"
            )
        self.path.unlink(missing_ok=True)  # stale: its process is gone

    def release(self) -> None:
        """Remove the lock if this process holds it (idempotent)."""
        if not self.held:
            return
        self.held = False
        try:
            holder = json.loads(self.path.read_text())
            if int(holder.get("pid", -1)) == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def release_all() -> None:
    """Release every lock this process holds: for exits that skip ``atexit``
    (``os._exit`` after a signal, :func:`dlpipe.pipelines.interrupt.quiet_exit`)."""
    while _HELD:
        _HELD.pop().release()


def preflight(run_dir: Path, cfg, *, same_study: bool = True) -> DriverLock:
    """The checks of a run directory before Ray starts (module docstring, 1-4; a sweep
    directory skips 2: sweeps keep their own fingerprint).

    Returns:
        The held :class:`DriverLock` (released at exit).

    Raises:
        RunDirError: the first check that fails.
    """
    check_writable(run_dir)
    if same_study:
        check_same_study(run_dir, cfg)
    lock = DriverLock(run_dir).acquire()
    try:
        check_report_parts(run_dir)
    except RunDirError:
        lock.release()
        raise
    return lock


__all__ = [
    "DriverLock",
    "MAY_CHANGE",
    "RunDirError",
    "check_dataset_key",
    "release_all",
    "check_report_parts",
    "check_same_study",
    "check_writable",
    "preflight",
    "study_differences",
    "study_record",
]
