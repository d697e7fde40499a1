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
import math
import sys
from dataclasses import asdict
from pathlib import Path

from dlpipe.metrics import get_metric
from dlpipe.pipelines.kinds import get_kind
from dlpipe.pipelines.rundir import check_dataset_key, check_same_study
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.records import (
    PreparedDataset,
    RunResult,
    failed_run,
    record_run,
    run_key,
    stored_run,
)


def model_run_key(dataset_key: str, cfg, model_index: int) -> str:
    """Key of one configured model's run (:func:`dlpipe.tasks.training.records.run_key`
    over the resolved hyperparameters, so a study run and an identical sweep trial share
    it)."""
    from dlpipe.models.registry import resolved_hparams

    model = cfg.models[model_index]
    seed = cfg.seed if model.seed is None else model.seed
    return run_key(
        dataset_key,
        model.family,
        resolved_hparams(model.family, model.hp, cfg.pipeline),
        cfg.model_inputs(model),
        cfg.training,
        seed,
    )


def write_result(run_dir: Path, cfg, prepared: PreparedDataset, result: RunResult) -> dict:
    """Record one run of the study (:func:`dlpipe.tasks.training.records.record_run`).
    Returns the ``runs`` row."""
    return record_run(
        run_dir, result, pipeline=cfg.pipeline, study=cfg.study, dataset_key=prepared.key
    )


def write_baseline(run_dir: Path, cfg, prepared: PreparedDataset, data) -> dict:
    """The kind's baseline as a ``runs`` row, written once per dataset and settings and
    never rewritten. Returns the row."""
    kind = get_kind(cfg)
    run_id = kind.baseline_id(cfg, prepared)
    if reports.part_exists(run_dir, "runs", run_id):
        return reports.read_part(run_dir, "runs", run_id)[0]
    return write_result(run_dir, cfg, prepared, kind.baseline(cfg, prepared, data))


def train_models(
    cfg, run_dir: Path, prepared: PreparedDataset, baseline: dict, *, progress: bool = True
) -> None:
    """One Ray training task per configured model not already finished; results are
    written as they arrive; a run that raises is reported failed, the others go on."""
    from dlpipe.tasks.remote import train_model_task

    kind, res = get_kind(cfg), cfg.resources
    pending, skipped = {}, 0
    for i, model in enumerate(cfg.models):
        run_id = model_run_key(prepared.key, cfg, i)
        if stored_run(run_dir, run_id) is not None:
            skipped += 1
            continue
        seed = cfg.seed if model.seed is None else model.seed
        inputs = cfg.model_inputs(model)
        ref = train_model_task.options(
            num_cpus=res.num_cpus, num_gpus=res.num_gpus, max_retries=res.max_retries
        ).remote(
            kind.train,
            data=prepared.data,
            meta=prepared.meta,
            family=model.family,
            hp=model.hp,
            inputs=inputs,
            training=cfg.training,
            seed=seed,
            run_id=run_id,
            num_cpus=res.num_cpus,
            num_gpus=res.num_gpus,
        )
        pending[ref] = (run_id, model, seed, inputs)
    if skipped:
        print(f"resuming: {skipped} finished run(s) found in {run_dir}, not trained again")
    _collect(run_dir, cfg, prepared, pending, baseline, progress)


def _collect(run_dir, cfg, prepared, pending: dict, baseline: dict, progress: bool) -> None:
    """Wait for training tasks, writing each result as it arrives, with live progress."""
    import ray
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    metric = get_metric(baseline["metric"])
    name = metric.display
    units = prepared.units
    done = failed = 0
    best = metric.worst
    with Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        disable=not progress,
    ) as bar:
        task = bar.add_task("", total=len(pending))
        waiting = list(pending)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1, timeout=1.0)
            for ref in ready:
                run_id, model, seed, inputs = pending[ref]
                try:
                    result = ray.get(ref)
                except Exception as exc:  # a run that raised is reported, others go on
                    cause = getattr(exc, "cause", None) or exc
                    result = failed_run(
                        run_id,
                        model.family,
                        model.hp,
                        seed,
                        inputs,
                        cause,
                        asdict(cfg.resources),
                        get_kind(cfg).input_columns(inputs),
                    )
                run = write_result(run_dir, cfg, prepared, result)
                done += 1
                if run["status"] == "ok":
                    if metric.is_better(run["val_metric"], best):
                        best = run["val_metric"]
                else:
                    failed += 1
                    print(
                        f"run {run_id} failed: {str(run['error']).splitlines()[-1]}",
                        file=sys.stderr,
                    )
            shown = f"{best:.3f}" if math.isfinite(best) else "none yet"
            bar.update(
                task,
                completed=done,
                description=(
                    f"running {len(waiting)}, failed {failed}, best {name} {shown}"
                    f"{' ' + units if units else ''} (baseline {baseline['val_metric']:.3f})"
                ),
            )


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
    """Loss curves per model and the validation-metric bar chart, from the reports."""
    from dlpipe.tasks.reports.plots import plot_loss_curves, plot_val_mae

    run_dir = Path(run_dir)
    runs = reports.read_table(run_dir, "runs")
    history = reports.read_table(run_dir, "history")
    if runs.empty:
        return []
    kind = kind_of_runs(runs)
    ok = runs[(runs["status"] == "ok")]
    values, metric = headline(ok)
    name = metric.display
    models = ok["family"] != "baseline"
    labels = {
        r.run_id: f"{r.run_id} (val {name} {v:.3f})"
        for r, v in zip(ok[models].itertuples(), values[models])
    }
    paths = []
    if len(history):
        paths.append(
            plot_loss_curves(
                history, labels, run_dir / "plots" / "loss_curves.png", ylabel=kind.loss_label
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
    task per model not yet finished -> plots -> the optional ensemble stage.

    Returns:
        The run directory (``reports/``, ``plots/``, ``artifacts/``, ``study.json``).

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
    check_dataset_key(run_dir, prepared.key)
    kind.check_prepared(cfg, prepared)
    baseline = write_baseline(run_dir, cfg, prepared, ray.get(prepared.data))
    train_models(cfg, run_dir, prepared, baseline, progress=progress)
    write_plots(run_dir, units=prepared.units)
    if cfg.ensemble.enabled:
        from dlpipe.pipelines.ensemble import run_ensemble_stage

        run_ensemble_stage(run_dir, cfg.ensemble)
    return run_dir
