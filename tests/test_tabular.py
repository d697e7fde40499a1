"""The tabular study kind (issue 14, hold-out part): reading and checking a table,
training-split normalization, one-hot encoding, missing values, task inference, the
baselines, config checks, and end-to-end runs through local Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlpipe.pipelines.config import ConfigError, parse_study
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.tabular.data import (
    TabularDataSpec,
    TabularSplitSpec,
    infer_task,
    one_hot,
    prepare_tabular,
    split_rows,
)
from dlpipe.tasks.training.classifier import SPLIT_CODES

BIN = Path(sys.executable).parent
TRAIN = SPLIT_CODES["train"]


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def regression_rows(n: int = 40, seed: int = 0) -> list[list]:
    """``a`` (0..n-1 scaled), ``b`` (noise), ``c`` constant 7, target = 3a + 2b + 10."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a, b = float(i) / 4, round(float(rng.normal(5, 2)), 3)
        rows.append([a, b, 7, round(3 * a + 2 * b + 10, 3)])
    return rows


def prepare(path, **data):
    spec = TabularDataSpec(path=str(path), **data)
    return prepare_tabular(spec, TabularSplitSpec(0.25, 0.25, seed=3))


def test_normalization_uses_the_training_rows_only(tmp_path):
    csv = write_csv(tmp_path / "t.csv", ["a", "b", "c", "y"], regression_rows())
    arrays, meta = prepare(csv, target="y")
    raw = np.array(regression_rows(), dtype=np.float64)[arrays["rows"]]
    train = arrays["split"] == TRAIN
    for j, name in enumerate(["a", "b"]):
        mean, std = raw[train, j].mean(), raw[train, j].std()  # ddof 0, book 3.6.2
        assert meta["mean"][name] == pytest.approx(mean)
        assert meta["std"][name] == pytest.approx(std)
        np.testing.assert_allclose(arrays["x"][:, j], (raw[:, j] - mean) / std, rtol=1e-5)
        # the statistics of all rows differ: test/validation rows were left out
        assert mean != pytest.approx(raw[:, j].mean())
    assert arrays["x"][train, 0].mean() == pytest.approx(0, abs=1e-6)
    # the target stays in its units
    np.testing.assert_allclose(arrays["labels"], raw[:, 3], rtol=1e-6)
    assert meta["task"] == "regression" and meta["task_inferred"]
    assert meta["split_counts"] == {"train": 20, "validation": 10, "test": 10}


def test_a_constant_column_is_centred_and_named(tmp_path):
    csv = write_csv(tmp_path / "t.csv", ["a", "b", "c", "y"], regression_rows())
    arrays, meta = prepare(csv, target="y")
    assert meta["std"]["c"] == 0.0 and meta["constant_features"] == ["c"]
    assert np.all(arrays["x"][:, 2] == 0.0) and np.isfinite(arrays["x"]).all()
    assert any("constant" in w and "['c']" in w for w in meta["warnings"])


def test_one_hot_uses_sorted_training_categories_and_counts_unseen():
    values = np.array(["red", "blue", "red", "green", "blue", "pink", ""], dtype=object)
    missing = np.array([False] * 6 + [True])
    train = np.array([True, True, True, False, False, False, True])
    matrix, categories, unseen = one_hot(values, missing, train)
    assert categories == ["blue", "red"]  # green, pink only outside training: not columns
    expected = [[0, 1], [1, 0], [0, 1], [0, 0], [1, 0], [0, 0], [0, 0]]
    np.testing.assert_array_equal(matrix, expected)
    assert unseen == 2  # green (row 3) and pink (row 5); the missing cell is not counted


