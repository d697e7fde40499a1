"""File access of the feature cache: local paths or an fsspec filesystem.

Every function of the cache takes ``filesystem=None``: ``None`` means local paths
(``os``, :class:`LocalFS`); otherwise an fsspec filesystem object
(``fsspec.filesystem("s3")``, ``gcsfs``, ..., or a ``pyarrow.fs.FileSystem`` wrapped
with ``fsspec.implementations.arrow.ArrowFSWrapper``, :class:`FsspecFS`), with the cache
root a path inside it, so cluster nodes can share one cache.

Each file is written to a temporary name in its final folder and renamed into place
(``os.replace``): a reader never sees a torn file, and concurrent writers of the same
key (two Ray tasks that met the same image) both succeed, leaving one valid file. On
object stores a single PUT is already atomic, and the temporary name + move is kept for
shared POSIX mounts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: Suffix of the temporary files writers leave while writing (``.<name>.<...>.tmp``).
TMP_SUFFIX = ".tmp"


def cache_filesystem(filesystem):
    """The cache's file operations on ``filesystem``.

    Args:
        filesystem: None (local paths) or an fsspec filesystem.

    Returns:
        A :class:`LocalFS` or an :class:`FsspecFS` (``read_bytes``, ``exists``,
        ``write_atomic``, ``walk_files``, ``remove``, ``remove_tree``).
    """
    return LocalFS() if filesystem is None else FsspecFS(filesystem)


class LocalFS:
    """Local files through ``os``; writes via a temporary file and ``os.replace``."""

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def write_atomic(self, path: str, payload: bytes) -> None:
        # temporary ".<name>.<random>.tmp" in the same folder, then os.replace
        from dlpipe.tasks.reports.tables import atomic_write_bytes

        atomic_write_bytes(path, payload)

    def walk_files(self, root: str):
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue  # removed meanwhile
                yield {"path": path, "size_bytes": int(st.st_size), "mtime": st.st_mtime}

    def remove(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)

    def remove_tree(self, path: str, description: str) -> None:
        """Remove the file ``description`` (a base's ``base.json``) under ``path`` and
        the now empty folders of ``path`` (nothing else)."""
        Path(path, description).unlink(missing_ok=True)
        for folder, _, _ in sorted(os.walk(path), reverse=True):
            try:
                os.rmdir(folder)
            except OSError:
                pass  # not empty: something else lives there


class FsspecFS:
    """The same operations on an fsspec filesystem (S3, GCS, HDFS via ArrowFSWrapper...)."""

    def __init__(self, fs):
        self.fs = fs

    def read_bytes(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def write_atomic(self, path: str, payload: bytes) -> None:
        folder = path.rsplit("/", 1)[0]
        self.fs.makedirs(folder, exist_ok=True)
        tmp = f"{folder}/.{path.rsplit('/', 1)[1]}.{os.getpid()}.{time.time_ns()}{TMP_SUFFIX}"
        self.fs.pipe_file(tmp, payload)
        self.fs.mv(tmp, path)

    def walk_files(self, root: str):
        if not self.fs.exists(root):
            return
        for path, info in self.fs.find(root, detail=True).items():
            mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
            if mtime is None:
                mtime = self.fs.modified(path)
            if hasattr(mtime, "timestamp"):
                mtime = mtime.timestamp()
            yield {"path": path, "size_bytes": int(info.get("size") or 0), "mtime": float(mtime)}

    def remove(self, path: str) -> None:
        if self.fs.exists(path):
            self.fs.rm_file(path)

    def remove_tree(self, path: str, description: str) -> None:
        """Remove the file ``description`` under ``path``, then ``path`` if it is empty."""
        if self.fs.exists(f"{path}/{description}"):
            self.fs.rm_file(f"{path}/{description}")
        if not self.fs.find(path):
            try:
                self.fs.rm(path, recursive=True)
            except (FileNotFoundError, OSError):
                pass
