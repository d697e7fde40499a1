"""Weather timeseries preparation (book ch. 6.3.1): load, clean, split, normalize.

Plain functions, no Ray: :mod:`dlpipe.tasks.remote` wraps :func:`prepare_weather` as a
Ray task. Three sources are read:

* the Jena climate CSV exactly as published (``"Date Time"`` as ``%d.%m.%Y %H:%M:%S``,
  day first, then 14 float columns; see :data:`JENA_COLUMNS`);
* TMY3 station files (the US typical-meteorological-year format; pvlib ships two of
  them, used by the demo);
* any CSV or :class:`pandas.DataFrame` with a time column and float feature columns.

Sentinel policy (shared case C07): a value equal to one of ``sentinels`` (default
-9999 and -9900, the missing-value codes of Jena and TMY3) or empty/NaN is *missing*.
Missing values are found before any statistic is computed, counted per column, and
replaced by linear interpolation in row order between the nearest valid values of the
same column (the first/last valid value at the edges); ``policy="ffill"`` carries the
last valid value forward instead. A column with no valid value is an error.

Normalization (book listing 6.32): every column is centred and scaled with the mean and
standard deviation of the **training rows only**; validation and test reuse them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlpipe.tasks.windows import WindowSpec, split_window_rows

JENA_TIME_COLUMN = "Date Time"
JENA_TIME_FORMAT = "%d.%m.%Y %H:%M:%S"
JENA_COLUMNS = (
    "p (mbar)", "T (degC)", "Tpot (K)", "Tdew (degC)", "rh (%)", "VPmax (mbar)",
    "VPact (mbar)", "VPdef (mbar)", "sh (g/kg)", "H2OC (mmol/mol)", "rho (g/m**3)",
    "wv (m/s)", "max. wv (m/s)", "wd (deg)",
)
JENA_TARGET = "T (degC)"

#: TMY3 fields used by default: the measured meteorology of each hour.
TMY3_COLUMNS = (
    "Dry-bulb (C)", "Dew-point (C)", "RHum (%)", "Pressure (mbar)", "Wdir (degrees)",
    "Wspd (m/s)", "GHI (W/m^2)", "DNI (W/m^2)", "DHI (W/m^2)", "TotCld (tenths)",
    "OpqCld (tenths)",
)
TMY3_TARGET = "Dry-bulb (C)"
TMY3_NOMINAL_YEAR = 1990
DEFAULT_SENTINELS = (-9999.0, -9900.0)
SPLITS = ("train", "validation", "test")


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

    def __post_init__(self):
        if self.format not in ("jena", "tmy3", "csv"):
            raise ValueError("`format` must be one of jena, tmy3, csv. "
                             f"Received: format={self.format!r}")
        if self.sentinel_policy not in ("interpolate", "ffill"):
            raise ValueError("`sentinel_policy` must be 'interpolate' or 'ffill'. "
                             f"Received: sentinel_policy={self.sentinel_policy!r}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"`max_rows` must be >= 1. Received: max_rows={self.max_rows}")


@dataclass(frozen=True)
class SplitSpec:
    """Splits by time: train = earliest rows, then validation, then test.

    Give either fractions of the rows or end rows (exclusive), not both. The book's
    Jena split is ``train_end=200000, validation_end=300000`` (one block).

    ``blocks > 1`` (fractions only) cuts the series into that many contiguous blocks of
    equal length and splits *each block* by the fractions, so every split sees every
    season: the remedy for a single year of data (TMY3), where a plain split would
    train on winter and spring and validate on summer. Each split is then a list of
    segments; windows never cross a segment boundary.
    """

    train_fraction: float | None = None
    validation_fraction: float | None = None
    train_end: int | None = None
    validation_end: int | None = None
    blocks: int = 1

    def bounds(self, rows: int) -> dict[str, list[tuple[int, int]]]:
        """Row segments ``{split: [(start, stop), ...]}`` for a series of ``rows`` rows.

        Raises:
            ValueError: both or neither of fractions/end rows given, out of range, or
                ``blocks > 1`` with end rows.
        """
        by_fraction = self.train_fraction is not None or self.validation_fraction is not None
        by_rows = self.train_end is not None or self.validation_end is not None
        if by_fraction == by_rows:
            raise ValueError(
                "`split` needs either `train_fraction` and `validation_fraction` or "
                f"`train_end` and `validation_end`. Received: {asdict(self)}"
            )
        if self.blocks < 1 or (self.blocks > 1 and by_rows):
            raise ValueError(
                "`split.blocks` must be >= 1, and > 1 only with fractions. "
                f"Received: blocks={self.blocks}")
        if by_rows:
            train_end, validation_end = self.train_end, self.validation_end
            if train_end is None or validation_end is None or not (
                0 < train_end < validation_end < rows
            ):
                raise ValueError(
                    "`split.train_end` < `split.validation_end` < rows must hold. Received: "
                    f"train_end={train_end}, validation_end={validation_end}, rows={rows}"
                )
            return {"train": [(0, train_end)], "validation": [(train_end, validation_end)],
                    "test": [(validation_end, rows)]}
        tf, vf = self.train_fraction, self.validation_fraction
        if tf is None or vf is None or tf <= 0 or vf <= 0 or tf + vf >= 1:
            raise ValueError(
                "`split.train_fraction` and `split.validation_fraction` must be > 0 "
                f"with a sum < 1. Received: train_fraction={tf}, validation_fraction={vf}"
            )
        out: dict[str, list[tuple[int, int]]] = {name: [] for name in SPLITS}
        edges = [int(e) for e in np.linspace(0, rows, self.blocks + 1).round()]
        for start, stop in zip(edges[:-1], edges[1:]):
            n = stop - start
            t_end = start + int(round(n * tf))
            v_end = start + int(round(n * (tf + vf)))
            out["train"].append((start, t_end))
            out["validation"].append((t_end, v_end))
            out["test"].append((v_end, stop))
        return out


@dataclass
class Series:
    """A loaded multivariate series before cleaning.

    Attributes:
        values: float64 (rows, features), may hold sentinels/NaN.
        columns: feature names, one per column of ``values``.
        target: name of the target column.
        times: datetime64[ns] (rows,) or ``None``.
        source: where it came from (path).
        quality: counts about the time axis (duplicates, missing steps) and notes.
    """

    values: np.ndarray
    columns: list[str]
    target: str
    times: np.ndarray | None
    source: str
    quality: dict = field(default_factory=dict)


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
        return {"period_s": float("nan"), "duplicate_timestamps": 0,
                "missing_timestamps": 0, "backward_steps": 0}
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


def _parse_times(text: pd.Series, fmt: str, path: Path, column: str) -> np.ndarray:
    times = pd.to_datetime(text, format=fmt, errors="coerce")
    bad = np.flatnonzero(times.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise DataFormatError(
            f"{path}: line {i + 2}: column `{column}` value {text.iloc[i]!r} does not match "
            f"the time format {fmt!r} ({len(bad)} bad timestamps in all)"
        )
    return times.to_numpy(dtype="datetime64[ns]")


def _float_columns(frame: pd.DataFrame, columns: list[str], path: Path, line_offset: int):
    out = np.empty((len(frame), len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        raw = frame[name]
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataFormatError(
                f"{path}: line {i + line_offset}: column `{name}` value {raw.iloc[i]!r} "
                "is not a number"
            )
        out[:, j] = values.to_numpy(dtype=np.float64)
    return out


def _check_columns(path: Path, found: list[str], wanted: list[str]) -> None:
    missing = [c for c in wanted if c not in found]
    if missing:
        raise DataFormatError(
            f"{path}: line 1: missing column(s) {missing}; the header has {found}"
        )


def load_jena_csv(path: str, *, columns=(), target: str = JENA_TARGET,
                  max_rows: int | None = None) -> Series:
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
        DataFormatError: header differs from the published one, a timestamp does not
            match ``%d.%m.%Y %H:%M:%S`` or a value is not a number (message names the
            line number, 1 = header).
    """
    p = resolve_path(path)
    frame = pd.read_csv(p, dtype=str, nrows=max_rows, keep_default_na=False)
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
    values = _float_columns(frame.replace("", np.nan), names, p, line_offset=2)
    return Series(values, names, target, times, str(p), timestamp_quality(times))