def test_categorical_column_in_a_prepared_table(tmp_path):
    rows = [[r[0], ["x", "y", "z"][i % 3], r[3]] for i, r in enumerate(regression_rows())]
    rows[-1][1] = "w"  # one category seen once
    csv = write_csv(tmp_path / "t.csv", ["a", "colour", "y"], rows)
    arrays, meta = prepare(csv, target="y", categorical=("colour",))
    in_train = "w" in [rows[r][1] for r in arrays["rows"][arrays["split"] == TRAIN]]
    assert meta["categories"]["colour"] == (["w", "x", "y", "z"] if in_train else ["x", "y", "z"])
    assert meta["input_columns"][0] == "a"
    assert meta["input_columns"][1:] == [f"colour={c}" for c in meta["categories"]["colour"]]
    assert meta["unseen_categories"] == {"colour": 0 if in_train else 1}
    assert arrays["x"][:, 1:].sum(axis=1).max() == 1.0


def test_a_non_numeric_column_is_refused_naming_it(tmp_path):
    rows = [[r[0], ["x", "y"][i % 2], r[3]] for i, r in enumerate(regression_rows())]
    csv = write_csv(tmp_path / "t.csv", ["a", "colour", "y"], rows)
    with pytest.raises(ValueError, match=r"column `colour` is not numeric .*line 2.*categorical"):
        prepare(csv, target="y")
    rows = regression_rows()
    rows[4][1] = "abc"
    csv = write_csv(tmp_path / "u.csv", ["a", "b", "c", "y"], rows)
    with pytest.raises(ValueError, match=r"u.csv: line 6: column `b`: 'abc' is not a number"):
        prepare(csv, target="y")


def test_missing_values_drop_or_mean_counted_per_column(tmp_path):
    rows = regression_rows()
    rows[3][0], rows[5][0], rows[8][1], rows[9][3] = "", "NA", "?", ""
    csv = write_csv(tmp_path / "t.csv", ["a", "b", "c", "y"], rows)
    arrays, meta = prepare(csv, target="y")
    assert meta["missing_counts"] == {"a": 2, "b": 1, "c": 0, "y": 1}
    assert meta["rows_dropped"] == 4 and meta["rows"] == 36
    assert not set(arrays["rows"].tolist()) & {3, 5, 8, 9}
    arrays, meta = prepare(csv, target="y", missing="mean")
    assert meta["rows_dropped"] == 1 and 9 not in arrays["rows"]  # no target: dropped
    at = {int(r): i for i, r in enumerate(arrays["rows"])}
    assert arrays["x"][at[3], 0] == 0.0 and arrays["x"][at[8], 1] == 0.0  # training mean
    present = [at[r] for r in at if r not in (3, 5) and arrays["split"][at[r]] == TRAIN]
    assert meta["mean"]["a"] == pytest.approx(
        np.mean([rows[arrays["rows"][i]][0] for i in present])
    )


def test_task_inference_and_an_explicit_task():
    assert infer_task(np.array([1.5, 2.0, 3.25]), None) == ("regression", True)
    assert infer_task(np.array(["0", "1", "1", "0"], dtype=object), None) == ("binary", True)
    assert infer_task(np.array(["a", "b", "c"], dtype=object), None) == ("multiclass", True)
    assert infer_task(np.array([1.0, 2.0, 3.0, 2.0]), None) == ("multiclass", True)
    many = np.arange(30, dtype=np.float64)  # 30 distinct integers: a quantity
    assert infer_task(many, None) == ("regression", True)
    assert infer_task(np.array([1.0, 2.0, 3.0]), "regression") == ("regression", False)


def test_explicit_task_overrides_and_bad_targets_are_refused(tmp_path):
    rows = [[i, i % 3] for i in range(30)]
    csv = write_csv(tmp_path / "t.csv", ["a", "y"], rows)
    _, meta = prepare(csv, target="y")
    assert meta["task"] == "multiclass" and meta["class_names"] == ["0", "1", "2"]
    spec = TabularDataSpec(path=str(csv), target="y")
    _, meta = prepare_tabular(spec, TabularSplitSpec(0.25, 0.25), "regression")
    assert meta["task"] == "regression" and not meta["task_inferred"]
    with pytest.raises(ValueError, match=r"task binary needs exactly 2 classes; the target has 3"):
        prepare_tabular(spec, TabularSplitSpec(0.25, 0.25), "binary")
    words = write_csv(tmp_path / "w.csv", ["a", "y"], [[i, "ab"[i % 2]] for i in range(30)])
    spec = TabularDataSpec(path=str(words), target="y")
    with pytest.raises(ValueError, match=r"w.csv: line 2: column `y`: 'a' is not a finite number"):
        prepare_tabular(spec, TabularSplitSpec(0.25, 0.25), "regression")


