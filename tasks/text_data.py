"""Raw text readers (book ch. 3.4 and 6.1.3): the aclImdb tree, class folders, tables.

Plain functions, no Ray: :mod:`dlpipe.tasks.remote` wraps them as Ray tasks. Every
reader returns a :class:`TextCorpus` (texts, int64 labels, where each text came from,
class names, and a report of what was read, ignored or repaired).

Decoding policy (shared case C05), the same for every file on every platform: a file is
read as bytes and decoded as **UTF-8** with ``errors="replace"``: each invalid byte
sequence becomes U+FFFD (which :func:`dlpipe.tasks.tokenize.standardize` then turns
into a word separator). A leading UTF-8 byte-order mark is dropped. Every file that held
invalid bytes is counted, and its path listed, in ``report["invalid_utf8"]``. The
platform's default encoding (``locale.getpreferredencoding``) is never used, and line
endings are kept as they are in the file.

Label policy: labels are int64 indices into ``class_names``. The aclImdb reader fixes
``neg = 0, pos = 1`` (case C04: ``unsup`` is unlabelled text, never a class); the class
folder reader uses the sorted folder names; the table reader the sorted distinct labels.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: aclImdb's labelled classes, in label order (neg = 0, pos = 1).
ACLIMDB_CLASSES = ("neg", "pos")
#: aclImdb's folder of unlabelled reviews (only in ``train/``); never a class.
ACLIMDB_UNLABELLED = "unsup"
#: Review file names: ``<review id>_<rating>.txt``, e.g. ``10_9.txt``.
ACLIMDB_NAME = re.compile(r"^(\d+)_(\d+)\.txt$")
DECODING_POLICY = "utf-8, errors=replace (U+FFFD), leading BOM dropped"

_TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None, ".pq": None}


@dataclass
class TextCorpus:
    """Documents with their labels, in a deterministic order.

    Attributes:
        texts: One decoded document per entry (not standardized).
        labels: int64 array `(len(texts),)` of indices into `class_names`.
        paths: Where each text came from: a file path, or `"<table>#<row>"` (0-based
            data row) for tables.
        class_names: Class name of each label index.
        report: What was read: counts per class, files with invalid UTF-8, ignored
            entries, the decoding policy (keys depend on the reader, all JSON-ready).
        unlabelled_texts: Unlabelled documents (aclImdb's `unsup`), only when asked.
        unlabelled_paths: Their file paths, in the same order.
    """

    texts: list[str]
    labels: np.ndarray
    paths: list[str]
    class_names: list[str]
    report: dict
    unlabelled_texts: list[str] = field(default_factory=list)
    unlabelled_paths: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


def decode_bytes(data: bytes) -> tuple[str, bool]:
    """Decode `data` under the module's policy (case C05).

    Args:
        data: Raw file content.

    Returns:
        `(text, had_invalid_bytes)`: UTF-8 with invalid sequences replaced by U+FFFD and
        a leading BOM dropped; the flag says whether anything was replaced.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), True


def read_text_file(path: str | Path) -> tuple[str, bool]:
    """Read one text file under the decoding policy (case C05).

    Args:
        path: The file.

    Returns:
        `(text, had_invalid_bytes)` as :func:`decode_bytes`.

    Raises:
        FileNotFoundError: No such file.
    """
    return decode_bytes(Path(path).read_bytes())


