"""Readable summaries of a run directory's reports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dlpipe.tasks.reports import tables as reports


def runs_summary(run_dir: str | Path) -> tuple[pd.DataFrame, str]:
    """The ``runs`` table as a compact summary sorted by the validation headline metric.

    Returns:
        ``(frame, title)``; the frame has one row per run (baseline included) with the
        validation/test headline metric (MAE in the target's units, or accuracy), the
        change against the baseline's validation value in percent (weather: negative =
        better; text/images: positive = better; NaN, printed ``n/a``, when the baseline
        is 0: shared case C22), epochs, parameters, wall time, devices and
        status/error.
    """
    from dlpipe.pipelines.study import headline, kind_of_runs

    runs = reports.read_table(run_dir, "runs")
    datasets = reports.read_table(run_dir, "datasets")
    target = datasets["target"].iloc[-1] if len(datasets) else "target"
    values, metric = headline(runs)
    name = metric.display
    label = f"val {name}"
    tests = runs["test_metric"]
    is_base = (runs["family"] == "baseline") & (runs["status"] == "ok")
    # the baseline of the current settings: the latest written (not the last part name)
    latest = runs.loc[is_base, "finished_at"].idxmax() if is_base.any() else None
    base = float(values[latest]) if latest is not None else float("nan")
    frame = pd.DataFrame(
        {
            "family": runs["family"],
            "run_id": runs["run_id"],
            label: values,
            f"test {name}": tests,
            "vs baseline %": [metric.change_vs(v, base) for v in values],
            "epochs": runs["epochs_run"],
            "best": runs["best_epoch"],
            "params": runs["params"],
            "wall s": runs["wall_time_s"],
            "devices": runs["devices"],
            "status": [
                s if s == "ok" else f"{s}: {str(e).splitlines()[-1][:60]}"
                for s, e in zip(runs["status"], runs["error"])
            ],
        }
    )
    if "evaluation" in runs:  # K-fold: each row's role, the fold mean +- std and spread
        add_fold_columns(frame, runs)
    frame = metric.sort(frame, label).reset_index(drop=True)
    kind = kind_of_runs(runs)
    what = kind.headline_title(target)
    title = (
        f"{Path(run_dir).name}: {len(runs)} runs, {what} "
        f"({kind.baseline_name} baseline val {base:.3f})"
    )
    return frame, title


def add_fold_columns(frame: pd.DataFrame, runs: pd.DataFrame) -> None:
    """A K-fold study's columns, in place: ``eval`` (``fold r<repeat>/<fold>``, ``mean``,
    ``final`` or ``holdout``), ``+- std`` (the fold std of a ``mean`` row) and ``fold
    spread`` (its folds' min-max of the validation headline)."""
    from dlpipe.pipelines.kfold import fold_summary

    spread = {s["run_id"]: f"{s['min']:.3f}-{s['max']:.3f}" for s in fold_summary(runs)}
    roles = []
    for r in runs.itertuples():
        role = r.evaluation if isinstance(r.evaluation, str) else "holdout"
        roles.append(f"fold r{r.repeat}/{r.fold}" if role == "fold" else role)
    frame.insert(2, "eval", roles)
    frame.insert(
        4, "+- std", runs.get("val_metric_std", pd.Series(float("nan"), runs.index)).to_numpy()
    )
    frame.insert(5, "fold spread", [spread.get(r, "") for r in runs["run_id"]])
