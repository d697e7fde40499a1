"""Forecasts from new rows (issue 15): a file in the study's format is read, repaired and
scaled exactly as :func:`dlpipe.tasks.weather.prepare.prepare_weather` did (the same
reader, time-axis repair, sentinel policy and :func:`apply_normalization` with the
training split's stored mean and std), then cut into windows by the target convention
of :mod:`dlpipe.tasks.weather.windows`: one forecast per window end ``t``, for the
target ``delay`` rows later (``t + delay``, its timestamp ``time[t] + delay x period``).

Plain numpy and pandas, no Ray, no TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from dlpipe.tasks.weather.prepare import apply_normalization, clean_sentinels
from dlpipe.tasks.weather.read import DataFormatError, DataSpec, load_series
from dlpipe.tasks.weather.time_axis import cut_segments, regularize
from dlpipe.tasks.weather.windows import WindowSpec, forecast_rows, window_inputs


def predict_state(spec: DataSpec, meta: dict) -> dict:
    """The preprocessing state of a prepared weather dataset (JSON-able): the reader
    settings (``data``), the columns in order, the target and its column, the training
    split's ``mean``/``std`` per column (target units) and the period of the rows
    (seconds; None for row-index data)."""
    period = meta.get("quality", {}).get("period_s")
    return {
        "kind": "timeseries",
        "dataset_key": meta["key"],
        "data": asdict(spec),
        "columns": list(meta["columns"]),
        "target": meta["target"],
        "target_column": int(meta["target_column"]),
        "mean": [float(v) for v in meta["mean"]],
        "std": [float(v) for v in meta["std"]],
        "period_s": None if period is None or period != period else float(period),
    }


@dataclass
class ForecastInputs:
    """Windows of a new file, ready for a model.

    Attributes:
        x: float32 (windows, timesteps, features).
        ids: per window ``window_end`` (row ``t`` of the repaired file, 0-based),
            ``target_row`` (``t + delay``) and ``target_time`` (datetime64[ns], or
            None for row-index data).
    """

    x: np.ndarray
    ids: dict


def read_scaled(state: dict, path: str):
    """``(data float32 (rows, features), times or None, segments)`` of a new file:
    read with the study's reader, time axis repaired, sentinels replaced and scaled
    with the stored training statistics.

    Raises:
        FileNotFoundError, DataFormatError: as the study's reader; the file's columns
            differ from the training columns (names or order), naming file and field.
    """
    data = dict(state["data"])
    data.update(path=str(path), max_rows=None)
    data["columns"], data["sentinels"] = tuple(data["columns"]), tuple(data["sentinels"])
    spec = DataSpec(**data)
    series = load_series(spec)
    if list(series.columns) != list(state["columns"]):
        raise DataFormatError(
            f"{path}: field `columns`: the model was trained on {state['columns']} (in this "
            f"order); the file gives {list(series.columns)}"
        )
    regular = (
        regularize(series.times, series.values, max_gap=spec.max_gap)
        if series.times is not None
        else None
    )
    values = series.values if regular is None else regular.values
    cleaned, _ = clean_sentinels(values, series.columns, spec.sentinels, spec.sentinel_policy)
    breaks = regular.breaks if regular is not None else np.empty(0, np.int64)
    segments = cut_segments([(0, len(cleaned))], breaks)
    times = regular.times if regular is not None else series.times
    return apply_normalization(cleaned, state["mean"], state["std"]), times, segments


def forecast_inputs(state: dict, path: str, windows: WindowSpec, *, last: bool = False):
    """The windows of a new file (module docstring).

    Args:
        state: :func:`predict_state` of the study's dataset.
        path: a file in the study's format (``data.format``) with the training columns.
        windows: the model's window geometry.
        last: only the newest window (the forecast from the file's last row).

    Returns:
        A :class:`ForecastInputs`.

    Raises:
        DataFormatError: as :func:`read_scaled`, or no run of equally spaced rows long
            enough for one window's inputs (``lookback - step + 1`` rows).
    """
    data, times, segments = read_scaled(state, path)
    rows = forecast_rows(windows, segments)
    if not len(rows):
        longest = max((b - a for a, b in segments), default=0)
        raise DataFormatError(
            f"{path}: field `rows`: one window needs {windows.lookback - windows.step + 1} "
            f"consecutive, equally spaced rows (lookback {windows.lookback} - step "
            f"{windows.step} + 1); the longest run in the file has {longest}"
        )
    if last:
        rows = rows[-1:]
    target_time = None
    if times is not None:
        period = np.timedelta64(int(round(state["period_s"] * 1e9)), "ns")
        target_time = np.asarray(times, "datetime64[ns]")[rows] + windows.delay * period
    ids = {"window_end": rows, "target_row": rows + windows.delay, "target_time": target_time}
    return ForecastInputs(window_inputs(data, rows, windows.offsets), ids)


def forecast_columns(state: dict, prediction: np.ndarray) -> dict:
    """The output columns of normalized forecasts: ``prediction`` in the target's units
    (``x std + mean`` of the target column, as the stored predictions) and ``units``."""
    j = state["target_column"]
    target = state["target"]
    units = target[target.find("(") + 1 : target.rfind(")")] if "(" in target else ""
    values = np.asarray(prediction, np.float64).reshape(-1) * state["std"][j] + state["mean"][j]
    return {"prediction": values, "target": [target] * len(values), "units": [units] * len(values)}


def model_windows(inputs: dict) -> WindowSpec:
    """The :class:`WindowSpec` of a run's stored ``inputs``."""
    return replace(WindowSpec(**inputs))
