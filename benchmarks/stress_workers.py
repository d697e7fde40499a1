"""Stress check of training workers (issue 11, section 3): no aborts, no native dumps,
no lost tasks.

A training worker once died with ``[mutex.cc] Mutex corrupt`` -> SIGABRT -> a native
dump, right after its run (TensorFlow >= 2.20 and pyarrow's native libraries in one
process). This runs many short training tasks back to back through the real task path
(``dlpipe.tasks.remote.train_model_task``: Ray, a fresh worker per task, ``max_calls=1``,
no retries so a crash is seen, not hidden) and prints:

* tasks finished (status ok),
* aborts: workers that died (Ray's ``WorkerCrashedError`` for a task, or a worker whose
  log shows it died by a signal, also after its task returned),
* native dumps: workers whose Ray session logs (``worker-*.err``/``.out``) hold one
  (``Mutex corrupt``, ``SIGABRT``, ``*** Aborted``, ``Fatal Python error``,
  ``Check failure stack trace``),
* tasks lost: submitted tasks whose result never came (any other error, a timeout).

Target: 0 aborts, 0 dumps, 0 lost. ``--sweep`` runs a small sweep through
``dlpipe.pipelines.sweeps.run.run_sweep`` (Ray Tune trials; needs the `demo` extra for its
data) and prints the same counts for it. ``--self-check`` adds one task whose worker
aborts at exit, to show the counters see it (then 1 abort and 1 dump are expected);
``--with-pyarrow`` is the control: training workers that keep the pyarrow Ray loads.

    .venv/bin/python benchmarks/stress_workers.py            # 40 tasks
    .venv/bin/python benchmarks/stress_workers.py --tasks 10 --sweep
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

DUMP_PATTERNS = (
    "Mutex corrupt",
    "SIGABRT",
    "*** Aborted",
    "Fatal Python error",
    "Check failure stack trace",
)
#: a worker log line showing that the process died by a signal (also after its task
#: returned: the raylet does not log how an idle max_calls=1 worker exited)
SIGNAL_DEATH = re.compile(
    r"\*\*\* SIG(ABRT|SEGV|BUS|ILL|FPE) received|"
    r"Fatal Python error: (Aborted|Segmentation fault|Bus error)"
)


def tiny_weather():
    """A 200-row, 3-feature normalized series and its meta (as prepare_weather returns)."""
    rng = np.random.default_rng(0)
    t = np.arange(200)
    data = np.stack(
        [np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 24), rng.normal(size=200)], axis=1
    ).astype(np.float32)
    meta = {
        "key": "stress",
        "target_column": 0,
        "mean": [0.0] * 3,
        "std": [1.0] * 3,
        "splits": {"train": [[0, 120]], "validation": [[120, 160]], "test": [[160, 200]]},
    }
    return data, meta


def scan_logs(logs_dir: Path) -> tuple[int, int, list[str]]:
    """``(workers whose logs hold a native dump, workers that died by a signal,
    example lines)`` from the session's ``worker-*.err``/``.out`` (one worker: one pid)."""
    dumped, killed, examples = set(), set(), []
    for path in sorted(logs_dir.glob("worker-*.err")) + sorted(logs_dir.glob("worker-*.out")):
        pid = path.stem.rsplit("-", 1)[-1]
        for line in path.read_text(errors="replace").splitlines():
            if any(p in line for p in DUMP_PATTERNS):
                dumped.add(pid)
                if len(examples) < 4:
                    examples.append(f"{path.name[-40:]}: {line.strip()[:140]}")
            if SIGNAL_DEATH.search(line):
                killed.add(pid)
    return len(dumped), len(killed), examples


