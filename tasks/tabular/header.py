"""The start of a table file: its text decoded, its header found and checked.

Shared by the cheap check before Ray starts (:func:`dlpipe.tasks.tabular.read.read_header`,
which reads only the first :data:`HEAD_BYTES`) and the full reader in the preparation
task, so both refuse the same files with the same one-line messages: not UTF-8 text
(naming the line of the failing byte), an empty file, a header cell with no name, a
repeated column name, no data row. Blank lines are skipped as pandas does.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

#: bytes of a CSV/TSV read by the check before Ray (the header and the first rows)
HEAD_BYTES = 1 << 20


def require_file(source: Path) -> None:
    """``source`` is a file (not a folder, not absent).

    Raises:
        ValueError: ``source`` is a directory.
        FileNotFoundError: no such file.
    """
    if source.is_dir():
        raise ValueError(
            f"{source}: a directory, not a table file (give a .csv, .tsv or .parquet file)"
        )
    if not source.is_file():
        raise FileNotFoundError(f"table not found: {source}")


def decode_utf8(raw: bytes, source) -> str:
    """``raw`` as UTF-8 text, a leading byte-order mark dropped.

    Args:
        raw: the file's bytes (or its first whole lines).
        source: the file, for messages.

    Raises:
        ValueError: ``<source>: line N: not UTF-8 text``, N the line of the failing
            byte (1 + the newlines before it).
    """
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: start + exc.start].count(b"\n") + 1
        raise ValueError(f"{source}: line {line}: not UTF-8 text") from None


def first_records(text: str, sep: str, source, count: int = 2) -> list[tuple[int, list[str]]]:
    """The first ``count`` non-blank records of a CSV/TSV text (a blank or spaces-only
    line is skipped, as pandas does), each ``(start line, fields)``.

    Raises:
        ValueError: naming the file and the line the ``csv`` module refuses.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    out, start = [], 1
    try:
        for record in reader:
            if record and (len(record) > 1 or record[0].strip()):
                out.append((start, record))
                if len(out) == count:
                    break
            start = reader.line_num + 1
    except csv.Error:
        raise ValueError(f"{source}: line {reader.line_num}: not valid CSV") from None
    return out


def check_header(source, where: str, names: list[str], csv_file: bool = True) -> None:
    """Every header cell has a name and no name is repeated.

    Args:
        source: the file, for messages.
        where: where the header is (``line 1``; ``schema`` for Parquet).
        names: the header's cells.
        csv_file: a CSV/TSV header (an unnamed last cell: a trailing separator).

    Raises:
        ValueError: ``<source>: line 1: column #5 has no name (a trailing
            separator?)``, or the repeated names.
    """
    for i, name in enumerate(names):
        if not str(name).strip():
            hint = " (a trailing separator?)" if csv_file and i == len(names) - 1 else ""
            raise ValueError(f"{source}: {where}: column #{i + 1} has no name{hint}")
    repeated = sorted({str(n) for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{source}: {where}: repeated column name(s) {repeated}")


def csv_header(text: str, sep: str, source, whole: bool) -> list[str]:
    """The checked header of a CSV/TSV text (:func:`check_header`).

    Args:
        text: the decoded text (the whole file, or its start when ``whole`` is False).
        whole: ``text`` is the whole file (only then is a missing data row known).

    Raises:
        ValueError: naming the file: empty, a bad header (:func:`check_header`), no
            data row, the line the ``csv`` module refuses.
    """
    records = first_records(text, sep, source)
    if not records:
        raise ValueError(f"{source}: line 1: the file is empty (no header line)")
    line, header = records[0]
    check_header(source, f"line {line}", header)
    if whole and len(records) < 2:
        raise ValueError(f"{source}: no data row (only a header)")
    return header


def parquet_header(source: Path) -> list[str]:
    """The checked column names of a Parquet file, from its metadata (no rows read).

    Raises:
        ValueError: naming the file: not a readable Parquet file, a bad header
            (:func:`check_header`), no data row.
    """
    import pyarrow.parquet as pq

    try:
        names = [str(n) for n in pq.read_schema(source).names]
        rows = pq.read_metadata(source).num_rows
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types
        raise ValueError(f"{source}: not a readable Parquet file ({first_line(exc)})") from None
    check_header(source, "schema", names, csv_file=False)
    if rows == 0:
        raise ValueError(f"{source}: no data row (only a header)")
    return names


def first_line(exc: Exception) -> str:
    """The first line of an exception's message (its type name when empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
