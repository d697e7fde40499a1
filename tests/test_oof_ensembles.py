"""Ensembles of K-fold studies (issue 14): out-of-fold (OOF) and hold-out-fit members,
their weights and test scores, the report's ``fit`` column, and a small K-fold study
with the ensemble stage through local Ray.

The fast tests write a K-fold run directory in tmp_path with ``reports.write_part`` (no
training): fold runs whose validation predictions are known numbers, final models with
test predictions, then check the members against arrays built here independently.
"""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from dlpipe.ensembles import WeightedAverage, get_loss
from dlpipe.pipelines.ensemble import run_ensemble
from dlpipe.tasks.ensembling.build import build_ensembles
from dlpipe.tasks.ensembling.oof import kfold_run_dirs, load_kfold_members
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.folds import make_folds

N_POOL, N_TEST, K = 36, 12, 3
POOL_IDS = np.arange(N_POOL) * 3 + 5  # table rows of the non-test samples (not 0..n-1)
TEST_IDS = np.arange(N_TEST) * 3 + 7
FAMILIES = ("dense", "dense_dropout", "dense_l2")
OFFSETS = (1.0, -3.0, 0.0)  # member j predicts target + OFFSETS[j] + its own noise


def _targets(ids):
    return 10.0 + 5.0 * np.sin(np.asarray(ids) / 7.0)


def _prediction(j: int, ids, repeat: int):
    """Member j's prediction of samples ``ids`` by its repeat-``repeat`` fold model."""
    ids = np.asarray(ids, np.float64)
    noise = (0.5 * np.cos(ids * 0.7), np.sin(ids * 0.3), 2.0 * np.sin(ids * 1.3 + repeat))[j]
    return _targets(ids) + OFFSETS[j] + noise + 0.1 * repeat


def _row(run_id, family, evaluation, when, **extra):
    return {
        "run_id": run_id,
        "family": family,
        "hyperparameters": json.dumps({"units": 8}),
        "seed": 1,
        "status": "ok",
        "metric": "mae",
        "evaluation": evaluation,
        "finished_at": datetime(2026, 1, 1, 0, when, tzinfo=timezone.utc),
        **extra,
    }


def write_kfold_dir(run_dir: Path, repeats: int) -> dict:
    """A K-fold study's reports: per family, ``repeats * K`` fold runs, a mean row and a
    final model. Returns ``{(repeat, fold): validation ids}``."""
    folds = make_folds(N_POOL, K, repeats=repeats, seed=3)
    places = {(f.repeat, f.fold): POOL_IDS[f.validation] for f in folds}
    for j, family in enumerate(FAMILIES):
        for (repeat, fold), ids in places.items():
            run_id = f"{family}-r{repeat}f{fold}"
            rows = [
                {
                    "run_id": run_id,
                    "split": split,
                    "sample_index": int(i),
                    "prediction": float(p),
                    "target": float(y),
                    "repeat": repeat,
                    "fold": fold,
                }
                for split, s_ids in (("validation", ids), ("test", TEST_IDS))
                for i, p, y in zip(s_ids, _prediction(j, s_ids, repeat), _targets(s_ids))
            ]
            reports.write_part(run_dir, "predictions", run_id, rows)
            extra = {"repeat": repeat, "fold": fold}
            reports.write_part(
                run_dir, "runs", run_id, [_row(run_id, family, "fold", 1, **extra)], "tabular"
            )
        reports.write_part(
            run_dir, "runs", f"{family}-mean", [_row(f"{family}-mean", family, "mean", 2)]
        )
        final = f"{family}-final"
        test = _prediction(j, TEST_IDS, 7) + 0.5 * np.cos(TEST_IDS)
        rows = [
            {"run_id": final, "split": "test", "sample_index": int(i), "prediction": float(p)}
            | {"target": float(y)}
            for i, p, y in zip(TEST_IDS, test, _targets(TEST_IDS))
        ]
        reports.write_part(run_dir, "predictions", final, rows)
        reports.write_part(run_dir, "runs", final, [_row(final, family, "final", 3)], "tabular")
    reports.write_part(
        run_dir, "runs", "baseline-x", [{"run_id": "baseline-x", "family": "baseline"}]
    )
    return places


