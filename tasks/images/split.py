"""Split a flat Kaggle-style image folder into train/validation/test class folders
(book ch. 5.2, listing 5.9 generalized; case C03).

Plain functions, no Ray (:mod:`dlpipe.tasks.remote` wraps them) and no TensorFlow, so
splitting stays cheap in a driver process that must run no TF op (shared case C13).

Layout written by :func:`split_flat_folder`::

    dst/train/<class>/<class>.<id>.<ext>
    dst/validation/<class>/...
    dst/test/<class>/...
    dst/split.json               the SplitReport as JSON (written atomically)

The class folder is named after the class prefix **as is** (``cat/``, ``dog/``), not
pluralized as in the book (``cats/``, ``dogs/``); pass ``class_dirs={"cat": "cats",
"dog": "dogs"}`` for the book's names. Labels are the positions of the class folders
in sorted order (``cat`` = 0, ``dog`` = 1 either way), as in
``keras.utils.image_dataset_from_directory``. Source files are only ever opened for
reading.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dlpipe.tasks.images.folders import FLAT_NAME, IMAGE_EXTENSIONS

#: The book's split: per class, ids 0-999 train, 1000-1499 validation, 1500-1999 test.
BOOK_COUNTS = {"train": 1000, "validation": 500, "test": 500}


SPLIT_MANIFEST = "split.json"


_SPLIT_MODES = ("contiguous", "shuffle")


_TMP_SUFFIX = ".tmp"


@dataclass
class SplitReport:
    """What :func:`split_flat_folder` did.

    Attributes:
        src: The flat source folder.
        dst: The base folder of the splits.
        mode: ``"contiguous"`` or ``"shuffle"``.
        seed: Shuffle seed (recorded for both modes).
        counts: Images per class in each split, in split order.
        classes: Class names (file prefixes), sorted; label = position.
        class_dirs: Class name -> folder name under each split.
        files: ``{split: {class: [file names]}}`` in id order (contiguous) or drawn
            order (shuffle).
        found: Valid-looking files per class in ``src``.
        unused: Files per class left out (found - sum of counts).
        strays: ``[{"name", "reason"}]``: names that are not ``<class>.<id>.<ext>``
            with ext jpg/jpeg/png, sub-folders, and duplicate ids; never copied.
        copied: Files copied by this call.
        reused: Files already in ``dst`` with the same content, left as they were.
    """

    src: str
    dst: str
    mode: str
    seed: int
    counts: dict[str, int]
    classes: list[str]
    class_dirs: dict[str, str]
    files: dict[str, dict[str, list[str]]]
    found: dict[str, int]
    unused: dict[str, int]
    strays: list[dict] = field(default_factory=list)
    copied: int = 0
    reused: int = 0

    def split_dir(self, split: str) -> Path:
        """``dst/<split>``, the folder
        :func:`~dlpipe.tasks.images.folders.list_image_folder` reads."""
        return Path(self.dst) / split

    def to_dict(self) -> dict:
        """JSON-able copy (the content of ``dst/split.json``)."""
        return asdict(self)


@dataclass
class FlatFolder:
    """Result of :func:`scan_flat_folder`.

    Attributes:
        by_class: ``{class: [(id, file name), ...]}`` sorted by numeric id.
        strays: ``[{"name", "reason"}]`` for every other entry of the folder.
    """

    by_class: dict[str, list[tuple[int, str]]]
    strays: list[dict]


def scan_flat_folder(src) -> FlatFolder:
    """List a flat folder of ``<class>.<id>.<ext>`` files (Kaggle dogs-vs-cats layout).

    Names are matched case-insensitively on the extension (``jpg``, ``jpeg``,
    ``png``); the id is compared as a number (``cat.2`` before ``cat.10``). Two files
    of one class with the same numeric id (``cat.1.jpg``, ``cat.01.png``) keep the
    first name in sorted order and report the others as duplicates.

    Args:
        src: Folder path.

    Returns:
        A :class:`FlatFolder`.

    Raises:
        FileNotFoundError: ``src`` is not a folder (the message names it).
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"image folder not found: {src}")
    by_class: dict[str, dict[int, str]] = {}
    strays: list[dict] = []
    for name in sorted(os.listdir(src)):
        if not (src / name).is_file():
            strays.append({"name": name, "reason": "not a regular file"})
            continue
        match = FLAT_NAME.match(name)
        if match is None:
            strays.append({"name": name, "reason": _stray_reason(name)})
            continue
        cls, ident = match["cls"], int(match["id"])
        ids = by_class.setdefault(cls, {})
        if ident in ids:
            strays.append(
                {
                    "name": name,
                    "reason": f"duplicate id {ident} of class `{cls}` (kept {ids[ident]})",
                }
            )
            continue
        ids[ident] = name
    return FlatFolder({cls: sorted(ids.items()) for cls, ids in sorted(by_class.items())}, strays)


