"""K-fold benchmarks (issue 14), measured side by side in one run on the tabular demo
table (scikit-learn's diabetes, 442 x 10; the book's 64-64 dense head, batch 16), on a
local Ray of 2 CPUs, each training task holding ``num_cpus=1`` (2 slots):

1. speedup: the 4 fold runs of a 4-fold study launched at once (the study's code path:
   :func:`dlpipe.pipelines.jobs.launch_jobs` of every fold job, then
   :func:`~dlpipe.pipelines.jobs.collect_jobs`), against the same 4 trainings one after
   another (the same two calls with one job at a time): wall of the 4 trainings, and
   their ratio (target >= 1.6x on 2 slots);
2. orchestration overhead of iterated K-fold (3 repeats x 4 folds = 12 tasks on 2
   slots)::

       ideal    = sum of the 12 tasks' own wall times (runs.wall_time_s) / slots
       overhead = (stage wall - ideal) / ideal          (target <= 5%)

   where the stage wall runs from the fold datasets' Ray task
   (:meth:`~dlpipe.pipelines.kinds.base.StudyKind.fold_datasets`: re-read, split and
   encode every fold) to the last fold run written to the reports. What it counts:
   the fold-dataset task, Ray scheduling, a warm worker's TensorFlow start before its
   first run (``resources.reuse_workers: auto``: each worker trains run after run; a
   fresh worker per run with ``--fresh-workers``), moving results back, writing the
   part files, and a slot left idle at the end when the tasks do not divide evenly.

Other work on the machine slows both sides; run it on a quiet machine and read the
load average it prints.

    python benchmarks/bench_kfold.py [--epochs 40] [--repeats 3] [--k 4] [--fresh-workers]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

SLOTS = 2


def make_cfg(name: str, out: Path, *, epochs: int, k: int, repeats: int, reuse: str = "auto"):
    """A 1-model tabular study on ``demo:diabetes`` under (iterated) K-fold."""
    from dlpipe.pipelines.config import parse_study

    evaluation = (
        {"kfold": {"k": k}} if repeats == 1 else {"iterated_kfold": {"k": k, "repeats": repeats}}
    )
    raw = {
        "study": name,
        "pipeline": "tabular",
        "output_dir": str(out),
        "seed": 42,
        "data": {"path": "demo:diabetes", "target": "progression"},
        "task": "regression",
        "evaluation": evaluation,
        "training": {"epochs": epochs, "batch_size": 16, "early_stopping": {"enabled": False}},
        "resources": {"num_cpus": 1, "reuse_workers": reuse},
        "models": [{"family": "dense"}],
    }
    return parse_study(raw, source=name)


def prepare(cfg):
    """``(run_dir, prepared, baseline row)`` of a study, as ``run_study`` starts."""
    import ray

    from dlpipe.pipelines.kinds import get_kind
    from dlpipe.pipelines.study import record_dataset, write_baseline

    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):  # the dataset summary, once per study
        prepared = get_kind(cfg).prepare(cfg, run_dir)
    record_dataset(run_dir, prepared)
    return run_dir, prepared, write_baseline(run_dir, cfg, prepared, ray.get(prepared.data))


def fold_stage(cfg, run_dir, prepared, baseline, *, one_at_a_time: bool) -> tuple[float, list]:
    """``(wall seconds, runs rows)`` of the fold runs: fold datasets, then every job at
    once or one job at a time, each result written as it arrives."""
    from dlpipe.pipelines.jobs import collect_jobs, launch_jobs
    from dlpipe.pipelines.kfold import fold_jobs
    from dlpipe.pipelines.kinds import get_kind

    started = time.perf_counter()
    folds = get_kind(cfg).fold_datasets(cfg, prepared)[:-1]
    jobs, _ = fold_jobs(cfg, prepared, folds, run_dir)
    batches = [[job] for job in jobs] if one_at_a_time else [jobs]
    rows = []
    for batch in batches:
        rows += collect_jobs(run_dir, cfg, prepared, launch_jobs(cfg, batch), baseline, False)
    return time.perf_counter() - started, rows


def task_seconds(rows) -> float:
    """Sum of the runs' own wall times (``wall_time_s``)."""
    return float(sum(row["wall_time_s"] for row in rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40, help="epochs per fold run")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the overhead run")
    parser.add_argument(
        "--fresh-workers",
        action="store_true",
        help="a fresh worker process per run (resources.reuse_workers: false)",
    )
    args = parser.parse_args()

    from dlpipe.pipelines.runtime import init_ray

    reuse = "false" if args.fresh_workers else "auto"
    init_ray(None, num_cpus=SLOTS)
    out = Path(tempfile.mkdtemp(prefix="bench-kfold-"))
    load_before = os.getloadavg()
    try:
        # warm-up (untimed): Ray's worker pool, the demo table written once
        warm = make_cfg("warm", out, epochs=1, k=2, repeats=1, reuse=reuse)
        fold_stage(warm, *prepare(warm), one_at_a_time=False)
        walls = {}
        for mode, one in (("one after another", True), ("at once", False)):
            cfg = make_cfg(
                f"k{args.k}-{'seq' if one else 'par'}",
                out,
                epochs=args.epochs,
                k=args.k,
                repeats=1,
                reuse=reuse,
            )
            walls[mode] = fold_stage(cfg, *prepare(cfg), one_at_a_time=one)
        cfg = make_cfg(
            "iterated", out, epochs=args.epochs, k=args.k, repeats=args.repeats, reuse=reuse
        )
        stage_wall, rows = fold_stage(cfg, *prepare(cfg), one_at_a_time=False)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    load_after = os.getloadavg()

    print(
        f"\n=== K-fold benchmark (dense head on demo:diabetes, {args.epochs} epochs of batch "
        f"16 per fold run; local Ray, {SLOTS} CPUs, num_cpus=1 per task; "
        f"{'fresh workers' if args.fresh_workers else 'warm workers'}) ==="
    )
    print(
        f"load average (1/5/15 min) before {'/'.join(f'{v:.2f}' for v in load_before)}, "
        f"after {'/'.join(f'{v:.2f}' for v in load_after)} on {os.cpu_count()} cores"
    )
    for mode, (wall, fold_rows) in walls.items():
        print(
            f"{args.k} folds {mode}: {wall:.1f} s wall (the tasks' own wall times sum to "
            f"{task_seconds(fold_rows):.1f} s)"
        )
    speedup = walls["one after another"][0] / walls["at once"][0]
    print(
        f"speedup {args.k} folds on {SLOTS} workers vs one after another: {speedup:.2f}x "
        f"(target >= 1.6: {'met' if speedup >= 1.6 else 'MISSED'})"
    )
    ideal = task_seconds(rows) / SLOTS
    overhead = (stage_wall - ideal) / ideal
    print(
        f"iterated K-fold {args.repeats} x {args.k} = {len(rows)} tasks on {SLOTS} slots: "
        f"stage wall {stage_wall:.1f} s, tasks {task_seconds(rows):.1f} s / {SLOTS} = "
        f"{ideal:.1f} s -> orchestration overhead {100 * overhead:.1f}% (target <= 5%: "
        f"{'met' if overhead <= 0.05 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
