"""Weather forecasting study (book ch. 6.3-6.4) as a Ray pipeline.

DAG: prepare (Ray task: load, clean, split, normalize; array to the object store once)
-> common-sense baseline -> one Ray training task per configured model, in parallel
-> Parquet reports (``runs``, ``history``, ``predictions``, ``datasets``) and plots.

Every run has a key (``run_id``) derived from the dataset key, the model, its
hyperparameters, windows, training settings and seed. Each finished run is written at
once as its own part files, so a crash loses nothing already finished, and a rerun of
the same study skips every run that already finished with status ``ok``.

Runs as a script for ``ray submit``::

    python pipelines/weather.py --config configs/jena.yaml [--smoke-test]
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from dlpipe.pipelines.config import StudyConfig
from dlpipe.tasks import reports
from dlpipe.tasks.train import failed_run, run_key, split_batches, stored_run
from dlpipe.tasks.weather_data import baseline_mae
from dlpipe.tasks.windows import split_window_rows

PIPELINE = "timeseries"


def model_run_key(dataset_key: str, cfg: StudyConfig, model_index: int) -> str:
    """Key of one configured model's run (:func:`dlpipe.tasks.train.run_key` over the
    resolved hyperparameters, so a study run and an identical sweep trial share it)."""
    from dlpipe.models.registry import resolved_hparams

    model = cfg.models[model_index]
    seed = cfg.seed if model.seed is None else model.seed
    return run_key(dataset_key, model.family, resolved_hparams(model.family, model.hp),
                   cfg.model_windows(model), cfg.training, seed)


def _write_result(run_dir: Path, cfg: StudyConfig, meta: dict, result: dict) -> dict:
    run = dict(result["run"], pipeline=PIPELINE, study=cfg.study, dataset_key=meta["key"],
               finished_at=datetime.now(timezone.utc))
    run_id = run["run_id"]
    # history/predictions first: a runs row only exists once its details are on disk
    reports.write_part(run_dir, "history", run_id, result["history"])
    reports.write_part(run_dir, "predictions", run_id, result["predictions"])
    reports.write_part(run_dir, "runs", run_id, [run])
    return run


def prepare_dataset(cfg: StudyConfig, run_dir: Path):
    """Run the preparation Ray task; write the ``datasets`` row and print a summary.

    Returns:
        ``(data_ref, meta)``: an ObjectRef of the normalized array (passed to training
        tasks by reference) and the dataset description.

    Raises:
        The preparation's own error (DataFormatError, SplitTooShortError, ValueError,
        FileNotFoundError), unwrapped from Ray's task error so the user sees its
        message, not a remote traceback.
    """
    import ray

    from dlpipe.tasks.remote import prepare_weather_task

    data_ref, meta_ref = prepare_weather_task.remote(
        cfg.data, cfg.split, cfg.windows, str(run_dir / "artifacts"))
    try:
        meta = ray.get(meta_ref)
    except ray.exceptions.RayTaskError as exc:
        try:
            ray.get(data_ref)  # consume the twin error so Ray does not log it again
        except ray.exceptions.RayTaskError:
            pass
        cause = exc.cause if isinstance(exc.cause, Exception) else exc
        raise cause from None
    reports.write_part(run_dir, "datasets", meta["key"], [{
        "dataset_key": meta["key"], "source": meta["source"], "rows": meta["rows"],
        "columns": meta["columns"], "target": meta["target"], "splits": meta["splits"],
        "sentinel_counts": meta["sentinel_counts"], "quality": meta["quality"]}])
    print_dataset(meta)
    return data_ref, meta


def write_baseline(run_dir: Path, cfg: StudyConfig, data, meta: dict) -> dict:
    """The common-sense baseline as a row of ``runs`` (family ``baseline``)."""
    cap = cfg.training.max_batches_per_epoch
    run_id = f"baseline-{meta['key']}-{cfg.windows.delay}-{cap}"
    if reports.part_exists(run_dir, "runs", run_id):  # written once, never rewritten
        return reports.read_part(run_dir, "runs", run_id)[0]
    std = meta["std"][meta["target_column"]]
    scores = {}
    for split in ("validation", "test"):
        batches = split_batches(data, meta, cfg.windows, split, max_batches=cap)
        scores[split] = baseline_mae(data, batches.rows, cfg.windows, meta["target_column"])
    run = {
        "run_id": run_id,
        "family": "baseline",
        "hyperparameters": {"rule": "last observed target value"},
        "seed": cfg.seed, "lookback": cfg.windows.lookback, "step": cfg.windows.step,
        "delay": cfg.windows.delay, "epochs_run": 0, "params": 0,
        "val_mae": scores["validation"], "test_mae": scores["test"],
        "val_mae_units": scores["validation"] * std, "test_mae_units": scores["test"] * std,
        "wall_time_s": 0.0, "resources": {}, "devices": "", "status": "ok",
    }
    return _write_result(run_dir, cfg, meta, {"run": run, "history": [], "predictions": []})


def _check_windows(cfg: StudyConfig, meta: dict) -> None:
    """Every model's windows fit in every split, before any training (case C08)."""
    for model in cfg.models:
        for split, segments in meta["splits"].items():
            split_window_rows(cfg.model_windows(model), segments, split=split)


