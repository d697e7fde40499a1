"""Weather timeseries preparation (book ch. 6.3.1): repair the time axis, replace missing
values, split, normalize, cache.

Plain functions, no Ray: :mod:`dlpipe.tasks.remote` wraps :func:`prepare_weather` as a
Ray task; the files are read by :mod:`dlpipe.tasks.weather.read`.

Time axis (:mod:`dlpipe.tasks.weather.time_axis`): rows are sorted by time, the first row of a
repeated stamp is kept, gaps of at most ``max_gap`` missing slots are filled by the
sentinel policy and longer ones cut the series, so that no window spans a gap. Stamps
with a UTC offset (``%z``) are converted to UTC.

Normalization (book listing 6.32): every column is centred and scaled with the mean and
standard deviation of the **training rows only**; validation and test reuse them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dlpipe.tasks.weather.read import (
    DEFAULT_SENTINELS,
    DataFormatError,
    DataSpec,
    load_series,
    resolve_path,
)
from dlpipe.tasks.weather.time_axis import cut_segments, regularize
from dlpipe.tasks.weather.windows import (
    SplitTooShortError,
    WindowSpec,
    check_blocks,
    count_windows,
    split_window_rows,
)

SPLITS = ("train", "validation", "test")


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
                f"Received: blocks={self.blocks}"
            )
        if by_rows:
            train_end, validation_end = self.train_end, self.validation_end
            if (
                train_end is None
                or validation_end is None
                or not (0 < train_end < validation_end < rows)
            ):
                raise ValueError(
                    "`split.train_end` < `split.validation_end` < rows must hold. Received: "
                    f"train_end={train_end}, validation_end={validation_end}, rows={rows}"
                )
            return {
                "train": [(0, train_end)],
                "validation": [(train_end, validation_end)],
                "test": [(validation_end, rows)],
            }
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


def clean_sentinels(
    values: np.ndarray, columns: list[str], sentinels=DEFAULT_SENTINELS, policy: str = "interpolate"
) -> tuple[np.ndarray, dict[str, int]]:
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
    train = np.concatenate([np.asarray(values[a:b], dtype=np.float64) for a, b in train_segments])
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return apply_normalization(values, mean, std), mean, std


def apply_normalization(values: np.ndarray, mean, std) -> np.ndarray:
    """``(values - mean) / std`` as float32 (rows, features): how :func:`normalize`
    scales every split, and how new rows are scaled for prediction with the stored
    training statistics (``mean``, ``std``: (features,), target units)."""
    return ((values - np.asarray(mean)) / np.asarray(std)).astype(np.float32)


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
class WeatherDataset:
    """Output of :func:`prepare_weather`.

    Attributes:
        data: normalized float32 (rows, features), the single array all windows read;
            rows are in time order, one per stamp, filled gap slots included.
        meta: JSON-able description: key, columns, target and its column index,
            mean/std per column (target units), ``splits`` (per split the segments of
            equally spaced rows that windows read), ``blocks`` (the split as
            configured, before cuts at gaps), row counts, replaced-value counts
            (``sentinel_counts``, ``missing_counts``, ``nonfinite_counts``), time-axis
            quality, ``constant_features``, ``windows``/``windows_excluded`` per split
            for the study's window geometry, source.
        times: datetime64[ns] (rows,) of ``data``'s rows (UTC when the file gave
            offsets), or ``None``.
    """

    data: np.ndarray
    meta: dict
    times: np.ndarray | None = None


def dataset_key(spec: DataSpec, split: SplitSpec, path: Path) -> str:
    """Content key of a prepared dataset: file bytes + reading/cleaning/split config."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(
        json.dumps(
            [asdict(spec), asdict(split), "weather-v3"], sort_keys=True, default=str
        ).encode()
    )
    return h.hexdigest()[:16]


def split_window_counts(windows: WindowSpec, meta: dict) -> dict[str, dict[str, int]]:
    """Windows per split for one window geometry, and those excluded by gaps in time.

    Args:
        windows: the window geometry (a model's own, e.g. ``conv_gru``'s step).
        meta: a prepared dataset's description (``blocks`` and ``splits``).

    Returns:
        ``{split: {"windows": n, "excluded": m}}``: ``n`` windows whose rows are all
        equally spaced in time; ``m`` windows the configured blocks would hold but
        whose inputs or target would span a gap (cut, see :mod:`dlpipe.tasks.weather.time_axis`).

    Raises:
        SplitTooShortError: a block is shorter than one window (C08), or the gaps leave
            a split without any window (names the split, its longest run and
            ``data.max_gap``).
    """
    out = {}
    blocks = meta.get("blocks", meta["splits"])
    for name, segments in meta["splits"].items():
        check_blocks(windows, blocks[name], split=name)  # C08
        n = count_windows(windows, segments)
        excluded = count_windows(windows, blocks[name]) - n
        if n == 0:
            longest = max(b - a for a, b in segments)
            raise SplitTooShortError(
                f"{meta['source']}: split `{name}` has no window left: gaps in time cut it "
                f"into {len(segments)} runs of equally spaced rows, the longest {longest} "
                f"rows, but one window needs {windows.rows_needed} rows; raise "
                f"`data.max_gap` (now {meta['quality'].get('max_gap', 0)}) to fill the "
                "gaps, or lower lookback/delay"
            )
        split_window_rows(windows, segments, split=name)
        out[name] = {"windows": n, "excluded": excluded}
    return out


