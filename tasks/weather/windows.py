"""Timeseries windows (book ch. 6.3.2), generated from one array by index gather.

Convention (the *target convention*, tested on data whose value equals its row index):

* a window is identified by its **last input row** ``t``;
* its inputs are the ``n = lookback // step`` rows ``t - lookback + step, ...,
  t - step, t`` (one sample every ``step`` rows, the newest last);
* its target is ``data[t + delay, target_column]``: ``delay`` rows after the last
  input row.

With the book's Jena settings (``lookback=1440``, ``step=6``, ``delay=144``, one row
every 10 minutes) a window holds 240 hourly samples covering the last 10 days and the
target is the temperature 24 hours after the last sample.

One window needs ``lookback - step + 1 + delay`` consecutive rows; a split with ``R``
rows yields ``R - (lookback - step + delay)`` windows. Windows never cross a split
boundary, nor a gap in time (a split is a list of segments of equally spaced rows,
see :func:`split_window_rows`). No window is ever copied out of the array ahead of
time: a batch is built by one gather ``data[rows[:, None] + offsets]`` into a float32
buffer, so memory stays O(rows x features) whatever the number of windows (they
overlap almost entirely).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry in rows of the underlying array.

    Attributes:
        lookback: how far back a window reaches, in rows (timesteps); a multiple of
            ``step``. Jena: 1440 rows = 10 days at 10 minutes a row.
        step: sampling period inside a window, in rows (Jena: 6 = one per hour).
        delay: rows between the last input row and the target row (Jena: 144 = 24 h).
        batch_size: windows per batch (book: 128).
    """

    lookback: int
    step: int
    delay: int
    batch_size: int = 128

    def __post_init__(self):
        for name in ("lookback", "step", "delay", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        if self.lookback % self.step:
            raise ValueError(
                "`lookback` must be a multiple of `step`. "
                f"Received: lookback={self.lookback}, step={self.step}"
            )

    @property
    def timesteps(self) -> int:
        """Samples per window: ``lookback // step``."""
        return self.lookback // self.step

    @property
    def rows_needed(self) -> int:
        """Consecutive rows one window needs: ``lookback - step + 1 + delay``."""
        return self.lookback - self.step + 1 + self.delay

    @property
    def offsets(self) -> np.ndarray:
        """Row offsets of a window's inputs relative to its last input row, int64 (n,)."""
        return np.arange(-self.lookback + self.step, 1, self.step, dtype=np.int64)


class SplitTooShortError(ValueError):
    """A split has fewer rows than one window needs (shared case C08)."""


def window_rows(
    spec: WindowSpec, start: int, stop: int, *, split: str = "split", block: str = ""
) -> np.ndarray:
    """Last-input rows ``t`` of every window that fits inside rows ``[start, stop)``.

    Args:
        spec: the window geometry.
        start: first row of the split (inclusive).
        stop: end row of the split (exclusive).
        split: the split's name, used in the error message.
        block: e.g. ``"block 2 of 4"`` for a split made of several segments (message).

    Returns:
        int64 array (num_windows,), ascending: ``t`` such that all inputs
        ``t - lookback + step ... t`` and the target row ``t + delay`` lie in the split.

    Raises:
        SplitTooShortError: the split has fewer than ``spec.rows_needed`` rows (case C08).
    """
    rows_present = stop - start
    if rows_present < spec.rows_needed:
        raise SplitTooShortError(
            f"split `{split}`{f' ({block})' if block else ''} has {rows_present} rows but one "
            f"window needs "
            f"{spec.rows_needed} rows (lookback {spec.lookback} - step {spec.step} + 1 + "
            f"delay {spec.delay}); lower lookback/delay or give the split more rows"
        )
    first = start + spec.lookback - spec.step
    last = stop - 1 - spec.delay
    return np.arange(first, last + 1, dtype=np.int64)


def split_window_rows(spec: WindowSpec, segments, *, split: str = "split") -> np.ndarray:
    """Last-input rows of every window of a split made of one or more segments.

    A segment is a run of consecutive, equally spaced rows: a block of a blocked split
    (:class:`dlpipe.tasks.weather.prepare.SplitSpec`), or the part of one between two
    gaps in time (:func:`dlpipe.tasks.weather.time_axis.cut_segments`). No window crosses a
    segment boundary. A segment shorter than one window yields none (a short run
    between gaps); the split as a whole must yield at least one (case C08). The
    per-block rule of a blocked split is :func:`check_blocks`.

    Args:
        spec: the window geometry.
        segments: ``[(start, stop), ...]`` row ranges of the split (stop exclusive).
        split: the split's name, used in the error message.

    Returns:
        int64 array, the rows of each segment in order.

    Raises:
        SplitTooShortError: no segment holds one window (case C08); a single segment
            is named as a split, several by their number and the longest one's rows.
    """
    if len(segments) == 1:
        ((start, stop),) = segments
        return window_rows(spec, start, stop, split=split)
    parts = [
        window_rows(spec, start, stop, split=split)
        for start, stop in segments
        if stop - start >= spec.rows_needed
    ]
    if not parts:
        lengths = [stop - start for start, stop in segments] or [0]
        longest = int(np.argmax(lengths))
        raise SplitTooShortError(
            f"split `{split}` has no window: none of its {len(segments)} segments (blocks, "
            f"or runs of equally spaced rows between gaps in time) is long enough; the "
            f"longest (segment {longest + 1} of {len(segments)}) has {lengths[longest]} "
            f"rows but one window needs {spec.rows_needed} rows (lookback {spec.lookback} "
            f"- step {spec.step} + 1 + delay {spec.delay})"
        )
    return np.concatenate(parts)


def check_blocks(spec: WindowSpec, blocks, *, split: str = "split") -> None:
    """Every block of a split holds at least one window (case C08, blocked splits).

    Args:
        spec: the window geometry.
        blocks: ``[(start, stop), ...]`` the split's blocks before any cut at a gap.
        split: the split's name, used in the error message.

    Raises:
        SplitTooShortError: a block is shorter than one window; with several blocks
            the message names the block (``block 2 of 4``).
    """
    for i, (start, stop) in enumerate(blocks):
        block = f"block {i + 1} of {len(blocks)}" if len(blocks) > 1 else ""
        window_rows(spec, start, stop, split=split, block=block)


def window_inputs(data: np.ndarray, rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The inputs of the windows whose last input rows are ``rows``, by one gather.

    Args:
        data: (rows, features) array, any float dtype (never modified).
        rows: int64 (b,) last input rows ``t``.
        offsets: the geometry's :attr:`WindowSpec.offsets` (timesteps,).

    Returns:
        float32 (b, timesteps, features): ``data[t + offsets]`` per window.
    """
    idx = rows[:, None] + offsets  # (b, timesteps) row numbers
    x = np.empty((len(rows), len(offsets), data.shape[1]), dtype=np.float32)
    if data.dtype == np.float32:
        # indices are in range by construction; "clip" avoids numpy's buffered copy
        np.take(data, idx, axis=0, out=x, mode="clip")
    else:
        x[...] = data[idx]
    return x


def forecast_rows(spec: WindowSpec, segments) -> np.ndarray:
    """Last input rows ``t`` of every window whose inputs lie in one segment, the
    target (``t + delay``) not needed: the windows a forecast is made from.

    Args:
        spec: the window geometry.
        segments: ``[(start, stop), ...]`` runs of equally spaced rows (stop exclusive).

    Returns:
        int64 (windows,), ascending: ``t`` with ``t - lookback + step >= start`` and
        ``t < stop`` in its segment (a segment of ``R`` rows gives
        ``max(0, R - (lookback - step))``); empty when no segment holds one window's
        inputs.
    """
    reach = spec.lookback - spec.step
    parts = [np.arange(a + reach, b, dtype=np.int64) for a, b in segments if b - a > reach]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def count_windows(spec: WindowSpec, segments) -> int:
    """Number of windows that fit in the segments, none crossing a boundary, int.

    A segment of ``R`` rows holds ``max(0, R - (lookback - step + delay))`` windows.
    """
    reach = spec.rows_needed - 1
    return int(sum(max(0, stop - start - reach) for start, stop in segments))


class WindowBatches:
    """Batches of windows over one 2-D array, built on demand by index gather.

    Args:
        data: (rows, features) array, any float dtype; never modified (it may be a
            read-only array from Ray's object store, case C14).
        rows: last-input rows of the windows to serve (from :func:`window_rows`).
        spec: window geometry.
        target_column: column index of the target in ``data``.
        shuffle: reshuffle the window order at every :meth:`on_epoch_end` (training
            split); validation/test keep time order.
        seed: seed of the shuffling generator.
        max_batches: cap on batches per epoch (smoke tests), ``None`` for all.

    ``batch(i)`` returns ``(x, y)``: x float32 (b, timesteps, features), y float32 (b, 1).
    """

    def __init__(
        self,
        data: np.ndarray,
        rows: np.ndarray,
        spec: WindowSpec,
        *,
        target_column: int,
        shuffle: bool = False,
        seed: int = 0,
        max_batches: int | None = None,
    ):
        if data.ndim != 2:
            raise ValueError(f"`data` must be 2-D (rows, features). Received: shape={data.shape}")
        if not 0 <= target_column < data.shape[1]:
            raise ValueError(
                f"`target_column` must be in [0, {data.shape[1]}). Received: {target_column}"
            )
        self.data = data
        self.spec = spec
        self.target_column = target_column
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._rows = np.asarray(rows, dtype=np.int64)
        self._order = self._rows.copy()
        if shuffle:
            self._rng.shuffle(self._order)
        self._offsets = spec.offsets
        self.max_batches = max_batches
        n = -(-len(self._rows) // spec.batch_size)
        self.num_batches = n if max_batches is None else min(n, max_batches)

    def __len__(self) -> int:
        return self.num_batches

    @property
    def rows(self) -> np.ndarray:
        """Last-input rows in serving order for this epoch (int64)."""
        return self._order[: self.num_samples]

    @property
    def num_samples(self) -> int:
        """Windows served per epoch (after ``max_batches``)."""
        return min(len(self._order), self.num_batches * self.spec.batch_size)

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``index``-th batch: x float32 (b, timesteps, features), y float32 (b, 1)."""
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch index {index} out of range [0, {self.num_batches})")
        b = self.spec.batch_size
        t = self._order[index * b : (index + 1) * b]
        x = window_inputs(self.data, t, self._offsets)
        y = self.data[t + self.spec.delay, self.target_column].astype(np.float32)[:, None]
        return x, y

    def targets(self) -> np.ndarray:
        """Targets of the served windows in serving order, float32 (num_samples,)."""
        return self.data[self.rows + self.spec.delay, self.target_column].astype(np.float32)

    def on_epoch_end(self) -> None:
        """Draw a new window order (training split only)."""
        if self.shuffle:
            self._rng.shuffle(self._order)

    def __iter__(self):
        for i in range(self.num_batches):
            yield self.batch(i)
