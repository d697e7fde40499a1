"""Weather data: Jena/TMY3/CSV loaders, sentinels (C07), train-only statistics,
baseline, prepare + cache, C08 through the whole preparation."""

import numpy as np
import pandas as pd
import pytest

from dlpipe.tasks.weather.prepare import (
    SplitSpec,
    baseline_mae,
    clean_sentinels,
    normalize,
    prepare_weather,
)
from dlpipe.tasks.weather.read import (
    JENA_COLUMNS,
    DataFormatError,
    DataSpec,
    from_dataframe,
    load_csv,
    load_jena_csv,
    load_tmy3,
    timestamp_quality,
)
from dlpipe.tasks.weather.windows import SplitTooShortError, WindowSpec, window_rows

from conftest import jena_like, write_jena


def test_jena_loader_reads_published_layout(jena_csv):
    s = load_jena_csv(str(jena_csv))
    assert s.columns == list(JENA_COLUMNS) and s.target == "T (degC)"
    assert s.values.shape == (3000, 14) and s.values.dtype == np.float64
    ref = pd.read_csv(jena_csv)  # independent read of the same file
    np.testing.assert_allclose(s.values, ref[list(JENA_COLUMNS)].to_numpy())
    # day first: 02.01.2009 is January 2nd (row 144 + 143 = 10-minute steps from 00:10)
    assert s.times[0] == np.datetime64("2009-01-01T00:10")
    assert s.times[143] == np.datetime64("2009-01-02T00:00")
    assert s.quality["duplicate_timestamps"] == 0 and s.quality["missing_timestamps"] == 0


def test_jena_bad_timestamp_names_line(tmp_path):
    times = ["01.01.2009 00:10:00", "01.01.2009 00:20:00", "2009-01-01 00:30:00"]
    path = write_jena(tmp_path / "j.csv", jena_like(3), times=times)
    with pytest.raises(DataFormatError, match=r"line 4: column `Date Time`.*2009-01-01 00:30"):
        load_jena_csv(str(path))


def test_jena_month_first_date_is_rejected(tmp_path):
    # 13 cannot be a month: a month-first file fails instead of being misread
    path = write_jena(
        tmp_path / "j.csv", jena_like(2), times=["01.12.2009 00:10:00", "12.13.2009 00:20:00"]
    )
    with pytest.raises(DataFormatError, match="line 3"):
        load_jena_csv(str(path))


def test_jena_not_a_number_names_line_and_column(tmp_path):
    path = write_jena(tmp_path / "j.csv", jena_like(5))
    lines = path.read_text().splitlines()
    fields = lines[3].split(",")
    fields[2] = "warm"
    lines[3] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"line 4: column `T \(degC\)` value 'warm'"):
        load_jena_csv(str(path))


def test_jena_missing_column_in_header(tmp_path):
    path = tmp_path / "j.csv"
    path.write_text('"Date Time","p (mbar)"\n01.01.2009 00:10:00,996.5\n')
    with pytest.raises(DataFormatError, match=r"line 1: missing column"):
        load_jena_csv(str(path))


def test_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_jena_csv(str(tmp_path / "nope.csv"))


def test_duplicate_and_missing_timestamps_counted(tmp_path):
    times = [
        "01.01.2009 00:10:00",
        "01.01.2009 00:20:00",
        "01.01.2009 00:20:00",
        "01.01.2009 00:50:00",
        "01.01.2009 01:00:00",
    ]
    s = load_jena_csv(str(write_jena(tmp_path / "j.csv", jena_like(5), times=times)))
    # one zero step (duplicate), and 00:20 -> 00:50 leaves 00:30 and 00:40 empty
    assert s.quality == {
        "period_s": 600.0,
        "duplicate_timestamps": 1,
        "missing_timestamps": 2,
        "backward_steps": 0,
    }


def test_timestamp_quality_backward_step():
    t = np.array(
        ["2020-01-01T00", "2020-01-01T01", "2020-01-01T00", "2020-01-01T01"], dtype="datetime64[ns]"
    )
    assert timestamp_quality(t)["backward_steps"] == 1


def test_c07_sentinels_found_replaced_and_counted(tmp_path):
    values = jena_like(4)
    wv, max_wv = JENA_COLUMNS.index("wv (m/s)"), JENA_COLUMNS.index("max. wv (m/s)")
    values[:, wv] = [1.0, -9999.0, 2.0, 1.5]
    values[:, max_wv] = [2.0, 3.0, -9999.0, 2.5]
    s = load_jena_csv(str(write_jena(tmp_path / "j.csv", values)))
    cleaned, counts = clean_sentinels(s.values, s.columns)
    # linear interpolation between row neighbours: (1.0 + 2.0) / 2 and (3.0 + 2.5) / 2
    np.testing.assert_allclose(cleaned[:, wv], [1.0, 1.5, 2.0, 1.5])
    np.testing.assert_allclose(cleaned[:, max_wv], [2.0, 3.0, 2.75, 2.5])
    assert counts["wv (m/s)"] == 1 and counts["max. wv (m/s)"] == 1
    assert sum(counts.values()) == 2
    assert not np.any(cleaned == -9999.0)
    assert np.any(s.values == -9999.0)  # the input array is left as it was


