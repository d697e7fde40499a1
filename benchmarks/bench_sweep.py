"""Sweep benchmarks (issue 3), measured side by side in one run on the demo data
(the TMY3 file pvlib ships), with training cut down so the whole run takes minutes:

1. throughput: the same trials (random search, same seed) with
   ``max_concurrent_trials`` 1 and 2; trials per hour and their ratio (target >= 1.85x
   at 20 trials, issue 17), and the training worker processes each side started
   (TensorFlow start-ups: the warm pool's workers, or one fresh worker per trained
   trial with ``--reuse-workers false``);
2. orchestration overhead per trial: trial span minus the training task's own wall time,
   as a share of the trial span (target <= 5%);
3. search quality: TPE vs random search at the same budget, several seeds (best
   validation loss after N trials; reported as measured, whichever wins);
4. searcher overhead: seconds of Hyperopt/Tune searcher time per trial at 100 trials
   (suggest + result bookkeeping on a synthetic objective, no training).

    python benchmarks/bench_sweep.py [--trials 20] [--quality-trials 12] [--seeds 3]
    python benchmarks/bench_sweep.py --quick     # 8 throughput trials, no quality runs
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

STUDY = {
    "data": {"format": "tmy3", "path": "pvlib:723170TYA.CSV"},
    "split": {"train_fraction": 0.6, "validation_fraction": 0.2, "blocks": 4},
    "windows": {"lookback": 48, "step": 2, "delay": 24, "batch_size": 64},
    "resources": {"num_cpus": 1},
    "models": [{"family": "gru"}],
}


def make_cfg(
    name: str,
    out: Path,
    *,
    searcher: str,
    trials: int,
    concurrent: int,
    seed: int,
    epochs: int,
    max_batches: int,
    families=("gru",),
    reuse_workers: str = "auto",
):
    from dlpipe.pipelines.config import parse_study

    raw = dict(
        STUDY,
        study=name,
        output_dir=str(out),
        seed=seed,
        training={
            "epochs": epochs,
            "max_batches_per_epoch": max_batches,
            "early_stopping": {"enabled": False},
        },
        sweep={
            "families": list(families),
            "num_trials": trials,
            "searcher": searcher,
            "max_concurrent_trials": concurrent,
            "n_initial_points": 4,
            "test_top_k": 1,
            "reuse_workers": reuse_workers,
            "spaces": {
                "gru": {
                    "units": {"quniform": [8, 48, 8]},
                    "learning_rate": {"loguniform": [0.0003, 0.03]},
                }
            },
        },
    )
    return parse_study(raw, source=name)


def timing(sweep_dir: Path) -> dict:
    from dlpipe.tasks.reports import tables as reports

    trials = reports.read_table(sweep_dir, "trials")
    runs = reports.read_table(sweep_dir, "runs")
    trained = trials[trials["status"] == "ok"].merge(runs[["run_id", "wall_time_s"]], on="run_id")
    span = (trials["ended_at"].max() - trials["started_at"].min()).total_seconds()
    per_trial = (trained["ended_at"] - trained["started_at"]).dt.total_seconds()
    # medians: the first trial of each worker also pays TensorFlow's import (~3 s)
    ordered = trials.sort_values("started_at")
    gaps = (
        ordered["started_at"].iloc[1:].to_numpy() - ordered["ended_at"].iloc[:-1].to_numpy()
    ) / np.timedelta64(1, "s")
    return {
        "gap_s": float(np.median(gaps)) if len(gaps) else 0.0,
        "trials": len(trials),
        "span_s": span,
        "per_hour": len(trials) / span * 3600,
        "trial_s": float(per_trial.median()),
        "train_s": float(trained["wall_time_s"].median()),
        "overhead_s": float((per_trial - trained["wall_time_s"]).median()),
        "best": float(trials["val_loss"].min()),
        "trained": len(trained),
    }


def worker_starts(t: dict) -> tuple[int, str]:
    """Training worker processes the last sweep started (TensorFlow start-ups) and how
    they were counted: the warm pool's, else one fresh worker per trained trial."""
    from dlpipe.pipelines.sweeps import workers

    stats = workers.last_pool_stats
    if stats is not None:
        return stats["workers"], f"warm pool of {stats['size']}, {stats['recycled']} recycled"
    return t["trained"], "fresh worker per trained trial"


