"""Reading weather files (book ch. 6.3.1): the Jena CSV, TMY3 station files, any CSV or
DataFrame with a time column, checked cheaply before Ray starts.

Plain functions, no Ray. Three sources are read:

* the Jena climate CSV exactly as published (``"Date Time"`` as ``%d.%m.%Y %H:%M:%S``,
  day first, then 14 float columns; see :data:`JENA_COLUMNS`);
* TMY3 station files (the US typical-meteorological-year format; pvlib ships two of
  them, used by the demo);
* any CSV or :class:`pandas.DataFrame` with a time column and float feature columns.

Missing values (shared cases C07, C20): a value equal to one of ``sentinels`` (default
-9999 and -9900, the missing-value codes of Jena and TMY3), a cell spelled as one of
:data:`MISSING_SPELLINGS` (empty, ``NaN``, ``nan``, ``NA``, ``null``, ... in any letter
case: what numpy, R, pandas and spreadsheets write) and a non-finite number (``inf``,
``-inf``, or a number too large for float64) is *missing*. Missing values are found
before any statistic is computed, counted per column (spellings and non-finite numbers
apart), and replaced by the sentinel policy: linear interpolation in row order between
the nearest valid values of the same column (the first/last valid value at the edges);
``policy="ffill"`` carries the last valid value forward instead. A column with no valid
value is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

JENA_TIME_COLUMN = "Date Time"


JENA_TIME_FORMAT = "%d.%m.%Y %H:%M:%S"


JENA_COLUMNS = (
    "p (mbar)",
    "T (degC)",
    "Tpot (K)",
    "Tdew (degC)",
    "rh (%)",
    "VPmax (mbar)",
    "VPact (mbar)",
    "VPdef (mbar)",
    "sh (g/kg)",
    "H2OC (mmol/mol)",
    "rho (g/m**3)",
    "wv (m/s)",
    "max. wv (m/s)",
    "wd (deg)",
)


JENA_TARGET = "T (degC)"


#: TMY3 fields used by default: the measured meteorology of each hour.
TMY3_COLUMNS = (
    "Dry-bulb (C)",
    "Dew-point (C)",
    "RHum (%)",
    "Pressure (mbar)",
    "Wdir (degrees)",
    "Wspd (m/s)",
    "GHI (W/m^2)",
    "DNI (W/m^2)",
    "DHI (W/m^2)",
    "TotCld (tenths)",
    "OpqCld (tenths)",
)


TMY3_TARGET = "Dry-bulb (C)"


TMY3_NOMINAL_YEAR = 1990


DEFAULT_SENTINELS = (-9999.0, -9900.0)


#: cell spellings read as a missing value (compared after stripping spaces, any case):
#: pandas' default NA strings, which cover numpy, R, SQL/JSON and spreadsheet exports
MISSING_SPELLINGS = frozenset(
    {
        "",
        "nan",
        "-nan",
        "+nan",
        "na",
        "n/a",
        "#n/a",
        "#n/a n/a",
        "#na",
        "<na>",
        "null",
        "none",
        "-1.#ind",
        "1.#ind",
        "-1.#qnan",
        "1.#qnan",
    }
)


#: data rows the pre-Ray check (:func:`check_weather_source`) reads
CHECK_ROWS = 200


class DataFormatError(ValueError):
    """An input file does not have the expected layout; the message names file and line."""


@dataclass(frozen=True)
class DataSpec:
    """Where the series comes from and how it is read.

    Attributes:
        format: ``"jena"``, ``"tmy3"`` or ``"csv"``.
        path: file path; ``pvlib:<name>`` names a file in pvlib's bundled data folder.
        time_column: time column (``csv``; fixed for ``jena``/``tmy3``).
        time_format: strptime format of ``time_column`` (``csv``), always explicit.
        columns: feature columns to keep (all float); empty = the format's default set.
        target: target column (must be among the features).
        sentinels: values that mean "missing" (case C07).
        sentinel_policy: ``"interpolate"`` or ``"ffill"``.
        max_rows: keep only the first ``max_rows`` rows (``None`` = all).
        max_gap: gaps in time of at most this many missing slots (periods) are filled
            with rows repaired by the sentinel policy; longer gaps cut the series and
            no window spans them (0 = fill none, cut at every gap).
    """

    format: str = "jena"
    path: str = ""
    time_column: str = ""
    time_format: str = ""
    columns: tuple[str, ...] = ()
    target: str = ""
    sentinels: tuple[float, ...] = DEFAULT_SENTINELS
    sentinel_policy: str = "interpolate"
    max_rows: int | None = None
    max_gap: int = 0

    def __post_init__(self):
        if self.format not in ("jena", "tmy3", "csv"):
            raise ValueError(
                f"`format` must be one of jena, tmy3, csv. Received: format={self.format!r}"
            )
        if self.sentinel_policy not in ("interpolate", "ffill"):
            raise ValueError(
                "`sentinel_policy` must be 'interpolate' or 'ffill'. "
                f"Received: sentinel_policy={self.sentinel_policy!r}"
            )
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"`max_rows` must be >= 1. Received: max_rows={self.max_rows}")
        if isinstance(self.max_gap, bool) or not isinstance(self.max_gap, int) or self.max_gap < 0:
            raise ValueError(
                f"`max_gap` must be an integer >= 0. Received: max_gap={self.max_gap!r}"
            )


@dataclass
class Series:
    """A loaded multivariate series before cleaning.

    Attributes:
        values: float64 (rows, features), may hold sentinels/NaN.
        columns: feature names, one per column of ``values``.
        target: name of the target column.
        times: datetime64[ns] (rows,) or ``None``.
        source: where it came from (path).
        quality: counts about the time axis in file order (duplicates, missing steps,
            backward steps) and notes.
        missing_counts: per column, cells spelled as missing (:data:`MISSING_SPELLINGS`),
            NaN in ``values``.
        nonfinite_counts: per column, ``inf``/``-inf`` cells, NaN in ``values``.
    """

    values: np.ndarray
    columns: list[str]
    target: str
    times: np.ndarray | None
    source: str
    quality: dict = field(default_factory=dict)
    missing_counts: dict = field(default_factory=dict)
    nonfinite_counts: dict = field(default_factory=dict)


def resolve_path(path: str) -> Path:
    """Resolve ``pvlib:<file>`` to pvlib's bundled data folder; other paths as given.

    Raises:
        FileNotFoundError: the file does not exist (the message names the path).
    """
    if path.startswith("pvlib:"):
        import pvlib  # the demo's embedded real data ships inside this package

        resolved = Path(pvlib.__file__).parent / "data" / path.split(":", 1)[1]
    else:
        resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise FileNotFoundError(f"data file not found: {path} (resolved to {resolved})")
    return resolved


def timestamp_quality(times: np.ndarray) -> dict:
    """Count duplicate and missing timestamps of a series meant to be regular.

    The expected period is the most common difference between consecutive times.

    Args:
        times: datetime64 (rows,), in file order.

    Returns:
        ``{"period_s", "duplicate_timestamps", "missing_timestamps",
        "backward_steps"}``: duplicates are zero differences; missing timestamps are
        the slots a gap of ``k`` periods leaves empty (``k - 1``); backward steps are
        negative differences (rows out of order).
    """
    if len(times) < 2:
        return {
            "period_s": float("nan"),
            "duplicate_timestamps": 0,
            "missing_timestamps": 0,
            "backward_steps": 0,
        }
    diffs = np.diff(times.astype("datetime64[s]").astype(np.int64))
    positive = diffs[diffs > 0]
    period = 0
    if len(positive):
        steps, counts = np.unique(positive, return_counts=True)
        period = int(steps[counts.argmax()])
    missing = int(np.sum(positive[positive > period] // period - 1)) if period else 0
    return {
        "period_s": float(period),
        "duplicate_timestamps": int(np.sum(diffs == 0)),
        "missing_timestamps": missing,
        "backward_steps": int(np.sum(diffs < 0)),
    }


def _read_csv(path: Path, nrows: int | None) -> pd.DataFrame:
    """Every cell of a CSV as text (line 1 = header); errors name file and line.

    UTF-8 (a byte-order mark is allowed); blank lines inside the file are kept as rows
    so that line numbers stay right, blank lines at its end are dropped.
    """
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                dtype=str,
                nrows=nrows,
                keep_default_na=False,
                skip_blank_lines=False,
                index_col=False,
                encoding="utf-8-sig",
            )
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path}: line 1: the file is empty (no header line)") from None
    except UnicodeDecodeError:
        raise DataFormatError(_decode_error(path)) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise DataFormatError(_field_count_error(path, exc)) from None
    if len(frame):
        filled = (frame != "").any(axis=1).to_numpy()
        last = int(np.flatnonzero(filled)[-1]) + 1 if filled.any() else 0
        frame = frame.iloc[:last]
    if not len(frame):
        raise DataFormatError(
            f"{path}: line 2: no data rows (the file holds only its header "
            f"line {list(frame.columns)[:3]}...)"
        )
    return frame


def _decode_error(path: Path) -> str:
    """Message for a file that is not UTF-8: file, line, column and the byte."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
        return f"{path}: not a readable UTF-8 text file"
    except UnicodeDecodeError as exc:
        at = exc.start
    line = data.count(b"\n", 0, at) + 1
    start = data.rfind(b"\n", 0, at) + 1
    header = data.split(b"\n", 1)[0].decode("utf-8", "replace").lstrip("\ufeff").split(",")
    field_no = data.count(b",", start, at)
    column = header[field_no].strip().strip('"') if field_no < len(header) else f"#{field_no + 1}"
    return (
        f"{path}: line {line}: column `{column}`: byte 0x{data[at]:02x} is not UTF-8 "
        "text (save the file as UTF-8)"
    )


