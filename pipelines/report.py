"""Readable summaries of a run directory's reports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dlpipe.tasks import reports


def runs_summary(run_dir: str | Path) -> tuple[pd.DataFrame, str]:
    """The ``runs`` table as a compact summary sorted by validation MAE.

    Returns:
        ``(frame, title)``; the frame has one row per run (baseline included) with
        validation/test MAE in the target's units, the change against the common-sense
        baseline's validation MAE (negative = better), epochs, parameters, wall time,
        devices and status/error.
    """
    runs = reports.read_table(run_dir, "runs")
    datasets = reports.read_table(run_dir, "datasets")
    target = datasets["target"].iloc[-1] if len(datasets) else "target"
    base = runs[(runs["family"] == "baseline") & (runs["status"] == "ok")]
    base_mae = float(base["val_mae_units"].iloc[-1]) if len(base) else float("nan")
    frame = pd.DataFrame({
        "family": runs["family"],
        "run_id": runs["run_id"],
        "val MAE": runs["val_mae_units"],
        "test MAE": runs["test_mae_units"],
        "vs baseline %": 100.0 * (runs["val_mae_units"] / base_mae - 1.0),
        "epochs": runs["epochs_run"],
        "best": runs["best_epoch"],
        "params": runs["params"],
        "wall s": runs["wall_time_s"],
        "devices": runs["devices"],
        "status": [s if s == "ok" else f"{s}: {str(e).splitlines()[-1][:60]}"
                   for s, e in zip(runs["status"], runs["error"])],
    }).sort_values("val MAE", na_position="last").reset_index(drop=True)
    title = (f"{Path(run_dir).name}: {len(runs)} runs, MAE of {target} "
             f"(common-sense baseline val {base_mae:.3f})")
    return frame, title
