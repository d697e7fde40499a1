"""Read a table (CSV, TSV or Parquet) and its cells for a tabular study.

Every CSV/TSV cell is read as text, so a cell that is not a number is found and named
(file, line, column) rather than silently turned into NaN; Parquet columns keep their
types. A cell is *missing* when it is null or, after trimming surrounding spaces, one
of :data:`MISSING_SPELLINGS` (``""``, ``NA``, ``N/A``, ``NaN``, ``null``, ``None``, ``?``;
case-insensitive); in a numeric column a non-finite number (``inf``, ``-inf``) is
missing too (counted apart). Locations: ``line N`` (1-based physical line of a CSV/TSV record,
header = line 1) or ``row N`` (0-based Parquet data row).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlpipe.tasks.tabular.header import (
    HEAD_BYTES,
    check_header,
    csv_header,
    decode_utf8,
    first_line,
    parquet_header,
    require_file,
)

#: cell spellings read as a missing value (case-insensitive, after trimming spaces)
MISSING_SPELLINGS = ("", "na", "n/a", "nan", "null", "none", "?")
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": ",", ".parquet": None, ".pq": None}


@dataclass
class Table:
    """A table as read: its frame and where its rows are in the file.

    Attributes:
        source: the file.
        frame: a pandas DataFrame (CSV/TSV: every cell a string).
        text: the decoded CSV/TSV text (``""`` for Parquet), to locate rows.
        first_row: the file's 0-based data row of the frame's first row (a slice of a
            Parquet file; 0 for a whole file).
    """

    source: Path
    frame: object
    text: str = ""
    first_row: int = 0

    def where(self, row: int) -> str:
        """Where data row ``row`` (0-based) is: ``line N`` (CSV/TSV) or ``row N``."""
        if not self.text:
            return f"row {row + self.first_row}"
        from dlpipe.tasks.io.csv_lines import record_start_lines

        starts = record_start_lines(self.text, TABLE_SUFFIXES[self.source.suffix.lower()])
        return f"line {starts[row]}" if row < len(starts) else f"row {row}"


def read_table_file(path: str | Path) -> Table:
    """Read a CSV/TSV (UTF-8, every cell a string) or Parquet table.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file: a directory, unknown suffix, not UTF-8, empty, not
            valid CSV, not a readable Parquet file, a column with no name, a repeated
            column name, no data row.
    """
    import pandas as pd

    source = Path(path).expanduser()
    suffix = source.suffix.lower()
    require_file(source)
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(
            f"{source}: a table must end with one of {sorted(TABLE_SUFFIXES)} (CSV, TSV or Parquet)"
        )
    sep = TABLE_SUFFIXES[suffix]
    if sep is None:
        try:
            table = Table(source, pd.read_parquet(source))
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types
            raise ValueError(f"{source}: not a readable Parquet file ({first_line(exc)})") from None
        check_header(source, "schema", list(table.frame.columns), csv_file=False)
    else:
        table = Table(source, *read_csv_text(source, sep))
    if not len(table.frame):
        raise ValueError(f"{source}: no data row (only a header)")
    return table


#: the ending of a shard file that names rows of a Parquet table
#: (:func:`dlpipe.tasks.tabular.predict.write_table_shards`)
ROWS_SUFFIX = ".rows.json"


def read_table_or_rows(path) -> Table:
    """:func:`read_rows` for a ``*.rows.json`` shard, else :func:`read_table_file`."""
    return read_rows(path) if str(path).endswith(ROWS_SUFFIX) else read_table_file(path)


#: the row groups :func:`read_rows` read last: ``(key, frame)`` (the pieces of one large
#: row group are read once by the process that predicts them in turn)
_LAST_READ: list = []


def read_rows(path):
    """The :class:`Table` of the rows a ``*.rows.json`` shard
    names (``{"source", "start", "stop"}``: data rows ``start`` to ``stop - 1`` of a
    Parquet table): only the row groups holding them are read; errors name the table
    and its rows.

    Raises:
        ValueError: as :func:`read_table_file` for the table.
    """
    import json

    import pyarrow.parquet as pq

    spec = json.loads(Path(path).read_text())
    source, start, stop = Path(spec["source"]), int(spec["start"]), int(spec["stop"])
    try:
        parquet = pq.ParquetFile(source)
        groups, first, row = [], None, 0
        for g in range(parquet.metadata.num_row_groups):
            n = parquet.metadata.row_group(g).num_rows
            if row < stop and row + n > start:
                groups.append(g)
                first = row if first is None else first
            row += n
        stat = source.stat()
        key = (str(source), stat.st_mtime_ns, stat.st_size, tuple(groups))
        if _LAST_READ and _LAST_READ[0] == key:
            frame = _LAST_READ[1]
        else:
            frame = parquet.read_row_groups(groups).to_pandas()
            _LAST_READ[:] = [key, frame]
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types
        raise ValueError(f"{source}: not a readable Parquet file ({exc})") from None
    frame = frame.iloc[start - first : stop - first].reset_index(drop=True)
    check_header(source, "schema", [str(c) for c in frame.columns], csv_file=False)
    return Table(source, frame, first_row=start)


def read_header(path: str | Path) -> list[str]:
    """The checked column names of a table from its first :data:`HEAD_BYTES`, cut to
    whole lines (Parquet: its metadata), a cheap check before Ray starts; the same faults as
    :func:`read_table_file` in the header, the first rows' bytes and a file without a
    data row are refused.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file: a directory, unknown suffix, not UTF-8 (the line),
            empty, a column with no name (its position), a repeated column name, no
            data row, not readable.
    """
    source = Path(path).expanduser()
    sep = TABLE_SUFFIXES.get(source.suffix.lower(), ",")
    require_file(source)
    if source.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(
            f"{source}: a table must end with one of {sorted(TABLE_SUFFIXES)} (CSV, TSV or Parquet)"
        )
    if sep is None:
        return parquet_header(source)
    with open(source, "rb") as f:
        raw = f.read(HEAD_BYTES + 1)
        whole = len(raw) <= HEAD_BYTES
        if not whole:  # whole lines only (a newline byte is never inside a character)
            cut = raw.rfind(b"\n", 0, HEAD_BYTES)
            raw = raw[: cut + 1] if cut >= 0 else raw + f.read()
            whole = cut < 0
    return csv_header(decode_utf8(raw, source), sep, source, whole)


def read_csv_text(source: Path, sep: str):
    """``(frame, text)``: the CSV/TSV at ``source`` as a frame of strings (no NA
    guessing) and its decoded text.

    Raises:
        ValueError: not UTF-8 (naming the line), empty, a column with no name, a
            repeated column name, not valid CSV (the line).
    """
    import pandas as pd

    from dlpipe.tasks.io.csv_lines import CsvSyntaxError, OverlongRecord, find_csv_problem

    text = decode_utf8(source.read_bytes(), source)
    csv_header(text, sep, source, whole=False)  # empty, unnamed or repeated columns
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        problem = find_csv_problem(io.StringIO(text, newline=""), sep)
        if isinstance(problem, OverlongRecord):
            raise ValueError(
                f"{source}: line {problem.start_line}: {len(problem.record)} fields but the "
                f"header has {len(problem.header)}"
            ) from None
        if isinstance(problem, CsvSyntaxError):
            raise ValueError(f"{source}: line {problem.line}: not valid CSV") from None
        raise ValueError(f"{source}: not valid CSV ({first_line(exc)})") from None
    return frame, text


def cells(table: Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    """``(values, missing)`` of one column: the trimmed cells as strings (an object
    array; numbers of a Parquet column as they are) and the mask of missing cells."""
    series = table.frame[column]
    values = series.to_numpy(dtype=object)
    missing = series.isna().to_numpy()
    text = np.array([isinstance(v, str) for v in values], dtype=bool)
    if text.any():
        trimmed = np.array([v.strip() if isinstance(v, str) else v for v in values], object)
        spelled = np.array(
            [isinstance(v, str) and v.lower() in MISSING_SPELLINGS for v in trimmed], bool
        )
        values, missing = trimmed, missing | spelled
    if series.dtype.kind == "f":
        missing = missing | np.isnan(series.to_numpy(dtype=np.float64))
    return values, missing


def numbers(values: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(float64 numbers, not_a_number)``: each present cell as a number (NaN where it
    is missing or not a number) and the mask of present cells that are not numbers
    (``True``/``False`` count as 1/0)."""
    out = np.full(len(values), np.nan)
    bad = np.zeros(len(values), dtype=bool)
    for i in np.flatnonzero(~missing):
        value = values[i]
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            bad[i] = True
    return out, bad


def number_column(table: Table, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(float64 values, missing, nonfinite)`` of a numeric column: a non-finite number
    (``inf``, ``-inf``, ``Infinity``) is a missing value (NaN, in ``missing``), as the
    README's general rule has it, and also marked in ``nonfinite`` (counted apart).

    Raises:
        ValueError: naming the file, the column and the line: every present cell is
            text (declare it in ``data.categorical``), or one cell is not a number.
    """
    values, missing = cells(table, column)
    out, bad = numbers(values, missing)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        if bad.sum() == (~missing).sum():
            raise ValueError(
                f"{table.source}: column `{column}` is not numeric (first value "
                f"{values[row]!r} on {table.where(row)}); declare it in "
                "`data.categorical` to one-hot encode it, or leave it out of `data.features`"
            )
        raise ValueError(
            f"{table.source}: {table.where(row)}: column `{column}`: {values[row]!r} is not "
            f"a number ({int(bad.sum())} such cell(s) in the column)"
        )
    nonfinite = np.isinf(out)
    out[nonfinite] = np.nan
    return out, missing | nonfinite, nonfinite
