"""What every study pipeline does after its data is prepared: one Ray training task per
configured model, results written as they arrive, live progress, plots.

Pipelines (:mod:`dlpipe.pipelines.weather`, :mod:`dlpipe.pipelines.text`) prepare their
data and baseline, then call :func:`train_models`. Every run has a key (``run_id``)
derived from the dataset key, the model, its resolved hyperparameters, its inputs, the
training settings and the seed; each finished run is written at once as its own part
files, so a crash loses nothing already finished, and a rerun skips every run that
already finished with status ``ok``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from dlpipe.metrics import get_metric
from dlpipe.pipelines.rundir import check_dataset_key, check_same_study
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.weather.train import failed_run, run_key, stored_run

#: ``pipeline:`` of a study -> module with its ``prepare_dataset``, ``write_baseline``
#: and ``run_study``
STUDY_MODULES = {
    "timeseries": "dlpipe.pipelines.weather",
    "text": "dlpipe.pipelines.text",
    "images": "dlpipe.pipelines.images",
}


def pipeline_module(pipeline: str):
    """The pipeline module of a study's ``pipeline`` (imported on first use)."""
    import importlib

    return importlib.import_module(STUDY_MODULES[pipeline])


def model_run_key(dataset_key: str, cfg, model_index: int) -> str:
    """Key of one configured model's run (:func:`dlpipe.tasks.weather.train.run_key` over the
    resolved hyperparameters, so a study run and an identical sweep trial share it)."""
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


def write_result(run_dir: Path, cfg, meta: dict, result: dict) -> dict:
    """Write one run's ``history``, ``predictions`` and then its ``runs`` row (a runs
    row only exists once its details are on disk). Returns the row."""
    run = dict(
        result["run"],
        pipeline=cfg.pipeline,
        study=cfg.study,
        dataset_key=meta["key"],
        finished_at=datetime.now(timezone.utc),
    )
    run_id = run["run_id"]
    reports.write_part(run_dir, "history", run_id, result["history"])
    reports.write_part(run_dir, "predictions", run_id, result["predictions"])
    reports.write_part(run_dir, "runs", run_id, [run])
    return run


def train_models(
    cfg, run_dir: Path, data_ref, meta: dict, baseline: dict, *, progress: bool = True
) -> None:
    """One Ray training task per configured model not already finished; results are
    written as they arrive; a run that raises is reported failed, the others go on."""
    from dlpipe.tasks.remote import train_model_task

    res = cfg.resources
    pending, skipped = {}, 0
    for i, model in enumerate(cfg.models):
        run_id = model_run_key(meta["key"], cfg, i)
        if stored_run(run_dir, run_id) is not None:
            skipped += 1
            continue
        seed = cfg.seed if model.seed is None else model.seed
        inputs = cfg.model_inputs(model)
        ref = train_model_task.options(
            num_cpus=res.num_cpus,
            num_gpus=res.num_gpus,
            max_retries=res.max_retries,
        ).remote(
            pipeline=cfg.pipeline,
            data=data_ref,
            meta=meta,
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
    _collect(run_dir, cfg, meta, pending, baseline, progress)


def _collect(run_dir, cfg, meta, pending: dict, baseline: dict, progress: bool) -> None:
    """Wait for training tasks, writing each result as it arrives, with live progress."""
    import ray
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    metric = get_metric(baseline["metric"])
    name = metric.display
    units = meta.get("units", "")
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
                        run_id, model.family, model.hp, seed, inputs, cause, asdict(cfg.resources)
                    )
                run = write_result(run_dir, cfg, meta, result)
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
    """``(values, metric)``: each run's validation headline metric (``val_metric``;
    ``val_mae_units`` for runs stored before that column existed) and its
    :class:`dlpipe.metrics.Metric` (display name ``MAE``/``accuracy`` and direction)."""
    values = runs["val_metric"].fillna(runs["val_mae_units"])
    names = runs["metric"].dropna()
    return values, get_metric(names.iloc[-1] if len(names) else "mae")