def split_flat_folder(
    src, dst, counts=None, *, mode="contiguous", seed=0, class_dirs=None
) -> SplitReport:
    """Copy a flat ``<class>.<id>.<ext>`` folder into train/validation/test class
    folders (book listing 5.9 generalized; case C03).

    For each class, the files are ordered by numeric id (``contiguous``) or by a
    seeded shuffle of that order (``shuffle``; the permutation of each class depends
    only on ``seed`` and the class name), and cut into consecutive blocks: the first
    ``counts[split_1]`` files go to the first split, the next ones to the second, and
    so on; the rest are unused. With the book's counts (1000/500/500) that is ids
    0-999, 1000-1499, 1500-1999. Splits are disjoint and identical on every run.

    Source files are only read (copied with :func:`shutil.copy2` into a temporary
    name, then renamed). Running again with the same arguments reuses what is
    already in ``dst``: files with the same content are left alone (counted in
    ``reused``), missing ones are copied (an interrupted split resumes).

    Args:
        src: The flat source folder.
        dst: The base folder to write; must not be ``src``.
        counts: ``{split: images per class}``, in split order. Default
            :data:`BOOK_COUNTS` (``train`` 1000, ``validation`` 500, ``test`` 500).
        mode: ``"contiguous"`` (book) or ``"shuffle"``.
        seed: Seed of the shuffle.
        class_dirs: Optional ``{class: folder name}``, e.g. ``{"cat": "cats"}`` for the
            book's plural names; default: the class name.

    Returns:
        A :class:`SplitReport` (also written to ``dst/split.json``).

    Raises:
        FileNotFoundError: ``src`` does not exist.
        ValueError: Bad ``counts``/``mode``/``class_dirs``; ``dst`` is ``src``; no file
            matches ``<class>.<id>.<ext>``; a class has fewer files than the split
            needs (the message names each such class, the count found and the count
            needed); or ``dst`` already holds class folders whose files differ from
            this split (different content, extra images, unknown class folders), so
            reusing them would mix splits.
    """
    counts = _check_counts(BOOK_COUNTS if counts is None else counts)
    if mode not in _SPLIT_MODES:
        raise ValueError(f"`mode` must be one of {list(_SPLIT_MODES)}. Received: mode={mode!r}")
    src, dst = Path(src), Path(dst)
    scan = scan_flat_folder(src)
    if dst.resolve() == src.resolve():
        raise ValueError(f"`dst` must differ from `src`. Received: dst={str(dst)!r}")
    _check_enough_files(scan, src, counts)
    classes = list(scan.by_class)
    dirs = _check_class_dirs(class_dirs, classes)
    files = _assign_splits(scan.by_class, counts, mode, seed)
    _check_existing_dst(dst, files, dirs, src)
    copied, reused = _copy_split(src, dst, files, dirs)
    needed = sum(counts.values())
    report = SplitReport(
        src=str(src),
        dst=str(dst),
        mode=mode,
        seed=int(seed),
        counts=counts,
        classes=classes,
        class_dirs=dirs,
        files=files,
        found={cls: len(v) for cls, v in scan.by_class.items()},
        unused={cls: len(v) - needed for cls, v in scan.by_class.items()},
        strays=scan.strays,
        copied=copied,
        reused=reused,
    )
    _write_manifest(report)
    return report


def _check_enough_files(scan: FlatFolder, src: Path, counts: dict[str, int]) -> None:
    """Raise ValueError if no file matched, or a class has fewer files than the split
    needs (one clause per such class)."""
    if not scan.by_class:
        raise ValueError(
            f"No file in {src} is named <class>.<id>.<ext> with ext jpg, jpeg or png "
            f"({len(scan.strays)} other names, e.g. {[s['name'] for s in scan.strays[:3]]})"
        )
    needed = sum(counts.values())
    short = {cls: len(files) for cls, files in scan.by_class.items() if len(files) < needed}
    if short:
        wanted = ", ".join(f"{k}={v}" for k, v in counts.items())
        raise ValueError(
            "; ".join(
                f"Class `{cls}` has {found} files in {src}, the split needs {needed} ({wanted})"
                for cls, found in short.items()
            )
        )