def load_tmy3(path: str, *, columns=(), target: str = TMY3_TARGET,
              max_rows: int | None = None) -> Series:
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
    values = _float_columns(data, names, p, line_offset=3)
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
    return Series(values, names, target, times, str(p), quality)


def load_csv(path: str, *, time_column: str, time_format: str, columns, target: str,
             max_rows: int | None = None) -> Series:
    """Read a generic CSV: one time column plus float feature columns.

    Args:
        path: the CSV (header on line 1).
        time_column: name of the time column.
        time_format: explicit strptime format (e.g. ``%Y-%m-%d %H:%M``), never guessed.
        columns: feature columns (floats); ``target`` must be one of them.
        target: target column.
        max_rows: read only the first ``max_rows`` rows.

    Raises:
        FileNotFoundError, DataFormatError (missing column, bad timestamp or number,
        each naming the line).
    """
    p = resolve_path(path)
    frame = pd.read_csv(p, dtype=str, nrows=max_rows, keep_default_na=False)
    return from_dataframe(frame, time_column=time_column, time_format=time_format,
                          columns=columns, target=target, source=str(p))


def from_dataframe(frame: pd.DataFrame, *, time_column: str, time_format: str, columns,
                   target: str, source: str = "<DataFrame>") -> Series:
    """Build a :class:`Series` from a DataFrame (the generic form of the loaders).

    Times given as strings are parsed with ``time_format``; datetime columns are
    taken as they are. Line numbers in errors count the header as line 1.
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
        times = col.to_numpy(dtype="datetime64[ns]")
    else:
        if not time_format:
            raise ValueError("`data.time_format` is required for string time columns")
        times = _parse_times(col.astype(str), time_format, p, time_column)
    values = _float_columns(frame.replace("", np.nan), names, p, line_offset=2)
    return Series(values, names, target, times, source, timestamp_quality(times))


def load_series(spec: DataSpec) -> Series:
    """Dispatch on ``spec.format`` (``jena``, ``tmy3``, ``csv``)."""
    if spec.format == "jena":
        return load_jena_csv(spec.path, columns=spec.columns, target=spec.target or JENA_TARGET,
                             max_rows=spec.max_rows)
    if spec.format == "tmy3":
        return load_tmy3(spec.path, columns=spec.columns, target=spec.target or TMY3_TARGET,
                         max_rows=spec.max_rows)
    if spec.format == "csv":
        return load_csv(spec.path, time_column=spec.time_column, time_format=spec.time_format,
                        columns=spec.columns, target=spec.target, max_rows=spec.max_rows)
    raise ValueError(f"`data.format` must be one of jena, tmy3, csv. Received: {spec.format!r}")


def clean_sentinels(values: np.ndarray, columns: list[str], sentinels=DEFAULT_SENTINELS,
                    policy: str = "interpolate") -> tuple[np.ndarray, dict[str, int]]:
    """Replace sentinel and NaN values column by column (shared case C07).

    Args:
        values: float (rows, features); not modified (a new array is returned).
        columns: names of the columns, for the counts and errors.
        sentinels: values meaning "missing" (compared exactly).
        policy: ``"interpolate"`` (linear in row order, edges take the nearest valid
            value) or ``"ffill"`` (last valid value; leading gap takes the first valid).

    Returns:
        ``(cleaned float64 array, {column: number of replaced values})`` (all columns).

    Raises:
        ValueError: unknown policy, or a column with no valid value.
    """
    if policy not in ("interpolate", "ffill"):
        raise ValueError(
            f"`data.sentinel_policy` must be 'interpolate' or 'ffill'. Received: {policy!r}"
        )
    out = np.array(values, dtype=np.float64, copy=True)
    counts: dict[str, int] = {}
    rows = np.arange(len(out))
    for j, name in enumerate(columns):
        col = out[:, j]
        bad = np.isnan(col) | np.isin(col, np.asarray(sentinels, dtype=np.float64))
        counts[name] = int(bad.sum())
        if not bad.any():
            continue
        good = ~bad
        if not good.any():
            raise ValueError(f"column `{name}` has no valid value (all missing or sentinels)")
        if policy == "interpolate":
            col[bad] = np.interp(rows[bad], rows[good], col[good])
        else:
            last = np.maximum.accumulate(np.where(good, rows, -1))
            last[last < 0] = np.flatnonzero(good)[0]
            col[:] = col[last]
    return out, counts


def normalize(values: np.ndarray, train_segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre and scale every column with statistics of the training rows only.

    Args:
        values: float (rows, features); not modified (Ray arrays are read-only, C14).
        train_segments: the training rows as ``[(start, stop), ...]`` (stop exclusive).

    Returns:
        ``(normalized float32 (rows, features), mean float64 (features,),
        std float64 (features,))``. A column constant over the training rows gets
        std 1 (it is only centred).
    """
    train = np.concatenate([np.asarray(values[a:b], dtype=np.float64)
                            for a, b in train_segments])
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return ((values - mean) / std).astype(np.float32), mean, std