def _field_count_error(path: Path, exc: Exception) -> str:
    """Message for a line the CSV parser refused: file, line and the extra field."""
    from dlpipe.tasks.io.csv_lines import CsvSyntaxError, OverlongRecord, find_csv_problem

    with open(path, newline="", encoding="utf-8-sig") as f:
        problem = find_csv_problem(f)
    if isinstance(problem, OverlongRecord):
        header, row = problem.header, problem.record
        return (
            f"{path}: line {problem.end_line}: {len(row)} fields but the "
            f"header has {len(header)}: field {len(header) + 1} "
            f"({row[len(header)]!r}) is beyond the last column "
            f"`{header[-1] if header else ''}`"
        )
    if isinstance(problem, CsvSyntaxError):
        return f"{path}: line {problem.line}: not valid CSV ({problem.message})"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{path}: not valid CSV ({first})"


def _parse_times(
    text: pd.Series, fmt: str, path: Path, column: str, line_offset: int = 2
) -> np.ndarray:
    """Parse a time column with an explicit format -> datetime64[ns] (rows,).

    A format with ``%z`` (or ``%Z``) reads each stamp's own UTC offset and gives UTC
    times (case C19: local time across a DST change is a regular series in UTC).
    """
    utc = "%z" in fmt or "%Z" in fmt
    try:
        times = pd.to_datetime(text, format=fmt, errors="coerce", utc=utc)
    except (ValueError, TypeError) as exc:
        raise DataFormatError(
            f"{path}: line {line_offset}: column `{column}` value {text.iloc[0]!r}: the "
            f"time format {fmt!r} cannot be used ({exc})"
        ) from None
    bad = np.flatnonzero(times.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise DataFormatError(
            f"{path}: line {i + line_offset}: column `{column}` value {text.iloc[i]!r} does "
            f"not match the time format {fmt!r} ({len(bad)} bad timestamps in all)"
        )
    if utc:
        times = times.dt.tz_convert(None)
    return times.to_numpy(dtype="datetime64[ns]")


def _float_columns(frame: pd.DataFrame, columns: list[str], path: Path, line_offset: int):
    """Feature cells -> float64 (rows, features), missing cells as NaN.

    Returns:
        ``(values, missing_counts, nonfinite_counts)``: the two dicts count, per
        column, cells spelled as missing (:data:`MISSING_SPELLINGS`, any case) and
        ``inf``/``-inf`` cells (both NaN in ``values``).

    Raises:
        DataFormatError: a cell is neither a number nor a missing spelling (names
            file, line and column).
    """
    out = np.empty((len(frame), len(columns)), dtype=np.float64)
    missing, nonfinite = {}, {}
    for j, name in enumerate(columns):
        raw = frame[name]
        values = np.array(pd.to_numeric(raw, errors="coerce"), dtype=np.float64)
        candidates = np.flatnonzero(np.isnan(values))
        if len(candidates):
            text = raw.iloc[candidates].astype(str).str.strip().str.lower()
            bad = ~text.isin(MISSING_SPELLINGS).to_numpy()
            if bad.any():
                i = int(candidates[np.flatnonzero(bad)[0]])
                raise DataFormatError(
                    f"{path}: line {i + line_offset}: column `{name}` value "
                    f"{raw.iloc[i]!r} is not a number"
                )
        infinite = np.isinf(values)
        values[infinite] = np.nan
        missing[name] = int(len(candidates))
        nonfinite[name] = int(infinite.sum())
        out[:, j] = values
    return out, missing, nonfinite


def _check_columns(path: Path, found: list[str], wanted: list[str]) -> None:
    missing = [c for c in wanted if c not in found]
    if missing:
        raise DataFormatError(
            f"{path}: line 1: missing column(s) {missing}; the header has {found}"
        )


def load_jena_csv(
    path: str, *, columns=(), target: str = JENA_TARGET, max_rows: int | None = None
) -> Series:
    """Read ``jena_climate_2009_2016.csv`` in its published layout (book ch. 6.3.1).

    Args:
        path: the CSV; first column ``"Date Time"`` (``01.01.2009 00:10:00``, day
            first), then the 14 float columns of :data:`JENA_COLUMNS`.
        columns: feature columns to keep (default: all 14, in file order).
        target: target column (default ``"T (degC)"``).
        max_rows: read only the first ``max_rows`` data rows.

    Returns:
        A :class:`Series` (values float64, times datetime64[ns]).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: empty or header-only file, header differs from the published
            one, a timestamp does not match ``%d.%m.%Y %H:%M:%S``, a value is neither a
            number nor a missing spelling, a line has more fields than the header, or
            a byte is not UTF-8 (message names file, line number (1 = header) and
            column).
    """
    p = resolve_path(path)
    frame = _read_csv(p, max_rows)
    header = list(frame.columns)
    if not header or header[0] != JENA_TIME_COLUMN:
        raise DataFormatError(
            f"{p}: line 1: the first column must be {JENA_TIME_COLUMN!r} (Jena layout). "
            f"Received: {header[:3]}"
        )
    _check_columns(p, header, list(JENA_COLUMNS))
    times = _parse_times(frame[JENA_TIME_COLUMN], JENA_TIME_FORMAT, p, JENA_TIME_COLUMN)
    names = list(columns) or list(JENA_COLUMNS)
    _check_columns(p, header, names + [target])
    values, missing, nonfinite = _float_columns(frame, names, p, line_offset=2)
    return Series(
        values, names, target, times, str(p), timestamp_quality(times), missing, nonfinite
    )


def load_tmy3(
    path: str, *, columns=(), target: str = TMY3_TARGET, max_rows: int | None = None
) -> Series:
    """Read a TMY3 station file (pvlib ships ``723170TYA.CSV`` and ``703165TY.csv``).

    Parsing goes through :func:`pvlib.iotools.read_tmy3`. A TMY file stitches 12
    "typical" months taken from different years (e.g. January 1988, February 1994...):
    **the row order is the time order**, month after month, and the printed years are
    not. This loader keeps the rows in file order and re-stamps them in one nominal
    year (:data:`TMY3_NOMINAL_YEAR`, pvlib's ``coerce_year``) so the series is a
    continuous hourly year; each month boundary where the source year changes is a
    *stitch* (a jump in weather, not in time), counted in ``quality["tmy_stitches"]``
    with the source years listed in ``quality["tmy_source_years"]``.

    Args:
        path: file path or ``pvlib:<file name>``.
        columns: feature columns to keep (default :data:`TMY3_COLUMNS`).
        target: target column (default dry-bulb temperature, degC).
        max_rows: keep only the first ``max_rows`` rows.

    Returns:
        A :class:`Series` of hourly rows (8760 for a full file); values float64.

    Raises:
        FileNotFoundError, DataFormatError (a requested column is missing).
    """
    from pvlib.iotools import read_tmy3

    p = resolve_path(path)
    try:
        raw, _ = read_tmy3(str(p), coerce_year=None, map_variables=False)
        data, _ = read_tmy3(str(p), coerce_year=TMY3_NOMINAL_YEAR, map_variables=False)
    except Exception as exc:  # pvlib raises assorted errors for a malformed file
        raise DataFormatError(f"{p}: not a readable TMY3 file: {exc}") from exc
    names = list(columns) or list(TMY3_COLUMNS)
    _check_columns(p, list(data.columns), names + [target])
    if max_rows is not None:
        data, raw = data.iloc[:max_rows], raw.iloc[:max_rows]
    values, missing, nonfinite = _float_columns(data, names, p, line_offset=3)
    # TMY's last row is hour 24:00 of Dec 31 = 00:00 of the next year after coercion;
    # row order is the authority, so times are rebuilt as a regular hourly axis.
    start = np.datetime64(f"{TMY3_NOMINAL_YEAR}-01-01T01:00", "ns")
    times = start + np.arange(len(data), dtype=np.int64) * np.timedelta64(3600, "s")
    source_years = raw.index.year.to_numpy()
    stitches = int(np.sum(np.diff(source_years[:-1]) != 0)) if len(source_years) > 2 else 0
    quality = timestamp_quality(times)
    quality.update(
        tmy_stitches=stitches,
        tmy_source_years=sorted({int(y) for y in source_years[:-1]}),
        time_axis=f"row order, re-stamped hourly in nominal year {TMY3_NOMINAL_YEAR}",
    )
    return Series(values, names, target, times, str(p), quality, missing, nonfinite)


def load_csv(
    path: str,
    *,
    time_column: str,
    time_format: str,
    columns,
    target: str,
    max_rows: int | None = None,
) -> Series:
    """Read a generic CSV: one time column plus float feature columns.

    Args:
        path: the CSV (header on line 1).
        time_column: name of the time column.
        time_format: explicit strptime format (e.g. ``%Y-%m-%d %H:%M``), never guessed;
            with ``%z`` each stamp's UTC offset is applied and times are UTC (C19).
        columns: feature columns (floats); ``target`` must be one of them.
        target: target column.
        max_rows: read only the first ``max_rows`` rows.

    Raises:
        FileNotFoundError, DataFormatError (empty or header-only file, missing column,
        bad timestamp or number, extra field, not UTF-8: each naming file, line and
        column).
    """
    p = resolve_path(path)
    frame = _read_csv(p, max_rows)
    return from_dataframe(
        frame,
        time_column=time_column,
        time_format=time_format,
        columns=columns,
        target=target,
        source=str(p),
    )


def from_dataframe(
    frame: pd.DataFrame,
    *,
    time_column: str,
    time_format: str,
    columns,
    target: str,
    source: str = "<DataFrame>",
) -> Series:
    """Build a :class:`Series` from a DataFrame (the generic form of the loaders).

    Times given as strings are parsed with ``time_format``; datetime columns are
    taken as they are (time-zone aware ones converted to UTC). Line numbers in errors
    count the header as line 1. Feature cells may be numbers, missing spellings
    (:data:`MISSING_SPELLINGS`) or non-finite numbers (both read as NaN, counted).

    Returns:
        A :class:`Series` (values float64, times datetime64[ns], quality in file order).

    Raises:
        ValueError: no feature columns, or the target is not one of them.
        DataFormatError: a missing column, timestamp or number (file, line, column).
    """
    p = Path(source)
    names = list(columns)
    if not names:
        raise ValueError("`data.columns` must list the feature columns for format `csv`")
    if target not in names:
        raise ValueError(f"`data.target` {target!r} must be one of `data.columns` {names}")
    _check_columns(p, list(frame.columns), [time_column] + names)
    col = frame[time_column]
    if pd.api.types.is_datetime64_any_dtype(col):
        if getattr(col.dt, "tz", None) is not None:
            col = col.dt.tz_convert(None)
        times = col.to_numpy(dtype="datetime64[ns]")
    else:
        if not time_format:
            raise ValueError("`data.time_format` is required for string time columns")
        times = _parse_times(col.astype(str), time_format, p, time_column)
    values, missing, nonfinite = _float_columns(frame, names, p, line_offset=2)
    return Series(
        values, names, target, times, source, timestamp_quality(times), missing, nonfinite
    )


def load_series(spec: DataSpec) -> Series:
    """Dispatch on ``spec.format`` (``jena``, ``tmy3``, ``csv``).

    Returns:
        The loader's :class:`Series`, rows in file order (see :func:`prepare_weather`
        for the time-axis repair).

    Raises:
        FileNotFoundError, DataFormatError, ValueError: as the loaders.
    """
    return _read_series(spec, spec.max_rows)


def _read_series(spec: DataSpec, max_rows: int | None) -> Series:
    if spec.format == "jena":
        return load_jena_csv(
            spec.path, columns=spec.columns, target=spec.target or JENA_TARGET, max_rows=max_rows
        )
    if spec.format == "tmy3":
        return load_tmy3(
            spec.path, columns=spec.columns, target=spec.target or TMY3_TARGET, max_rows=max_rows
        )
    if spec.format == "csv":
        return load_csv(
            spec.path,
            time_column=spec.time_column,
            time_format=spec.time_format,
            columns=spec.columns,
            target=spec.target,
            max_rows=max_rows,
        )
    raise ValueError(f"`data.format` must be one of jena, tmy3, csv. Received: {spec.format!r}")


def check_weather_source(spec: DataSpec) -> None:
    """Cheap checks of a weather source, meant to run before Ray starts.

    The file exists and is readable; for ``jena`` and ``csv`` the header, the named
    columns, the time format and the numbers of the first :data:`CHECK_ROWS` data
    rows are read exactly as the full preparation reads them (an empty or header-only
    file, a typo in a column name or time format fails here in well under a second);
    a ``tmy3`` file (at most 8,784 rows) is read whole through pvlib.

    Args:
        spec: the study's ``data`` section.

    Returns:
        None.

    Raises:
        FileNotFoundError: no such file (the message names it).
        DataFormatError: unreadable, empty, header-only, missing column, bad timestamp
            or number in the rows read (file, line and column named).
        ValueError: ``csv`` settings that cannot work (no columns, target not listed,
            no time format).
    """
    path = resolve_path(spec.path)
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot be read ({exc.strerror})") from None
    rows = CHECK_ROWS if spec.max_rows is None else min(CHECK_ROWS, spec.max_rows)
    _read_series(spec, None if spec.format == "tmy3" else rows)