def searcher_overhead(n: int = 100) -> tuple[float, float]:
    """Mean and last-10 seconds per trial of suggest + on_trial_complete at n trials."""
    from ray.tune.search.hyperopt import HyperOptSearch

    from dlpipe.models.spaces import TIMESERIES_SPACES
    from dlpipe.tasks.sweep.space import decode, sweep_space, validate_space

    spaces = {f: validate_space(TIMESERIES_SPACES[f]) for f in ("gru", "lstm", "conv_gru")}
    search = HyperOptSearch(
        sweep_space(spaces), metric="val_loss", mode="min", n_initial_points=10, random_state_seed=0
    )
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        config = search.suggest(f"t{i}")
        family, hp = decode(config)
        loss = abs(np.log10(hp["learning_rate"]) + 3) + abs(hp["units"] - 32) / 32
        search.on_trial_complete(f"t{i}", {"val_loss": loss})
        times.append(time.perf_counter() - t0)
    return float(np.mean(times)), float(np.mean(times[-10:]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per throughput run")
    parser.add_argument("--quality-trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-batches", type=int, default=80)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument(
        "--reuse-workers",
        default="auto",
        choices=("auto", "true", "false"),
        help="sweep.reuse_workers of the throughput runs (false: the fresh-worker path)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="8 throughput trials, no search-quality runs"
    )
    args = parser.parse_args()
    if args.quick:
        args.trials, args.skip_quality = min(args.trials, 8), True

    from dlpipe.pipelines.runtime import init_ray
    from dlpipe.pipelines.sweeps import workers
    from dlpipe.pipelines.sweeps.run import run_sweep

    init_ray(None, num_cpus=2)
    out = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        per_c = {}
        for concurrent in (1, 2):
            cfg = make_cfg(
                f"thr{concurrent}",
                out,
                searcher="random",
                trials=args.trials,
                concurrent=concurrent,
                seed=7,
                epochs=args.epochs,
                max_batches=args.max_batches,
                reuse_workers=args.reuse_workers,
            )
            workers.last_pool_stats = None
            per_c[concurrent] = timing(run_sweep(cfg))
            per_c[concurrent]["workers"] = worker_starts(per_c[concurrent])
        quality = {"tpe": [], "random": []}
        if not args.skip_quality:
            for seed in range(args.seeds):
                for searcher in ("tpe", "random"):
                    cfg = make_cfg(
                        f"q-{searcher}-{seed}",
                        out,
                        searcher=searcher,
                        trials=args.quality_trials,
                        concurrent=2,
                        seed=100 + seed,
                        epochs=args.epochs,
                        max_batches=args.max_batches,
                    )
                    quality[searcher].append(timing(run_sweep(cfg))["best"])
        mean_s, last_s = searcher_overhead(100)
    finally:
        shutil.rmtree(out, ignore_errors=True)

    print(
        "\n=== sweep benchmark (GRU on the TMY3 demo data, "
        f"{args.epochs} epochs x {args.max_batches} batches per trial) ==="
    )
    for c, t in per_c.items():
        print(
            f"max_concurrent_trials={c}: {t['trials']} trials in {t['span_s']:.1f} s -> "
            f"{t['per_hour']:.0f} trials/h; median trial {t['trial_s']:.2f} s of which "
            f"training task {t['train_s']:.2f} s; {t['workers'][0]} training worker "
            f"process(es) started = TensorFlow start-ups ({t['workers'][1]})"
        )
    ratio = per_c[2]["per_hour"] / per_c[1]["per_hour"]
    target = "target >= 1.85 at 20 trials" + ("" if args.trials == 20 else f"; ran {args.trials}")
    print(
        f"throughput 2 vs 1 concurrent: {ratio:.2f}x ({target}: "
        f"{'met' if ratio >= 1.85 else 'MISSED'}; reuse_workers={args.reuse_workers}; "
        f"load average {os.getloadavg()[0]:.2f} at the end)"
    )
    t1 = per_c[1]
    overhead = t1["overhead_s"] + t1["gap_s"]
    share = overhead / (t1["trial_s"] + t1["gap_s"])
    print(
        f"orchestration overhead per trial (concurrency 1, medians): {t1['overhead_s']:.3f} s "
        f"inside the trial + {t1['gap_s']:.3f} s between trials = {overhead:.3f} s, "
        f"{100 * share:.1f}% of a {t1['train_s']:.1f}-s trial (target <= 5%: "
        f"{'met' if share <= 0.05 else 'MISSED'})"
    )
    print(
        "  (TensorFlow's import in each new worker, ~6 s of CPU, is not counted: with warm "
        "workers it is paid once per worker, not per trial)"
    )
    if quality["tpe"]:
        print(
            f"search quality, best validation loss after {args.quality_trials} trials, "
            f"{args.seeds} seeds:"
        )
        for name, values in quality.items():
            print(
                f"  {name:<6} "
                + ", ".join(f"{v:.4f}" for v in values)
                + f"   mean {np.mean(values):.4f}"
            )
        wins = sum(t < r for t, r in zip(quality["tpe"], quality["random"]))
        print(f"  TPE better than random on {wins} of {args.seeds} seeds")
    print(
        f"searcher overhead at 100 trials: {1000 * mean_s:.1f} ms/trial on average, "
        f"{1000 * last_s:.1f} ms/trial over the last 10"
    )


if __name__ == "__main__":
    main()
