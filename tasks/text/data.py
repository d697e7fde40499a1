"""Raw text readers (book ch. 3.4 and 6.1.3): the aclImdb tree, class folders, tables.

Plain functions, no Ray: :mod:`dlpipe.tasks.remote` wraps them as Ray tasks. Every
reader returns a :class:`TextCorpus` (texts, int64 labels, where each text came from,
class names, and a report of what was read, ignored or repaired).

Decoding policy (shared case C05), the same for every file on every platform: a file is
read as bytes and decoded as **UTF-8** with ``errors="replace"``: each invalid byte
sequence becomes U+FFFD (which :func:`dlpipe.tasks.text.tokenize.standardize` then turns
into a word separator). A leading UTF-8 byte-order mark is dropped. Every file that held
invalid bytes is counted, and its path listed, in ``report["invalid_utf8"]``. The
platform's default encoding (``locale.getpreferredencoding``) is never used, and line
endings are kept as they are in the file.

Label policy: labels are int64 indices into ``class_names``. The aclImdb reader fixes
``neg = 0, pos = 1`` (case C04: ``unsup`` is unlabelled text, never a class); the class
folder reader uses the sorted folder names; the table reader the sorted distinct labels.

Label spellings (issue 12): labels are typed by people. A table's label cells are
trimmed of surrounding whitespace (counted in ``report["labels_trimmed"]``). Labels
that still differ only in letter case or spacing (``Positive``, ``positive``,
``pos itive``: the same :func:`dlpipe.tasks.io.labels.label_key`) are never trained
as separate classes (:func:`dlpipe.tasks.io.labels.merge_label_variants`):
with ``label_variants="refuse"`` (the default) the reader raises an error listing
each group of spellings with their counts and first line; with ``"merge"`` each group
becomes one class spelled as in ``class_names`` when given, else as its most frequent
spelling (ties: the first in sorted order), and ``report["label_variants_merged"]``
lists what was merged. The same rule applies to class folder names.

Errors name the file, the line (1-based physical line, header = line 1; ``row`` for
Parquet) and the column, in the form ``<file>: line <n>: column `<name>`: <what>``.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlpipe.tasks.io.labels import LABEL_VARIANT_POLICIES, merge_label_variants

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
        data = data[len(codecs.BOM_UTF8) :]
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


def read_aclimdb(
    root: str | Path, split: str = "train", *, include_unsup: bool = False
) -> TextCorpus:
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
    ignored = sorted(
        str(p) for p in base.iterdir() if p.name not in ACLIMDB_CLASSES + (ACLIMDB_UNLABELLED,)
    )
    for label, name in enumerate(ACLIMDB_CLASSES):
        folder = base / name
        if not folder.is_dir():
            raise ValueError(
                f"{folder}: the aclImdb class folder `{name}` is missing (expected "
                f"{base}/neg and {base}/pos)"
            )
        files, stray = _review_files(folder)
        if not files:
            raise ValueError(
                f"{folder}: the aclImdb class folder holds no review file named "
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
    return TextCorpus(
        texts,
        np.asarray(labels, dtype=np.int64),
        [str(p) for p in paths],
        list(ACLIMDB_CLASSES),
        report,
        unlabelled_texts,
        unlabelled_paths,
    )


def read_class_folders(
    root: str | Path,
    *,
    suffixes: Iterable[str] = (".txt",),
    exclude: Iterable[str] = (),
    label_variants: str = "refuse",
) -> TextCorpus:
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
        label_variants: `"refuse"` or `"merge"` folder names that differ only in
            letter case or spacing (module docstring).

    Returns:
        A :class:`TextCorpus`; `report` holds `class_counts`, `documents`,
        `invalid_utf8` (paths) and its count, `ignored` (paths), `decoding` and
        `label_variants_merged`.

    Raises:
        FileNotFoundError: `root` is not a folder.
        ValueError: `root` has no class folder, a class folder holds no document
            (the message names it), or folder names differ only in case or spacing
            (with `label_variants="refuse"`).
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(f"class-folder root not found: {base}")
    wanted = {s.lower() for s in suffixes}
    excluded = set(exclude)
    class_dirs = sorted(
        (
            p
            for p in base.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name not in excluded
        ),
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
                f"{folder}: the class folder holds no document with suffix in {sorted(wanted)}"
            )
        files.sort(key=lambda p: _natural_key(p.name))
        paths += files
        labels += [label] * len(files)
        counts[folder.name] = len(files)
    names = [p.name for p in class_dirs]
    values, merged = merge_label_variants(
        [names[y] for y in labels],
        label_variants,
        where=[str(p) for p in paths],
        source=f"{base}: class folders",
    )
    if merged:
        names = sorted(set(values))  # folder names keep their sorted-name order
        position = {name: i for i, name in enumerate(names)}
        labels = [position[v] for v in values]
        counts = {name: labels.count(i) for i, name in enumerate(names)}
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
        "label_variants_merged": merged,
    }
    return TextCorpus(
        texts, np.asarray(labels, dtype=np.int64), [str(p) for p in paths], names, report
    )


def read_text_table(
    path: str | Path,
    text_column: str,
    label_column: str,
    *,
    class_names: Sequence | None = None,
    label_variants: str = "refuse",
) -> TextCorpus:
    """Read a CSV, TSV or Parquet table with one document per row (format by suffix).

    CSV/TSV files follow the module's decoding policy (case C05): the physical lines
    (1-based, header = line 1) that held invalid UTF-8 are listed in
    `report["invalid_utf8_lines"]` and the file in `report["invalid_utf8"]`. Every cell
    is read as a string (`"NA"` stays text); an empty text or label cell is an error.
    Parquet strings are UTF-8 by the format's definition.

    Label cells are trimmed of surrounding whitespace; labels that then differ only in
    letter case or spacing are refused or merged (`label_variants`, module docstring).
    Labels map to int64 indices of `class_names`: by default the sorted distinct
    labels (numeric order when every label is a number, else string order), e.g.
    `negative = 0, neutral = 1, positive = 2`.

    Args:
        path: `.csv`, `.tsv`, `.parquet` or `.pq` file.
        text_column: Column holding the documents.
        label_column: Column holding the labels.
        class_names: Optional fixed label order (as strings, trimmed); every label must
            be in it.
        label_variants: `"refuse"` (default) or `"merge"`.

    Returns:
        A :class:`TextCorpus` whose `paths` are `"<path>#<row>"` (0-based data row);
        `report` holds `class_counts`, `documents`, `invalid_utf8`,
        `invalid_utf8_lines`, `labels_trimmed` (cells with surrounding whitespace),
        `label_variants_merged` and `decoding`.

    Raises:
        FileNotFoundError: No such file.
        ValueError: One line naming the file, the line and the column: unknown
            suffix; an empty file; a column missing from the header; a line with more
            fields than the header; an empty text or label cell; a label not in
            `class_names`; labels differing only in case or spacing (`"refuse"`).
    """
    source = Path(path).expanduser()
    _check_table_arguments(source, path, label_variants)
    frame, text, sep, invalid_lines = _read_table_frame(source)

    def line_of(rows) -> list[str]:
        """Where data rows (0-based) are: `line N` (CSV/TSV) or `row N` (Parquet)."""
        if sep is None:
            return [f"row {r}" for r in rows]
        from dlpipe.tasks.io.csv_lines import record_start_lines

        starts = record_start_lines(text, sep)
        return [f"line {starts[r]}" if r < len(starts) else f"row {r}" for r in rows]

    missing = [c for c in (text_column, label_column) if c not in frame.columns]
    if missing:
        where = "line 1: " if sep is not None else ""
        raise ValueError(
            f"{source}: {where}missing column(s) {missing}; the header has {list(frame.columns)}"
        )
    texts_col = frame[text_column]
    labels_col = frame[label_column].map(
        lambda v: v if v is None or isinstance(v, float) else str(v)
    )
    stripped = labels_col.map(lambda v: v.strip() if isinstance(v, str) else v)
    for name, column in ((text_column, texts_col), (label_column, stripped)):
        _check_no_empty_cell(source, name, column, line_of)
    names, labels, merged = _table_labels(
        source, label_column, stripped, class_names, label_variants, line_of
    )
    counts = {name: int(n) for name, n in zip(names, np.bincount(labels, minlength=len(names)))}
    report = {
        "source": str(source),
        "class_counts": counts,
        "documents": len(frame),
        "invalid_utf8": [str(source)] if invalid_lines else [],
        "invalid_utf8_count": 1 if invalid_lines else 0,
        "invalid_utf8_lines": invalid_lines,
        "labels_trimmed": int((stripped != labels_col).sum()),
        "label_variants_merged": merged,
        "decoding": DECODING_POLICY,
    }
    return TextCorpus(
        [str(t) for t in texts_col.tolist()],
        labels,
        [f"{source}#{i}" for i in range(len(frame))],
        names,
        report,
    )


def _check_table_arguments(source: Path, path, label_variants: str) -> None:
    """A known table suffix, a known label-variants policy, an existing file."""
    if source.suffix.lower() not in _TABLE_SUFFIXES:
        raise ValueError(
            f"`path` must end with one of {sorted(_TABLE_SUFFIXES)}. Received: path={str(path)!r}"
        )
    if label_variants not in LABEL_VARIANT_POLICIES:
        raise ValueError(
            f"`label_variants` must be one of {list(LABEL_VARIANT_POLICIES)}. "
            f"Received: {label_variants!r}"
        )
    if not source.is_file():
        raise FileNotFoundError(f"text table not found: {source}")


def _read_table_frame(source: Path):
    """``(frame of strings, decoded text, separator or None for Parquet, lines with
    invalid UTF-8)`` of a table file (decoding policy: case C05)."""
    import pandas as pd

    sep = _TABLE_SUFFIXES[source.suffix.lower()]
    if sep is None:
        try:
            frame = pd.read_parquet(source)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types
            raise ValueError(
                f"{source}: not a readable Parquet file ({_first_line(exc)})"
            ) from None
        return frame, "", None, []
    raw = source.read_bytes()
    text, bad = decode_bytes(raw)
    invalid_lines = _invalid_utf8_lines(raw) if bad else []
    if not text.strip():
        raise ValueError(f"{source}: line 1: the file is empty (no header line)")
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise ValueError(_extra_fields_error(source, text, sep, exc)) from None
    return frame, text, sep, invalid_lines


def _check_no_empty_cell(source: Path, name: str, column, line_of) -> None:
    """An empty text or label cell is an error naming its line."""
    empty = np.flatnonzero((column.isna() | (column.astype(str) == "")).to_numpy())
    if len(empty):
        more = f" (and {len(empty) - 1} more rows)" if len(empty) > 1 else ""
        raise ValueError(f"{source}: {line_of(empty[:1])[0]}: column `{name}`: empty cell{more}")


def _table_labels(source: Path, label_column: str, stripped, class_names, label_variants, line_of):
    """``(class names, int64 labels, merged variants)`` of the trimmed label cells:
    variants refused or merged, every label in the class order (fixed or sorted)."""
    label_values = [str(v) for v in stripped.tolist()]
    fixed = None if class_names is None else [str(c).strip() for c in class_names]
    label_values, merged = merge_label_variants(
        label_values,
        label_variants,
        where=None,
        class_names=fixed,
        source=f"{source}: column `{label_column}`",
        locate=line_of,
    )
    names = _class_order(label_values) if fixed is None else fixed
    position = {name: i for i, name in enumerate(names)}
    unknown = [i for i, v in enumerate(label_values) if v not in position]
    if unknown:
        distinct = sorted({label_values[i] for i in unknown})
        raise ValueError(
            f"{source}: {line_of(unknown[:1])[0]}: column `{label_column}`: label "
            f"{label_values[unknown[0]]!r} is not in `classes` {names} ({len(unknown)} "
            f"row(s), labels {distinct[:10]})"
        )
    labels = np.fromiter(
        (position[v] for v in label_values), dtype=np.int64, count=len(label_values)
    )
    return names, labels, merged


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _extra_fields_error(source: Path, text: str, sep: str, exc: Exception) -> str:
    """One line for a table pandas refused: the first line with more fields than the
    header (an unquoted separator inside a cell)."""
    from dlpipe.tasks.io.csv_lines import CsvSyntaxError, OverlongRecord, find_csv_problem

    problem = find_csv_problem(io.StringIO(text, newline=""), sep)
    if isinstance(problem, OverlongRecord):
        header = problem.header
        return (
            f"{source}: line {problem.start_line}: column #{len(header) + 1} (after "
            f"`{header[-1] if header else ''}`): {len(problem.record)} fields but the "
            f"header has {len(header)} (quote cells that hold "
            f"{'a tab' if sep == chr(9) else 'a comma'})"
        )
    if isinstance(problem, CsvSyntaxError):
        return f"{source}: line {problem.line}: not valid CSV ({problem.message})"
    return f"{source}: not valid CSV ({_first_line(exc)})"


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