def prepare_weather(
    spec: DataSpec, split: SplitSpec, windows: WindowSpec, cache_dir: str | None = None
) -> WeatherDataset:
    """Load, repair the time axis, clean (C07, C20), split by time, normalize with train
    statistics, and check that every split holds at least one window (C08).

    Order of the steps (each counted in ``meta``): parse (missing spellings and
    non-finite numbers -> NaN) -> sort by time, keep the first row of each repeated
    stamp, fill gaps of at most ``spec.max_gap`` slots with NaN rows, cut the series
    at longer gaps (:func:`dlpipe.tasks.weather.time_axis.regularize`) -> sentinel policy ->
    split (row bounds of the repaired series; each split's segments cut at the gaps)
    -> normalize -> refuse a constant target, list constant features.

    The result is cached as ``<cache_dir>/dataset-<key>.npz`` (+ ``.json``), written
    atomically; a later call with the same file content and config loads it.

    Returns:
        A :class:`WeatherDataset` (``meta["windows"]`` and
        ``meta["windows_excluded"]`` for ``windows``).

    Raises:
        FileNotFoundError, DataFormatError (bad input, or a target constant over the
        training rows), ValueError (bad config), SplitTooShortError (a split has
        fewer rows than one window needs, C08, or none left between gaps).
    """
    path = resolve_path(spec.path)
    key = dataset_key(spec, split, path)
    cached = _load_cached(cache_dir, key)
    if cached is None:
        series, regular, cleaned, sentinel_counts = clean_series(spec)
        blocks = split.bounds(len(cleaned))
        breaks = regular.breaks if regular is not None else np.empty(0, np.int64)
        segments = {name: cut_segments(segs, breaks) for name, segs in blocks.items()}
        data, mean, std = normalize(cleaned, blocks["train"])
        target_column = series.columns.index(series.target)
        constant = check_target_varies(series, cleaned, blocks["train"])
        quality = dict(series.quality)
        if regular is not None:
            quality.update(
                regular.counts,
                rows_in_file=int(len(series.values)),
                breaks=int(len(regular.breaks)),
            )
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
            "splits": segments,
            "blocks": {k: [list(seg) for seg in v] for k, v in blocks.items()},
            "sentinel_counts": sentinel_counts,
            "missing_counts": series.missing_counts,
            "nonfinite_counts": series.nonfinite_counts,
            "constant_features": sorted(constant),
            "quality": quality,
        }
        times = regular.times if regular is not None else series.times
        _save_cached(cache_dir, key, data, meta, times)
        cached = WeatherDataset(data, meta, times)
    counts = split_window_counts(windows, cached.meta)  # raises SplitTooShortError (C08)
    cached.meta["windows"] = {k: v["windows"] for k, v in counts.items()}
    cached.meta["windows_excluded"] = {k: v["excluded"] for k, v in counts.items()}
    return cached


def clean_series(spec: DataSpec):
    """The series of ``spec`` read, its time axis repaired and its missing values
    replaced (the steps of :func:`prepare_weather` before the split).

    Returns:
        ``(series, regular, cleaned, sentinel_counts)``: the read series
        (:func:`dlpipe.tasks.weather.read.load_series`), its regularized time axis (None
        without a time column; ``regular.breaks``: rows where a run of equally spaced
        rows starts), the cleaned float64 ``(rows, features)`` values and the replaced
        values per column.

    Raises:
        FileNotFoundError, DataFormatError, ValueError: as :func:`prepare_weather`.
    """
    series = load_series(spec)
    regular = (
        regularize(series.times, series.values, max_gap=spec.max_gap)
        if series.times is not None
        else None
    )
    values = series.values if regular is None else regular.values
    cleaned, sentinel_counts = clean_sentinels(
        values, series.columns, spec.sentinels, spec.sentinel_policy
    )
    return series, regular, cleaned, sentinel_counts


def check_target_varies(series, cleaned: np.ndarray, train_segments, where: str = "") -> dict:
    """The columns constant over the training rows (``{name: value}``), the target not
    among them.

    Args:
        where: what the training rows are, for the message (e.g. ``" of fold 2"``).

    Raises:
        DataFormatError: the target holds one value in every training row.
    """
    constant = _constant_columns(cleaned, train_segments, series.columns)
    if series.target in constant:
        raise DataFormatError(
            f"{series.source}: column `{series.target}` (the target) holds the same "
            f"value {constant[series.target]!r} in every training row{where}: there is "
            "nothing to predict"
        )
    return constant


def _constant_columns(values: np.ndarray, train_segments, columns) -> dict[str, float]:
    """Columns holding one value in every training row -> ``{name: value}``."""
    train = np.concatenate([values[a:b] for a, b in train_segments])
    same = np.all(train == train[:1], axis=0) if len(train) else np.zeros(len(columns), bool)
    return {columns[j]: float(train[0, j]) for j in np.flatnonzero(same)}


def _load_cached(cache_dir: str | None, key: str) -> WeatherDataset | None:
    if not cache_dir:
        return None
    npz, js = Path(cache_dir) / f"dataset-{key}.npz", Path(cache_dir) / f"dataset-{key}.json"
    if not (npz.is_file() and js.is_file()):
        return None
    with np.load(npz) as f:
        data = f["data"]
        times = f["times"] if "times" in f.files else None
    return WeatherDataset(data, json.loads(js.read_text()), times)


def _save_cached(
    cache_dir: str | None, key: str, data: np.ndarray, meta: dict, times: np.ndarray | None = None
) -> None:
    if not cache_dir:
        return
    from dlpipe.tasks.reports.tables import atomic_write_bytes  # local: keeps this module light

    d = Path(cache_dir)
    d.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    if times is None:
        np.savez(buf, data=data)
    else:
        np.savez(buf, data=data, times=times)
    atomic_write_bytes(d / f"dataset-{key}.npz", buf.getvalue())
    atomic_write_bytes(d / f"dataset-{key}.json", json.dumps(meta, indent=1).encode())