def _assign_splits(by_class, counts: dict[str, int], mode: str, seed) -> dict:
    """``{split: {class: [file names]}}``: per class, the files in id order (or a
    shuffle seeded by ``seed`` and the class name) cut into consecutive blocks of
    ``counts[split]`` files, in split order."""
    files: dict[str, dict[str, list[str]]] = {split: {} for split in counts}
    for cls, entries in by_class.items():
        names = [name for _, name in entries]
        if mode == "shuffle":
            digest = hashlib.sha256(cls.encode()).digest()
            rng = np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])
            names = [names[i] for i in rng.permutation(len(names))]
        start = 0
        for split, n in counts.items():
            files[split][cls] = names[start : start + n]
            start += n
    return files


def _copy_split(src: Path, dst: Path, files, dirs) -> tuple[int, int]:
    """Copy each file of the split to ``dst/<split>/<class dir>/`` unless it is there
    already (same content, checked by :func:`_check_existing_dst`); returns
    ``(copied, reused)``."""
    plan = [
        (src / name, dst / split / dirs[cls] / name)
        for split, per_class in files.items()
        for cls, names in per_class.items()
        for name in names
    ]
    copied = reused = 0
    for source, target in plan:
        if target.is_file():
            reused += 1  # same content: checked by _check_existing_dst
            continue
        _atomic_copy(source, target)
        copied += 1
    return copied, reused


def _write_manifest(report: SplitReport) -> None:
    """Write ``dst/split.json``: the report without this call's ``copied``/``reused``."""
    from dlpipe.tasks.reports.tables import atomic_write_bytes  # local: keeps this module light

    manifest = {k: v for k, v in report.to_dict().items() if k not in ("copied", "reused")}
    atomic_write_bytes(Path(report.dst) / SPLIT_MANIFEST, json.dumps(manifest, indent=1).encode())


def _check_counts(counts) -> dict[str, int]:
    if not isinstance(counts, dict) or not counts:
        raise ValueError(
            "`counts` must be a non-empty mapping {split: images per class}, e.g. "
            f"{BOOK_COUNTS}. Received: counts={counts!r}"
        )
    out = {}
    for split, n in counts.items():
        if not isinstance(split, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", split):
            raise ValueError(f"Split names must be plain folder names. Received: {split!r}")
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(f"`counts[{split!r}]` must be an integer >= 0. Received: {n!r}")
        out[split] = int(n)
    if not sum(out.values()):
        raise ValueError(f"`counts` must ask for at least one image. Received: {counts!r}")
    return out


def _check_class_dirs(class_dirs, classes) -> dict[str, str]:
    dirs = {cls: cls for cls in classes}
    if class_dirs:
        unknown = sorted(set(class_dirs) - set(classes))
        if unknown:
            raise ValueError(
                f"`class_dirs` names unknown class(es) {unknown}; classes found: {classes}"
            )
        dirs.update(class_dirs)
    values = list(dirs.values())
    bad = [v for v in values if not re.fullmatch(r"[^./\\][^/\\]*", str(v))]
    if bad or len(set(values)) != len(values):
        raise ValueError(
            f"`class_dirs` must map classes to distinct plain folder names. Received: {dirs}"
        )
    return dirs


def _check_existing_dst(dst: Path, files, dirs, src: Path) -> None:
    """Raise ValueError if ``dst`` holds class folders that differ from this split."""
    problems = []
    for split, per_class in files.items():
        split_dir = dst / split
        if not split_dir.is_dir():
            continue
        known = {dirs[cls] for cls in per_class}
        for entry in sorted(split_dir.iterdir()):
            if entry.is_dir() and not entry.name.startswith(".") and entry.name not in known:
                problems.append(f"{entry}: class folder not in this split")
        for cls, names in per_class.items():
            folder = split_dir / dirs[cls]
            if not folder.is_dir():
                continue
            planned = set(names)
            for entry in sorted(folder.iterdir()):
                name = entry.name
                if name.startswith(".") or entry.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                if name not in planned:
                    problems.append(f"{entry}: not part of split `{split}`")
                elif not _same_file(src / name, entry):
                    problems.append(f"{entry}: differs from {src / name}")
    if problems:
        shown = "; ".join(problems[:5])
        raise ValueError(
            f"`dst` {dst} already holds class folders that differ from this split "
            f"({len(problems)} problem(s): {shown}). Use an empty `dst`, or remove them."
        )


def _same_file(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    if sa.st_size != sb.st_size:
        return False
    return sa.st_mtime_ns == sb.st_mtime_ns or filecmp.cmp(a, b, shallow=False)


def _atomic_copy(source: Path, target: Path) -> None:
    """Copy ``source`` (content and times) to ``target`` via a temporary name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_TMP_SUFFIX, dir=target.parent)
    os.close(fd)
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stray_reason(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        return f"extension {suffix or '(none)'!r} is not one of jpg, jpeg, png"
    return "name is not <class>.<id>.<ext> (class prefix and numeric id)"
