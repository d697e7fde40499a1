"""The K-fold stages of a study (book ch. 3.6.4, listings 3.27-3.30; 2nd ed. 4.2), for
kinds whose ``evaluations`` hold ``kfold``/``iterated_kfold`` (tabular, text, images) or
``forward_chaining`` (timeseries: time-ordered folds, same stages):

1. the kind's :meth:`~dlpipe.pipelines.kinds.base.StudyKind.fold_datasets` (each fold
   encoded with its training rows only, in the object store once);
2. one Ray training task per (model, repeat, fold), all launched at once, written as
   they arrive (a finished fold run is not trained again: its key holds the fold);
3. one aggregate ``runs`` row per model (``evaluation`` = ``mean``: fold mean and std);
4. the per-epoch validation curve averaged across the folds (``history``), plotted raw
   and smoothed (``plots/kfold_<run_id>.png``); its best epoch is the epoch count of
5. the final model: every non-test row trains, for that many epochs, no callbacks,
   scored once on the test split (``evaluation`` = ``final``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from dlpipe.metrics import get_metric
from dlpipe.pipelines.jobs import (
    TrainingJob,
    collect_jobs,
    launch_jobs,
    model_run_key,
    write_result,
)
from dlpipe.pipelines.kinds import get_kind
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.folds import aggregate_row
from dlpipe.tasks.training.records import PreparedDataset, stored_run

#: curves shorter than this many epochs are not smoothed
SMOOTH_MIN_EPOCHS = 20
SMOOTH_FACTOR = 0.9


def fold_key(cfg, prepared: PreparedDataset, i: int, **place) -> str:
    """Key of model ``i``'s K-fold run at ``place`` (``repeat``/``fold``,
    ``aggregate=True`` or ``final=True``; a final model also passes ``training``)."""
    training = place.pop("training", None)
    payload = {**cfg.evaluation.key_payload(), **place}
    return model_run_key(prepared.key, cfg, i, evaluation=payload, training=training)


def fold_jobs(cfg, prepared, folds, run_dir) -> tuple[list[TrainingJob], int]:
    """``(jobs, skipped)``: one job per (model, fold) not already finished."""
    jobs, skipped = [], 0
    for i, model in enumerate(cfg.models):
        seed = cfg.seed if model.seed is None else model.seed
        for fd in folds:
            run_id = fold_key(cfg, prepared, i, repeat=fd.repeat, fold=fd.fold)
            if stored_run(run_dir, run_id) is not None:
                skipped += 1
                continue
            columns = {"evaluation": "fold", "repeat": fd.repeat, "fold": fd.fold}
            inputs = cfg.model_inputs(model)
            jobs.append(
                TrainingJob(run_id, model, seed, inputs, fd.prepared, cfg.training, columns)
            )
    return jobs, skipped


def averaged_curve(history, run_ids: list[str]):
    """The per-epoch validation headline (``history.val_metric``) averaged across the
    fold runs ``run_ids``, over the epochs every fold ran (early stopping may end folds
    at different epochs). Returns a ``pandas.Series`` indexed by epoch (1-based)."""
    rows = history[history["run_id"].isin(run_ids)]
    table = rows.pivot_table(index="epoch", columns="run_id", values="val_metric")
    return table.dropna().mean(axis=1)


def choose_epochs(curve, metric) -> int:
    """The best epoch of the averaged curve (the first of ties), as ``metric``'s
    direction (:func:`dlpipe.metrics.get_metric`) says: the final model's epochs."""
    values = curve.to_numpy(np.float64)
    best = np.argmin(values) if metric.mode == "min" else np.argmax(values)
    return int(curve.index[int(best)])


def smoothed_curve(curve):
    """The curve smoothed (EMA, factor 0.9, book listing 3.30), or None under
    :data:`SMOOTH_MIN_EPOCHS` epochs."""
    from dlpipe.tasks.reports.plots import smooth_curve

    return (
        smooth_curve(curve.to_numpy(), SMOOTH_FACTOR) if len(curve) >= SMOOTH_MIN_EPOCHS else None
    )


def final_training(training, epochs: int):
    """The final model's training: ``epochs`` epochs, no early stopping, no LR schedule
    (it has no validation rows to watch)."""
    return replace(
        training,
        epochs=epochs,
        early_stopping=replace(training.early_stopping, enabled=False),
        reduce_lr_on_plateau=replace(training.reduce_lr_on_plateau, enabled=False),
    )