def final_test_predictions():
    return np.stack(
        [_prediction(j, TEST_IDS, 7) + 0.5 * np.cos(TEST_IDS) for j in range(len(FAMILIES))]
    )


def test_oof_members_cover_every_non_test_sample_averaged_over_repeats(tmp_path):
    places = write_kfold_dir(tmp_path, repeats=2)
    # the folds of each repeat validate every non-test sample exactly once
    for repeat in (0, 1):
        ids = np.concatenate([places[(repeat, f)] for f in range(K)])
        assert sorted(ids.tolist()) == sorted(POOL_IDS.tolist())
    assert kfold_run_dirs([tmp_path])
    members = load_kfold_members([tmp_path], fit="oof")
    assert members.fit == "oof" and members.run_ids == tuple(f"{f}-final" for f in FAMILIES)
    assert members.val_sample_index.tolist() == sorted(POOL_IDS.tolist())
    for j in range(len(FAMILIES)):
        # a second computation: each sample's mean over its two repeats' fold models
        expected = (_prediction(j, POOL_IDS, 0) + _prediction(j, POOL_IDS, 1)) / 2
        order = np.argsort(POOL_IDS)
        np.testing.assert_allclose(members.val_predictions[j], expected[order])
    np.testing.assert_allclose(members.val_targets, _targets(np.sort(POOL_IDS)))
    # test: the final models' predictions, not the fold models'
    np.testing.assert_allclose(members.test_predictions, final_test_predictions())
    assert members.test_sample_index.tolist() == TEST_IDS.tolist()


def test_holdout_fit_uses_only_fold_0_of_repeat_0(tmp_path):
    places = write_kfold_dir(tmp_path, repeats=2)
    members = load_kfold_members([tmp_path], fit="holdout")
    assert members.fit == "holdout"
    assert members.val_sample_index.tolist() == sorted(places[(0, 0)].tolist())
    assert len(members.val_sample_index) == N_POOL // K
    ids = np.sort(places[(0, 0)])
    np.testing.assert_allclose(members.val_predictions[1], _prediction(1, ids, 0))
    np.testing.assert_allclose(members.test_predictions, final_test_predictions())


def test_oof_weights_equal_a_direct_fit_on_the_concatenated_oof_arrays(tmp_path):
    places = write_kfold_dir(tmp_path, repeats=1)
    members = load_kfold_members([tmp_path], fit="oof")
    rows = {r["method"]: r for r in build_ensembles(members, loss="mae", n_folds=3)}
    # second computation: concatenate the folds' validation arrays here, fit directly
    ids = np.concatenate([places[(0, f)] for f in range(K)])
    x = np.stack([_prediction(j, ids, 0) for j in range(len(FAMILIES))])
    order = np.argsort(ids)
    # C order, as the loader's arrays (the optimizers' last digits follow the layout)
    x, y = np.ascontiguousarray(x[:, order]), _targets(ids)[order]
    mae, _ = get_loss("mae")
    test_x, test_y = final_test_predictions(), _targets(TEST_IDS)
    for name, method in (("weighted_slsqp", "slsqp"), ("weighted_nelder_mead", "nelder-mead")):
        direct = WeightedAverage(loss="mae", method=method, random_state=0).fit(x, y)
        weights = json.loads(rows[name]["weights"])
        np.testing.assert_allclose(weights, direct.weights_, atol=1e-9)
        assert rows[name]["test_score"] == pytest.approx(mae(test_y, direct.predict(test_x)))
        assert rows[name]["fit"] == "oof"
        # fold 0 alone gives other weights: the check above can tell the two fits apart
        one = WeightedAverage(loss="mae", method=method, random_state=0)
        one.fit(x[:, np.isin(ids[order], places[(0, 0)])], y[np.isin(ids[order], places[(0, 0)])])
        assert np.max(np.abs(one.weights_ - direct.weights_)) > 1e-3


