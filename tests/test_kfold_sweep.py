"""Sweeps of K-fold studies (issue 14): a trial's objective is the fold mean of its fold
runs (trained as parallel Ray tasks), the ``trials`` report records the fold scores,
and the best configurations are scored on test through a final model."""

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


def _raw(tmp_path, **extra):
    return {
        "study": "s",
        "pipeline": "tabular",
        "output_dir": str(tmp_path),
        "data": {"path": "demo:diabetes", "target": "progression"},
        "models": [{"family": "dense"}],
        **extra,
    }


def test_a_kfold_sweep_refuses_an_early_termination_scheduler(tmp_path):
    from dlpipe.pipelines.sweeps.kfold import check_kfold_sweep

    sweep = {"scheduler": {"type": "asha"}}
    check_kfold_sweep(parse_study(_raw(tmp_path, sweep=sweep)))  # hold-out: allowed
    cfg = parse_study(_raw(tmp_path, sweep=sweep, evaluation={"kfold": {"k": 3}}))
    with pytest.raises(ConfigError, match=r"`sweep.scheduler` \(ASHA\).*evaluation: kfold"):
        check_kfold_sweep(cfg)


def test_the_sweep_fingerprint_holds_the_evaluation_only_under_kfold(tmp_path):
    from dlpipe.pipelines.sweeps.stamp import fingerprint, settings

    holdout = parse_study(_raw(tmp_path))
    assert "evaluation" not in settings(holdout)  # stored hold-out sweeps still match
    kfold = parse_study(_raw(tmp_path, evaluation={"kfold": {"k": 3}}))
    assert settings(kfold)["evaluation"]["k"] == 3
    assert fingerprint(kfold) != fingerprint(holdout)


def test_trials_rows_take_the_fold_scores_of_kfold_results_only():
    from dlpipe.pipelines.sweeps.recorder import kfold_scores

    result = {"val_loss_folds": "[1.0, 3.0]", "val_metric_folds": "[2, 4]", "val_metric_std": 1}
    assert kfold_scores(result, None) == result
    assert kfold_scores(result, "boom") == {}
    assert kfold_scores({"val_loss": 1.0}, None) == {}


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.train
def test_kfold_sweep_objective_is_the_mean_of_the_recorded_fold_scores(tmp_path):
    rng = np.random.default_rng(1)
    lines = ["a,b,target"] + [
        f"{a:.3f},{b:.3f},{3 * a + 2 * b + 10:.3f}"
        for a, b in zip(rng.normal(0, 1, 40), rng.normal(5, 2, 40))
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    study = tmp_path / "study.yaml"
    study.write_text(
        textwrap.dedent(
            """
            study: ks
            pipeline: tabular
            output_dir: out
            data: {path: t.csv, target: target}
            evaluation: {kfold: {k: 2}}
            training: {epochs: 2, batch_size: 8}
            models:
              - {family: dense}
            sweep:
              families: [dense]
              num_trials: 2
              max_concurrent_trials: 2
              n_initial_points: 2
              test_top_k: 1
              spaces:
                dense: {units: {choice: [8, 16]}, learning_rate: {loguniform: [0.001, 0.01]}}
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dlpipe"), "sweep", str(study)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "hold-out split" not in proc.stderr  # the old warning is gone
    sweep_dir = tmp_path / "out" / "ks-sweep"
    trials = reports.read_table(sweep_dir, "trials")
    runs = reports.read_table(sweep_dir, "runs").set_index("run_id", drop=False)
    assert len(trials) == 2 and (trials["status"] != "failed").all()
    for trial in trials.itertuples():
        losses, metrics = json.loads(trial.val_loss_folds), json.loads(trial.val_metric_folds)
        assert len(losses) == len(metrics) == 2
        assert trial.val_loss == pytest.approx(np.mean(losses))  # the searched objective
        assert trial.val_metric == pytest.approx(np.mean(metrics))
        assert trial.val_metric_std == pytest.approx(np.std(metrics))
        # the fold scores are those of the recorded fold runs (a second source)
        agg = runs.loc[trial.run_id]
        assert agg["evaluation"] == "mean" and agg["folds"] == 2
        folds = runs[
            (runs["evaluation"] == "fold")
            & (runs["family"] == trial.family)
            & (runs["hyperparameters"] == agg["hyperparameters"])
        ].sort_values("fold")
        assert folds["fold"].tolist() == [0, 1]
        np.testing.assert_allclose(folds["val_loss"], losses)
    # the best trial is scored on test through its final model
    best = trials.sort_values(["val_loss", "trial"]).iloc[0]
    assert np.isfinite(runs.loc[best["run_id"], "test_metric"])
    finals = runs[runs["evaluation"] == "final"]
    assert len(finals) == 1
    assert runs.loc[best["run_id"], "test_metric"] == finals["test_metric"].iloc[0]
