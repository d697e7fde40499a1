"""``dlpipe cache``: list and prune a conv-base feature cache (issue 5).

Examples::

    dlpipe cache list runs/feature-cache
    dlpipe cache prune runs/feature-cache --base 3f2a9c --dry-run
    dlpipe cache prune runs/feature-cache --older-than 30
    dlpipe cache prune runs/feature-cache --all

``list`` prints one row per conv base (base key, architecture, weights, input size,
preprocessing, entries, MiB, newest entry's write time). ``prune`` deletes entries of
one base (``--base``, a key or a unique prefix of one), entries written more than
``--older-than`` days ago, or, with ``--all``, every entry; ``--dry-run`` only prints
what would go. Files under ROOT that are not cache entries are never touched (see
:func:`dlpipe.tasks.features.store.prune`).

Lookups only read entries, so the time shown is when an entry was written (the last
time a study had to compute it), not when it was last read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

MIB = 2**20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dlpipe cache`` (sub-commands ``list`` and ``prune``)."""
    sub = parser.add_subparsers(dest="cache_command", required=True)
    p_list = sub.add_parser(
        "list",
        help="one row per conv base: entries, size, last write",
        description="List the conv bases of a feature cache.",
    )
    p_list.add_argument("root", metavar="ROOT", help="cache root folder")
    p_prune = sub.add_parser(
        "prune",
        help="delete entries (of one base, older than N days, or all)",
        description="Delete feature cache entries. Needs --base, --older-than or --all "
        "(filters combine). Files that are not cache entries stay.",
    )
    p_prune.add_argument("root", metavar="ROOT", help="cache root folder")
    p_prune.add_argument(
        "--base",
        default=None,
        metavar="KEY",
        help="only this conv base (its key from `dlpipe cache list`, or a unique prefix of it)",
    )
    p_prune.add_argument(
        "--older-than",
        type=float,
        default=None,
        metavar="DAYS",
        help="only entries written more than DAYS days ago",
    )
    p_prune.add_argument(
        "--all",
        action="store_true",
        help="no filter needed: delete every entry (of --base if given)",
    )
    p_prune.add_argument(
        "--dry-run", action="store_true", help="print what would be removed, remove nothing"
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Runs ``dlpipe cache list|prune``; 2 with ``error: ...`` on bad input."""
    try:
        root = _check_root(args.root)
        if args.cache_command == "list":
            return list_command(root)
        return prune_command(
            root,
            base=args.base,
            older_than_days=args.older_than,
            all_entries=args.all,
            dry_run=args.dry_run,
        )
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def list_command(root) -> int:
    """Print one row per conv base of the cache under ``root``."""
    import pandas as pd

    from dlpipe.pipelines.console import print_frame
    from dlpipe.tasks.features.store import list_bases

    bases = list_bases(root)
    if not bases:
        print(f"no cache entries under {root}")
        return 0
    frame = pd.DataFrame([_base_row(key, info) for key, info in sorted(bases.items())])
    print_frame(frame, f"feature cache {root}")
    total = sum(b["size_bytes"] for b in bases.values())
    print(
        f"{len(bases)} conv base(s), {sum(b['entries'] for b in bases.values())} "
        f"entries, {total / MIB:.2f} MiB"
    )
    return 0


def prune_command(
    root, *, base=None, older_than_days=None, all_entries=False, dry_run=False
) -> int:
    """Delete (or, with ``dry_run``, only list) cache entries; print per base."""
    import pandas as pd

    from dlpipe.pipelines.console import print_frame
    from dlpipe.tasks.features.store import list_bases, prune

    if base is None and older_than_days is None and not all_entries:
        raise ValueError(
            "prune needs --base KEY, --older-than DAYS or --all "
            "(refusing to delete every entry without --all)"
        )
    if older_than_days is not None and not older_than_days >= 0:
        raise ValueError(f"--older-than must be >= 0 days. Received: {older_than_days}")
    bases = list_bases(root)
    key = None if base is None else _resolve_base(base, bases, root)
    result = prune(
        root,
        base_key=key,
        older_than_s=None if older_than_days is None else older_than_days * 86400,
        dry_run=dry_run,
    )
    verb = "would remove" if dry_run else "removed"
    if result["removed"]:
        rows = []
        for k, stats in sorted(result["bases"].items()):
            row = _base_row(k, bases.get(k, {"description": None}))
            before = bases.get(k, {}).get("entries", 0)
            rows.append(
                {
                    "base key": k,
                    "architecture": row["architecture"],
                    "files": stats["removed"],
                    "MiB": stats["size_bytes"] / MIB,
                    "entries before": before,
                    "entries after": max(before - stats["removed"], 0),
                }
            )
        print_frame(pd.DataFrame(rows), f"{'dry run: ' if dry_run else ''}{verb} from {root}")
    print(
        f"{verb} {result['removed']} file(s), {result['size_bytes'] / MIB:.2f} MiB"
        + (" (dry run: nothing deleted)" if dry_run else "")
    )
    return 0


def _check_root(root) -> Path:
    path = Path(root)
    if not path.exists():
        raise FileNotFoundError(f"cache root not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"cache root is not a folder: {path}")
    return path


def _resolve_base(base: str, bases: dict, root) -> str:
    """A full base key from a key or a unique prefix of one present under ``root``."""
    matches = [k for k in bases if k.startswith(base.lower())] if base else []
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(sorted(bases)) or "none"
    if not matches:
        raise ValueError(f"no conv base {base!r} in cache {root} (bases: {known})")
    raise ValueError(
        f"--base {base!r} matches {len(matches)} bases in {root}: "
        f"{', '.join(sorted(matches))}; give more characters"
    )


def _base_row(key: str, info: dict) -> dict:
    desc = info.get("description") or {}
    size = desc.get("input_size")
    weights = str(desc.get("weights", "?"))
    if ":" in weights and len(weights) > 24:  # sha256:<64 hex>, model-sha256:<64 hex>
        weights = weights[: weights.index(":") + 9] + "…"
    pre = str(desc.get("preprocessing", "?"))
    if pre.startswith("rescale:"):  # rescale:0.00392156862745098 -> rescale 1/255
        try:
            factor = float(pre.split(":", 1)[1])
            inverse = round(1 / factor)
            pre = (
                f"rescale 1/{inverse}"
                if abs(1 / factor - inverse) < 1e-6 * inverse
                else f"rescale {factor:g}"
            )
        except (ValueError, ZeroDivisionError):
            pass
    mtime = info.get("mtime")
    return {
        "base key": key,
        "architecture": str(desc.get("architecture", "?")),
        "weights": weights,
        "input size": "x".join(map(str, size)) if size else "?",
        "preprocessing": pre,
        "entries": int(info.get("entries", 0)),
        "MiB": info.get("size_bytes", 0) / MIB,
        "last written": "?"
        if mtime is None
        else time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime)),
    }
