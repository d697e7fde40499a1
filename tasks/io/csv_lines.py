"""Where a CSV file breaks: the first record with more fields than its header, or the
line the ``csv`` module refuses. The table readers (weather, text) turn it into their
own one-line messages (shared case C23) when pandas refused a file with a bare error.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class OverlongRecord:
    """A data record with more fields than the header (an unquoted separator in a cell).

    Attributes:
        start_line, end_line: 1-based physical lines where the record starts and ends
            (they differ when a quoted cell spans lines).
        header: the header's fields.
        record: the record's fields.
    """

    start_line: int
    end_line: int
    header: list[str]
    record: list[str]


@dataclass(frozen=True)
class CsvSyntaxError:
    """A line the ``csv`` module refuses (e.g. a NUL byte), with its message."""

    line: int
    message: str


def find_csv_problem(
    lines: Iterable[str],
    delimiter: str = ",",
) -> OverlongRecord | CsvSyntaxError | None:
    """The first problem of a CSV text, read with ``csv.reader``.

    Args:
        lines: the file's lines (an open text file with ``newline=""``, or
            ``io.StringIO(text, newline="")``).
        delimiter: the field separator (``","`` or ``"\\t"``).

    Returns:
        An :class:`OverlongRecord`, a :class:`CsvSyntaxError`, or None when every record
        fits the header.
    """
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader, [])
        previous = reader.line_num
        for record in reader:
            start, previous = previous + 1, reader.line_num
            if len(record) > len(header):
                return OverlongRecord(start, reader.line_num, header, record)
    except csv.Error as err:
        return CsvSyntaxError(reader.line_num, str(err))
    return None


def record_start_lines(text: str, sep: str = ",") -> list[int]:
    """1-based physical line where each data record (after the header) starts, as the
    CSV reader sees them (quoted cells may span lines; blank lines are skipped), so a
    data row ``r`` (0-based, as pandas numbers it) is reported as ``line starts[r]``.

    Args:
        text: the file's decoded text.
        sep: the field separator.

    Returns:
        One line number per data record; shorter than the records when the ``csv``
        module refuses the text part-way (the rest is unknown).
    """
    import io

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    starts, previous = [], 0
    try:
        for record in reader:
            start, previous = previous + 1, reader.line_num
            if record:
                starts.append(start)
    except csv.Error:
        pass
    return starts[1:]


__all__ = ["CsvSyntaxError", "OverlongRecord", "find_csv_problem", "record_start_lines"]