def run_tasks(n: int, self_check: bool, with_pyarrow: bool = False) -> dict:
    """Submit ``n`` training tasks (and the self-check task) and count the outcomes."""
    import ray
    from ray.exceptions import GetTimeoutError, WorkerCrashedError

    from dlpipe.tasks import remote
    from dlpipe.tasks.training.fit import TrainingSpec
    from dlpipe.tasks.weather.train import train_model
    from dlpipe.tasks.weather.windows import WindowSpec

    data, meta = tiny_weather()
    data_ref = ray.put(data)
    task = remote.train_model_task.options(max_retries=0)
    if with_pyarrow:  # control run: the workers keep the pyarrow Ray's serializers load
        task = remote.train_model_task.options(
            max_retries=0, runtime_env={"env_vars": {remote.TF_WORKER_ENV: "0"}}
        )
    kwargs = dict(
        meta=meta,
        family="dense",
        hp={"units": 8},
        inputs=WindowSpec(lookback=12, step=1, delay=3, batch_size=32),
        training=TrainingSpec(epochs=2, max_batches_per_epoch=3),
    )
    refs = [
        task.remote(train_model, data=data_ref, seed=i, run_id=f"stress-{i}", **kwargs)
        for i in range(n)
    ]
    if self_check:

        @ray.remote(max_calls=1, num_cpus=1, max_retries=0)
        def abort_at_exit():
            import atexit

            atexit.register(os.abort)  # the worker aborts when it exits, after returning
            return "aborted later"

        refs.append(abort_at_exit.remote())
    counts = {"submitted": len(refs), "finished": 0, "aborts": 0, "lost": 0, "failed": 0}
    for ref in refs:
        try:
            out = ray.get(ref, timeout=900)
        except WorkerCrashedError:
            counts["aborts"] += 1
            continue
        except GetTimeoutError:
            counts["lost"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - any other error: the result is lost
            print(f"  lost: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            counts["lost"] += 1
            continue
        if hasattr(out, "run") and out.run["status"] == "ok":
            counts["finished"] += 1
        elif isinstance(out, dict):
            counts["failed"] += 1
            print(f"  failed run: {out['run'].get('error', '')[:160]}")
        else:
            counts["finished"] += 1
    return counts


SWEEP_STUDY = """
study: stress-sweep
output_dir: {out}
data: {{format: tmy3, path: "pvlib:723170TYA.CSV"}}
split: {{train_fraction: 0.6, validation_fraction: 0.2, blocks: 4}}
windows: {{lookback: 24, step: 2, delay: 6, batch_size: 32}}
training: {{epochs: 2, max_batches_per_epoch: 3}}
resources: {{num_cpus: 1}}
models: [{{family: dense}}]
sweep:
  families: [dense]
  num_trials: {trials}
  max_concurrent_trials: 2
  n_initial_points: 2
  test_top_k: 1
  spaces:
    dense: {{units: {{quniform: [8, 128, 8]}}, learning_rate: {{loguniform: [0.0001, 0.01]}}}}
"""


def run_sweep_check(trials: int, workdir: Path) -> dict:
    """A ``trials``-trial sweep through ``run_sweep``; counts from its trials table."""
    from dlpipe.pipelines.config import load_study
    from dlpipe.pipelines.sweeps.run import run_sweep
    from dlpipe.tasks.reports import tables as reports

    study = workdir / "stress_sweep.yaml"
    study.write_text(textwrap.dedent(SWEEP_STUDY.format(out=workdir / "out", trials=trials)))
    cfg = load_study(study)
    counts = {"submitted": trials, "finished": 0, "aborts": 0, "lost": 0, "failed": 0}
    try:
        sweep_dir = run_sweep(cfg)
    except Exception as exc:  # noqa: BLE001 - reported, counted below from the tables
        print(f"  sweep raised {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        sweep_dir = workdir / "out" / "stress-sweep-sweep"
    table = reports.read_table(sweep_dir, "trials") if sweep_dir.is_dir() else None
    rows = [] if table is None else table.to_dict("records")
    crash = re.compile(r"WorkerCrashed|ActorDied|RayActorError|SIGABRT|signal", re.I)
    for row in rows:
        if row["status"] in ("ok", "reused", "stopped"):
            counts["finished"] += 1
        elif crash.search(str(row.get("error") or "")):
            counts["aborts"] += 1
        else:
            counts["failed"] += 1
    counts["lost"] = max(0, trials - len(rows))
    return counts


def report(title: str, counts: dict, logs_dir: Path, seconds: float) -> bool:
    dumps, signals, examples = scan_logs(logs_dir)
    aborts = counts["aborts"] + signals
    print(
        f"{title}: {counts['finished']} of {counts['submitted']} finished in {seconds:.0f} s; "
        f"aborts {aborts} (crashed tasks {counts['aborts']}, workers killed by a signal "
        f"{signals}), native dumps {dumps}, lost {counts['lost']}, "
        f"failed runs {counts['failed']}"
    )
    for line in examples:
        print(f"  {line}")
    return aborts == 0 and dumps == 0 and counts["lost"] == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=40, help="training tasks (default 40)")
    parser.add_argument(
        "--num-cpus", type=int, default=2, help="CPUs of the local Ray (tasks at once; default 2)"
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="also run a small sweep (Ray Tune trials) with the same counts",
    )
    parser.add_argument("--sweep-trials", type=int, default=6)
    parser.add_argument(
        "--with-pyarrow",
        action="store_true",
        help="control run: training workers keep pyarrow (as before the fix)",
    )
    parser.add_argument(
        "--self-check",
        action="store_true",
        help="add a task whose worker aborts at exit (counters must see it)",
    )
    args = parser.parse_args(argv)

    import ray

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ray.init(
        address="local",
        num_cpus=args.num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    logs_dir = Path(ray._private.worker._global_node.get_logs_dir_path())
    print(f"Ray session logs: {logs_dir}")
    ok = True
    try:
        started = time.perf_counter()
        counts = run_tasks(args.tasks, args.self_check, args.with_pyarrow)
        time.sleep(3)  # let the last workers exit and flush their logs
        label = ", pyarrow loaded" if args.with_pyarrow else ", no pyarrow"
        ok &= report(
            f"training tasks ({args.tasks}, fresh worker each{label})",
            counts,
            logs_dir,
            time.perf_counter() - started,
        )
        if args.sweep:
            before = scan_logs(logs_dir)[:2]
            with tempfile.TemporaryDirectory(prefix="dlpipe-stress-") as tmp:
                started = time.perf_counter()
                counts = run_sweep_check(args.sweep_trials, Path(tmp))
                time.sleep(3)
                dumps, signals, _ = scan_logs(logs_dir)
                print(
                    f"(sweep only: {dumps - before[0]} dump lines, "
                    f"{signals - before[1]} signal exits)"
                )
                ok &= report(
                    f"sweep ({args.sweep_trials} Tune trials, run_sweep)",
                    counts,
                    logs_dir,
                    time.perf_counter() - started,
                )
    finally:
        ray.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
