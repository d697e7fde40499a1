"""K-fold evaluation (book ch. 3.6.4, listings 3.27-3.30; issue 14): folds, per-fold
normalization, aggregate rows, the averaged-curve epoch choice, config checks, hold-out
keys, and a small end-to-end study through local Ray."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlpipe.pipelines.config import ConfigError, parse_study
from dlpipe.pipelines.sections import EvaluationSpec
from dlpipe.tasks.training.folds import make_folds


def test_folds_are_disjoint_and_cover_every_row_once():
    folds = make_folds(10, 3, seed=1)
    assert [(f.repeat, f.fold) for f in folds] == [(0, 0), (0, 1), (0, 2)]
    validation = np.concatenate([f.validation for f in folds])
    assert sorted(validation.tolist()) == list(range(10))
    assert sorted(len(f.validation) for f in folds) == [3, 3, 4]
    for f in folds:
        assert not set(f.train) & set(f.validation)
        assert sorted(np.concatenate([f.train, f.validation]).tolist()) == list(range(10))


def test_stratified_folds_keep_each_class_share_within_one_sample():
    labels = np.array([0] * 13 + [1] * 5 + [2] * 9)
    for f in make_folds(len(labels), 4, labels=labels, seed=7):
        counts = np.bincount(labels[f.validation], minlength=3)
        # class c holds n_c / k rows of every fold, within one sample: 13/4, 5/4, 9/4
        assert np.all(np.abs(counts - np.array([13, 5, 9]) / 4) < 1), counts


def test_repeats_are_reshuffled_and_a_seed_gives_the_same_partition():
    a = make_folds(12, 3, repeats=2, seed=5)
    b = make_folds(12, 3, repeats=2, seed=5)
    assert len(a) == 6
    assert all(np.array_equal(x.validation, y.validation) for x, y in zip(a, b))
    first = {tuple(f.validation) for f in a[:3]}
    second = {tuple(f.validation) for f in a[3:]}
    assert first != second
    for repeat in (a[:3], a[3:]):
        assert sorted(np.concatenate([f.validation for f in repeat]).tolist()) == list(range(12))


def test_fold_errors_name_the_counts():
    with pytest.raises(ValueError, match=r"3 non-test row\(s\) for k=4"):
        make_folds(3, 4)
    labels = np.array([0] * 8 + [1] * 3)
    with pytest.raises(ValueError, match=r"class 'b' has 3 non-test row\(s\) for k=4"):
        make_folds(11, 4, labels=labels, class_names=["a", "b"])
    make_folds(11, 4, labels=None)  # unstratified: fine


def test_per_fold_normalization_uses_that_folds_training_rows_only(tmp_path):
    from dlpipe.tasks.tabular.data import TabularDataSpec, TabularSplitSpec
    from dlpipe.tasks.tabular.folds import fold_arrays
    from dlpipe.tasks.training.classifier import SPLIT_CODES

    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 3, 40), rng.normal(-2, 5, 40)
    frame = pd.DataFrame({"a": a, "b": b, "y": 2 * a + b})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    spec, split = TabularDataSpec(str(path), "y"), TabularSplitSpec(0.2, 0.25, seed=3)
    ev = EvaluationSpec("kfold", 3)
    entries = fold_arrays(spec, split, "regression", None, ev, 42)
    assert len(entries) == 4  # 3 folds + the final model
    raw = np.loadtxt(path, delimiter=",", skiprows=1)
    test = None
    for arrays, info in entries:
        codes = arrays["split"]
        rows = arrays["rows"]
        train = rows[codes == SPLIT_CODES["train"]]
        mean, std = raw[train, :2].mean(axis=0), raw[train, :2].std(axis=0)
        np.testing.assert_allclose(arrays["x"], (raw[rows, :2] - mean) / std, rtol=1e-5, atol=1e-5)
        assert info["mean"]["a"] == pytest.approx(mean[0])
        fold_test = set(rows[codes == SPLIT_CODES["test"]])
        test = fold_test if test is None else test
        assert fold_test == test  # the test split never changes
    final_codes = entries[-1][0]["split"]
    assert not (final_codes == SPLIT_CODES["validation"]).any()
    assert entries[-1][1]["fold"] is None


def test_aggregate_row_is_the_mean_and_std_of_the_fold_rows():
    from dlpipe.pipelines.kfold import aggregate_row

    folds = pd.DataFrame(
        {
            "family": "dense",
            "hyperparameters": "{}",
            "seed": 1,
            "params": 10,
            "metric": "mae",
            "inputs": "{}",
            "resources": "{}",
            "devices": "CPU",
            "node": "n",
            "status": "ok",
            "wall_time_s": [1.0, 2.0, 3.0],
            "val_loss": [9.0, 16.0, 11.0],
            "val_metric": [2.6, 3.2, 3.0],
        }
    )
    row = aggregate_row("dense-agg", folds).run
    assert row["evaluation"] == "mean" and row["folds"] == 3 and row["status"] == "ok"
    assert row["val_metric"] == pytest.approx(np.mean([2.6, 3.2, 3.0]))
    assert row["val_metric_std"] == pytest.approx(np.std([2.6, 3.2, 3.0]))
    assert row["val_loss"] == pytest.approx(12.0)
    assert row["wall_time_s"] == 6.0
    folds.loc[1, "status"] = "failed"
    row = aggregate_row("dense-agg", folds).run
    assert row["status"] == "failed" and row["folds"] == 2 and "1 of 3" in row["error"]


def test_the_epoch_count_is_the_best_epoch_of_the_averaged_curve():
    from dlpipe.metrics import get_metric
    from dlpipe.pipelines.kfold import averaged_curve, choose_epochs, smoothed_curve

    history = pd.DataFrame(
        {
            "run_id": ["f0"] * 4 + ["f1"] * 3,
            "epoch": [1, 2, 3, 4, 1, 2, 3],
            "val_metric": [5.0, 3.0, 2.0, 1.0, 4.0, 2.0, 3.0],
        }
    )
    curve = averaged_curve(history, ["f0", "f1"])
    # epochs every fold ran: 1-3; means 4.5, 2.5, 2.5: the first best is epoch 2
    assert curve.tolist() == [4.5, 2.5, 2.5]
    assert choose_epochs(curve, get_metric("mae")) == 2
    assert choose_epochs(curve, get_metric("accuracy")) == 1
    assert smoothed_curve(curve) is None  # under 20 epochs: not smoothed
    long = pd.Series(np.linspace(3, 1, 25), index=range(1, 26))
    assert len(smoothed_curve(long)) == 25


def _raw(tmp_path: Path, **extra) -> dict:
    path = tmp_path / "t.csv"
    path.write_text("a,y\n" + "".join(f"{i},{2 * i}\n" for i in range(20)))
    return {
        "study": "s",
        "pipeline": "tabular",
        "data": {"path": str(path), "target": "y"},
        "models": [{"family": "dense"}],
        **extra,
    }


def test_evaluation_section_is_validated_at_load(tmp_path):
    assert parse_study(_raw(tmp_path)).evaluation.is_holdout
    assert parse_study(_raw(tmp_path, evaluation="holdout")).evaluation == EvaluationSpec()
    cfg = parse_study(_raw(tmp_path, evaluation={"kfold": {"k": 4}}))
    assert (cfg.evaluation.mode, cfg.evaluation.k, cfg.evaluation.repeats) == ("kfold", 4, 1)
    it = parse_study(
        _raw(tmp_path, evaluation={"iterated_kfold": {"k": 3, "repeats": 2, "stratified": False}})
    ).evaluation
    assert (it.k, it.repeats, it.stratified) == (3, 2, False)
    for value, message in (
        ({"kfold": {"k": 1}}, r"`evaluation.kfold.k` must be an integer >= 2"),
        ({"iterated_kfold": {"k": 3, "repeats": 0}}, r"repeats` must be an integer >= 1"),
        ({"loo": {"k": 3}}, r"`evaluation`: unknown mode `loo`"),
        ("kfold", r"`evaluation` must be `holdout` or a mapping"),
        ({"kfold": {"k": 3, "repeats": 2}}, r"unknown key `evaluation.kfold.repeats`"),
        ({"kfold": {}}, r"missing required key `evaluation.kfold.k`"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_study(_raw(tmp_path, evaluation=value))
    # out-of-fold ensembles: the ensemble stage is allowed under K-fold
    cfg = parse_study(_raw(tmp_path, evaluation={"kfold": {"k": 3}}, ensemble={"enabled": True}))
    assert cfg.ensemble.enabled and cfg.evaluation.mode == "kfold"


def test_kinds_refuse_the_modes_they_lack_with_their_reason():
    from dlpipe.pipelines.kinds import KINDS

    for name in ("tabular", "text", "images"):
        assert KINDS[name].evaluations == ("holdout", "kfold", "iterated_kfold")
    assert KINDS["timeseries"].evaluations == ("holdout", "forward_chaining")
    assert "trains on the future" in KINDS["timeseries"].kfold_refusal
    assert "leakage" in KINDS["timeseries"].kfold_refusal
    assert "forward chaining" in KINDS["timeseries"].kfold_refusal

    class Cfg:
        evaluation = EvaluationSpec("kfold", 3)

    with pytest.raises(ConfigError, match="kfold is not available for timeseries studies: plain"):
        KINDS["timeseries"].check_evaluation(Cfg())

    class Chained:
        evaluation = EvaluationSpec("forward_chaining", 3)

    for name in ("tabular", "text", "images"):
        with pytest.raises(
            ConfigError, match=f"forward_chaining is not available for {name} studies: forward"
        ):
            KINDS[name].check_evaluation(Chained())


def test_holdout_keys_are_unchanged_and_fold_keys_differ():
    from dlpipe.tasks.training.fit import TrainingSpec
    from dlpipe.tasks.training.records import run_key

    training = TrainingSpec(epochs=2)
    base = run_key("abc", "dense", {"units": 8}, None, training, 1)
    assert run_key("abc", "dense", {"units": 8}, None, training, 1, None) == base
    ev = {**EvaluationSpec("kfold", 3).key_payload(), "repeat": 0}
    keys = {
        run_key("abc", "dense", {"units": 8}, None, training, 1, {**ev, "fold": f})
        for f in range(3)
    }
    assert len(keys) == 3 and base not in keys


def test_holdout_parts_keep_their_columns(tmp_path):
    """The K-fold columns are written only where a row sets them."""
    import pyarrow.parquet as pq

    from dlpipe.tasks.reports import tables as reports

    reports.write_part(tmp_path, "runs", "a", [{"run_id": "a", "status": "ok"}], kind="tabular")
    names = pq.read_schema(tmp_path / "reports" / "runs" / "part-a.parquet").names
    assert "fold" not in names and "val_metric_std" not in names
    assert "fold" not in reports.read_table(tmp_path, "runs")
    reports.write_part(
        tmp_path, "runs", "b", [{"run_id": "b", "fold": 1, "repeat": 0}], kind="tabular"
    )
    runs = reports.read_table(tmp_path, "runs").set_index("run_id")
    assert str(runs["fold"].dtype) == "Int64" and runs.loc["b", "fold"] == 1
    assert runs["fold"].isna()["a"]


@pytest.mark.slow
@pytest.mark.ray
def test_kfold_study_end_to_end_and_resume(tmp_path):
    import os
    import subprocess
    import sys

    from dlpipe.tasks.reports import tables as reports

    rng = np.random.default_rng(0)
    lines = ["a,b,target"] + [
        f"{a:.3f},{b:.3f},{3 * a + 2 * b + 10:.3f}"
        for a, b in zip(rng.normal(0, 1, 48), rng.normal(5, 2, 48))
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    study = tmp_path / "study.yaml"
    study.write_text(
        textwrap.dedent(
            """
            study: kf
            pipeline: tabular
            output_dir: out
            data: {path: t.csv, target: target}
            evaluation: {kfold: {k: 3}}
            training: {epochs: 4, batch_size: 8}
            models:
              - {family: dense, hp: {learning_rate: 0.01}}
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [str(Path(sys.executable).parent / "dlpipe"), "run", str(study)]

    def run():
        return subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )

    proc = run()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "over 3 folds (spread" in proc.stdout
    run_dir = tmp_path / "out" / "kf"
    runs = reports.read_table(run_dir, "runs")
    models = runs[runs["family"] == "dense"]
    assert sorted(models["evaluation"]) == ["final", "fold", "fold", "fold", "mean"]
    folds = models[models["evaluation"] == "fold"]
    assert sorted(folds["fold"].tolist()) == [0, 1, 2] and (folds["repeat"] == 0).all()
    mean = models[models["evaluation"] == "mean"].iloc[0]
    assert mean["val_metric"] == pytest.approx(folds["val_metric"].mean())
    assert mean["val_metric_std"] == pytest.approx(np.std(folds["val_metric"]))
    assert pd.isna(mean["fold"]) and mean["folds"] == 3
    final = models[models["evaluation"] == "final"].iloc[0]
    assert final["status"] == "ok" and np.isfinite(final["test_metric"])
    assert pd.isna(final["fold"]) and pd.isna(final["repeat"])
    assert '"final_epochs"' in final["inputs"]
    history = reports.read_table(run_dir, "history")
    assert set(history.loc[history["run_id"].isin(folds["run_id"]), "fold"]) == {0, 1, 2}
    predictions = reports.read_table(run_dir, "predictions")
    assert predictions.loc[predictions["run_id"] == final["run_id"], "split"].eq("test").all()
    assert list((run_dir / "plots").glob("kfold_*.png"))
    proc = run()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "resuming: 3 finished run(s)" in proc.stdout
    assert "resuming: 1 final model(s)" in proc.stdout
    again = reports.read_table(run_dir, "runs")
    assert len(again) == len(runs)