def _natural_key(name: str) -> tuple:
    """Sort key where digit runs compare as numbers: `2.txt` before `10.txt`."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _read_files(paths: Sequence[Path]) -> tuple[list[str], list[str]]:
    """Decode `paths`; return the texts and the paths that held invalid UTF-8."""
    texts, invalid = [], []
    for path in paths:
        text, bad = read_text_file(path)
        texts.append(text)
        if bad:
            invalid.append(str(path))
    return texts, invalid


def _review_files(folder: Path) -> tuple[list[Path], list[str]]:
    """aclImdb review files of `folder` sorted by (review id, rating), and ignored names."""
    reviews, ignored = [], []
    for entry in folder.iterdir():
        match = ACLIMDB_NAME.match(entry.name)
        if match and entry.is_file():
            reviews.append((int(match.group(1)), int(match.group(2)), entry))
        else:
            ignored.append(str(entry))
    reviews.sort(key=lambda item: item[:2])
    return [entry for _, _, entry in reviews], sorted(ignored)


def read_aclimdb(root: str | Path, split: str = "train", *,
                 include_unsup: bool = False) -> TextCorpus:
    """Read one split of the aclImdb tree (book 6.1.3): `<root>/<split>/{neg,pos}/*.txt`.

    Labels are exactly `neg = 0`, `pos = 1` (case C04). `<root>/<split>/unsup` is
    unlabelled text, never a class: it is read only when `include_unsup=True`, into
    `unlabelled_texts` / `unlabelled_paths`. Files beside the class folders (`urls_pos.txt`,
    `labeledBow.feat`, ...), other folders, and names that are not `<id>_<rating>.txt`
    are ignored and listed in `report["ignored"]`. Within a class, files are ordered by
    numeric review id, then rating (`2_3.txt` before `10_1.txt`), so the order is the
    same on every machine. Negative reviews come first, then positive ones.

    Args:
        root: The `aclImdb` folder (holding `train/` and `test/`).
        split: `"train"` or `"test"`.
        include_unsup: Also read `<split>/unsup` (50,000 reviews in the real `train/`).

    Returns:
        A :class:`TextCorpus`; `report` holds `split`, `class_counts` (`{"neg": n,
        "pos": n}`), `documents`, `unlabelled`, `invalid_utf8` (paths) and its count,
        `ignored` (paths) and `decoding`.

    Raises:
        ValueError: `split` is not "train" or "test"; a class folder is missing or holds
            no review file (the message names the folder).
        FileNotFoundError: `<root>/<split>` does not exist.
    """
    if split not in ("train", "test"):
        raise ValueError(f'`split` must be "train" or "test". Received: split={split!r}')
    base = Path(root).expanduser() / split
    if not base.is_dir():
        raise FileNotFoundError(f"aclImdb split folder not found: {base} (root={root!r})")
    paths: list[Path] = []
    labels: list[int] = []
    counts: dict[str, int] = {}
    ignored = sorted(str(p) for p in base.iterdir()
                     if p.name not in ACLIMDB_CLASSES + (ACLIMDB_UNLABELLED,))
    for label, name in enumerate(ACLIMDB_CLASSES):
        folder = base / name
        if not folder.is_dir():
            raise ValueError(
                f"The aclImdb class folder `{name}` is missing: {folder} does not exist "
                f"(expected {base}/neg and {base}/pos)"
            )
        files, stray = _review_files(folder)
        if not files:
            raise ValueError(
                f"The aclImdb class folder {folder} holds no review file named "
                f"`<id>_<rating>.txt` (found {len(stray)} other entries)"
            )
        ignored += stray
        paths += files
        labels += [label] * len(files)
        counts[name] = len(files)
    texts, invalid = _read_files(paths)
    unlabelled_texts: list[str] = []
    unlabelled_paths: list[str] = []
    unsup = base / ACLIMDB_UNLABELLED
    if include_unsup and unsup.is_dir():
        files, stray = _review_files(unsup)
        ignored += stray
        unlabelled_texts, bad = _read_files(files)
        unlabelled_paths = [str(p) for p in files]
        invalid += bad
    report = {
        "source": str(base),
        "split": split,
        "class_counts": counts,
        "documents": len(texts),
        "unlabelled": len(unlabelled_texts),
        "invalid_utf8": invalid,
        "invalid_utf8_count": len(invalid),
        "ignored": ignored,
        "ignored_count": len(ignored),
        "decoding": DECODING_POLICY,
    }
    return TextCorpus(texts, np.asarray(labels, dtype=np.int64), [str(p) for p in paths],
                      list(ACLIMDB_CLASSES), report, unlabelled_texts, unlabelled_paths)


def read_class_folders(root: str | Path, *, suffixes: Iterable[str] = (".txt",),
                       exclude: Iterable[str] = ()) -> TextCorpus:
    """Read a class-per-folder tree: `<root>/<class name>/<file>`, one document per file.

    Classes are the sub-folders of `root` in sorted name order (label 0 = first name),
    hidden folders (`.git`) and `exclude` left out. Within a class, files are in
    natural order (digit runs compare as numbers: `2.txt` before `10.txt`). Files at the
    top level, nested folders and files whose suffix is not in `suffixes` are ignored
    and listed in `report["ignored"]`. Decoding follows the module policy (case C05).

    Args:
        root: The tree's root folder.
        suffixes: File suffixes read as documents (lowercase compare; empty = all).
        exclude: Folder names that are not classes (e.g. `("unsup",)` for aclImdb).

    Returns:
        A :class:`TextCorpus`; `report` holds `class_counts`, `documents`,
        `invalid_utf8` (paths) and its count, `ignored` (paths) and `decoding`.

    Raises:
        FileNotFoundError: `root` is not a folder.
        ValueError: `root` has no class folder, or a class folder holds no document
            (the message names it).
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(f"class-folder root not found: {base}")
    wanted = {s.lower() for s in suffixes}
    excluded = set(exclude)
    class_dirs = sorted(
        (p for p in base.iterdir()
         if p.is_dir() and not p.name.startswith(".") and p.name not in excluded),
        key=lambda p: p.name,
    )
    if not class_dirs:
        raise ValueError(f"{base} holds no class folder (excluded: {sorted(excluded)})")
    ignored = sorted(str(p) for p in base.iterdir() if p not in class_dirs)
    paths: list[Path] = []
    labels: list[int] = []
    counts: dict[str, int] = {}
    for label, folder in enumerate(class_dirs):
        files = []
        for entry in folder.iterdir():
            if entry.is_file() and (not wanted or entry.suffix.lower() in wanted):
                files.append(entry)
            else:
                ignored.append(str(entry))
        if not files:
            raise ValueError(
                f"The class folder {folder} holds no document with suffix in "
                f"{sorted(wanted)}"
            )
        files.sort(key=lambda p: _natural_key(p.name))
        paths += files
        labels += [label] * len(files)
        counts[folder.name] = len(files)
    texts, invalid = _read_files(paths)
    report = {
        "source": str(base),
        "class_counts": counts,
        "documents": len(texts),
        "invalid_utf8": invalid,
        "invalid_utf8_count": len(invalid),
        "ignored": sorted(ignored),
        "ignored_count": len(ignored),
        "decoding": DECODING_POLICY,
    }
    return TextCorpus(texts, np.asarray(labels, dtype=np.int64), [str(p) for p in paths],
                      [p.name for p in class_dirs], report)


