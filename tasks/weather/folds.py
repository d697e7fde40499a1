"""Per-fold datasets of a forward-chaining timeseries study (book ch. 6.3 with 3.6.4):
plain functions, no Ray (:func:`dlpipe.tasks.remote.weather_folds_task` runs
:func:`fold_arrays` as one Ray task).

The series is read, repaired and cleaned as :func:`dlpipe.tasks.weather.prepare.
prepare_weather` does (:func:`~dlpipe.tasks.weather.prepare.clean_series`), and split
by the same ``split`` section: the test rows stay the hold-out test rows. The non-test
rows (the training and validation splits, in time order) are cut by
:func:`dlpipe.tasks.training.folds.forward_chaining_folds`: fold ``j`` trains on every
row before its validation block, never on a later one. Each fold is normalized with
the mean and std of its own training rows only (:func:`~dlpipe.tasks.weather.prepare.
normalize`, as the hold-out prepare does with its training split); its splits are cut
at the gaps in time (:func:`~dlpipe.tasks.weather.time_axis.cut_segments`) and its
windows are those of :mod:`dlpipe.tasks.weather.windows`, which never cross a split
boundary: no training window's target lies in the validation block. The final model's
arrays: every non-test row trains (no validation rows), normalized with their
statistics.
"""

from __future__ import annotations

import numpy as np

from dlpipe.tasks.training.folds import forward_chaining_folds
from dlpipe.tasks.weather.prepare import (
    SplitSpec,
    check_target_varies,
    clean_series,
    normalize,
    split_window_counts,
)
from dlpipe.tasks.weather.read import DataSpec
from dlpipe.tasks.weather.time_axis import cut_segments
from dlpipe.tasks.weather.windows import SplitTooShortError, WindowSpec


def fold_blocks(split: SplitSpec, rows: int, folds: int) -> list[dict]:
    """The row blocks ``{split: [(start, stop)]}`` of every fold, then the final model's.

    Args:
        split: the study's ``split`` (one block: its test rows stay the test rows).
        rows: rows of the cleaned series.
        folds: forward-chaining folds.

    Returns:
        ``folds + 1`` dicts with ``train``, ``validation`` and ``test`` row ranges; the
        final one has no ``validation`` range.

    Raises:
        ValueError: ``split.blocks`` > 1 (the test blocks would interleave the series),
            or too few non-test rows for ``folds``.
    """
    if split.blocks != 1:
        raise ValueError(
            "forward chaining needs one time-ordered series before the test rows: "
            f"`split.blocks` must be 1. Received: blocks={split.blocks}"
        )
    bounds = split.bounds(rows)
    pool = bounds["validation"][-1][1]  # the non-test rows: [0, pool)
    test = [tuple(seg) for seg in bounds["test"]]
    out = [
        {
            "train": [(0, int(fold.train[-1]) + 1)],
            "validation": [(int(fold.validation[0]), int(fold.validation[-1]) + 1)],
            "test": test,
        }
        for fold in forward_chaining_folds(pool, folds)
    ]
    out.append({"train": [(0, pool)], "validation": [], "test": test})
    return out


def fold_arrays(
    spec: DataSpec, split: SplitSpec, windows: list[WindowSpec], folds: int
) -> list[tuple[np.ndarray, dict]]:
    """The normalized array and description of every fold and of the final model.

    Args:
        spec, split: the study's ``data`` and ``split`` sections.
        windows: every model's window geometry (each must fit in every fold's splits).
        folds: forward-chaining folds (the study's ``evaluation.forward_chaining.folds``).

    Returns:
        ``folds`` entries then the final model's, each ``(data, info)``: ``data`` float32
        ``(rows, features)`` normalized with that entry's training rows; ``info``:
        ``repeat`` (0; None for the final), ``fold`` (None for the final), ``mean``,
        ``std`` (per column, target units), ``splits`` (segments cut at gaps),
        ``blocks``, ``split_rows``, ``constant_features`` and ``windows`` (the first
        geometry's windows per split).

    Raises:
        ValueError: ``split.blocks`` > 1 or too few rows (:func:`fold_blocks`).
        SplitTooShortError: a fold's block holds no window (names the fold).
        DataFormatError: the target is constant over a fold's training rows.
    """
    series, regular, cleaned, _ = clean_series(spec)
    breaks = regular.breaks if regular is not None else np.empty(0, np.int64)
    entries = fold_blocks(split, len(cleaned), folds)
    out = []
    for j, blocks in enumerate(entries):
        final = j == len(entries) - 1
        where = " of the final model" if final else f" of forward-chaining fold {j}"
        data, mean, std = normalize(cleaned, blocks["train"])
        constant = check_target_varies(series, cleaned, blocks["train"], where)
        info = {
            "repeat": None if final else 0,
            "fold": None if final else j,
            "mean": mean.tolist(),
            "std": std.tolist(),
            "splits": {k: cut_segments(v, breaks) for k, v in blocks.items()},
            "blocks": {k: [list(seg) for seg in v] for k, v in blocks.items()},
            "split_rows": {k: int(sum(b - a for a, b in v)) for k, v in blocks.items()},
            "constant_features": sorted(constant),
        }
        info["windows"] = fold_window_counts(windows, info, series.source, where)
        out.append((data, info))
    return out


def fold_window_counts(windows: list[WindowSpec], info: dict, source: str, where: str) -> dict:
    """Windows per split of one fold for the first geometry, after checking that every
    geometry fits in every split that has rows
    (:func:`dlpipe.tasks.weather.prepare.split_window_counts`).

    Raises:
        SplitTooShortError: naming the fold (``where``) and what is too short.
    """
    present = {k: v for k, v in info["splits"].items() if v}
    meta = {
        "splits": present,
        "blocks": {k: info["blocks"][k] for k in present},
        "source": source,
        "quality": {},
    }
    counts = []
    for geometry in windows:
        try:
            counts.append(split_window_counts(geometry, meta))
        except SplitTooShortError as exc:
            raise SplitTooShortError(
                f"{where.strip()}: {exc} (use fewer forward-chaining folds or a shorter "
                "lookback/delay)"
            ) from None
    return {k: v["windows"] for k, v in counts[0].items()}