def run_study(cfg: StudyConfig, *, progress: bool = True) -> Path:
    """Run a weather study end to end on the connected Ray (call ``init_ray`` first).

    Returns:
        The run directory (``reports/``, ``plots/``, ``artifacts/``, ``study.json``).

    Raises:
        FileNotFoundError, DataFormatError, SplitTooShortError, ValueError: bad data or
        settings, raised before any model is trained.
    """
    import ray

    from dlpipe.tasks.remote import train_model_task

    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    reports.atomic_write_bytes(run_dir / "study.json",
                               json.dumps(asdict(cfg), indent=1, default=str).encode())
    data_ref, meta = prepare_dataset(cfg, run_dir)
    _check_windows(cfg, meta)
    baseline = write_baseline(run_dir, cfg, ray.get(data_ref), meta)

    res = cfg.resources
    pending, skipped = {}, 0
    for i, model in enumerate(cfg.models):
        run_id = model_run_key(meta["key"], cfg, i)
        if stored_run(run_dir, run_id) is not None:
            skipped += 1
            continue
        seed = cfg.seed if model.seed is None else model.seed
        windows = cfg.model_windows(model)
        ref = train_model_task.options(
            num_cpus=res.num_cpus, num_gpus=res.num_gpus, max_retries=res.max_retries,
        ).remote(data=data_ref, meta=meta, family=model.family, hp=model.hp,
                 windows=windows, training=cfg.training, seed=seed, run_id=run_id,
                 num_cpus=res.num_cpus, num_gpus=res.num_gpus)
        pending[ref] = (run_id, model, seed, windows)
    if skipped:
        print(f"resuming: {skipped} finished run(s) found in {run_dir}, not trained again")
    _collect(run_dir, cfg, meta, pending, baseline, progress)
    write_plots(run_dir)
    if cfg.ensemble.enabled:
        from dlpipe.pipelines.ensemble import run_ensemble_stage

        run_ensemble_stage(run_dir, cfg.ensemble)
    return run_dir


def _collect(run_dir, cfg, meta, pending: dict, baseline: dict, progress: bool) -> None:
    """Wait for training tasks, writing each result as it arrives, with live progress."""
    import ray
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    units = _units(meta["target"])
    done = failed = 0
    best = float("inf")
    with Progress(TextColumn("[bold]training"), BarColumn(), TextColumn("{task.completed}/"
                  "{task.total}"), TextColumn("{task.description}"), TimeElapsedColumn(),
                  disable=not progress) as bar:
        task = bar.add_task("", total=len(pending))
        waiting = list(pending)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1, timeout=1.0)
            for ref in ready:
                run_id, model, seed, windows = pending[ref]
                try:
                    result = ray.get(ref)
                except Exception as exc:  # a run that raised is reported, others go on
                    cause = getattr(exc, "cause", None) or exc
                    result = failed_run(run_id, model.family, model.hp, seed, windows, cause,
                                        asdict(cfg.resources))
                run = _write_result(run_dir, cfg, meta, result)
                done += 1
                if run["status"] == "ok":
                    best = min(best, run["val_mae_units"])
                else:
                    failed += 1
                    print(f"run {run_id} failed: {str(run['error']).splitlines()[-1]}",
                          file=sys.stderr)
            bar.update(task, completed=done, description=(
                f"running {len(waiting)}, failed {failed}, best val MAE "
                f"{best:.3f} {units} (baseline {baseline['val_mae_units']:.3f})"))


def _units(column: str) -> str:
    return column[column.find("(") + 1: column.rfind(")")] if "(" in column else ""


def print_dataset(meta: dict) -> None:
    q = meta["quality"]
    bad = {k: v for k, v in meta["sentinel_counts"].items() if v}
    splits = ", ".join(f"{k} {sum(b - a for a, b in segs)}" + (
        f" in {len(segs)} blocks" if len(segs) > 1 else "") for k, segs in meta["splits"].items())
    print(f"dataset {meta['key']}: {meta['rows']} rows x {len(meta['columns'])} columns from "
          f"{meta['source']}; splits (rows): {splits}")
    order = f", {q['backward_steps']} out of order" if q.get("backward_steps") else ""
    print(f"  timestamps: {q.get('duplicate_timestamps', 0)} duplicate, "
          f"{q.get('missing_timestamps', 0)} missing{order}; sentinels/missing values "
          f"replaced: {bad or 'none'}")
    if "tmy_stitches" in q:
        print(f"  TMY3: {q['time_axis']}; {q['tmy_stitches']} month stitches between source "
              f"years {q['tmy_source_years']}")


def write_plots(run_dir: str | Path) -> list[Path]:
    """Loss curves per model and the validation-MAE bar chart, from the reports."""
    from dlpipe.tasks.plots import plot_loss_curves, plot_val_mae

    run_dir = Path(run_dir)
    runs = reports.read_table(run_dir, "runs")
    history = reports.read_table(run_dir, "history")
    if runs.empty:
        return []
    ok = runs[(runs["status"] == "ok")]
    models = ok[ok["family"] != "baseline"]
    labels = {r.run_id: f"{r.run_id} (val MAE {r.val_mae_units:.3f})"
              for r in models.itertuples()}
    paths = []
    if len(history):
        paths.append(plot_loss_curves(history, labels, run_dir / "plots" / "loss_curves.png"))
    base = ok[ok["family"] == "baseline"]
    if len(base) and len(models):
        datasets = reports.read_table(run_dir, "datasets")
        units = _units(datasets["target"].iloc[-1]) if len(datasets) else ""
        paths.append(plot_val_mae([r.run_id for r in models.itertuples()],
                                  models["val_mae_units"].tolist(),
                                  float(base["val_mae_units"].iloc[-1]),
                                  run_dir / "plots" / "val_mae.png", units=units))
    return paths


def main(argv: list[str] | None = None) -> int:
    """Script entry point (``ray submit cluster.yaml pipelines/weather.py -- --config X``)."""
    from dlpipe.pipelines.cli import script_main

    return script_main("run", "Run a weather forecasting study (book ch. 6.3).", argv)


if __name__ == "__main__":
    sys.exit(main())