def test_stratified_split_keeps_class_shares():
    labels = np.array([0] * 40 + [1] * 20)
    codes = split_rows(labels, 60, TabularSplitSpec(0.25, 0.25, seed=1))
    for c, n in ((0, 10), (1, 5)):
        assert ((codes == 1) & (labels == c)).sum() == n
        assert ((codes == 2) & (labels == c)).sum() == n
    again = split_rows(labels, 60, TabularSplitSpec(0.25, 0.25, seed=1))
    np.testing.assert_array_equal(codes, again)


def test_mean_predictor_baseline_equals_numpy(tmp_path):
    from dlpipe.tasks.tabular.train import mean_baseline_scores

    csv = write_csv(tmp_path / "t.csv", ["a", "b", "c", "y"], regression_rows())
    arrays, _ = prepare(csv, target="y")
    y = np.array(regression_rows(), dtype=np.float64)[arrays["rows"], 3]
    mean = y[arrays["split"] == TRAIN].mean()
    scores = mean_baseline_scores(arrays)
    assert scores["mean"] == pytest.approx(mean)
    for split, short in (("validation", "val"), ("test", "test")):
        rows = y[arrays["split"] == SPLIT_CODES[split]]
        assert scores[f"{short}_metric"] == pytest.approx(np.abs(rows - mean).mean())
        assert scores[f"{short}_loss"] == pytest.approx(((rows - mean) ** 2).mean())


def _raw(path, **extra) -> dict:
    raw = {
        "study": "tab",
        "pipeline": "tabular",
        "data": {"path": str(path), "target": "y"},
        "models": [{"family": "dense"}],
    }
    raw.update(extra)
    return raw


def test_config_checks_name_the_field(tmp_path):
    csv = write_csv(tmp_path / "t.csv", ["a", "b", "c", "y"], regression_rows())
    cfg = parse_study(_raw("t.csv"), base_dir=tmp_path)
    assert cfg.data.path == str(csv) and cfg.task is None
    monitor = {"early_stopping": {"monitor": "val_accuracy"}}
    with pytest.raises(ConfigError, match=r"early_stopping.monitor.*task: regression"):
        parse_study(_raw(csv, task="regression", training=monitor))
    cfg = parse_study(_raw(csv, task="binary", training=monitor))
    assert cfg.training.early_stopping.monitor == "val_accuracy"
    with pytest.raises(ConfigError, match=r"`models\[0\].hp.num_classes` follows the data"):
        parse_study(_raw(csv, models=[{"family": "dense", "hp": {"num_classes": 3}}]))
    with pytest.raises(ConfigError, match=r"`task` must be one of regression, binary"):
        parse_study(_raw(csv, task="ordinal"))
    with pytest.raises(ConfigError, match=r"demo table must be one of demo:diabetes"):
        parse_study(_raw("demo:iris"))
    with pytest.raises(ConfigError, match=r"table not found"):
        parse_study(_raw("nope.csv"), base_dir=tmp_path)


def test_packaged_demo_is_valid_and_sources_are_checked(tmp_path):
    from dlpipe.pipelines.cli import demo_config_path
    from dlpipe.pipelines.config import load_study
    from dlpipe.pipelines.kinds import get_kind

    demo = load_study(demo_config_path("tabular"))
    assert demo.pipeline == "tabular" and demo.data.path == "demo:diabetes"
    assert [m.family for m in demo.models] == ["dense", "dense_dropout", "dense_l2"]
    csv = write_csv(tmp_path / "t.csv", ["a", "b", "c", "y"], regression_rows())
    cfg = parse_study(_raw(csv, data={"path": str(csv), "target": "y", "features": ["a", "q"]}))
    with pytest.raises(ValueError, match=r"column\(s\) \['q'\] not in the table"):
        get_kind(cfg).check_source(cfg)


