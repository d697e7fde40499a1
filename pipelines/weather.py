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

import sys
from pathlib import Path

from dlpipe.pipelines import study
from dlpipe.pipelines.config import StudyConfig
from dlpipe.pipelines.study import write_result
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.weather.data import baseline_mae, check_weather_source, split_window_counts
from dlpipe.tasks.weather.train import split_batches

PIPELINE = "timeseries"


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
        cfg.data, cfg.split, cfg.windows, str(run_dir / "artifacts")
    )
    try:
        meta = ray.get(meta_ref)
    except ray.exceptions.RayTaskError as exc:
        try:
            ray.get(data_ref)  # consume the twin error so Ray does not log it again
        except ray.exceptions.RayTaskError:
            pass
        cause = exc.cause if isinstance(exc.cause, Exception) else exc
        raise cause from None
    reports.write_part(run_dir, "datasets", meta["key"], [dataset_row(meta)])
    print_dataset(meta)
    return data_ref, dict(meta, units=_units(meta["target"]))


def dataset_row(meta: dict) -> dict:
    """The ``datasets`` report row of a prepared weather dataset (the table's fixed
    schema: :mod:`dlpipe.tasks.reports.tables`).

    Columns: key, source, rows, columns, target, ``splits`` (per split the segments of
    equally spaced rows that windows read), ``sentinel_counts`` (per column, every value
    the missing-value policy replaced) and ``quality`` (JSON): the time axis in file
    order and its repairs (rows out of order, repeated stamps dropped and conflicting,
    gaps filled and cut, ...), ``blocks`` (the split as configured), per column
    ``missing_counts`` (missing spellings) and ``nonfinite_counts`` (``inf``/``-inf``),
    ``constant_features``, and per split the study windows' ``windows`` and
    ``windows_excluded`` (spanning a gap).
    """
    extra = (
        "blocks",
        "missing_counts",
        "nonfinite_counts",
        "constant_features",
        "windows",
        "windows_excluded",
    )
    return {
        "dataset_key": meta["key"],
        "source": meta["source"],
        "rows": meta["rows"],
        "columns": meta["columns"],
        "target": meta["target"],
        "splits": meta["splits"],
        "sentinel_counts": meta["sentinel_counts"],
        "quality": {**meta["quality"], **{k: meta[k] for k in extra if k in meta}},
    }


def check_source(cfg: StudyConfig) -> None:
    """Cheap checks of the study's data file before Ray starts
    (:func:`dlpipe.tasks.weather.data.check_weather_source`).

    Raises:
        FileNotFoundError, DataFormatError (a ValueError), ValueError.
    """
    check_weather_source(cfg.data)


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
        "seed": cfg.seed,
        "lookback": cfg.windows.lookback,
        "step": cfg.windows.step,
        "delay": cfg.windows.delay,
        "epochs_run": 0,
        "params": 0,
        "val_mae": scores["validation"],
        "test_mae": scores["test"],
        "val_mae_units": scores["validation"] * std,
        "test_mae_units": scores["test"] * std,
        "metric": "mae",
        "val_loss": scores["validation"],
        "test_loss": scores["test"],
        "val_metric": scores["validation"] * std,
        "test_metric": scores["test"] * std,
        "wall_time_s": 0.0,
        "resources": {},
        "devices": "",
        "status": "ok",
    }
    return write_result(run_dir, cfg, meta, {"run": run, "history": [], "predictions": []})


def _check_windows(cfg: StudyConfig, meta: dict) -> None:
    """Every model's windows fit in every split (every block, and between gaps), before
    any training (case C08)."""
    for model in cfg.models:
        split_window_counts(cfg.model_windows(model), meta)


def run_study(cfg: StudyConfig, *, progress: bool = True) -> Path:
    """Run a weather study end to end on the connected Ray (call ``init_ray`` first).

    Returns:
        The run directory (``reports/``, ``plots/``, ``artifacts/``, ``study.json``).

    Raises:
        FileNotFoundError, DataFormatError, SplitTooShortError, ValueError: bad data or
        settings, raised before any model is trained.
    """
    return study.run_stages(
        cfg, prepare_dataset, write_baseline, progress=progress, check=_check_windows
    )


def _units(column: str) -> str:
    return column[column.find("(") + 1 : column.rfind(")")] if "(" in column else ""


def print_dataset(meta: dict) -> None:
    """Print the dataset summary: rows, splits, time-axis repairs, replaced values."""
    q = meta["quality"]
    blocks = meta.get("blocks", meta["splits"])
    splits = ", ".join(
        f"{k} {sum(b - a for a, b in segs)}" + (f" in {len(segs)} blocks" if len(segs) > 1 else "")
        for k, segs in blocks.items()
    )
    print(
        f"dataset {meta['key']}: {meta['rows']} rows x {len(meta['columns'])} columns from "
        f"{meta['source']}; splits (rows): {splits}"
    )
    order = (
        f", {q['rows_out_of_order']} rows out of order (sorted by time)"
        if q.get("rows_out_of_order")
        else ""
    )
    conflicting = (
        f" ({q['duplicates_conflicting']} with other values)"
        if q.get("duplicates_conflicting")
        else ""
    )
    print(
        f"  timestamps: {q.get('duplicates_dropped', q.get('duplicate_timestamps', 0))} "
        f"repeated (first kept, rest dropped){conflicting}, "
        f"{q.get('missing_slots', q.get('missing_timestamps', 0))} missing{order}"
    )
    if q.get("gaps"):
        print(
            f"  gaps: {q['gaps']} ({q['missing_slots']} missing slots): {q['gaps_filled']} "
            f"filled ({q['slots_filled']} slots, max_gap {q['max_gap']}), "
            f"{q['gaps_cut']} cut"
            + (f", {q['irregular_steps']} irregular steps cut" if q.get("irregular_steps") else "")
        )
    elif q.get("irregular_steps"):
        print(f"  {q['irregular_steps']} irregular time steps: the series is cut there")
    if any(meta.get("windows_excluded", {}).values()):
        print(
            "  windows spanning a gap, excluded: "
            + ", ".join(
                f"{k} {v} of {v + meta['windows'][k]}" for k, v in meta["windows_excluded"].items()
            )
        )
    for key, label in (
        ("sentinel_counts", "values replaced by the sentinel policy"),
        ("missing_counts", "of which missing cells (NaN/NA/null/empty)"),
        ("nonfinite_counts", "of which non-finite (inf/-inf)"),
    ):
        bad = {k: v for k, v in meta.get(key, {}).items() if v}
        if key == "sentinel_counts" or bad:
            print(f"  {label}: {bad or 'none'}")
    if meta.get("constant_features"):
        print(
            f"  warning: constant over the training rows (carry no information): "
            f"{meta['constant_features']}"
        )
    if "tmy_stitches" in q:
        print(
            f"  TMY3: {q['time_axis']}; {q['tmy_stitches']} month stitches between source "
            f"years {q['tmy_source_years']}"
        )


def write_plots(run_dir: str | Path) -> list[Path]:
    """Loss curves per model and the validation-MAE bar chart, from the reports."""
    datasets = reports.read_table(run_dir, "datasets")
    units = _units(datasets["target"].iloc[-1]) if len(datasets) else ""
    return study.write_plots(run_dir, units=units)


def main(argv: list[str] | None = None) -> int:
    """Script entry point (``ray submit cluster.yaml pipelines/weather.py -- --config X``)."""
    from dlpipe.pipelines.cli import script_main

    return script_main("run", "Run a weather forecasting study (book ch. 6.3).", argv)


if __name__ == "__main__":
    sys.exit(main())
