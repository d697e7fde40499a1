"""Weather files as people have them (issue 12, shared cases C19, C20, C23): UTC offsets
across DST, missing-value spellings, non-finite numbers, repeated / missing / shuffled
timestamps, empty files, cheap checks before Ray, the generic CSV example study."""

import re
import shutil
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from dlpipe.pipelines.kinds.timeseries import dataset_row
from dlpipe.tasks.weather.prepare import SplitSpec, prepare_weather
from dlpipe.tasks.weather.read import (
    JENA_COLUMNS,
    DataFormatError,
    DataSpec,
    check_weather_source,
    load_csv,
)
from dlpipe.tasks.weather.windows import WindowBatches, WindowSpec, split_window_rows

from conftest import jena_like, write_jena

BERLIN_FORMAT = "%Y-%m-%d %H:%M:%S%z"
UTC_START = datetime(2021, 10, 23, 22, 0, tzinfo=timezone.utc)  # 24 Oct 00:00 in Berlin


def report_row(meta):
    """The ``datasets`` row as the Parquet table stores it (fixed schema, JSON cells)."""
    import json

    from dlpipe.tasks.reports import tables as reports

    table = reports.make_table("datasets", [dataset_row(meta)]).to_pylist()[0]
    return {
        k: json.loads(v) if k in ("splits", "sentinel_counts", "quality") else v
        for k, v in table.items()
    }