def test_run_ensemble_on_a_kfold_dir_writes_and_prints_both_fits(tmp_path, capsys):
    write_kfold_dir(tmp_path, repeats=1)
    run_ensemble([tmp_path], loss="mae", n_folds=3)
    out = capsys.readouterr().out
    assert "fit holdout (fold 0 of repeat 0's validation predictions): ensembles" in out
    assert "fit oof (out-of-fold predictions of every non-test sample): ensembles" in out
    assert f"{N_POOL // K} validation / {N_TEST} test" in out
    assert f"{N_POOL} validation / {N_TEST} test" in out
    assert "fit holdout vs oof" in out and "test oof - holdout" in out
    table = reports.read_table(tmp_path, "ensembles")
    assert sorted(set(table["fit"])) == ["holdout", "oof"]
    assert table.groupby("fit")["ensemble_id"].nunique().tolist() == [1, 1]
    assert (tmp_path / "plots" / "ensemble_weights.png").is_file()
    assert (tmp_path / "plots" / "ensemble_weights_holdout.png").is_file()
    # both fits scored on the same test predictions: the simple average is the same
    simple = table[table["method"] == "simple_average"].set_index("fit")["test_score"]
    assert simple["holdout"] == pytest.approx(simple["oof"])
    run_ensemble([tmp_path], loss="mae", n_folds=3)
    assert capsys.readouterr().out.count("already built") == 2


def test_kfold_and_holdout_dirs_are_not_mixed(tmp_path):
    write_kfold_dir(tmp_path / "kf", repeats=1)
    reports.write_part(tmp_path / "ho", "runs", "a", [{"run_id": "a", "family": "dense"}])
    with pytest.raises(ValueError, match="cannot ensemble K-fold and hold-out studies"):
        kfold_run_dirs([tmp_path / "kf", tmp_path / "ho"])
    with pytest.raises(ValueError, match="`fit` must be one of"):
        load_kfold_members([tmp_path / "kf"], fit="all")


def test_a_model_with_a_failed_fold_is_not_a_member(tmp_path):
    write_kfold_dir(tmp_path, repeats=1)
    bad = _row("dense-r0f1", "dense", "fold", 1, repeat=0, fold=1)
    reports.write_part(tmp_path, "runs", "dense-r0f1", [{**bad, "status": "failed"}], "tabular")
    members = load_kfold_members([tmp_path], fit="oof")
    assert members.run_ids == ("dense_dropout-final", "dense_l2-final")
    assert members.skipped == {"dense-final": "1 of 3 fold run(s) failed"}


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.train
def test_iterated_kfold_study_with_ensembles_end_to_end(tmp_path):
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    lines = ["a,b,target"] + [
        f"{a:.3f},{b:.3f},{3 * a + 2 * b + 10:.3f}"
        for a, b in zip(rng.normal(0, 1, 40), rng.normal(5, 2, 40))
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    study = tmp_path / "study.yaml"
    study.write_text(
        textwrap.dedent(
            """
            study: kfe
            pipeline: tabular
            output_dir: out
            data: {path: t.csv, target: target}
            evaluation: {iterated_kfold: {k: 2, repeats: 2}}
            training: {epochs: 2, batch_size: 8}
            ensemble: {enabled: true, loss: mae, n_folds: 2}
            models:
              - {family: dense, hp: {learning_rate: 0.01}}
              - {family: dense_l2, hp: {learning_rate: 0.01}}
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dlpipe"), "run", str(study)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "out" / "kfe"
    runs = reports.read_table(run_dir, "runs")
    predictions = reports.read_table(run_dir, "predictions")
    n_test = int(json.loads(reports.read_table(run_dir, "datasets")["splits"][0])["test"])
    folds = runs[runs["evaluation"] == "fold"]
    pool = None
    for (family, repeat), group in folds.groupby(["family", "repeat"]):
        rows = predictions[
            predictions["run_id"].isin(group["run_id"]) & (predictions["split"] == "validation")
        ]
        ids = rows["sample_index"].tolist()
        assert len(ids) == len(set(ids)), (family, repeat)  # each sample once per repeat
        pool = set(ids) if pool is None else pool
        assert set(ids) == pool, (family, repeat)  # every repeat covers the same samples
    assert len(pool) == 40 - n_test
    test_ids = set(predictions.loc[predictions["split"] == "test", "sample_index"])
    assert not pool & test_ids
    table = reports.read_table(run_dir, "ensembles")
    assert sorted(set(table["fit"])) == ["holdout", "oof"]
    finals = sorted(runs.loc[runs["evaluation"] == "final", "run_id"])
    assert all(json.loads(m) == finals for m in table["members"])
    assert "fit holdout vs oof" in proc.stdout
    assert f"{len(pool)} validation / {len(test_ids)} test" in proc.stdout