def test_c07_one_sentinel_would_inflate_std():
    rng = np.random.default_rng(0)
    wind = np.abs(rng.normal(2.0, 1.0, size=(200_000, 1)))
    wind[12345, 0] = -9999.0
    assert wind.std() > 20  # what the raw statistics would be (~22 m/s)
    cleaned, counts = clean_sentinels(wind, ["wv (m/s)"])
    assert counts == {"wv (m/s)": 1}
    assert abs(cleaned.std() - np.delete(wind, 12345).std()) < 1e-3
    _, mean, std = normalize(cleaned, [(0, 200_000)])
    assert std[0] < 1.0


def test_sentinel_policies_and_edges():
    v = np.array([[-9999.0], [1.0], [np.nan], [3.0], [-9999.0]])
    interp, _ = clean_sentinels(v, ["a"])
    np.testing.assert_allclose(interp[:, 0], [1.0, 1.0, 2.0, 3.0, 3.0])
    ffill, _ = clean_sentinels(v, ["a"], policy="ffill")
    np.testing.assert_allclose(ffill[:, 0], [1.0, 1.0, 1.0, 3.0, 3.0])
    with pytest.raises(ValueError, match="column `b` has no valid value"):
        clean_sentinels(np.full((3, 1), -9999.0), ["b"])
    with pytest.raises(ValueError, match="sentinel_policy"):
        clean_sentinels(v, ["a"], policy="drop")


def test_normalization_uses_training_rows_only():
    train = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]])
    rest = np.array([[100.0, 50.0], [200.0, 60.0]])
    values = np.vstack([train, rest])
    values.setflags(write=False)  # read-only like a Ray array (C14)
    norm, mean, std = normalize(values, [(0, 3)])
    np.testing.assert_allclose(mean, [3.0, 10.0])
    np.testing.assert_allclose(std, [np.sqrt(8 / 3), 1.0])  # constant column -> std 1
    np.testing.assert_allclose(norm[3], [(100 - 3) / np.sqrt(8 / 3), 40.0], rtol=1e-6)
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm[:3].mean(axis=0), 0, atol=1e-7)


def test_baseline_mae_hand_worked():
    # target column values over rows 0..7
    target = np.array([0.0, 1.0, 3.0, 6.0, 10.0, 15.0, 21.0, 28.0], dtype=np.float32)
    data = np.stack([np.zeros(8, np.float32), target], axis=1)
    spec = WindowSpec(lookback=2, step=1, delay=2)
    rows = window_rows(spec, 0, 8)  # t = 1..5
    np.testing.assert_array_equal(rows, [1, 2, 3, 4, 5])
    # |y[t+2] - y[t]| for t = 1..5: |6-1|=5, |10-3|=7, |15-6|=9, |21-10|=11, |28-15|=13
    # -> mean 45 / 5 = 9.0
    assert baseline_mae(data, rows, spec, target_column=1) == pytest.approx(9.0)


def test_split_bounds():
    assert SplitSpec(train_fraction=0.5, validation_fraction=0.25).bounds(8) == {
        "train": [(0, 4)],
        "validation": [(4, 6)],
        "test": [(6, 8)],
    }
    # the book's Jena split, by end rows
    b = SplitSpec(train_end=200_000, validation_end=300_000).bounds(420_551)
    assert b["validation"] == [(200_000, 300_000)] and b["test"] == [(300_000, 420_551)]
    with pytest.raises(ValueError, match="blocks"):
        SplitSpec(train_end=10, validation_end=20, blocks=2).bounds(100)


def test_blocked_split_covers_every_block():
    # 2 blocks of 10 rows, each 60/20/20
    b = SplitSpec(train_fraction=0.6, validation_fraction=0.2, blocks=2).bounds(20)
    assert b == {
        "train": [(0, 6), (10, 16)],
        "validation": [(6, 8), (16, 18)],
        "test": [(8, 10), (18, 20)],
    }
    covered = sorted(r for segs in b.values() for a, z in segs for r in range(a, z))
    assert covered == list(range(20))  # a partition of the rows