def write_berlin(path, rows=400, temps=None):
    """Hourly Europe/Berlin local stamps written with their offset (what a logger
    in Germany writes), crossing the autumn DST change of 2021-10-31."""
    temps = np.arange(rows, dtype=float) / 10 if temps is None else temps
    lines = ["time,temp,rh"]
    for i in range(rows):
        local = (UTC_START + timedelta(hours=i)).astimezone(ZoneInfo("Europe/Berlin"))
        lines.append(f"{local.strftime(BERLIN_FORMAT)},{temps[i]},{50 + i % 7}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_c19_dst_offsets_parse_to_utc(tmp_path):
    path = write_berlin(tmp_path / "berlin.csv")
    text = path.read_text()
    # the file really holds the repeated local hour with two offsets
    assert "2021-10-31 02:00:00+0200" in text and "2021-10-31 02:00:00+0100" in text
    s = load_csv(
        str(path),
        time_column="time",
        time_format=BERLIN_FORMAT,
        columns=["temp", "rh"],
        target="temp",
    )
    expected = np.datetime64("2021-10-23T22:00", "ns") + np.arange(400) * np.timedelta64(1, "h")
    np.testing.assert_array_equal(s.times, expected)
    spec = DataSpec(
        format="csv",
        path=str(path),
        time_column="time",
        time_format=BERLIN_FORMAT,
        columns=("temp", "rh"),
        target="temp",
    )
    prepared = prepare_weather(
        spec,
        SplitSpec(train_fraction=0.5, validation_fraction=0.25),
        WindowSpec(lookback=24, step=1, delay=6),
    )
    q = prepared.meta["quality"]
    assert prepared.meta["rows"] == 400 and q["period_s"] == 3600.0
    assert q["duplicates_dropped"] == 0 and q["missing_slots"] == 0 and q["gaps"] == 0
    assert np.all(np.diff(prepared.times) == np.timedelta64(1, "h"))


def test_c19_malformed_stamp_names_file_line_column(tmp_path):
    path = write_berlin(tmp_path / "berlin.csv")
    lines = path.read_text().splitlines()
    lines[100] = lines[100].replace("+0100", "+01:00 CET", 1).replace("+0200", "+02:00 CEST", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as info:
        load_csv(
            str(path),
            time_column="time",
            time_format=BERLIN_FORMAT,
            columns=["temp"],
            target="temp",
        )
    assert str(info.value).startswith(f"{path}: line 101: column `time` value ")
    assert "does not match the time format '%Y-%m-%d %H:%M:%S%z'" in str(info.value)


def test_c20_missing_value_spellings_counted_and_interpolated(tmp_path):
    temps = [f"{v:.1f}" for v in np.arange(400) / 10]  # temp = row / 10
    spelled = {50: "NaN", 120: "NA", 200: "nan", 260: "null", 330: ""}
    for row, cell in spelled.items():
        temps[row] = cell
    rh = [str(40 + i % 5) for i in range(400)]
    rh[10] = "NULL"
    lines = ["time,temp,rh"] + [
        f"{(datetime(2021, 3, 1) + timedelta(hours=i)):%Y-%m-%d %H:%M},{temps[i]},{rh[i]}"
        for i in range(400)
    ]
    path = tmp_path / "spelled.csv"
    path.write_text("\n".join(lines) + "\n")
    assert path.read_text().splitlines()[51].split(",")[1] == "NaN"  # row 51 = line 52
    spec = DataSpec(
        format="csv",
        path=str(path),
        time_column="time",
        time_format="%Y-%m-%d %H:%M",
        columns=("temp", "rh"),
        target="temp",
    )
    prepared = prepare_weather(
        spec,
        SplitSpec(train_fraction=0.5, validation_fraction=0.25),
        WindowSpec(lookback=12, step=1, delay=3),
    )
    row = report_row(prepared.meta)
    assert row["quality"]["missing_counts"] == {"temp": 5, "rh": 1}
    assert row["sentinel_counts"] == {"temp": 5, "rh": 1}
    assert row["quality"]["nonfinite_counts"] == {"temp": 0, "rh": 0}
    # interpolated by default: neighbours (r-1)/10 and (r+1)/10 -> r/10, in the raw units
    mean, std = prepared.meta["mean"][0], prepared.meta["std"][0]
    restored = prepared.data[:, 0].astype(np.float64) * std + mean
    for r in spelled:
        assert restored[r] == pytest.approx(r / 10, abs=1e-4)
    # rh row 10 between 40 + 9 % 5 = 44 and 40 + 11 % 5 = 41 -> 42.5
    assert prepared.data[10, 1] * prepared.meta["std"][1] + prepared.meta["mean"][
        1
    ] == pytest.approx(42.5, abs=1e-4)


def test_nonfinite_numbers_are_missing_values_counted(tmp_path):
    values = jena_like(40)
    path = write_jena(tmp_path / "j.csv", values)
    lines = path.read_text().splitlines()
    wv = 1 + JENA_COLUMNS.index("wv (m/s)")
    for line_no, cell in ((5, "inf"), (9, "-inf"), (12, "Infinity")):
        fields = lines[line_no - 1].split(",")
        fields[wv] = cell
        lines[line_no - 1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    prepared = prepare_weather(
        DataSpec(format="jena", path=str(path)),
        SplitSpec(train_fraction=0.5, validation_fraction=0.25),
        WindowSpec(lookback=2, step=1, delay=1),
    )
    assert prepared.meta["nonfinite_counts"]["wv (m/s)"] == 3
    assert prepared.meta["sentinel_counts"]["wv (m/s)"] == 3
    assert sum(prepared.meta["nonfinite_counts"].values()) == 3
    assert np.all(np.isfinite(prepared.data))
    # line 5 = row 3, interpolated between rows 2 and 4 as written (2 decimals)
    j = JENA_COLUMNS.index("wv (m/s)")
    raw = [round(v, 2) for v in values[:, j]]
    restored = prepared.data[3, j] * prepared.meta["std"][j] + prepared.meta["mean"][j]
    assert restored == pytest.approx((raw[2] + raw[4]) / 2, abs=1e-4)


# -- the time axis: repeated, missing and shuffled stamps ---------------------------------


def gappy_jena(path):
    """A Jena-layout file whose pressure column holds the minutes since the first stamp
    (each row carries its own time): 1,200 ten-minute slots, slots 300-302 missing
    (3), slots 700-719 missing (20), slots 100 and 900 repeated right after themselves
    with other values (minutes + 5000), slots 500/501 swapped, slot 1000 moved to the
    end of the file."""
    slots = [s for s in range(1200) if not (300 <= s <= 302 or 700 <= s <= 719)]
    rows = []  # (slot, pressure)
    for s in slots:
        rows.append((s, 10.0 * s))
        if s in (100, 900):
            rows.append((s, 10.0 * s + 5000))
    i500 = rows.index((500, 5000.0))
    rows[i500], rows[i500 + 1] = rows[i500 + 1], rows[i500]
    rows.remove((1000, 10000.0))
    rows.append((1000, 10000.0))
    values = jena_like(len(rows))
    values[:, 0] = [p for _, p in rows]
    start = datetime(2009, 1, 1, 0, 10)
    times = [(start + timedelta(minutes=10 * s)).strftime("%d.%m.%Y %H:%M:%S") for s, _ in rows]
    return write_jena(path, values, times=times)


def test_jena_gaps_repeats_and_disorder_yield_only_equally_spaced_windows(tmp_path):
    path = gappy_jena(tmp_path / "jena_climate_2009_2016.csv")
    spec = DataSpec(format="jena", path=str(path), target="p (mbar)", max_gap=5)
    windows = WindowSpec(lookback=12, step=3, delay=6, batch_size=32)
    prepared = prepare_weather(
        spec, SplitSpec(train_fraction=0.5, validation_fraction=0.25), windows
    )
    meta, q = prepared.meta, prepared.meta["quality"]
    assert q["duplicates_dropped"] == 2 and q["duplicates_conflicting"] == 2
    assert q["rows_out_of_order"] == 2  # slot 500 after 501, slot 1000 after 1199
    assert (q["gaps"], q["missing_slots"]) == (2, 23)
    assert (q["gaps_filled"], q["slots_filled"], q["gaps_cut"]) == (1, 3, 1)
    # 1,200 slots - 20 cut-gap slots = 1,180 rows; train 590, validation 295, test 295;
    # the cut gap falls between rows 699 and 700 (validation: rows 590-884)
    assert meta["rows"] == 1180
    assert meta["splits"] == {
        "train": [[0, 590]],
        "validation": [[590, 700], [700, 885]],
        "test": [[885, 1180]],
    }
    # one window needs 12 - 3 + 1 + 6 = 16 rows; t with t - 9 <= 699 < 700 <= t + 6
    # spans the gap: t = 694..708 -> 15 windows excluded from validation
    assert meta["windows_excluded"] == {"train": 0, "validation": 15, "test": 0}
    assert meta["windows"] == {"train": 590 - 15, "validation": 295 - 15 - 15, "test": 295 - 15}
    row = report_row(meta)
    assert row["quality"]["windows_excluded"]["validation"] == 15
    assert row["quality"]["duplicates_conflicting"] == 2 and row["splits"] == meta["splits"]
    # every window the batches produce: decode the stamp each row carries (pressure =
    # minutes) and check the lookback/step/delay geometry in time
    p_mean, p_std = meta["mean"][0], meta["std"][0]
    seen = 0
    for split in ("train", "validation", "test"):
        rows = split_window_rows(windows, meta["splits"][split], split=split)
        for x, y in WindowBatches(
            prepared.data, rows, windows, target_column=meta["target_column"]
        ):
            minutes = np.rint(x[:, :, 0].astype(np.float64) * p_std + p_mean)
            target = np.rint(y[:, 0].astype(np.float64) * p_std + p_mean)
            assert np.all(np.diff(minutes, axis=1) == 3 * 10)  # step 3 rows = 30 minutes
            assert np.all(target - minutes[:, -1] == 6 * 10)  # delay 6 rows = 60 minutes
            assert np.all(minutes % 10 == 0)  # no conflicting repeated row kept
            seen += len(x)
    assert seen == sum(meta["windows"].values())
    # the stamps kept for the rows agree with the values they carry
    minutes_of_row = (prepared.times - np.datetime64("2009-01-01T00:10")) // np.timedelta64(1, "m")
    restored = np.rint(prepared.data[:, 0].astype(np.float64) * p_std + p_mean)
    np.testing.assert_array_equal(restored, minutes_of_row)


def test_gaps_cut_by_default_and_a_split_left_without_windows(tmp_path):
    path = gappy_jena(tmp_path / "j.csv")
    prepared = prepare_weather(
        DataSpec(format="jena", path=str(path)),
        SplitSpec(train_fraction=0.5, validation_fraction=0.25),
        WindowSpec(lookback=12, step=3, delay=6),
    )
    q = prepared.meta["quality"]
    assert (q["gaps_filled"], q["gaps_cut"], q["max_gap"]) == (0, 2, 0)
    assert prepared.meta["rows"] == 1177  # no row invented
    # a window longer than any run between gaps: named, with the remedy
    from dlpipe.tasks.weather.windows import SplitTooShortError

    with pytest.raises(
        SplitTooShortError,
        match=r"split `validation` has no window left: "
        r"gaps in time cut it into 2 runs.*`data.max_gap` \(now 0\)",
    ):
        prepare_weather(
            DataSpec(format="jena", path=str(path)),
            SplitSpec(train_fraction=0.5, validation_fraction=0.25),
            WindowSpec(lookback=162, step=3, delay=30),
        )


def test_constant_target_refused_constant_feature_listed(tmp_path):
    values = jena_like(60)
    values[:, JENA_COLUMNS.index("wd (deg)")] = 180.0
    path = write_jena(tmp_path / "j.csv", values)
    prepared = prepare_weather(
        DataSpec(format="jena", path=str(path)),
        SplitSpec(train_fraction=0.5, validation_fraction=0.25),
        WindowSpec(lookback=2, step=1, delay=1),
    )
    assert prepared.meta["constant_features"] == ["wd (deg)"]
    values[:, JENA_COLUMNS.index("T (degC)")] = 4.0
    write_jena(path, values)
    with pytest.raises(
        DataFormatError,
        match=r"j.csv: column `T \(degC\)` \(the target\) "
        r"holds the same value 4.0 in every training row",
    ):
        prepare_weather(
            DataSpec(format="jena", path=str(path)),
            SplitSpec(train_fraction=0.5, validation_fraction=0.25),
            WindowSpec(lookback=2, step=1, delay=1),
        )


# -- one-line errors (C23) and the cheap checks before Ray -----------------------------


def _edit_line(path, line_no, old, new):
    lines = path.read_text().splitlines()
    lines[line_no - 1] = lines[line_no - 1].replace(old, new, 1)
    path.write_text("\n".join(lines) + "\n")
    return path


def malformed_weather_files(tmp_path):
    """(name, path, DataSpec, expected line, expected column) for every malformed input
    the weather tests build: timestamps, numbers, header, encodings, field counts."""
    cases = []

    def jena(name, times=None, rows=5):
        return write_jena(tmp_path / f"{name}.csv", jena_like(rows), times=times)

    p = jena(
        "jena_time",
        times=[
            "01.01.2009 00:10:00",
            "01.01.2009 00:20:00",
            "2009-01-01 00:30:00",
            "01.01.2009 00:40:00",
            "01.01.2009 00:50:00",
        ],
    )
    cases.append(("jena timestamp", p, DataSpec(format="jena", path=str(p)), 4, "Date Time"))
    p = jena("month_first", times=["01.12.2009 00:10:00", "12.13.2009 00:20:00"], rows=2)
    cases.append(("month first", p, DataSpec(format="jena", path=str(p)), 3, "Date Time"))
    p = jena("warm")
    fields = p.read_text().splitlines()[3].split(",")
    _edit_line(p, 4, fields[2], "warm")
    cases.append(("not a number", p, DataSpec(format="jena", path=str(p)), 4, "T (degC)"))
    p = tmp_path / "missing_col.csv"
    p.write_text('"Date Time","p (mbar)"\n01.01.2009 00:10:00,996.5\n')
    cases.append(("missing column", p, DataSpec(format="jena", path=str(p)), 1, None))
    p = tmp_path / "generic_time.csv"
    p.write_text("when,temp\n2021-03-01 00:00,1\n01/03/2021 01:00,2\n")
    csv_spec = dict(
        format="csv",
        time_column="when",
        time_format="%Y-%m-%d %H:%M",
        columns=("temp",),
        target="temp",
    )
    cases.append(("csv timestamp", p, DataSpec(path=str(p), **csv_spec), 3, "when"))
    p = write_berlin(tmp_path / "berlin.csv", rows=10)
    _edit_line(p, 7, "+0200", "+02:00 CEST")
    cases.append(
        (
            "C19 offset",
            p,
            DataSpec(
                format="csv",
                path=str(p),
                time_column="time",
                time_format=BERLIN_FORMAT,
                columns=("temp",),
                target="temp",
            ),
            7,
            "time",
        )
    )
    p = tmp_path / "latin1.csv"
    p.write_bytes("when,temp\n2021-03-01 00:00,1\n2021-03-01 01:00,2\xb0\n".encode("latin-1"))
    cases.append(("not UTF-8", p, DataSpec(path=str(p), **csv_spec), 3, "temp"))
    p = tmp_path / "extra_field.csv"
    p.write_text("when,temp\n2021-03-01 00:00,1\n2021-03-01 01:00,2\n2021-03-01 02:00,3,4\n")
    cases.append(("extra field", p, DataSpec(path=str(p), **csv_spec), 4, None))
    return cases


def test_c23_weather_reader_errors_name_file_line_and_column(tmp_path):
    cases = malformed_weather_files(tmp_path)
    assert len(cases) == 8
    for name, path, spec, line, column in cases:
        for check in (
            check_weather_source,
            lambda s: prepare_weather(
                s,
                SplitSpec(train_fraction=0.5, validation_fraction=0.25),
                WindowSpec(lookback=1, step=1, delay=1),
            ),
        ):
            with pytest.raises(DataFormatError) as info:
                check(spec)
            message = str(info.value)
            assert "\n" not in message, name
            assert message.startswith(f"{path}: line {line}: "), (name, message)
            if column is not None:
                assert f"column `{column}`" in message, (name, message)
            else:  # the header's columns or the extra field are named instead
                assert re.search(r"missing column\(s\) \[|field \d+ \(", message), message
            assert "Traceback" not in message and "C error" not in message


@pytest.mark.parametrize(
    "content, expected",
    [
        ("", r"line 1: the file is empty"),
        ("when,temp\n", r"line 2: no data rows \(the file holds only its header"),
        ("when,temp\n\n\n", r"line 2: no data rows"),
    ],
)
def test_empty_or_header_only_file_is_one_line(tmp_path, content, expected):
    path = tmp_path / "w.csv"
    path.write_text(content)
    spec = DataSpec(
        format="csv",
        path=str(path),
        time_column="when",
        time_format="%Y-%m-%d %H:%M",
        columns=("temp",),
        target="temp",
    )
    with pytest.raises(DataFormatError, match=f"^{re.escape(str(path))}: {expected}"):
        check_weather_source(spec)


def test_check_weather_source_reads_only_the_first_rows(tmp_path):
    from dlpipe.tasks.weather.read import CHECK_ROWS

    times = [
        (datetime(2021, 1, 1) + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M")
        for i in range(CHECK_ROWS + 50)
    ]
    times[CHECK_ROWS + 10] = "bad"
    path = tmp_path / "w.csv"
    path.write_text("when,temp\n" + "".join(f"{t},{i % 7}\n" for i, t in enumerate(times)))
    spec = DataSpec(
        format="csv",
        path=str(path),
        time_column="when",
        time_format="%Y-%m-%d %H:%M",
        columns=("temp",),
        target="temp",
    )
    check_weather_source(spec)  # the bad stamp lies beyond the rows checked
    with pytest.raises(DataFormatError, match=f"line {CHECK_ROWS + 12}: column `when`"):
        load_csv(
            str(path),
            time_column="when",
            time_format="%Y-%m-%d %H:%M",
            columns=["temp"],
            target="temp",
        )
    with pytest.raises(DataFormatError, match=r"line 1: missing column\(s\) \['temps'\]"):
        check_weather_source(
            DataSpec(
                format="csv",
                path=str(path),
                time_column="when",
                time_format="%Y-%m-%d %H:%M",
                columns=("temps",),
                target="temps",
            )
        )
    with pytest.raises(
        DataFormatError,
        match=r"line 2: column `when` value '2021-01-01 00:00'"
        r" does not match the time format '%d.%m.%Y %H:%M'",
    ):
        check_weather_source(
            DataSpec(
                format="csv",
                path=str(path),
                time_column="when",
                time_format="%d.%m.%Y %H:%M",
                columns=("temp",),
                target="temp",
            )
        )
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        check_weather_source(DataSpec(format="csv", path=str(tmp_path / "nope.csv")))


def test_cli_checks_the_data_before_ray_starts(tmp_path, monkeypatch, capsys):
    from dlpipe.pipelines import cli, runtime

    (tmp_path / "w.csv").write_text("when,temp\n")
    (tmp_path / "s.yaml").write_text(
        textwrap.dedent("""
        study: s
        data: {format: csv, path: w.csv, time_column: when, time_format: "%Y-%m-%d %H:%M",
               columns: [temp], target: temp}
        split: {train_fraction: 0.5, validation_fraction: 0.25}
        windows: {lookback: 4, step: 1, delay: 1}
        models: [{family: dense}]
    """)
    )

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started before the data was checked")

    monkeypatch.setattr(runtime, "init_ray", no_ray)
    assert cli.run_command(str(tmp_path / "s.yaml")) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == f"error: {tmp_path / 'w.csv'}: line 2: no data rows (the file holds only "
        "its header line ['when', 'temp']...)"
    )


# -- the generic CSV example study ---------------------------------------------------------


def test_generic_csv_example_study_loads_and_prepares(tmp_path, monkeypatch):
    """configs/weather_csv.yaml: every key of the generic reader, validated by the
    project's study loader and prepared on a file in the layout it describes."""
    from dlpipe.pipelines.config import load_study

    example = Path(__file__).parents[1] / "configs" / "weather_csv.yaml"
    text = example.read_text()
    for key in ("time_column:", "time_format:", "columns:", "max_gap:", "format: csv"):
        assert key in text
    shutil.copy(example, tmp_path / "weather_csv.yaml")
    monkeypatch.setenv("HOME", str(tmp_path))  # the example reads ~/data/station.csv
    (tmp_path / "data").mkdir()
    write_berlin(
        tmp_path / "data" / "station.csv",
        rows=600,
        temps=10 + 5 * np.sin(np.arange(600) * 2 * np.pi / 24),
    )
    cfg = load_study(tmp_path / "weather_csv.yaml")
    assert cfg.data.format == "csv"
    assert Path(cfg.data.path).expanduser() == tmp_path / "data" / "station.csv"
    assert cfg.data.time_format == BERLIN_FORMAT and cfg.data.columns == ("temp", "rh")
    check_weather_source(cfg.data)
    prepared = prepare_weather(cfg.data, cfg.split, cfg.windows)
    assert prepared.meta["rows"] == 600 and prepared.meta["quality"]["gaps"] == 0
    for model in cfg.models:
        from dlpipe.tasks.weather.prepare import split_window_counts

        assert split_window_counts(cfg.model_windows(model), prepared.meta)["test"]["windows"] > 0


def test_max_gap_is_a_study_key_checked_at_load(tmp_path):
    from dlpipe.pipelines.config import ConfigError, parse_study

    write_berlin(tmp_path / "station.csv", rows=50)
    raw = {
        "study": "s",
        "data": {
            "format": "csv",
            "path": "station.csv",
            "time_column": "time",
            "time_format": BERLIN_FORMAT,
            "columns": ["temp"],
            "target": "temp",
            "max_gap": 3,
        },
        "split": {"train_fraction": 0.5, "validation_fraction": 0.25},
        "windows": {"lookback": 4, "step": 1, "delay": 1},
        "models": [{"family": "dense"}],
    }
    assert parse_study(raw, base_dir=tmp_path).data.max_gap == 3
    raw["data"]["max_gap"] = -1
    with pytest.raises(
        ConfigError,
        match=r"`max_gap` must be an integer >= 0. Received: "
        r"max_gap=-1",
    ):
        parse_study(raw, base_dir=tmp_path)