def read_text_table(path: str | Path, text_column: str, label_column: str, *,
                    class_names: Sequence | None = None) -> TextCorpus:
    """Read a CSV, TSV or Parquet table with one document per row (format by suffix).

    CSV/TSV files follow the module's decoding policy (case C05): the physical lines
    (1-based, header = line 1) that held invalid UTF-8 are listed in
    `report["invalid_utf8_lines"]` and the file in `report["invalid_utf8"]`. Every cell
    is read as a string (`"NA"` stays text); an empty text or label cell is an error.
    Parquet strings are UTF-8 by the format's definition.

    Labels map to int64 indices of `class_names`: by default the sorted distinct
    labels (numeric order when every label is a number, else string order), e.g.
    `negative = 0, neutral = 1, positive = 2`.

    Args:
        path: `.csv`, `.tsv`, `.parquet` or `.pq` file.
        text_column: Column holding the documents.
        label_column: Column holding the labels.
        class_names: Optional fixed label order (as strings); every label must be in it.

    Returns:
        A :class:`TextCorpus` whose `paths` are `"<path>#<row>"` (0-based data row);
        `report` holds `class_counts`, `documents`, `invalid_utf8`,
        `invalid_utf8_lines` and `decoding`.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Unknown suffix; a column is missing (the message lists the columns
            found); empty text or label cells (the message names the first rows); a
            label not in `class_names`.
    """
    import pandas as pd

    source = Path(path).expanduser()
    suffix = source.suffix.lower()
    if suffix not in _TABLE_SUFFIXES:
        raise ValueError(
            f"`path` must end with one of {sorted(_TABLE_SUFFIXES)}. Received: path={str(path)!r}"
        )
    if not source.is_file():
        raise FileNotFoundError(f"text table not found: {source}")
    invalid_lines: list[int] = []
    if _TABLE_SUFFIXES[suffix] is None:
        frame = pd.read_parquet(source)
    else:
        raw = source.read_bytes()
        text, bad = decode_bytes(raw)
        if bad:
            invalid_lines = _invalid_utf8_lines(raw)
        frame = pd.read_csv(io.StringIO(text), sep=_TABLE_SUFFIXES[suffix], dtype=str,
                            keep_default_na=False)
    missing = [c for c in (text_column, label_column) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}; the table has {list(frame.columns)}"
        )
    texts_col, labels_col = frame[text_column], frame[label_column]
    for name, column in ((text_column, texts_col), (label_column, labels_col)):
        empty = np.flatnonzero((column.isna() | (column.astype(str) == "")).to_numpy())
        if len(empty):
            raise ValueError(
                f"{source}: column `{name}` is empty in {len(empty)} row(s); first rows "
                f"(0-based, after the header): {empty[:10].tolist()}"
            )
    label_values = labels_col.tolist()
    names = _class_order(label_values) if class_names is None else [str(c) for c in class_names]
    position = {name: i for i, name in enumerate(names)}
    unknown = sorted({str(v) for v in label_values} - set(position))
    if unknown:
        raise ValueError(
            f"{source}: column `{label_column}` holds labels not in `class_names` "
            f"{names}: {unknown[:10]}"
        )
    labels = np.fromiter((position[str(v)] for v in label_values), dtype=np.int64,
                         count=len(label_values))
    counts = {name: int(n) for name, n in zip(names, np.bincount(labels, minlength=len(names)))}
    report = {
        "source": str(source),
        "class_counts": counts,
        "documents": len(frame),
        "invalid_utf8": [str(source)] if invalid_lines else [],
        "invalid_utf8_count": 1 if invalid_lines else 0,
        "invalid_utf8_lines": invalid_lines,
        "decoding": DECODING_POLICY,
    }
    return TextCorpus([str(t) for t in texts_col.tolist()], labels,
                      [f"{source}#{i}" for i in range(len(frame))], names, report)


def _class_order(values: list) -> list[str]:
    """Sorted distinct labels as strings: numeric order if all are numbers."""
    distinct = {str(v) for v in values}
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)


def _invalid_utf8_lines(raw: bytes) -> list[int]:
    """1-based physical line numbers (split at `\\n`) holding invalid UTF-8."""
    out = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            out.append(number)
    return out
