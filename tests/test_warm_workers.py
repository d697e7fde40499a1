"""Warm training workers of CPU sweeps (issue 17): a run as a later call of a warm
worker equals the run in a fresh worker; the pool reuses, replaces and recycles its
workers; ``sweep.reuse_workers`` and the resources trials then hold."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from dlpipe.pipelines.config import parse_study
from dlpipe.pipelines.sections import ConfigError, SweepSpec

HERE = Path(__file__).resolve().parent


def probe(mode: str, tmp_path) -> dict:
    out = tmp_path / f"{mode}.json"
    env = dict(os.environ, PYTHONPATH=str(HERE), CUDA_VISIBLE_DEVICES="")
    subprocess.run(
        [sys.executable, str(HERE / "warm_probe.py"), mode, str(out)],
        check=True,
        env=env,
        timeout=300,
    )
    return json.loads(out.read_text())


@pytest.mark.train
@pytest.mark.slow
def test_third_call_of_a_warm_worker_equals_a_fresh_worker_bit_for_bit(tmp_path):
    """The same GRU run (seed 3) in a fresh process, and as the 3rd call of a warm
    worker after a 16-unit GRU (seed 11) and a dense model (seed 5): history,
    validation predictions, validation loss, the saved model's name, layer and
    variable names and its weights are equal bit for bit. Control: the same model
    with seed 4 as the 4th call differs in weights and history, so the comparison can
    fail. (The weather trainer seeds itself and names its layers, so here the same
    calls agree even without :func:`reset_keras_state`; the reset keeps it so for
    code that draws before seeding or relies on Keras' name counters.)"""
    fresh, warm = probe("fresh", tmp_path), probe("warm", tmp_path)
    assert (fresh["runs"], warm["runs"]) == (1, 4)
    assert len(fresh["history"]) == 2 and len(fresh["predictions"]) > 50
    for key in ("history", "predictions", "val_loss", "model", "layers", "variables", "weights"):
        assert warm[key] == fresh[key], key
    assert warm["other"]["weights"] != fresh["weights"]
    assert warm["other"]["history"] != fresh["history"]


def test_reuse_workers_values_and_gpu_rule():
    from dlpipe.pipelines.sweeps.workers import uses_warm_workers

    assert SweepSpec().reuse_workers == "auto"
    assert SweepSpec(reuse_workers=True).reuse_workers == "true"
    assert SweepSpec(reuse_workers="false").reuse_workers == "false"
    with pytest.raises(ValueError, match="`reuse_workers` must be auto, true or false"):
        SweepSpec(reuse_workers="sometimes")

    def cfg(reuse, gpus=0, scheduler=None):
        return SimpleNamespace(
            sweep=SimpleNamespace(reuse_workers=reuse, scheduler=scheduler),
            resources=SimpleNamespace(num_cpus=1, num_gpus=gpus),
            source_file="s.yaml",
        )

    assert uses_warm_workers(cfg("auto")) is True
    assert uses_warm_workers(cfg("true")) is True
    assert uses_warm_workers(cfg("false")) is False
    assert uses_warm_workers(cfg("auto", gpus=0.5)) is False  # GPU runs: fresh workers
    assert uses_warm_workers(cfg("auto", scheduler=object())) is False  # ASHA: in-trial
    with pytest.raises(ConfigError, match="reuse_workers: true.*num_gpus=1"):
        uses_warm_workers(cfg("true", gpus=1))


def study(tmp_path, **sweep):
    raw = {
        "study": "w",
        "output_dir": str(tmp_path),
        "data": {"format": "tmy3", "path": "pvlib:723170TYA.CSV"},
        "split": {"train_fraction": 0.6, "validation_fraction": 0.2},
        "windows": {"lookback": 48, "step": 2, "delay": 24},
        "models": [{"family": "dense"}],
        "sweep": {"families": ["dense"], **sweep},
    }
    return parse_study(raw, source="w.yaml")


def test_reuse_workers_is_read_from_yaml_and_leaves_the_stamp_alone(tmp_path):
    """YAML's booleans become "true"/"false"; the setting is not part of a stored
    sweep's fingerprint (a sweep may switch it between runs; sweeps stored before the
    field match), while a real setting (max_concurrent_trials) is."""
    from dlpipe.pipelines.sweeps.stamp import fingerprint, settings

    on, off = study(tmp_path, reuse_workers=True), study(tmp_path, reuse_workers=False)
    assert (on.sweep.reuse_workers, off.sweep.reuse_workers) == ("true", "false")
    assert "reuse_workers" not in settings(on)["sweep"]
    assert fingerprint(on) == fingerprint(off) == fingerprint(study(tmp_path))
    assert fingerprint(study(tmp_path, max_concurrent_trials=3)) != fingerprint(on)


def test_pooled_trials_hold_no_cpu_or_gpu():
    from dlpipe.tasks.sweep.trial import POOLED_TRIAL_BUNDLE, trial_resources

    pooled = trial_resources(2, 0, True, pooled=True)
    assert pooled.bundles == [{"memory": float(POOLED_TRIAL_BUNDLE["memory"])}]
    assert pooled.required_resources == {"memory": float(POOLED_TRIAL_BUNDLE["memory"])}
    fresh = trial_resources(2, 0, True)
    assert fresh.required_resources == {"CPU": 2.0}  # the fresh path is unchanged


def test_pool_size_fits_the_cluster(monkeypatch):
    import ray

    from dlpipe.pipelines.sweeps.workers import pool_size

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0})

    def cfg(concurrent, cpus):
        return SimpleNamespace(
            sweep=SimpleNamespace(max_concurrent_trials=concurrent),
            resources=SimpleNamespace(num_cpus=cpus),
        )

    assert pool_size(cfg(2, 1)) == 2
    assert pool_size(cfg(8, 1)) == 4  # no more workers than the CPUs hold
    assert pool_size(cfg(2, 1), parallel=3) == 4  # K-fold: 2 trials x 3 folds, 4 fit
    assert pool_size(cfg(2, 3)) == 1
    assert pool_size(cfg(1, 8)) == 1  # at least one