def baseline_mae(data: np.ndarray, rows: np.ndarray, spec: WindowSpec, target_column: int) -> float:
    """Common-sense baseline MAE (book listing 6.35): the target ``delay`` rows ahead
    is predicted to equal the last observed target value.

    Args:
        data: normalized (rows, features) array.
        rows: last-input rows ``t`` of the windows to score.
        spec: window geometry (only ``delay`` is used).
        target_column: target column index.

    Returns:
        ``mean(|data[t + delay, target] - data[t, target]|)`` in normalized units, float.
    """
    y_true = data[rows + spec.delay, target_column].astype(np.float64)
    y_pred = data[rows, target_column].astype(np.float64)
    return float(np.mean(np.abs(y_true - y_pred)))


@dataclass
class PreparedDataset:
    """Output of :func:`prepare_weather`.

    Attributes:
        data: normalized float32 (rows, features), the single array all windows read.
        meta: JSON-able description: key, columns, target and its column index,
            mean/std per column (target units), split bounds, row counts, sentinel
            counts, time-axis quality, source.
    """

    data: np.ndarray
    meta: dict


def dataset_key(spec: DataSpec, split: SplitSpec, path: Path) -> str:
    """Content key of a prepared dataset: file bytes + reading/cleaning/split config."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(json.dumps([asdict(spec), asdict(split), "weather-v2"], sort_keys=True,
                        default=str).encode())
    return h.hexdigest()[:16]


def prepare_weather(spec: DataSpec, split: SplitSpec, windows: WindowSpec,
                    cache_dir: str | None = None) -> PreparedDataset:
    """Load, clean (C07), split by time, normalize with train statistics, and check
    that every split holds at least one window (C08).

    The result is cached as ``<cache_dir>/dataset-<key>.npz`` (+ ``.json``), written
    atomically; a later call with the same file content and config loads it.

    Raises:
        FileNotFoundError, DataFormatError, ValueError (bad config),
        SplitTooShortError (a split has fewer rows than one window needs, C08).
    """
    path = resolve_path(spec.path)
    key = dataset_key(spec, split, path)
    cached = _load_cached(cache_dir, key)
    if cached is None:
        series = load_series(spec)
        cleaned, sentinel_counts = clean_sentinels(series.values, series.columns,
                                                   spec.sentinels, spec.sentinel_policy)
        bounds = split.bounds(len(cleaned))
        data, mean, std = normalize(cleaned, bounds["train"])
        target_column = series.columns.index(series.target)
        meta = {
            "key": key,
            "source": series.source,
            "format": spec.format,
            "columns": series.columns,
            "target": series.target,
            "target_column": target_column,
            "mean": mean.tolist(),
            "std": std.tolist(),
            "rows": int(len(data)),
            "splits": {k: [list(seg) for seg in v] for k, v in bounds.items()},
            "sentinel_counts": sentinel_counts,
            "quality": series.quality,
        }
        _save_cached(cache_dir, key, data, meta)
        cached = PreparedDataset(data, meta)
    for name, segments in cached.meta["splits"].items():
        split_window_rows(windows, segments, split=name)  # raises SplitTooShortError (C08)
    return cached


def _load_cached(cache_dir: str | None, key: str) -> PreparedDataset | None:
    if not cache_dir:
        return None
    npz, js = Path(cache_dir) / f"dataset-{key}.npz", Path(cache_dir) / f"dataset-{key}.json"
    if not (npz.is_file() and js.is_file()):
        return None
    with np.load(npz) as f:
        data = f["data"]
    return PreparedDataset(data, json.loads(js.read_text()))


def _save_cached(cache_dir: str | None, key: str, data: np.ndarray, meta: dict) -> None:
    if not cache_dir:
        return
    from dlpipe.tasks.reports import atomic_write_bytes  # local: keeps this module light

    d = Path(cache_dir)
    d.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    np.savez(buf, data=data)
    atomic_write_bytes(d / f"dataset-{key}.npz", buf.getvalue())
    atomic_write_bytes(d / f"dataset-{key}.json", json.dumps(meta, indent=1).encode())
