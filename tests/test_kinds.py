"""The study-kind seam (issue 13): one registry, one interface per kind, typed records,
per-kind report columns, and no branch on the kind outside the registry."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlpipe.pipelines.kinds import KINDS, get_kind
from dlpipe.pipelines.kinds.base import StudyKind
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.records import RunResult, failed_run, record_run, run_key
from dlpipe.tasks.weather.windows import WindowSpec

ROOT = Path(__file__).resolve().parents[1]


def test_registry_holds_one_object_per_kind_with_its_config_class():
    assert set(KINDS) == {"timeseries", "text", "images", "tabular"}
    for name, kind in KINDS.items():
        assert isinstance(kind, StudyKind) and kind.name == name
        assert get_kind(name) is kind
        fields = kind.config_class.__dataclass_fields__
        assert kind.inputs_name in fields, (name, kind.inputs_name)
        assert callable(kind.train) and callable(kind.evaluate)
        # the trainer and evaluator are plain module-level functions of tasks/ (Ray sends
        # them by reference, so a worker imports that kind's module only)
        assert kind.train.__module__.startswith("dlpipe.tasks.")
        assert "." not in kind.train.__qualname__
    with pytest.raises(ValueError, match="must be one of timeseries, text, images, tabular"):
        get_kind("audio")


def test_every_kind_compiles_its_headline_metric():
    """The headline metric a kind reports is one its models log (or the loss, MAE)."""
    for kind in KINDS.values():
        assert kind.headline in {"mae", *kind.logged_metrics()}


def test_no_branch_on_the_kind_outside_the_registry():
    """`pipeline ==` / `pipeline !=` / `kind ==` comparisons with a kind's name live only
    in pipelines/kinds/ (the acceptance grep of issue 13, as a test)."""
    pattern = re.compile(r"""(pipeline|kind)\s*[!=]=\s*["'](timeseries|text|images|tabular)["']""")
    found = []
    for folder in ("pipelines", "tasks", "models", "ensembles", "dlpipe"):
        for path in (ROOT / folder).rglob("*.py"):
            if "kinds" in path.relative_to(ROOT).parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []


def test_run_key_is_unchanged_for_stored_runs():
    """Keys of runs stored before the seam: the payload of the pre-seam
    ``tasks/train.py:run_key`` (inputs under ``windows``, training settings at their
    old defaults left out), hashed as sorted JSON; a study run before the change
    resumes without retraining."""
    import dataclasses
    import hashlib
    import json

    from dlpipe.tasks.training.fit import TrainingSpec

    windows, training = WindowSpec(10, 2, 3), TrainingSpec(epochs=2)
    key = run_key("abc", "gru", {"units": 8}, windows, training, 1)
    train = dataclasses.asdict(training)
    assert train.pop("batch_size") == 32 and train.pop("steps_per_execution") == 1
    train.pop("tensorboard")  # added later, never part of a key (event files only)
    assert train.pop("joint_heads") is False  # added later: in a key only when true
    payload = {
        "dataset": "abc",
        "family": "gru",
        "hp": {"units": 8},
        "windows": dataclasses.asdict(windows),
        "training": train,
        "seed": 1,
    }
    text = json.dumps(payload, sort_keys=True)
    assert key == f"gru-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _run(run_id: str, **extra) -> dict:
    return {"run_id": run_id, "family": "dense", "status": "ok", "val_loss": 0.5, **extra}


def test_a_text_study_writes_no_weather_columns_and_weather_writes_them(tmp_path):
    text_dir, weather_dir = tmp_path / "text", tmp_path / "weather"
    record_run(
        text_dir,
        RunResult(_run("t1", epochs_run=3, best_epoch=2)),
        pipeline="text",
        study="s",
        dataset_key="k",
    )
    record_run(
        text_dir,
        RunResult(_run("baseline-k", epochs_run=0)),
        pipeline="text",
        study="s",
        dataset_key="k",
    )
    import pyarrow.parquet as pq

    columns = pq.read_schema(text_dir / "reports" / "runs" / "part-t1.parquet").names
    weather_only = reports.kind_columns("runs", "text")
    assert weather_only == {
        "lookback",
        "step",
        "delay",
        "val_mae",
        "test_mae",
        "val_mae_units",
        "test_mae_units",
    }
    assert not weather_only & set(columns)
    frame = reports.read_table(text_dir, "runs")
    assert not weather_only & set(frame.columns)
    # a nullable integer stays an integer: the baseline has no best epoch
    assert str(frame["best_epoch"].dtype) == "Int64"
    assert frame.set_index("run_id").loc["t1", "best_epoch"] == 2
    assert frame.set_index("run_id").loc["baseline-k", "best_epoch"] is pd.NA
    assert frame["epochs_run"].dtype == np.int64  # no nulls: plain int64

    # a failed weather run keeps its kind's columns (same columns in every part)
    failed = failed_run("w1", "gru", {}, 1, WindowSpec(10, 2, 3), "boom", {}, {"lookback": 10})
    record_run(weather_dir, failed, pipeline="timeseries", study="s", dataset_key="k")
    columns = pq.read_schema(weather_dir / "reports" / "runs" / "part-w1.parquet").names
    assert weather_only <= set(columns)
    assert reports.read_table(weather_dir, "runs")["lookback"].tolist() == [10]


def test_another_kinds_column_with_a_value_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['lookback'\]"):
        reports.make_table("runs", [_run("t", lookback=10)], kind="text")
    # None/NaN there is what a row read back with the full schema holds: accepted
    table = reports.make_table("runs", [_run("t", lookback=None, val_mae=float("nan"))], "text")
    assert "lookback" not in table.column_names


def test_reports_written_before_the_seam_read_without_the_other_kinds_columns(tmp_path):
    """A text study's parts written with every column (all-null weather ones) read back
    without them: old run directories keep working and look like new ones."""
    reports.write_part(tmp_path, "runs", "old", [_run("old", pipeline="text")])
    assert (
        "lookback"
        in __import__("pyarrow.parquet")
        .parquet.read_schema(tmp_path / "reports" / "runs" / "part-old.parquet")
        .names
    )
    frame = reports.read_table(tmp_path, "runs")
    assert "lookback" not in frame.columns and frame["run_id"].tolist() == ["old"]


def test_no_private_helper_is_imported_across_modules():
    """`from dlpipe.x import _helper` or `module._helper` on a dlpipe module is refused
    (issue 13): a helper another module needs is public and documented."""
    import ast

    found = []
    for folder in ("pipelines", "tasks", "models", "ensembles", "dlpipe"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            aliases = set()  # names bound to dlpipe modules in this file
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dlpipe"):
                    for name in node.names:
                        if name.name.startswith("_") and not name.name.startswith("__"):
                            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name.name}")
                        aliases.add(name.asname or name.name)
                elif isinstance(node, ast.Import):
                    aliases |= {a.asname or a.name for a in node.names if "dlpipe" in a.name}
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in aliases
                    and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                ):
                    found.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}"
                    )
    assert found == []
