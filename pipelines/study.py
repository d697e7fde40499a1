"""What every study does, whatever its kind: ``study.json`` -> the kind's ``prepare``
(Ray tasks) -> its checks -> its baseline -> one Ray training task per configured model
-> plots -> the optional ensemble stage.

Every run has a key (``run_id``) derived from the dataset key, the model, its resolved
hyperparameters, its inputs, the training settings and the seed; each finished run is
written at once as its own part files (:func:`dlpipe.tasks.training.records.record_run`),
so a crash loses nothing already finished, and a rerun skips every run that already
finished with status ``ok``. What differs by kind comes from
:func:`dlpipe.pipelines.kinds.get_kind`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from dlpipe.metrics import get_metric
from dlpipe.pipelines.jobs import (
    TrainingJob,
    collect_jobs,
    launch_jobs,
    model_run_key,
    write_result,
)
from dlpipe.pipelines.kinds import get_kind
from dlpipe.pipelines.rundir import check_dataset_key, check_same_study
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.records import PreparedDataset, stored_run


def record_dataset(run_dir: Path, prepared: PreparedDataset) -> None:
    """Refuse a run directory that holds another dataset (:func:`check_dataset_key`),
    then write the prepared dataset's ``datasets`` row: a refused run leaves nothing
    behind, so the original data resumes."""
    check_dataset_key(run_dir, prepared.key)
    if prepared.dataset_row is not None:
        reports.write_part(run_dir, "datasets", prepared.key, [prepared.dataset_row])


def write_baseline(run_dir: Path, cfg, prepared: PreparedDataset, data) -> dict:
    """The kind's baseline as a ``runs`` row, written once per dataset and settings and
    never rewritten. Returns the row."""
    kind = get_kind(cfg)
    run_id = kind.baseline_id(cfg, prepared)
    if reports.part_exists(run_dir, "runs", run_id):
        return reports.read_part(run_dir, "runs", run_id)[0]
    return write_result(run_dir, cfg, prepared, kind.baseline(cfg, prepared, data))


def model_jobs(cfg, prepared: PreparedDataset, run_dir: Path) -> tuple[list[TrainingJob], int]:
    """``(jobs, skipped)``: one hold-out job per configured model not already finished."""
    jobs, skipped = [], 0
    for i, model in enumerate(cfg.models):
        run_id = model_run_key(prepared.key, cfg, i)
        if stored_run(run_dir, run_id) is not None:
            skipped += 1
            continue
        seed = cfg.seed if model.seed is None else model.seed
        jobs.append(
            TrainingJob(run_id, model, seed, cfg.model_inputs(model), prepared, cfg.training)
        )
    return jobs, skipped


def train_models(
    cfg, run_dir: Path, prepared: PreparedDataset, baseline: dict, *, progress: bool = True
) -> list[dict]:
    """One Ray training task per configured model not already finished (K-fold studies:
    per model and fold, then the final models, :func:`dlpipe.pipelines.kfold.train_kfold`);
    results are written as they arrive; a run that raised is reported failed, the others
    go on. Returns the ``runs`` rows the training tasks wrote."""
    if not cfg.evaluation.is_holdout:
        from dlpipe.pipelines.kfold import train_kfold

        return train_kfold(cfg, run_dir, prepared, baseline, progress=progress)
    jobs, skipped = model_jobs(cfg, prepared, run_dir)
    if skipped:
        print(f"resuming: {skipped} finished run(s) found in {run_dir}, not trained again")
    return collect_jobs(run_dir, cfg, prepared, launch_jobs(cfg, jobs), baseline, progress)


def measure_slots(cfg, run_dir: Path, rows: list[dict], wall_s: float):
    """The study's :class:`~dlpipe.pipelines.slots.SlotUse` (``rows``: the ``runs`` rows
    its training tasks wrote in ``wall_s`` seconds; slots from the connected Ray's
    resources), appended to ``<run_dir>/slots.json``."""
    import ray

    from dlpipe.pipelines.slots import slot_use, task_slots, write_slot_use

    use = slot_use(rows, task_slots(cfg.resources, ray.cluster_resources()), wall_s)
    write_slot_use(run_dir, use)
    return use


def headline(runs):
    """``(values, metric)``: each run's validation headline metric (``val_metric``) and
    its :class:`dlpipe.metrics.Metric` (display name ``MAE``/``accuracy``, direction)."""
    names = runs["metric"].dropna()
    return runs["val_metric"], get_metric(names.iloc[-1] if len(names) else "mae")


def kind_of_runs(runs):
    """The study kind of a ``runs`` table (its ``pipeline`` column), as its runs'
    headline metric shows it (:meth:`~dlpipe.pipelines.kinds.base.StudyKind.for_metric`)."""
    pipelines, metrics = runs["pipeline"].dropna(), runs["metric"].dropna()
    kind = get_kind(pipelines.iloc[-1] if len(pipelines) else "timeseries")
    return kind.for_metric(metrics.iloc[-1]) if len(metrics) else kind


def write_plots(run_dir: str | Path, *, units: str = "") -> list[Path]:
    """Loss curves per model (and accuracy curves for classification), with the
    restored best epoch marked, and the validation-metric bar chart, from the
    reports."""
    from dlpipe.tasks.reports.plots import plot_loss_curves, plot_val_mae

    run_dir = Path(run_dir)
    runs = reports.read_table(run_dir, "runs")
    history = reports.read_table(run_dir, "history")
    if runs.empty:
        return []
    kind = kind_of_runs(runs)
    ok = runs[(runs["status"] == "ok")]
    if "evaluation" in ok:  # K-fold: the models' fold means, not each fold or final model
        ok = ok[ok["evaluation"].isna() | (ok["evaluation"] == "mean")]
    values, metric = headline(ok)
    name = metric.display
    models = ok["family"] != "baseline"
    labels = {
        r.run_id: f"{r.run_id} (val {name} {v:.3f})"
        for r, v in zip(ok[models].itertuples(), values[models])
    }
    best = {  # K-fold aggregate rows have no epoch of their own (NA)
        r.run_id: int(r.best_epoch)
        for r in ok[models].itertuples()
        if pd.notna(r.best_epoch) and r.best_epoch > 0
    }
    paths = []
    if len(history):
        paths.append(
            plot_loss_curves(
                history,
                labels,
                run_dir / "plots" / "loss_curves.png",
                ylabel=kind.loss_label,
                best_epochs=best,
            )
        )
        if metric.higher_is_better and history["val_metric"].notna().any():
            paths.append(
                plot_loss_curves(
                    history.rename(columns={"metric": name, "val_metric": f"val_{name}"}),
                    labels,
                    run_dir / "plots" / "accuracy_curves.png",
                    ylabel=name,
                    best_epochs=best,
                    columns=(name, f"val_{name}"),
                )
            )
    if (~models).any() and models.any():
        paths.append(
            plot_val_mae(
                ok[models]["run_id"].tolist(),
                values[models].tolist(),
                float(values[~models].iloc[-1]),
                run_dir / "plots" / kind.metric_plot,
                units=units,
                metric=metric,
                baseline_name=f"{kind.baseline_name} baseline",
            )
        )
    return paths


def run_study(cfg, *, progress: bool = True) -> Path:
    """Run a study end to end on the connected Ray (call ``init_ray`` first): ``study.json``
    -> the kind's ``prepare`` -> its ``check_prepared`` -> its baseline -> one training
    task per model not yet finished -> plots -> the optional ensemble stage (the
    command then writes the HTML report,
    :func:`dlpipe.pipelines.html_report.write_html_report`); it ends with its slot
    efficiency (:mod:`dlpipe.pipelines.slots`, also appended to ``slots.json``).

    Returns:
        The run directory (``reports/``, ``plots/``, ``tensorboard/``, ``artifacts/``,
        ``study.json``).

    Raises:
        Whatever preparation or the kind's checks raise (bad data or settings:
        FileNotFoundError, ValueError and its subclasses), before any model is trained.
    """
    import ray

    kind = get_kind(cfg)
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    check_same_study(run_dir, cfg)  # also for callers that skip the CLI's preflight
    reports.atomic_write_bytes(
        run_dir / "study.json", json.dumps(asdict(cfg), indent=1, default=str).encode()
    )
    prepared = kind.prepare(cfg, run_dir)
    record_dataset(run_dir, prepared)
    kind.check_prepared(cfg, prepared)
    baseline = write_baseline(run_dir, cfg, prepared, ray.get(prepared.data))
    started = time.perf_counter()
    rows = train_models(cfg, run_dir, prepared, baseline, progress=progress)
    slots = measure_slots(cfg, run_dir, rows, time.perf_counter() - started)
    write_plots(run_dir, units=prepared.units)
    if cfg.ensemble.enabled:
        from dlpipe.pipelines.ensemble import run_ensemble_stage

        run_ensemble_stage(run_dir, cfg.ensemble)
    print(slots.line())
    return run_dir