def baseline_kind(name: str) -> str:
    """The baseline a headline metric is compared with (book ch. 6.3.3 / 3.5)."""
    return "common-sense" if name == "MAE" else "majority-class"


def write_plots(run_dir: str | Path, *, units: str = "") -> list[Path]:
    """Loss curves per model and the validation-metric bar chart, from the reports."""
    from dlpipe.tasks.reports.plots import plot_loss_curves, plot_val_mae

    run_dir = Path(run_dir)
    runs = reports.read_table(run_dir, "runs")
    history = reports.read_table(run_dir, "history")
    if runs.empty:
        return []
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
        ylabel = "MAE (normalized)" if name == "MAE" else "crossentropy"
        paths.append(
            plot_loss_curves(history, labels, run_dir / "plots" / "loss_curves.png", ylabel=ylabel)
        )
    if (~models).any() and models.any():
        png = "val_mae.png" if name == "MAE" else "val_metric.png"
        paths.append(
            plot_val_mae(
                ok[models]["run_id"].tolist(),
                values[models].tolist(),
                float(values[~models].iloc[-1]),
                run_dir / "plots" / png,
                units=units,
                metric=metric,
                baseline_name=f"{baseline_kind(name)} baseline",
            )
        )
    return paths


def write_majority_baseline(run_dir: Path, cfg, data: dict, meta: dict) -> dict:
    """The majority-class baseline of a classification study (text, images) as a row of
    ``runs`` (family ``baseline``; :func:`dlpipe.tasks.text.train.baseline_scores`).
    Written once per dataset, never rewritten."""
    from dlpipe.tasks.text.train import baseline_scores

    run_id = f"baseline-{meta['key']}"
    if reports.part_exists(run_dir, "runs", run_id):
        return reports.read_part(run_dir, "runs", run_id)[0]
    scores = baseline_scores(data, meta["num_classes"])
    majority = meta["class_names"][scores.pop("majority_class")]
    run = {
        "run_id": run_id,
        "family": "baseline",
        "hyperparameters": {
            "rule": f"majority class of the training split ({majority})",
            "frequencies": scores.pop("frequencies"),
        },
        "seed": cfg.seed,
        "epochs_run": 0,
        "params": 0,
        "metric": "accuracy",
        **scores,
        "wall_time_s": 0.0,
        "resources": {},
        "devices": "",
        "status": "ok",
    }
    return write_result(run_dir, cfg, meta, {"run": run, "history": [], "predictions": []})


def run_stages(
    cfg,
    prepare_dataset: Callable,
    write_baseline: Callable,
    *,
    progress: bool = True,
    check: Callable | None = None,
) -> Path:
    """The stages of every study: ``study.json`` -> ``prepare_dataset(cfg, run_dir)`` ->
    (``check(cfg, meta)``) -> ``write_baseline(run_dir, cfg, data, meta)`` -> one
    training task per model not yet finished -> plots -> the optional ensemble stage.

    Returns:
        The run directory.

    Raises:
        Whatever preparation or ``check`` raise (bad data or settings), before any
        model is trained.
    """
    import ray

    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    check_same_study(run_dir, cfg)  # also for callers that skip the CLI's preflight
    reports.atomic_write_bytes(
        run_dir / "study.json", json.dumps(asdict(cfg), indent=1, default=str).encode()
    )
    data_ref, meta = prepare_dataset(cfg, run_dir)
    check_dataset_key(run_dir, meta["key"])
    if check is not None:
        check(cfg, meta)
    baseline = write_baseline(run_dir, cfg, ray.get(data_ref), meta)
    train_models(cfg, run_dir, data_ref, meta, baseline, progress=progress)
    write_plots(run_dir, units=meta.get("units", ""))
    if cfg.ensemble.enabled:
        from dlpipe.pipelines.ensemble import run_ensemble_stage

        run_ensemble_stage(run_dir, cfg.ensemble)
    return run_dir
