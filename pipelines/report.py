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
        change against the baseline's validation value (:func:`change_column`), epochs,
        parameters, wall time, devices and status/error.
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
            **change_column(metric, values, base),
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


def change_column(metric, values, base: float) -> dict:
    """The change of each value against the baseline's, as one named column.

    A fraction scored higher-is-better (accuracy, AUC) changes in percentage points,
    ``vs baseline pp`` = ``100 * (value - baseline)`` (0.75 against 0.50 is +25 pp,
    not +50 %); any other metric in percent of the baseline, ``vs baseline %``
    (weather MAE: negative = better; NaN, printed ``n/a``, when the baseline is 0:
    shared case C22).
    """
    if metric.higher_is_better:
        return {"vs baseline pp": [100.0 * (float(v) - base) for v in values]}
    return {"vs baseline %": [metric.change_vs(v, base) for v in values]}


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


def cell_change(value: float, column: str) -> str:
    """A change as text with its unit (``+32.5 pp``, ``-12.1 %``; ``n/a`` for NaN)."""
    unit = column.rsplit(" ", 1)[-1]
    return "n/a" if value != value else f"{value:+.1f} {unit}"


def studies_side_by_side(run_dirs: list[str | Path]) -> tuple[pd.DataFrame, str]:
    """Several finished studies in one table, one row each: its headline metric, the
    baseline, the best run on validation with its test score and its change against
    the baseline (:func:`change_column`), and how many runs ended ok or failed.

    Returns:
        ``(frame, title)``.
    """
    from dlpipe.pipelines.study import headline, kind_of_runs

    rows = []
    for run_dir in run_dirs:
        runs = reports.read_table(run_dir, "runs")
        values, metric = headline(runs)
        ok = runs["status"] == "ok"
        is_base = (runs["family"] == "baseline") & ok
        base = (
            float(values[runs.loc[is_base, "finished_at"].idxmax()])
            if is_base.any()
            else float("nan")
        )
        models = runs[ok & ~is_base]
        if "evaluation" in models:  # K-fold: each model's fold mean, not its folds
            models = models[models["evaluation"].isna() | (models["evaluation"] == "mean")]
        best = models.loc[metric.sort(models, "val_metric").index[0]] if len(models) else None
        value = best["val_metric"] if best is not None else float("nan")
        ((change_name, (change,)),) = change_column(metric, [value], base).items()
        rows.append(
            {
                "study": Path(run_dir).name,
                "kind": kind_of_runs(runs).name,
                "metric": f"val {metric.display}",
                "baseline": base,
                "best run_id": best["run_id"] if best is not None else "",
                "best val": best["val_metric"] if best is not None else float("nan"),
                "best test": best["test_metric"] if best is not None else float("nan"),
                "vs baseline": cell_change(change, change_name),
                "runs ok": int((ok & ~is_base).sum()),
                "failed": int((~ok).sum()),
            }
        )
    frame = pd.DataFrame(rows)
    return frame, f"{len(rows)} studies side by side (best run on validation, vs its baseline)"
