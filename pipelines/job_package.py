"""What `ray job submit --working-dir .` would ship, built the way Ray builds it.

``ray job submit --working-dir DIR`` zips DIR (minus Ray's default excludes, the
``excludes`` of the job's runtime env, and the patterns of ``.gitignore`` and
``.rayignore`` files) and uploads the zip to the cluster; Ray refuses a package of
``GCS_STORAGE_MAX_SIZE`` (512 MiB) or more. A data folder inside the repository would
be shipped with every job, so dlpipe keeps data out (``job_runtime_env.yaml``'s
``excludes``, ``.gitignore``, data paths outside the repository in the shipped configs)
and checks a package before a job is submitted::

    python -m dlpipe.pipelines.job_package            # from the repo root
    job package of /home/me/dlpipe: 95 files, 0.6 MiB (Ray's limit 512.0 MiB)

It uses Ray's own packaging functions (``ray._private.runtime_env.packaging``: the same
traversal, excludes and zip writer as ``ray job submit``), so the size it reports is
the size Ray would upload.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

#: The runtime-env file of the README's `ray job submit` line (repo root).
RUNTIME_ENV_FILE = "job_runtime_env.yaml"

_QUIET = logging.getLogger("dlpipe.job_package")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class JobPackageError(ValueError):
    """A job's working-dir package would be refused by Ray (too large), or the
    runtime-env file cannot be read."""


@dataclass(frozen=True)
class JobPackage:
    """A built job package.

    Attributes:
        path: the zip, as Ray would upload it (None when only measured).
        size: its size in bytes.
        files: number of entries (files and empty folders).
        names: the entries' paths inside the zip (POSIX, relative to the working dir).
        limit: Ray's limit in bytes; a package of ``limit`` bytes or more is refused.
    """

    path: Path | None
    size: int
    files: int
    names: tuple[str, ...]
    limit: int


def read_runtime_env(path: str | os.PathLike) -> dict:
    """The runtime env of a ``--runtime-env`` YAML file (a mapping), as Ray reads it.

    Raises:
        JobPackageError: missing file, not YAML, or not a mapping.
    """
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
        env = yaml.safe_load(text) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise JobPackageError(
            f"{path}: cannot read the runtime env: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if not isinstance(env, dict):
        raise JobPackageError(
            f"{path}: a runtime env must be a mapping "
            f"(e.g. `excludes: [...]`). Received: {type(env).__name__}"
        )
    return env


def package_excludes(runtime_env: dict) -> list[str]:
    """Ray's default excludes (``.git``, ``.venv``, ...; ``RAY_OVERRIDE_RUNTIME_ENV_
    DEFAULT_EXCLUDES``) followed by the runtime env's ``excludes``: the list
    ``ray job submit`` passes to its packager."""
    from ray._private import ray_constants

    return ray_constants.get_runtime_env_default_excludes() + list(
        runtime_env.get("excludes") or []
    )


def _include_gitignore() -> bool:
    from ray._private.ray_constants import RAY_RUNTIME_ENV_IGNORE_GITIGNORE

    return os.environ.get(RAY_RUNTIME_ENV_IGNORE_GITIGNORE, "0") != "1"


def package_entries(working_dir: str | os.PathLike, excludes: list[str]) -> dict[str, int]:
    """The entries Ray would zip from ``working_dir`` -> their sizes in bytes.

    Ray's own traversal (``packaging._dir_travel`` with ``excludes`` and the
    ``.gitignore``/``.rayignore`` files it meets), and its rule for what is packed: a
    file, or an empty folder. Nothing is read or written, so a huge data folder costs
    only its directory listing.
    """
    from ray._private.runtime_env import packaging

    root = Path(working_dir).absolute()
    entries: dict[str, int] = {}

    def handler(path: Path):
        if path.is_file():
            entries[path.relative_to(root).as_posix()] = path.stat().st_size
        elif path.is_dir() and next(path.iterdir(), None) is None and path != root:
            entries[path.relative_to(root).as_posix() + "/"] = 0

    packaging._dir_travel(
        root,
        [packaging._get_excludes(root, excludes)],
        handler,
        include_gitignore=_include_gitignore(),
        logger=_QUIET,
    )
    return entries


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _too_large(
    root: Path, size: int, limit: int, entries: dict[str, int], env_file: str
) -> JobPackageError:
    by_top: dict[str, int] = defaultdict(int)
    for name, nbytes in entries.items():
        top, sep, _ = name.partition("/")
        by_top[top + ("/" if sep else "")] += nbytes
    largest = sorted(by_top.items(), key=lambda kv: -kv[1])[:3]
    return JobPackageError(
        f"job package of {root} would be {_mib(size)}, Ray refuses {_mib(limit)} or more "
        f"(largest: {', '.join(f'{k} {_mib(v)}' for k, v in largest)}): keep data "
        f"outside the working dir (point the study's data.path there) or add the folder "
        f"to `excludes` in {env_file} or to .gitignore"
    )


def build_job_package(
    working_dir: str | os.PathLike = ".",
    *,
    runtime_env_file: str | os.PathLike | None = None,
    limit: int | None = None,
    output_dir: str | os.PathLike | None = None,
) -> JobPackage:
    """Build ``working_dir``'s job package the way ``ray job submit`` does and check it.

    Args:
        working_dir: the folder given to ``--working-dir``.
        runtime_env_file: the ``--runtime-env`` YAML (its ``excludes``); default
            ``<working_dir>/job_runtime_env.yaml`` when it exists, else none.
        limit: refuse at this many bytes or more; default Ray's own
            ``GCS_STORAGE_MAX_SIZE`` (512 MiB, or ``RAY_max_grpc_message_size``).
        output_dir: keep the zip there (``<folder name>-job-package.zip``); default: built in a
            temporary folder, measured and removed (``path`` is then None).

    Returns:
        The :class:`JobPackage` (size of the zip Ray's ``create_package`` wrote).

    Raises:
        JobPackageError: the package would be ``limit`` bytes or more (naming its
            largest folders and what to do), or the runtime-env file is unreadable.
    """
    from ray._private.runtime_env import packaging

    root = Path(working_dir).absolute()
    if not root.is_dir():
        raise JobPackageError(f"{working_dir}: the working dir must be a folder")
    if runtime_env_file is None and (root / RUNTIME_ENV_FILE).is_file():
        runtime_env_file = root / RUNTIME_ENV_FILE
    env = read_runtime_env(runtime_env_file) if runtime_env_file is not None else {}
    excludes = package_excludes(env)
    limit = packaging.GCS_STORAGE_MAX_SIZE if limit is None else int(limit)
    env_name = Path(runtime_env_file).name if runtime_env_file else RUNTIME_ENV_FILE

    entries = package_entries(root, excludes)
    raw = sum(entries.values())  # Ray's zip stores files uncompressed: size >= raw
    if raw >= limit:
        raise _too_large(root, raw, limit, entries, env_name)

    with tempfile.TemporaryDirectory(prefix="dlpipe-job-") as tmp:
        folder = Path(output_dir) if output_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{root.name}-job-package.zip"
        target.unlink(missing_ok=True)
        packaging.create_package(
            str(root),
            target,
            include_gitignore=_include_gitignore(),
            excludes=excludes,
            logger=_QUIET,
        )
        with zipfile.ZipFile(target) as zf:
            names = tuple(zf.namelist())
        size = target.stat().st_size
        if size >= limit:
            raise _too_large(root, size, limit, entries, env_name)
        return JobPackage(
            path=target if output_dir is not None else None,
            size=size,
            files=len(names),
            names=names,
            limit=limit,
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m dlpipe.pipelines.job_package [--working-dir .] [--runtime-env F]``:
    prints the package's size, or one error line and exit 2 when Ray would refuse it."""
    parser = argparse.ArgumentParser(
        prog="python -m dlpipe.pipelines.job_package",
        description="Build the package `ray job submit --working-dir` would upload (Ray's "
        "own packager, excludes and .gitignore) and check it against Ray's "
        "limit (512 MiB).",
    )
    parser.add_argument("--working-dir", default=".")
    parser.add_argument(
        "--runtime-env",
        default=None,
        help=f"runtime-env YAML (default: {RUNTIME_ENV_FILE} in the working dir)",
    )
    args = parser.parse_args(argv)
    try:
        pkg = build_job_package(args.working_dir, runtime_env_file=args.runtime_env)
    except JobPackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"job package of {Path(args.working_dir).absolute()}: {pkg.files} files, "
        f"{_mib(pkg.size)} (Ray's limit {_mib(pkg.limit)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