def test_blocked_split_statistics_and_windows(tmp_path):
    values = np.arange(40, dtype=np.float64)[:, None] * np.ones((1, 14))
    path = write_jena(tmp_path / "j.csv", values)
    spec = DataSpec(format="jena", path=str(path))
    split = SplitSpec(train_fraction=0.5, validation_fraction=0.25, blocks=2)
    prepared = prepare_weather(spec, split, WindowSpec(lookback=2, step=1, delay=1))
    # train rows are 0-9 and 20-29: mean 14.5 (not 9.5 or 19.5), std of those rows
    train_rows = np.r_[0:10, 20:30].astype(float)
    np.testing.assert_allclose(prepared.meta["mean"][1], train_rows.mean())
    np.testing.assert_allclose(prepared.meta["std"][1], train_rows.std())
    assert prepared.meta["splits"]["validation"] == [[10, 15], [30, 35]]
    from dlpipe.tasks.weather.windows import split_window_rows

    rows = split_window_rows(
        WindowSpec(lookback=2, step=1, delay=1),
        prepared.meta["splits"]["validation"],
        split="validation",
    )
    # per segment t from start + 1 to stop - 2: 11..13 and 31..33, never across blocks
    np.testing.assert_array_equal(rows, [11, 12, 13, 31, 32, 33])
    from dlpipe.tasks.weather.windows import check_blocks

    with pytest.raises(SplitTooShortError, match=r"split `validation` \(block 1 of 2\) has 5"):
        check_blocks(
            WindowSpec(lookback=4, step=1, delay=2),
            prepared.meta["blocks"]["validation"],
            split="validation",
        )
    # the windows of a split made of segments: none fits -> the longest is named
    with pytest.raises(
        SplitTooShortError,
        match=r"split `validation` has no window.*longest "
        r"\(segment 1 of 2\) has 5 rows but one window needs 6 rows",
    ):
        split_window_rows(
            WindowSpec(lookback=4, step=1, delay=2),
            prepared.meta["splits"]["validation"],
            split="validation",
        )
    with pytest.raises(ValueError, match="either"):
        SplitSpec(train_fraction=0.5, train_end=10).bounds(100)
    with pytest.raises(ValueError, match="sum < 1"):
        SplitSpec(train_fraction=0.8, validation_fraction=0.3).bounds(100)


def test_generic_csv_and_dataframe(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text(
        "when,temp,wind\n2021-03-01 00:00,1.5,3\n2021-03-01 01:00,2.5,-9999\n"
        "2021-03-01 03:00,3.5,5\n"
    )
    s = load_csv(
        str(path),
        time_column="when",
        time_format="%Y-%m-%d %H:%M",
        columns=["temp", "wind"],
        target="temp",
    )
    np.testing.assert_allclose(s.values[:, 0], [1.5, 2.5, 3.5])
    assert s.quality["missing_timestamps"] == 1
    frame = pd.DataFrame(
        {"when": pd.date_range("2021-01-01", periods=3, freq="h"), "temp": [1.0, 2.0, 3.0]}
    )
    s2 = from_dataframe(frame, time_column="when", time_format="", columns=["temp"], target="temp")
    np.testing.assert_allclose(s2.values[:, 0], [1.0, 2.0, 3.0])
    with pytest.raises(DataFormatError, match="line 3"):
        bad = tmp_path / "bad.csv"
        bad.write_text("when,temp\n2021-03-01 00:00,1\n01/03/2021 01:00,2\n")
        load_csv(
            str(bad),
            time_column="when",
            time_format="%Y-%m-%d %H:%M",
            columns=["temp"],
            target="temp",
        )


def test_tmy3_loader_on_pvlib_file():
    s = load_tmy3("pvlib:723170TYA.CSV")
    assert s.values.shape == (8760, 11)
    assert s.target == "Dry-bulb (C)"
    assert s.times[0] == np.datetime64("1990-01-01T01:00")
    assert s.quality["missing_timestamps"] == 0 and s.quality["duplicate_timestamps"] == 0
    # months come from several source years; each change of year is a stitch
    years = s.quality["tmy_source_years"]
    assert len(years) >= 2 and 1 <= s.quality["tmy_stitches"] <= 11
    # independent check of the first temperature: the third line of the raw file
    import pvlib

    raw = pvlib.__path__[0] + "/data/723170TYA.CSV"
    with open(raw) as f:
        header = f.readlines()[1].split(",")
    with open(raw) as f:
        first = f.readlines()[2].split(",")
    assert s.values[0, 0] == float(first[header.index("Dry-bulb (C)")])


def test_prepare_weather_caches_and_checks_splits(tmp_path, jena_csv):
    spec = DataSpec(format="jena", path=str(jena_csv))
    split = SplitSpec(train_fraction=0.5, validation_fraction=0.25)
    windows = WindowSpec(lookback=60, step=6, delay=12)
    first = prepare_weather(spec, split, windows, cache_dir=str(tmp_path / "cache"))
    assert first.data.dtype == np.float32 and first.data.shape == (3000, 14)
    assert first.meta["splits"] == {
        "train": [[0, 1500]],
        "validation": [[1500, 2250]],
        "test": [[2250, 3000]],
    }
    np.testing.assert_allclose(
        first.meta["mean"], pd.read_csv(jena_csv).iloc[:1500, 1:].mean().to_numpy(), rtol=1e-9
    )
    cached = list((tmp_path / "cache").glob("dataset-*.npz"))
    assert len(cached) == 1
    again = prepare_weather(spec, split, windows, cache_dir=str(tmp_path / "cache"))
    np.testing.assert_array_equal(again.data, first.data)
    assert again.meta == first.meta


def test_c08_prepare_rejects_short_split(tmp_path):
    path = write_jena(tmp_path / "short.csv", jena_like(100))
    spec = DataSpec(format="jena", path=str(path))
    with pytest.raises(SplitTooShortError, match=r"split `train` has 50 rows.*1579 rows"):
        prepare_weather(
            spec,
            SplitSpec(train_fraction=0.5, validation_fraction=0.25),
            WindowSpec(lookback=1440, step=6, delay=144),
        )
