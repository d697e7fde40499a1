"""Parquet reports: fixed schemas across part files (C15), atomic writes, read-back."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.reports.plots import smooth_curve


def test_c15_mixed_rows_in_two_parts_read_back_together(tmp_path):
    # the case's two trial rows, as runs of one dataset written in two part files
    first = {
        "run_id": "t1",
        "hyperparameters": {"units": 64, "params": {}},
        "val_mae": None,
        "status": "failed",
        "error": "diverged",
    }
    second = {
        "run_id": "t2",
        "hyperparameters": {"units": "auto", "params": {"units": 32.0, "dropout": 0.5}},
        "val_mae": 0.3,
        "status": "ok",
        "seed": np.int64(7),
    }
    reports.write_part(tmp_path, "runs", "t1", [first])
    reports.write_part(tmp_path, "runs", "t2", [second])
    # independent readers: pandas and pyarrow over the whole folder
    via_pandas = pd.read_parquet(tmp_path / "reports" / "runs").sort_values("run_id")
    via_arrow = pq.read_table(tmp_path / "reports" / "runs").to_pandas().sort_values("run_id")
    for frame in (via_pandas, via_arrow, reports.read_table(tmp_path, "runs")):
        assert list(frame["run_id"]) == ["t1", "t2"]
        assert frame["val_mae"].dtype == np.float64
        assert np.isnan(frame["val_mae"].iloc[0]) and frame["val_mae"].iloc[1] == 0.3
        hp = [json.loads(h) for h in frame["hyperparameters"]]
        assert hp[0] == {"params": {}, "units": 64} and isinstance(hp[0]["units"], int)
        assert hp[1]["units"] == "auto" and hp[1]["params"] == {"dropout": 0.5, "units": 32.0}
    # sorted keys: the JSON text is canonical
    assert via_pandas["hyperparameters"].iloc[1].index('"params"') < via_pandas[
        "hyperparameters"
    ].iloc[1].index('"units"')
    assert via_pandas["seed"].iloc[1] == 7


def test_schema_is_fixed(tmp_path):
    with pytest.raises(ValueError, match="unknown column"):
        reports.write_part(tmp_path, "runs", "x", [{"run_id": "x", "bogus": 1}])
    with pytest.raises(ValueError, match="must be an integer"):
        reports.write_part(tmp_path, "runs", "x", [{"run_id": "x", "seed": 1.5}])
    empty = reports.read_table(tmp_path, "history")
    assert list(empty.columns) == reports.SCHEMAS["history"].names and empty.empty


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "reports" / "runs" / "part-a.parquet"
    reports.write_part(tmp_path, "runs", "a", [{"run_id": "a"}])
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(reports.os, "replace", boom)
    with pytest.raises(OSError):
        reports.write_part(tmp_path, "runs", "a", [{"run_id": "b"}])
    assert target.read_bytes() == before  # the old part is intact
    assert [p.name for p in target.parent.iterdir()] == ["part-a.parquet"]  # no temp left


def test_smooth_curve_matches_book_formula():
    values = [1.0, 0.0, 0.0, 1.0]
    # s0 = 1; s1 = .8*1 + .2*0 = .8; s2 = .8*.8 = .64; s3 = .8*.64 + .2*1 = .712
    np.testing.assert_allclose(smooth_curve(values, 0.8), [1.0, 0.8, 0.64, 0.712])
    np.testing.assert_allclose(smooth_curve(values, 0.0), values)
    with pytest.raises(ValueError, match="factor"):
        smooth_curve(values, 1.0)