def test_inferred_task_monitor_error_names_the_study_file(tmp_path):
    """A `monitor` that does not fit the INFERRED task (found after preparation, in the
    kind's post-prepare check) names the study file like every other config error."""
    from dlpipe.pipelines.kinds import get_kind
    from dlpipe.tasks.training.records import PreparedDataset

    csv = write_csv(tmp_path / "t.csv", ["a", "b", "c", "y"], regression_rows())
    training = {"early_stopping": {"monitor": "val_accuracy"}}
    cfg = parse_study(_raw(csv, training=training), source="s.yaml")  # no task: accepted
    prepared = PreparedDataset(None, {"task": "regression"})
    with pytest.raises(ConfigError, match=r"^s\.yaml: .*early_stopping\.monitor.*regression"):
        get_kind(cfg).check_prepared(cfg, prepared)
    training = {"reduce_lr_on_plateau": {"monitor": "val_mae"}}
    cfg = parse_study(_raw(csv, training=training), source="s.yaml")
    with pytest.raises(ConfigError, match=r"^s\.yaml: .*reduce_lr_on_plateau\.monitor.*binary"):
        get_kind(cfg).check_prepared(cfg, PreparedDataset(None, {"task": "binary"}))


def check_source_of(path: Path, target: str = "y") -> None:
    """The pre-Ray data check of a study on ``path`` (what `dlpipe run` does before
    Ray starts)."""
    from dlpipe.pipelines.kinds import get_kind

    cfg = parse_study(_raw(path, data={"path": str(path), "target": target}))
    get_kind(cfg).check_source(cfg)


