"""Windows: the target convention, bit-identical batches, shuffling, case C08."""

import numpy as np
import pytest

from dlpipe.tasks.weather.windows import SplitTooShortError, WindowBatches, WindowSpec, window_rows


def row_index_data(rows=60, features=3):
    """Data whose value equals its row index (every column), float32."""
    return np.repeat(np.arange(rows, dtype=np.float32)[:, None], features, axis=1)


def test_target_convention_on_row_index_data():
    # lookback 6 rows, step 2 -> inputs t-4, t-2, t ; target t+3
    spec = WindowSpec(lookback=6, step=2, delay=3, batch_size=4)
    data = row_index_data(20)
    rows = window_rows(spec, 0, 20)
    # first window: earliest input row t-4 >= 0 -> t = 4; last: t + 3 <= 19 -> t = 16
    assert rows[0] == 4 and rows[-1] == 16 and len(rows) == 13
    x, y = WindowBatches(data, rows, spec, target_column=1).batch(0)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert x.shape == (4, 3, 3) and y.shape == (4, 1)
    np.testing.assert_array_equal(x[0, :, 0], [0, 2, 4])  # oldest first, newest = t
    np.testing.assert_array_equal(x[1, :, 2], [1, 3, 5])
    np.testing.assert_array_equal(y[:, 0], [7, 8, 9, 10])  # t + delay
    # the last input row and the target are exactly `delay` rows apart
    np.testing.assert_array_equal(y[:, 0] - x[:, -1, 0], 3)


def test_window_count_and_rows_needed():
    spec = WindowSpec(lookback=1440, step=6, delay=144)
    assert spec.timesteps == 240
    assert spec.rows_needed == 1440 - 6 + 1 + 144
    assert len(window_rows(spec, 0, spec.rows_needed)) == 1
    assert len(window_rows(spec, 100, 100 + 2000)) == 2000 - (1440 - 6 + 144)


def test_windows_stay_inside_their_split():
    spec = WindowSpec(lookback=4, step=1, delay=2)
    rows = window_rows(spec, 10, 30, split="validation")
    assert rows.min() - spec.lookback + spec.step >= 10
    assert rows.max() + spec.delay <= 29


def slow_reference(data, rows, spec, target_column):
    """The book's generator logic written as a plain loop (ch. 6.3.2), our convention."""
    xs, ys = [], []
    for t in rows:
        idx = list(range(t - spec.lookback + spec.step, t + 1, spec.step))
        xs.append(np.array([data[i] for i in idx], dtype=np.float32))
        ys.append(np.float32(data[t + spec.delay][target_column]))
    return np.stack(xs), np.array(ys, dtype=np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batches_bit_identical_to_slow_loop(dtype):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(500, 5)).astype(dtype)
    spec = WindowSpec(lookback=60, step=6, delay=12, batch_size=32)
    rows = window_rows(spec, 0, 500)
    batches = WindowBatches(data, rows, spec, target_column=1)
    xs, ys = zip(*batches)
    ref_x, ref_y = slow_reference(data, rows, spec, 1)
    np.testing.assert_array_equal(np.concatenate(xs), ref_x)
    np.testing.assert_array_equal(np.concatenate(ys)[:, 0], ref_y)
    assert len(batches) == -(-len(rows) // 32)  # partial last batch kept


def test_training_windows_shuffled_and_reshuffled_validation_in_order():
    data = row_index_data(300, 2)
    spec = WindowSpec(lookback=10, step=1, delay=5, batch_size=16)
    rows = window_rows(spec, 0, 300)
    train = WindowBatches(data, rows, spec, target_column=0, shuffle=True, seed=1)
    first = train.rows.copy()
    assert sorted(first) == list(rows) and not np.array_equal(first, rows)
    train.on_epoch_end()
    assert not np.array_equal(first, train.rows)
    val = WindowBatches(data, rows, spec, target_column=0)
    np.testing.assert_array_equal(val.rows, rows)
    np.testing.assert_array_equal(val.targets(), rows + 5)


def test_read_only_input_is_not_modified_c14():
    data = row_index_data(100, 2)
    data.setflags(write=False)  # as an array coming back from Ray's object store
    spec = WindowSpec(lookback=8, step=2, delay=4, batch_size=8)
    batches = WindowBatches(data, window_rows(spec, 0, 100), spec, target_column=0, shuffle=True)
    x, _ = batches.batch(0)
    x += 1  # batches are fresh buffers, safe to change
    np.testing.assert_array_equal(data[:, 0], np.arange(100))


def test_c08_split_too_short_names_split_rows_present_and_needed():
    spec = WindowSpec(lookback=1440, step=6, delay=144)
    with pytest.raises(SplitTooShortError) as info:
        window_rows(spec, 0, 100, split="validation")
    message = str(info.value)
    assert "`validation`" in message
    assert "100 rows" in message
    assert f"{1440 - 6 + 1 + 144} rows" in message
    # one row fewer than needed fails, exactly enough gives one window
    with pytest.raises(SplitTooShortError):
        window_rows(spec, 0, spec.rows_needed - 1)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(lookback=0, step=1, delay=1), "lookback"),
        (dict(lookback=10, step=3, delay=1), "multiple"),
        (dict(lookback=10, step=2, delay=-1), "delay"),
        (dict(lookback=10, step=2, delay=1, batch_size=2.5), "batch_size"),
    ],
)
def test_bad_window_spec(kwargs, field):
    with pytest.raises(ValueError, match=field):
        WindowSpec(**kwargs)


def test_split_window_rows_skips_short_segments_and_counts():
    """Segments cut at gaps in time: a short one yields no window, none crosses a cut."""
    from dlpipe.tasks.weather.windows import check_blocks, count_windows, split_window_rows

    spec = WindowSpec(lookback=4, step=2, delay=1)  # one window needs 4 - 2 + 1 + 1 = 4 rows
    # rows 0-9 | 10-12 (3 rows, too short) | 13-19
    segments = [[0, 10], [10, 13], [13, 20]]
    rows = split_window_rows(spec, segments, split="train")
    # per segment t from start + 2 to stop - 2: 2..8 and 15..18
    np.testing.assert_array_equal(rows, [2, 3, 4, 5, 6, 7, 8, 15, 16, 17, 18])
    assert count_windows(spec, segments) == len(rows) == 11
    assert count_windows(spec, [[0, 20]]) == 17  # 6 more windows if nothing were cut
    for t in rows:  # every window's rows (t-2, t, t+1) lie in one segment
        assert sum(a <= t - 2 and t + 1 < b for a, b in segments) == 1
    check_blocks(spec, [[0, 20]], split="train")
    with pytest.raises(SplitTooShortError, match=r"split `test` \(block 2 of 2\) has 3 rows"):
        check_blocks(spec, [[0, 10], [10, 13]], split="test")


def test_window_gather_speed_unchanged_by_segments():
    """The same gather serves cut segments: batches are bit-identical to the row loop."""
    from dlpipe.tasks.weather.windows import split_window_rows

    rng = np.random.default_rng(1)
    data = rng.normal(size=(300, 4)).astype(np.float32)
    spec = WindowSpec(lookback=12, step=3, delay=6, batch_size=16)
    rows = split_window_rows(spec, [[0, 100], [100, 110], [110, 300]])
    xs, ys = zip(*WindowBatches(data, rows, spec, target_column=2))
    ref_x, ref_y = slow_reference(data, rows, spec, 2)
    np.testing.assert_array_equal(np.concatenate(xs), ref_x)
    np.testing.assert_array_equal(np.concatenate(ys)[:, 0], ref_y)
