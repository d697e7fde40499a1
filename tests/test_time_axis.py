"""Time-axis repair (issue 12): sorting, repeated stamps, gap filling and cuts."""

import numpy as np
import pytest

from dlpipe.tasks.weather.time_axis import cut_segments, regularize


def hours(*h):
    return np.datetime64("2021-01-01T00:00", "ns") + np.array(h) * np.timedelta64(1, "h")


def test_regular_series_comes_back_unchanged():
    t = hours(0, 1, 2, 3)
    v = np.arange(8.0).reshape(4, 2)
    r = regularize(t, v)
    np.testing.assert_array_equal(r.times, t)
    np.testing.assert_array_equal(r.values, v)
    assert len(r.breaks) == 0 and r.counts["period_s"] == 3600.0
    assert r.counts["rows_out_of_order"] == 0 and r.counts["duplicates_dropped"] == 0


def test_sort_keep_first_fill_and_cut_hand_worked():
    # file order: 0, 2, 1, 1 (repeat, other value), 1 (repeat, same), 3, 6, 7, 12, 13
    t = hours(0, 2, 1, 1, 1, 3, 6, 7, 12, 13)
    v = np.array([[0.0], [2.0], [1.0], [9.0], [1.0], [3.0], [6.0], [7.0], [12.0], [13.0]])
    r = regularize(t, v, max_gap=2)
    # the three rows stamped 1 come after the one stamped 2: three rows out of order
    assert r.counts["rows_out_of_order"] == 3
    assert (r.counts["duplicates_dropped"], r.counts["duplicates_conflicting"]) == (2, 1)
    # steps after sorting: 1,1,1,3 (2 slots: filled),1,5 (4 slots > 2: cut),1
    assert (r.counts["gaps"], r.counts["missing_slots"]) == (2, 6)
    assert (r.counts["gaps_filled"], r.counts["slots_filled"], r.counts["gaps_cut"]) == (1, 2, 1)
    np.testing.assert_array_equal(r.times, hours(0, 1, 2, 3, 4, 5, 6, 7, 12, 13))
    np.testing.assert_array_equal(r.values[:, 0], [0, 1, 2, 3, np.nan, np.nan, 6, 7, 12, 13])
    np.testing.assert_array_equal(r.breaks, [8])  # row of hour 12 starts a new run
    assert np.array_equal(v[:, 0], [0, 2, 1, 9, 1, 3, 6, 7, 12, 13])  # input untouched


def test_irregular_step_is_cut_never_filled():
    t = np.datetime64("2021-01-01T00:00", "ns") + np.array(
        [0, 10, 20, 25, 30, 40]
    ) * np.timedelta64(1, "m")
    r = regularize(t, np.zeros((6, 1)), max_gap=10)
    assert r.counts["period_s"] == 600.0 and r.counts["irregular_steps"] == 2
    np.testing.assert_array_equal(r.breaks, [3, 4])  # 20 -> 25 and 25 -> 30
    assert len(r.times) == 6


def test_cut_segments():
    assert cut_segments([(0, 10), (10, 20)], [5, 10, 15, 19]) == [
        [0, 5],
        [5, 10],
        [10, 15],
        [15, 19],
        [19, 20],
    ]
    assert cut_segments([(0, 10)], []) == [[0, 10]]
    with pytest.raises(ValueError, match="max_gap"):
        regularize(hours(0, 1), np.zeros((2, 1)), max_gap=-1)