@pytest.mark.slow
@pytest.mark.ray
def test_pool_reuses_replaces_and_recycles_workers():
    """One warm worker: two calls run in one process (TensorFlow loaded, no pyarrow);
    a call whose worker dies fails, and the next one runs in a new process; with an
    RSS bound of 1 byte every run recycles its worker."""
    import ray

    from dlpipe.tasks import remote
    from dlpipe.tasks.sweep.pool import launch_in_pool, pool_actor, run_result

    sys.path.insert(0, str(HERE))
    import warm_probe

    ray.init(
        address="local",
        num_cpus=1,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}},
    )
    try:
        env = remote.tf_worker_runtime_env({"PYTHONPATH": str(HERE)})
        pool = pool_actor.options(name="p1").remote(1, 1, env, 2**40)
        first = run_result(launch_in_pool("p1", warm_probe.report_process, False, seed=1))
        second = run_result(launch_in_pool("p1", warm_probe.report_process, False, seed=2))
        assert first["pid"] == second["pid"] and (first["seed"], second["seed"]) == (1, 2)
        assert first["tensorflow"] and not first["pyarrow"]
        with pytest.raises(ray.exceptions.RayActorError):
            run_result(launch_in_pool("p1", warm_probe.crash, False, seed=3))
        third = run_result(launch_in_pool("p1", warm_probe.report_process, False, seed=4))
        assert third["pid"] != first["pid"] and third["tensorflow"]
        stats = ray.get(pool.stats.remote())
        assert stats == {"workers": 2, "runs": 4, "recycled": 0, "size": 1}
        ray.get(pool.shutdown.remote())
        ray.kill(pool)

        pool = pool_actor.options(name="p2").remote(1, 1, env, 1)
        a = run_result(launch_in_pool("p2", warm_probe.report_process, False, seed=1))
        b = run_result(launch_in_pool("p2", warm_probe.report_process, False, seed=1))
        assert a["pid"] != b["pid"]
        assert ray.get(pool.stats.remote())["recycled"] == 2
    finally:
        ray.shutdown()


SWEEPS = """
import json, sys
from dlpipe.pipelines.config import parse_study
from dlpipe.pipelines.runtime import init_ray
from dlpipe.pipelines.sweeps import workers
from dlpipe.pipelines.sweeps.run import run_sweep
from dlpipe.tasks.reports import tables as reports

init_ray(None, num_cpus=2)
out = {}
for reuse in ("auto", "false"):
    raw = {
        "study": f"s-{reuse}", "output_dir": sys.argv[1],
        "data": {"format": "tmy3", "path": "pvlib:723170TYA.CSV"},
        "split": {"train_fraction": 0.6, "validation_fraction": 0.2, "blocks": 4},
        "windows": {"lookback": 48, "step": 2, "delay": 24, "batch_size": 32},
        "training": {"epochs": 2, "max_batches_per_epoch": 3},
        "resources": {"num_cpus": 1}, "models": [{"family": "dense"}],
        "sweep": {"families": ["dense"], "num_trials": 3, "max_concurrent_trials": 1,
                  "searcher": "random", "test_top_k": 1, "reuse_workers": reuse,
                  "spaces": {"dense": {"units": {"quniform": [8, 64, 8]}}}},
    }
    workers.last_pool_stats = None
    sweep_dir = run_sweep(parse_study(raw, source="s.yaml"))
    trials = reports.read_table(sweep_dir, "trials").sort_values("trial")
    runs = reports.read_table(sweep_dir, "runs")
    out[reuse] = {
        "trials": trials[["trial", "run_id", "status", "val_loss"]].values.tolist(),
        "runs": sorted(runs["run_id"]),
        "models": sorted(p.name for p in (sweep_dir / "models").glob("*.keras")),
        "boards": sorted(p.name for p in (sweep_dir / "tensorboard").iterdir()),
        "pool": workers.last_pool_stats,
    }
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.train
def test_a_warm_sweep_records_what_a_fresh_worker_sweep_records(tmp_path):
    """The same 3-trial sweep with ``reuse_workers`` auto (one warm worker: one
    TensorFlow start-up for 3 trials) and false (a fresh worker per trial): the same
    trials, run keys, validation losses (bit for bit), kept models and TensorBoard
    runs."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, "-c", SWEEPS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    warm, fresh = out["auto"], out["false"]
    assert warm["pool"] == {"workers": 1, "runs": 3, "recycled": 0, "size": 1}
    assert fresh["pool"] is None
    assert [t[2] for t in warm["trials"]] == ["ok"] * 3
    for key in ("trials", "runs", "models", "boards"):
        assert warm[key] == fresh[key], key