BAD_HEADERS = {
    "repeated": ("a,b,a,y\n1,2,3,4\n", r"t.csv: line 1: repeated column name\(s\) \['a'\]"),
    "unnamed-last": (
        "a,b,c,y,\n1,2,3,4,\n5,6,7,8,\n",
        r"t.csv: line 1: column #5 has no name \(a trailing separator\?\)$",
    ),
    "unnamed-middle": ("a,,y\n1,2,3\n", r"t.csv: line 1: column #2 has no name$"),
    "unnamed-after-blank-lines": ("\n\na, ,y\n1,2,3\n", r"t.csv: line 3: column #2 has no"),
    "header-only": ("a,b,y\n", r"t.csv: no data row \(only a header\)"),
    "header-and-blank-lines": ("a,b,y\n\n  \n", r"t.csv: no data row \(only a header\)"),
    "empty": ("", r"t.csv: line 1: the file is empty \(no header line\)"),
    "blank-lines-only": ("\n \n", r"t.csv: line 1: the file is empty \(no header line\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_header_faults_are_refused_before_ray_and_in_prepare(tmp_path, case):
    """Header faults (repeated names, an unnamed column such as a trailing separator,
    no data row, an empty file) are refused by the pre-Ray `check_source` (which reads
    only the header and first bytes) and by preparation, with the same message."""
    text, message = BAD_HEADERS[case]
    csv = tmp_path / "t.csv"
    csv.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        check_source_of(csv)
    with pytest.raises(ValueError, match=message):
        prepare(csv, target="y")


def test_parquet_header_faults_are_refused_before_ray(tmp_path):
    """A Parquet table: an unnamed column and a table without rows, from its metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "": [3.0, 4.0], "y": [1.0, 2.0]}), path)
    with pytest.raises(ValueError, match=r"t.parquet: schema: column #2 has no name$"):
        check_source_of(path)
    with pytest.raises(ValueError, match=r"t.parquet: schema: column #2 has no name$"):
        prepare(path, target="y")
    pq.write_table(
        pa.table({"a": pa.array([], pa.float64()), "y": pa.array([], pa.float64())}), path
    )
    with pytest.raises(ValueError, match=r"t.parquet: no data row \(only a header\)"):
        check_source_of(path)


def test_a_directory_as_data_path_is_named_as_one(tmp_path):
    """`data.path` naming a directory is refused as a directory (not "table not found")
    when the study is parsed, and by the readers and preparation."""
    from dlpipe.tasks.tabular.read import read_header

    folder = tmp_path / "tables.csv"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"s.yaml: `data.path`: a directory, not a table file"):
        parse_study(_raw("tables.csv"), source="s.yaml", base_dir=tmp_path)
    with pytest.raises(ValueError, match=r"tables.csv: a directory, not a table file"):
        read_header(folder)
    with pytest.raises(ValueError, match=r"tables.csv: a directory, not a table file"):
        prepare(folder, target="y")


def test_a_non_utf8_byte_is_reported_on_its_own_line(tmp_path, monkeypatch):
    """A byte that is not UTF-8 is reported on the line it is on (the newlines before
    it counted), by the pre-Ray check and by preparation alike, with a byte-order mark
    or not; one beyond the bytes the pre-Ray check reads is left to preparation, and a
    character cut by that limit is not an error (whole lines are read)."""
    from dlpipe.tasks.tabular import read

    rows = [["a", "b", "c", "y"], *regression_rows()]
    lines = [",".join(map(str, r)).encode() for r in rows]
    csv = tmp_path / "t.csv"
    for bom in (b"", b"\xef\xbb\xbf"):
        bad = lines[:11] + [b"\xff" + lines[11]] + lines[12:]  # line 12 starts with it
        csv.write_bytes(bom + b"\n".join(bad) + b"\n")
        with pytest.raises(ValueError, match=r"t.csv: line 12: not UTF-8 text$"):
            check_source_of(csv)
        with pytest.raises(ValueError, match=r"t.csv: line 12: not UTF-8 text$"):
            prepare(csv, target="y")
    monkeypatch.setattr(read, "HEAD_BYTES", len(b"\n".join(lines[:3])) + 1)
    check_source_of(csv)  # line 12 is past the bytes read before Ray
    lines[2] = lines[2] + ",\u00e9t\u00e9".encode()  # a 2-byte character on line 3
    csv.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setattr(read, "HEAD_BYTES", csv.read_bytes().index(b"\xc3") + 1)
    check_source_of(csv)


def test_a_feature_with_no_value_in_the_training_rows_is_refused(tmp_path):
    """A feature column missing in every training row is refused naming it (under
    `missing: mean` it would be filled with the mean of nothing: NaN inputs and a NaN
    in the datasets row), numeric or categorical; under `missing: drop` the "rows left"
    error names the column that has no value in any row."""
    rows = [[r[0], "", "x" if i % 2 else "", r[3]] for i, r in enumerate(regression_rows())]
    csv = write_csv(tmp_path / "t.csv", ["a", "x2", "colour", "y"], rows)
    with pytest.raises(ValueError, match=r"t.csv: column `x2` has no value in the training rows"):
        prepare(csv, target="y", categorical=("colour",), missing="mean")
    with pytest.raises(ValueError, match=r"0 row\(s\) left.*column\(s\) \['x2'\] have no value"):
        prepare(csv, target="y", categorical=("colour",))
    rows = [[r[0], "", r[3]] for r in regression_rows()]
    csv = write_csv(tmp_path / "c.csv", ["a", "colour", "y"], rows)
    with pytest.raises(ValueError, match=r"c.csv: column `colour` has no value in the training"):
        prepare(csv, target="y", categorical=("colour",), missing="mean")


def test_a_constant_regression_target_is_refused(tmp_path):
    """A regression target (inferred or given) with one value in every training row is
    refused as the weather kind refuses it: nothing to predict, and the mean predictor's
    MAE of 0 no model can beat."""
    rows = [[r[0], r[1], 2.5] for r in regression_rows()]
    csv = write_csv(tmp_path / "t.csv", ["a", "b", "y"], rows)
    message = (
        r"t.csv: column `y` \(the target\) holds the same value 2.5 in every training "
        r"row: there is nothing to predict"
    )
    with pytest.raises(ValueError, match=message):
        prepare(csv, target="y")  # inferred: regression (not an integer)
    rows = [[r[0], r[1], 7] for r in regression_rows()]
    csv = write_csv(tmp_path / "t.csv", ["a", "b", "y"], rows)
    spec = TabularDataSpec(path=str(csv), target="y")
    with pytest.raises(ValueError, match=message.replace("2.5", "7.0")):
        prepare_tabular(spec, TabularSplitSpec(0.25, 0.25), "regression")


def test_target_label_spellings_are_refused_or_merged(tmp_path, capsys):
    """Classification target labels that differ only in letter case or surrounding
    spaces (`yes`, `Yes `, `no`) follow the text kind's rule: refused by default naming
    each spelling's rows and first line, merged with `data.label_variants: merge` into
    the most frequent spelling (reported and printed); the default leaves dataset keys
    as they were."""
    import hashlib
    from dataclasses import asdict

    from dlpipe.pipelines.kinds.tabular import dataset_row, print_dataset
    from dlpipe.tasks.tabular.data import PREPARE_VERSION, dataset_key

    labels = ["yes", "no", "Yes ", "no"]
    rows = [[i, labels[i % 4] if i != 4 else " YES"] for i in range(40)]
    csv = write_csv(tmp_path / "t.csv", ["a", "y"], rows)
    message = (
        r"t.csv: column `y`: labels differ only in letter case or spacing: 'YES' \(1 row, "
        r"first at line 6\), 'Yes' \(10 rows, first at line 4\), 'yes' \(9 rows, first at "
        r"line 2\)\. Fix the spellings, or set `data.label_variants: merge`"
    )
    with pytest.raises(ValueError, match=message):
        prepare(csv, target="y")
    arrays, meta = prepare(csv, target="y", label_variants="merge")
    assert meta["task"] == "binary" and meta["class_names"] == ["Yes", "no"]
    assert meta["label_variants_merged"] == {"Yes": {"YES": 1, "yes": 9}}
    assert sorted(np.bincount(arrays["labels"]).tolist()) == [20, 20]
    assert dataset_row(meta)["quality"]["label_variants_merged"] == {"Yes": {"YES": 1, "yes": 9}}
    print_dataset(meta)
    assert "merged (data.label_variants: merge): 'YES', 'yes' -> 'Yes'" in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"`label_variants` must be 'refuse' or 'merge'"):
        parse_study(_raw(csv, data={"path": str(csv), "target": "y", "label_variants": "warn"}))
    spec, split = TabularDataSpec(path=str(csv), target="y"), TabularSplitSpec()
    payload = {
        "version": PREPARE_VERSION,
        "content": "d",
        "data": {k: v for k, v in asdict(spec).items() if k not in ("path", "label_variants")},
        "split": asdict(split),
        "task": None,
    }
    before = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    assert dataset_key("d", spec, split, None) == before
    merging = TabularDataSpec(path=str(csv), target="y", label_variants="merge")
    assert dataset_key("d", merging, split, None) != before


def test_non_finite_feature_numbers_are_missing_values_counted_apart(tmp_path, capsys):
    """`inf`/`-inf`/`Infinity` in a numeric feature are missing values (the README's
    general rule, as in the weather kind): dropped or mean-filled by `data.missing`,
    counted in the missing cells and apart (`nonfinite_counts`), never an error."""
    from dlpipe.pipelines.kinds.tabular import dataset_row, print_dataset

    rows = regression_rows()
    rows[2][0], rows[6][1], rows[7][1], rows[8][1] = "inf", "-inf", "Infinity", ""
    csv = write_csv(tmp_path / "t.csv", ["a", "b", "c", "y"], rows)
    arrays, meta = prepare(csv, target="y")
    assert meta["missing_counts"] == {"a": 1, "b": 3, "c": 0, "y": 0}
    assert meta["nonfinite_counts"] == {"a": 1, "b": 2}
    assert meta["rows_dropped"] == 4 and not set(arrays["rows"].tolist()) & {2, 6, 7, 8}
    arrays, meta = prepare(csv, target="y", missing="mean")
    assert meta["rows_dropped"] == 0 and np.isfinite(arrays["x"]).all()
    assert np.isfinite(meta["mean"]["a"]) and np.isfinite(meta["std"]["b"])
    at = {int(r): i for i, r in enumerate(arrays["rows"])}
    assert arrays["x"][at[2], 0] == 0.0 and arrays["x"][at[6], 1] == 0.0  # training mean
    assert dataset_row(meta)["quality"]["nonfinite_counts"] == {"a": 1, "b": 2}
    print_dataset(meta)
    assert "non-finite numbers (inf/-inf): {'a': 1, 'b': 2}" in capsys.readouterr().out
    _, meta = prepare(
        write_csv(tmp_path / "u.csv", ["a", "b", "c", "y"], regression_rows()), target="y"
    )
    assert "nonfinite_counts" not in dataset_row(meta)["quality"]  # only when any


def test_reports_follow_the_runs_metric():
    """A classification study's reports show accuracy and the majority class; a
    regression one MAE of the target and the mean predictor (no kind branch outside
    pipelines/kinds: the kind's view of the stored metric)."""
    import pandas as pd

    from dlpipe.pipelines.study import kind_of_runs

    runs = pd.DataFrame({"pipeline": ["tabular"] * 2, "metric": ["accuracy"] * 2})
    kind = kind_of_runs(runs)
    assert (kind.baseline_name, kind.metric_plot) == ("majority-class", "val_metric.png")
    assert kind.headline_title("y") == "accuracy" and kind.loss_label == "crossentropy"
    kind = kind_of_runs(runs.assign(metric="mae"))
    assert (kind.baseline_name, kind.headline_title("y")) == ("mean-predictor", "MAE of y")


@pytest.mark.train
def test_model_heads_follow_the_task():
    from dlpipe.models.registry import build_model

    for family in ("dense", "dense_dropout", "dense_l2"):
        for task, classes, width, loss in (
            ("regression", 1, 1, "mse"),
            ("binary", 1, 1, "binary_crossentropy"),
            ("multiclass", 4, 4, "sparse_categorical_crossentropy"),
        ):
            model = build_model(family, (5,), {"task": task, "num_classes": classes}, "tabular")
            assert model.output_shape == (None, width) and model.loss == loss
    with pytest.raises(ValueError, match="`num_classes` must be 1 for task 'binary'"):
        build_model("dense", (5,), {"task": "binary", "num_classes": 2}, "tabular")


@pytest.mark.train
def test_one_run_scores_match_its_predictions_and_the_evaluator(tmp_path):
    from dlpipe.tasks.tabular.train import evaluate_saved_tabular_model, train_tabular_model
    from dlpipe.tasks.training.fit import TrainingSpec

    csv = write_csv(tmp_path / "t.csv", ["a", "b", "c", "y"], regression_rows(80))
    arrays, meta = prepare(csv, target="y")
    path = str(tmp_path / "m.keras")
    result = train_tabular_model(
        data=arrays,
        meta=meta,
        family="dense",
        hp={"learning_rate": 0.01},
        inputs=None,
        training=TrainingSpec(epochs=3, batch_size=8),
        seed=1,
        run_id="r",
        model_path=path,
    )
    run = result.run
    assert run["metric"] == "mae" and run["hyperparameters"]["task"] == "regression"
    val = [p for p in result.predictions if p["split"] == "validation"]
    assert sorted(p["sample_index"] for p in val) == sorted(
        arrays["rows"][arrays["split"] == 1].tolist()
    )
    errors = np.array([p["prediction"] - p["target"] for p in val])
    assert run["val_metric"] == pytest.approx(np.abs(errors).mean(), rel=1e-6)
    assert run["val_loss"] == pytest.approx((errors**2).mean(), rel=1e-6)
    scored = evaluate_saved_tabular_model(
        data=arrays, meta=meta, model_path=path, inputs=None, run_id="r", split="test"
    )
    assert scored["metric"] == pytest.approx(run["test_metric"], rel=1e-5)


def _run_dlpipe(tmp_path, study: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [str(BIN / "dlpipe"), "run", str(study)]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.ray
def test_regression_study_end_to_end_through_local_ray(tmp_path):
    rows = [[r[0], r[1], ["x", "y"][i % 2], r[3]] for i, r in enumerate(regression_rows(60))]
    rows[7][0] = ""
    write_csv(tmp_path / "t.csv", ["a", "b", "colour", "target"], rows)
    study = tmp_path / "study.yaml"
    study.write_text(
        textwrap.dedent(
            """
            study: tab-e2e
            pipeline: tabular
            output_dir: out
            data: {path: t.csv, target: target, categorical: [colour], missing: mean}
            training: {epochs: 3, batch_size: 8}
            models:
              - {family: dense, hp: {learning_rate: 0.01}}
              - {family: dense_l2}
            """
        )
    )
    proc = _run_dlpipe(tmp_path, study)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "task regression (inferred from the target)" in proc.stdout
    assert "missing cells: {'a': 1}" in proc.stdout
    assert "mean-predictor baseline" in proc.stdout
    run_dir = tmp_path / "out" / "tab-e2e"
    runs = reports.read_table(run_dir, "runs")
    assert sorted(runs["family"]) == ["baseline", "dense", "dense_l2"]
    assert (runs["status"] == "ok").all() and (runs["metric"] == "mae").all()
    predictions = reports.read_table(run_dir, "predictions")
    assert set(predictions["sample_index"]) <= set(range(60))
    datasets = reports.read_table(run_dir, "datasets")
    quality = json.loads(datasets["quality"].iloc[0])
    assert quality["categories"] == {"colour": ["x", "y"]} and quality["task"] == "regression"
    assert json.loads(datasets["sentinel_counts"].iloc[0])["a"] == 1
    assert (run_dir / "plots" / "val_mae.png").is_file()
    proc = _run_dlpipe(tmp_path, study)
    assert proc.returncode == 0 and "resuming: 2 finished run(s)" in proc.stdout
    # changed data under the same study is refused and leaves nothing behind, so the
    # original data resumes afterwards (fresh-user pass: a refused run used to write its
    # `datasets` part first, and every later run was refused)
    original = (tmp_path / "t.csv").read_bytes()
    (tmp_path / "t.csv").write_bytes(original + b"0.5,10.0,x,7.0\n")
    proc = _run_dlpipe(tmp_path, study)
    assert proc.returncode == 2 and "holds runs on dataset" in proc.stderr, proc.stderr
    assert len(reports.read_table(run_dir, "datasets")) == 1
    (tmp_path / "t.csv").write_bytes(original)
    proc = _run_dlpipe(tmp_path, study)
    assert proc.returncode == 0 and "resuming: 2 finished run(s)" in proc.stdout, proc.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_wine_classification_study_through_local_ray(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(
        textwrap.dedent(
            """
            study: wine
            pipeline: tabular
            output_dir: out
            data: {path: "demo:wine", target: cultivar}
            training:
              epochs: 8
              batch_size: 16
              early_stopping: {monitor: val_accuracy, patience: 4}
            models:
              - {family: dense}
            """
        )
    )
    proc = _run_dlpipe(tmp_path, study)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "task multiclass (inferred from the target)" in proc.stdout
    assert "majority-class baseline" in proc.stdout
    run_dir = tmp_path / "out" / "wine"
    runs = reports.read_table(run_dir, "runs").set_index("family")
    assert (runs["metric"] == "accuracy").all()
    assert runs.loc["dense", "val_metric"] > runs.loc["baseline", "val_metric"]
    predictions = reports.read_table(run_dir, "predictions")
    assert predictions["probabilities"].map(len).eq(3).all()
    assert (run_dir / "plots" / "val_metric.png").is_file()
