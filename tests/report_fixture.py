"""A weather run directory written by the pipelines' own report writers (dataset,
baseline, three models, a failed run, plots, ensembles): the HTML report's and the
report command's tests read it."""

import json
from datetime import datetime, timezone

from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.records import RunResult, record_run

STUDY = "weather-fixture"


def model_row(run_id, family, val, *, status="ok", error=None, epochs=4):
    """A ``runs`` row of a weather model as ``run_row`` writes it (MAE in degC)."""
    return {
        "run_id": run_id,
        "family": family,
        "hyperparameters": {"units": 8},
        "seed": 1,
        "lookback": 24,
        "step": 2,
        "delay": 6,
        "epochs_run": epochs,
        "best_epoch": epochs - 1 if epochs else None,
        "params": 100,
        "metric": "mae",
        "val_loss": val / 8.0,
        "test_loss": val / 8.0,
        "val_metric": val,
        "test_metric": val * 1.1,
        "val_mae": val / 8.0,
        "test_mae": val / 8.0,
        "val_mae_units": val,
        "test_mae_units": val * 1.1,
        "wall_time_s": 3.0,
        "resources": {"num_cpus": 1},
        "devices": "CPU:0",
        "status": status,
        "error": error,
    }


def history(run_id, epochs=4):
    """Falling losses, one row per epoch."""
    return [
        {
            "run_id": run_id,
            "epoch": e,
            "loss": 1.0 / e,
            "val_loss": 1.2 / e,
            "lr": 1e-3,
            "metric": None,
            "val_metric": None,
            "seconds": 0.5,
        }
        for e in range(1, epochs + 1)
    ]


def write_study(run_dir):
    """A weather run directory: dataset, baseline, two models, a failed one, plots and
    ensembles, each table written by the pipelines' own writers."""
    from dlpipe.pipelines.study import write_plots

    run_dir.mkdir(parents=True)
    (run_dir / "study.json").write_text(
        json.dumps({"source_file": "configs/demo_weather.yaml", "pipeline": "timeseries"})
    )
    quality = {"duplicates_dropped": 2, "gaps_filled": 1, "constant_features": ["x"]}
    reports.write_part(
        run_dir,
        "datasets",
        "k1",
        [
            {
                "dataset_key": "k1",
                "source": "pvlib:723170TYA.CSV",
                "rows": 8760,
                "columns": json.dumps(["T", "rh"]),
                "target": "T",
                "splits": json.dumps({"train": [0, 5000], "validation": [5000, 7000]}),
                "sentinel_counts": json.dumps({"rh": 3}),
                "quality": json.dumps(quality),
            }
        ],
    )
    base = model_row("baseline-k1-24-6", "baseline", 2.5, epochs=0)
    rows = [
        (base, []),
        (model_row("gru-aaa", "gru", 2.0), history("gru-aaa")),
        (model_row("dense-bbb", "dense", 2.8), history("dense-bbb")),
        (model_row("zeta-ccc", "gru", 2.2), history("zeta-ccc")),
    ]
    failed = model_row("lstm-ddd", "lstm", float("nan"), status="failed", epochs=1)
    failed["error"] = "Traceback ...\nValueError: loss diverged (NaN/inf) at epoch 1"
    rows.append((failed, []))
    for run, hist in rows:
        record_run(
            run_dir, RunResult(run, hist), pipeline="timeseries", study=STUDY, dataset_key="k1"
        )
    write_plots(run_dir, units="degC")
    reports.write_part(run_dir, "ensembles", "e1", [ensemble_row("weighted_slsqp", True)])
    return run_dir


def ensemble_row(method, chosen):
    return {
        "ensemble_id": "ens-1",
        "method": method,
        "chosen": chosen,
        "loss": "mae",
        "members": json.dumps(["dense-bbb", "gru-aaa"]),
        "weights": json.dumps([0.25, 0.75]),
        "cv_score": 1.9,
        "val_score": 1.8,
        "test_score": 2.1,
        "val_test_gap": 0.3,
        "best_single_val": 2.0,
        "best_single_test": 2.2,
        "mean_pairwise_correlation": 0.9,
        "val_accuracy": float("nan"),
        "test_accuracy": float("nan"),
        "sources": json.dumps(["x"]),
        "created_at": datetime.now(timezone.utc),
    }
