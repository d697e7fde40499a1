"""The content-keyed store of the conv-base feature cache (issue 5; book 5.3.1).

Layout under a cache root (keys from :mod:`dlpipe.tasks.features.keys`)::

    <root>/<base_key>/base.json                            what the base key stands for
    <root>/<base_key>/<image_key[:2]>/<image_key>.npy      one feature array per image

Entries are read (:func:`lookup`), written once each, atomically (:func:`store`),
listed and counted (:func:`list_entries`, :func:`list_bases`) and deleted
(:func:`prune`), locally or on an fsspec filesystem
(:mod:`dlpipe.tasks.features.filesystems`). Plain functions, no Ray; NumPy only.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections.abc import Mapping

import numpy as np

from dlpipe.tasks.features.filesystems import TMP_SUFFIX, cache_filesystem

BASE_DESCRIPTION = "base.json"
_KEY = re.compile(r"^[0-9a-f]{64}$")
_BASE_KEY = re.compile(r"^[0-9a-f]{32}$")
_SUFFIX = ".npy"


def entry_path(root, base_key: str, image_key: str) -> str:
    """``<root>/<base_key>/<image_key[:2]>/<image_key>.npy``.

    Raises:
        ValueError: A key is not lowercase hex of the right length (keys become
            path components, so nothing else is accepted).
    """
    _check_base_key(base_key)
    if not isinstance(image_key, str) or not _KEY.match(image_key):
        raise ValueError(
            f"`image_key` must be 64 lowercase hex characters (sha256). "
            f"Received: image_key={image_key!r}"
        )
    return f"{_root(root)}/{base_key}/{image_key[:2]}/{image_key}{_SUFFIX}"


def lookup(root, base_key: str, image_keys, *, filesystem=None):
    """Read the cached features of some images.

    Args:
        root: Cache root.
        base_key: From :func:`~dlpipe.tasks.features.keys.base_key`.
        image_keys: Image keys (duplicates are looked up once).
        filesystem: None (local) or an fsspec filesystem.

    Returns:
        ``(found, missing)``: ``{image_key: array}`` of the entries present and
        readable, and the list of the other keys in input order (an unreadable entry,
        e.g. one copied half by hand, counts as missing and is rewritten by the next
        :func:`store` with ``overwrite=True``).

    Raises:
        ValueError: A malformed key.
    """
    fs = cache_filesystem(filesystem)
    found: dict[str, np.ndarray] = {}
    missing: list[str] = []
    for key in dict.fromkeys(image_keys):
        path = entry_path(root, base_key, key)
        try:
            found[key] = np.load(io.BytesIO(fs.read_bytes(path)), allow_pickle=False)
        except FileNotFoundError:
            missing.append(key)
        except (OSError, ValueError, EOFError):
            missing.append(key)  # torn or foreign file: recompute it
    return found, missing


def store(
    root,
    base_key: str,
    features: Mapping[str, np.ndarray],
    *,
    description=None,
    overwrite=False,
    filesystem=None,
) -> int:
    """Write feature arrays, one atomic file per image.

    Args:
        root: Cache root.
        base_key: From :func:`~dlpipe.tasks.features.keys.base_key`.
        features: ``{image_key: array}`` (any numeric dtype; float32 from
            :func:`~dlpipe.tasks.features.extract.extract_features`).
        description: The :func:`~dlpipe.tasks.features.keys.base_description` to
            record as ``base.json`` (written once per base key).
        overwrite: Rewrite entries that exist (default: leave them; the content of a
            key never changes).
        filesystem: None (local) or an fsspec filesystem.

    Returns:
        Number of files written.

    Raises:
        ValueError: A malformed key or a non-numeric array.
    """
    fs = cache_filesystem(filesystem)
    _check_base_key(base_key)
    if description is not None:
        desc_path = f"{_root(root)}/{base_key}/{BASE_DESCRIPTION}"
        if not fs.exists(desc_path):
            fs.write_atomic(desc_path, json.dumps(description, indent=1, sort_keys=True).encode())
    written = 0
    for key, value in features.items():
        path = entry_path(root, base_key, key)
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"Feature arrays must be numeric. Received: dtype={array.dtype} for "
                f"image_key={key!r}"
            )
        if not overwrite and fs.exists(path):
            continue
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        fs.write_atomic(path, buf.getvalue())
        written += 1
    return written


def list_entries(root, *, filesystem=None) -> list[dict]:
    """Every cache entry under ``root``.

    Returns:
        ``[{"base_key", "image_key", "path", "size_bytes", "mtime"}]`` sorted by base
        key then image key; ``mtime`` in seconds since the epoch (write time).
        Temporary files and ``base.json`` are not entries.
    """
    out = []
    for info in cache_filesystem(filesystem).walk_files(_root(root)):
        parts = _entry_parts(root, info["path"])
        if parts is not None:
            out.append({"base_key": parts[0], "image_key": parts[1], **info})
    return sorted(out, key=lambda e: (e["base_key"], e["image_key"]))


def list_bases(root, *, filesystem=None) -> dict[str, dict]:
    """Summary per base key: ``{base_key: {"description", "entries", "size_bytes",
    "mtime"}}`` (``description`` = the stored ``base.json``, or None if absent;
    ``mtime`` = write time of the newest entry, seconds since the epoch)."""
    fs = cache_filesystem(filesystem)
    out: dict[str, dict] = {}
    for entry in list_entries(root, filesystem=filesystem):
        base = out.setdefault(
            entry["base_key"], {"entries": 0, "size_bytes": 0, "mtime": entry["mtime"]}
        )
        base["entries"] += 1
        base["size_bytes"] += entry["size_bytes"]
        base["mtime"] = max(base["mtime"], entry["mtime"])
    for key, base in out.items():
        try:
            base["description"] = json.loads(
                fs.read_bytes(f"{_root(root)}/{key}/{BASE_DESCRIPTION}")
            )
        except (FileNotFoundError, ValueError):
            base["description"] = None
    return out


def prune(
    root, base_key=None, older_than_s=None, *, now=None, dry_run=False, filesystem=None
) -> dict:
    """Delete cache entries.

    With no filter every entry goes; ``base_key`` keeps the deletion to one base;
    ``older_than_s`` to entries written more than that many seconds before ``now``.
    Leftover temporary files (of writers that crashed) older than the same limit go
    too. A base folder left without entries loses its ``base.json`` and folders.
    Files that are not cache entries are never touched.

    Args:
        root: Cache root.
        base_key: Only this base (None = all bases).
        older_than_s: Only entries older than this, in seconds (None = any age).
        now: Reference time (default ``time.time()``).
        dry_run: Only report what would be deleted; delete nothing.
        filesystem: None (local) or an fsspec filesystem.

    Returns:
        ``{"removed": files deleted, "size_bytes": bytes freed, "bases": {base_key:
        {"removed", "size_bytes"}}}`` (with ``dry_run``: what would be deleted).

    Raises:
        ValueError: Malformed ``base_key`` or negative ``older_than_s``.
    """
    if base_key is not None:
        _check_base_key(base_key)
    if older_than_s is not None and not older_than_s >= 0:
        raise ValueError(f"`older_than_s` must be >= 0. Received: {older_than_s!r}")
    fs = cache_filesystem(filesystem)
    cutoff = None if older_than_s is None else (time.time() if now is None else now) - older_than_s
    removed = freed = 0
    touched_bases = set()
    per_base: dict[str, dict] = {}
    for info in fs.walk_files(_root(root)):
        rel = _relative(root, info["path"])
        if rel is None or not _BASE_KEY.match(rel[0]):
            continue
        is_entry = _entry_parts(root, info["path"]) is not None
        is_tmp = rel[-1].startswith(".") and rel[-1].endswith(TMP_SUFFIX)
        if not (is_entry or is_tmp):
            continue
        if base_key is not None and rel[0] != base_key:
            continue
        if cutoff is not None and info["mtime"] >= cutoff:
            continue
        if not dry_run:
            fs.remove(info["path"])
        removed += 1
        freed += info["size_bytes"]
        touched_bases.add(rel[0])
        stats = per_base.setdefault(rel[0], {"removed": 0, "size_bytes": 0})
        stats["removed"] += 1
        stats["size_bytes"] += info["size_bytes"]
    if not dry_run:
        remaining = {e["base_key"] for e in list_entries(root, filesystem=filesystem)}
        for key in touched_bases - remaining:
            fs.remove_tree(f"{_root(root)}/{key}", BASE_DESCRIPTION)
    return {"removed": removed, "size_bytes": freed, "bases": per_base}


def _check_base_key(key) -> None:
    if not isinstance(key, str) or not _BASE_KEY.match(key):
        raise ValueError(
            f"`base_key` must be 32 lowercase hex characters (from base_key()). "
            f"Received: base_key={key!r}"
        )


def _root(root) -> str:
    return os.fspath(root).rstrip("/") or "/"


def _relative(root, path: str):
    prefix = _root(root) + "/"
    path = str(path)
    if not path.startswith(prefix):
        return None
    return path[len(prefix) :].split("/")


def _entry_parts(root, path: str):
    """``(base_key, image_key)`` if ``path`` is an entry file under ``root``."""
    rel = _relative(root, path)
    if rel is None or len(rel) != 3:
        return None
    base, shard, name = rel
    key = name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else ""
    if _BASE_KEY.match(base) and _KEY.match(key) and shard == key[:2]:
        return base, key
    return None
