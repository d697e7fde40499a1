"""Time-axis repair of a series meant to be regular: order, repeated stamps, gaps.

Plain numpy, no files: :mod:`dlpipe.tasks.weather.prepare` calls :func:`regularize` after a
reader has parsed the times and before the sentinel policy runs. The rules (README,
"Weather data: time axis"):

1. **Rows out of time order** are sorted by time (a stable sort, so rows with equal
   stamps keep their file order); the rows stamped earlier than a row above them in
   the file are counted (one late row = 1, a shuffled file = most rows).
2. **Repeated timestamps**: the first row of each stamp in file order is kept, the
   others are dropped and counted; those whose values differ from the kept row are
   counted apart (``conflicting``). No tolerance and no refusal: the real Jena record
   has repeated stamps, and one row per stamp is what a regular series can hold.
3. **Period**: the most common step between consecutive (sorted, distinct) stamps.
4. **Gaps**: a step of ``k`` periods leaves ``k - 1`` missing slots. A gap of at most
   ``max_gap`` slots is *filled*: rows of NaN are inserted at the missing stamps and the
   sentinel policy repairs them like any missing value. A longer gap, or a step that is
   not a whole number of periods, is a **break**: the series is cut there and no
   window is ever built across it (:func:`cut_segments`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RegularSeries:
    """Output of :func:`regularize`.

    Attributes:
        times: datetime64[ns] (rows,), strictly increasing.
        values: float64 (rows, features); inserted (filled) rows hold NaN.
        breaks: int64 row indices where a new run of equally spaced rows starts (the
            row after a cut gap or irregular step), ascending; empty when none.
        counts: ``rows_out_of_order`` (rows stamped earlier than a row above them in
            the file), ``duplicates_dropped``,
            ``duplicates_conflicting``, ``period_s``, ``gaps`` (steps longer than one
            period), ``missing_slots`` (slots those gaps leave empty),
            ``gaps_filled``/``slots_filled`` (at most ``max_gap`` slots),
            ``gaps_cut`` (longer gaps), ``irregular_steps`` (not a whole number of
            periods; cut too), ``max_gap``.
    """

    times: np.ndarray
    values: np.ndarray
    breaks: np.ndarray
    counts: dict = field(default_factory=dict)


def regularize(times: np.ndarray, values: np.ndarray, *, max_gap: int = 0) -> RegularSeries:
    """Sort by time, keep the first row of each repeated stamp, fill short gaps, find breaks.

    Args:
        times: datetime64 (rows,), in file order.
        values: float (rows, features), in file order (not modified).
        max_gap: fill gaps of up to this many missing slots (inserted rows of NaN);
            0 fills none.

    Returns:
        A :class:`RegularSeries`. With sorted, distinct, equally spaced input the
        times and values come back unchanged (values as float64) and ``breaks`` is
        empty.

    Raises:
        ValueError: ``max_gap`` < 0, or ``times`` and ``values`` disagree in length.
    """
    if max_gap < 0:
        raise ValueError(f"`data.max_gap` must be >= 0. Received: max_gap={max_gap}")
    values = np.asarray(values, dtype=np.float64)
    if len(times) != len(values):
        raise ValueError(f"{len(times)} timestamps for {len(values)} rows")
    t = np.asarray(times).astype("datetime64[ns]").astype(np.int64)
    n = len(t)
    moved = int(np.count_nonzero(t[1:] < np.maximum.accumulate(t)[:-1])) if n else 0
    if moved:
        order = np.argsort(t, kind="stable")
        t, values = t[order], values[order]
    keep = np.ones(n, dtype=bool)
    keep[1:] = t[1:] != t[:-1]
    dropped = np.flatnonzero(~keep)
    conflicting = 0
    if len(dropped):
        kept_of = np.maximum.accumulate(np.where(keep, np.arange(n), 0))[dropped]
        a, b = values[dropped], values[kept_of]
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        conflicting = int(np.count_nonzero(~same.all(axis=1)))
        t, values = t[keep], values[keep]
    counts = {
        "rows_out_of_order": moved,
        "duplicates_dropped": int(len(dropped)),
        "duplicates_conflicting": conflicting,
        "period_s": float("nan"),
        "gaps": 0,
        "missing_slots": 0,
        "gaps_filled": 0,
        "slots_filled": 0,
        "gaps_cut": 0,
        "irregular_steps": 0,
        "max_gap": int(max_gap),
    }
    if len(t) < 2:
        return RegularSeries(t.astype("datetime64[ns]"), values, np.empty(0, np.int64), counts)
    d = np.diff(t)
    steps, freq = np.unique(d, return_counts=True)
    period = int(steps[freq.argmax()])
    whole = d % period == 0
    k = d // period  # periods per step
    gap = whole & (k > 1)
    fill = gap & (k - 1 <= max_gap)
    cut = (gap & ~fill) | ~whole
    extra = np.where(fill, k - 1, 0)
    counts.update(
        period_s=period / 1e9,
        gaps=int(gap.sum()),
        missing_slots=int((k - 1)[gap].sum()),
        gaps_filled=int(fill.sum()),
        slots_filled=int(extra.sum()),
        gaps_cut=int((gap & ~fill).sum()),
        irregular_steps=int((~whole).sum()),
    )
    pos = np.arange(len(t), dtype=np.int64)
    pos[1:] += np.cumsum(extra)
    if extra.any():
        total = len(t) + int(extra.sum())
        new_values = np.full((total, values.shape[1]), np.nan)
        new_values[pos] = values
        new_t = np.empty(total, dtype=np.int64)
        new_t[pos] = t
        inserted = np.ones(total, dtype=bool)
        inserted[pos] = False
        owner = np.maximum.accumulate(np.where(inserted, -1, np.arange(total)))[inserted]
        new_t[inserted] = new_t[owner] + (np.flatnonzero(inserted) - owner) * period
        t, values = new_t, new_values
    breaks = pos[1:][cut]
    return RegularSeries(t.astype("datetime64[ns]"), values, breaks.astype(np.int64), counts)


def cut_segments(segments, breaks) -> list[list[int]]:
    """Cut row segments at breaks, so that no segment holds rows on both sides of one.

    Args:
        segments: ``[(start, stop), ...]`` row ranges (stop exclusive).
        breaks: ascending row indices where a new run of equally spaced rows starts.

    Returns:
        ``[[start, stop], ...]``: each segment split at every break strictly inside it,
        in order; a segment with no break inside comes back unchanged.
    """
    breaks = np.asarray(breaks, dtype=np.int64)
    out: list[list[int]] = []
    for start, stop in segments:
        inner = breaks[(breaks > start) & (breaks < stop)].tolist()
        edges = [int(start)] + inner + [int(stop)]
        out.extend([a, b] for a, b in zip(edges[:-1], edges[1:]))
    return out