def train_kfold(
    cfg, run_dir: Path, prepared, baseline: dict, *, progress: bool = True
) -> list[dict]:
    """The K-fold stages (module docstring): fold runs, aggregate rows, averaged curves
    and plots, final models. Runs finished before are not trained again. Returns the
    ``runs`` rows the training tasks wrote (fold runs and final models)."""
    datasets = get_kind(cfg).fold_datasets(cfg, prepared)
    folds, final = datasets[:-1], datasets[-1]
    jobs, skipped = fold_jobs(cfg, prepared, folds, run_dir)
    if skipped:
        print(f"resuming: {skipped} finished run(s) found in {run_dir}, not trained again")
    written = collect_jobs(run_dir, cfg, prepared, launch_jobs(cfg, jobs), baseline, progress)
    runs = reports.read_table(run_dir, "runs").set_index("run_id", drop=False)
    history = reports.read_table(run_dir, "history")
    metric = get_metric(baseline["metric"])
    finals, done = [], 0
    for i in range(len(cfg.models)):
        ids = [fold_key(cfg, prepared, i, repeat=fd.repeat, fold=fd.fold) for fd in folds]
        agg_id = fold_key(cfg, prepared, i, aggregate=True)
        row = write_result(run_dir, cfg, prepared, aggregate_row(agg_id, runs.loc[ids]))
        if row["status"] != "ok":
            continue
        curve = averaged_curve(history, ids)
        if not len(curve):
            continue
        epochs = choose_epochs(curve, metric)
        plot_curve(run_dir, agg_id, curve, epochs, metric)
        job = final_job(cfg, prepared, final.prepared, i, epochs)
        if stored_run(run_dir, job.run_id) is None:
            finals.append(job)
        else:
            done += 1
    if done:
        print(f"resuming: {done} final model(s) found in {run_dir}, not trained again")
    print_folds(cfg, run_dir, metric, prepared.units)
    return written + collect_jobs(
        run_dir, cfg, prepared, launch_jobs(cfg, finals), baseline, progress
    )


def final_job(cfg, prepared, data: PreparedDataset, i: int, epochs: int) -> TrainingJob:
    """Model ``i``'s final model: every non-test row of ``data`` trains for ``epochs``."""
    model = cfg.models[i]
    training = final_training(cfg.training, epochs)
    run_id = fold_key(cfg, prepared, i, final=True, training=training)
    seed = cfg.seed if model.seed is None else model.seed
    return TrainingJob(
        run_id,
        model,
        seed,
        cfg.model_inputs(model),
        data,
        training,
        {"evaluation": "final"},
        {"final_epochs": epochs},
    )


def plot_curve(run_dir: Path, agg_id: str, curve, epochs: int, metric) -> Path:
    """``plots/kfold_<agg_id>.png``: the averaged curve, smoothed, and the chosen epoch."""
    from dlpipe.tasks.reports.plots import plot_kfold_curve

    return plot_kfold_curve(
        curve,
        smoothed_curve(curve),
        epochs,
        Path(run_dir) / "plots" / f"kfold_{agg_id}.png",
        metric=metric,
        title=f"{agg_id}: validation {metric.display}, mean over the folds",
    )


def fold_summary(runs) -> list[dict]:
    """Per aggregate row of ``runs``: ``run_id``, ``mean``, ``std``, ``min``, ``max`` of
    its folds' validation headline (the rows of the same family, hyperparameters and
    seed marked ``fold``), and ``folds``."""
    out = []
    folds = runs[(runs["evaluation"] == "fold") & (runs["status"] == "ok")]
    for agg in runs[runs["evaluation"] == "mean"].itertuples():
        same = folds[
            (folds["family"] == agg.family)
            & (folds["hyperparameters"] == agg.hyperparameters)
            & (folds["seed"] == agg.seed)
        ]
        values = same["val_metric"].to_numpy(np.float64)
        out.append(
            {
                "run_id": agg.run_id,
                "mean": agg.val_metric,
                "std": agg.val_metric_std,
                "min": float(values.min()) if len(values) else float("nan"),
                "max": float(values.max()) if len(values) else float("nan"),
                "folds": int(agg.folds) if agg.folds == agg.folds else 0,
            }
        )
    return out


def print_folds(cfg, run_dir: Path, metric, units: str) -> None:
    """One line per model: its fold mean +- std and spread (min-max)."""
    runs = reports.read_table(run_dir, "runs")
    unit = f" {units}" if units else ""
    for s in fold_summary(runs):
        print(
            f"{s['run_id']}: val {metric.display} {s['mean']:.3f} +- {s['std']:.3f}{unit} over "
            f"{s['folds']} folds (spread {s['min']:.3f}-{s['max']:.3f})"
        )
