"""A simulated multi-node cluster on this machine (``ray.cluster_utils.Cluster``): a
1-CPU head without GPUs and a worker declaring one fake GPU. The ``dlpipe sweep`` driver
joins it with ``--address`` (as on a real cluster).

* GPU scheduling: trials asking for half a GPU, and the test-split evaluations, run only
  on the "GPU" node (checked by Ray node id through Ray's state API: every node shares
  this machine's hostname, so the reports' ``node`` column cannot tell them apart).
* Node loss: the GPU node removed mid-sweep, then a replacement added: the trials report
  still ends with exactly the requested trials, no trial number twice. With the default
  ``max_failures: 0`` the trial on the lost node is recorded as failed (exit code 3);
  with ``max_failures: 1`` Tune retries it on the replacement under the same number and
  every trial ends ok, each with one ``trials`` row and one ``runs`` row.

The fake GPU is not visible to TensorFlow, so the trials' ``setup_tensorflow`` would
raise ``DeviceError`` (case C13); the sweep's job gets the worker set-up hook of
``tests/fake_gpu.py`` (``worker_process_setup_hook`` in its runtime env), which lets them
run on the CPU and record ``fake-GPU`` among their devices. Production code has no such
switch.
"""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dlpipe.tasks.reports import tables as reports

import fake_gpu

BIN = Path(sys.executable).parent

STUDY = """
study: {name}
output_dir: out
data: {{format: tmy3, path: "pvlib:723170TYA.CSV"}}
split: {{train_fraction: 0.6, validation_fraction: 0.2, blocks: 4}}
windows: {{lookback: 48, step: 2, delay: 24, batch_size: 32}}
training: {{epochs: 2, max_batches_per_epoch: 3}}
resources: {{num_cpus: 1, num_gpus: 0.5}}
models: [{{family: dense}}]
sweep:
  families: [dense]
  num_trials: {trials}
  max_concurrent_trials: {concurrent}
  n_initial_points: 2
  test_top_k: 2
  spaces:
    dense: {{units: {{quniform: [8, 64, 8]}}, learning_rate: {{loguniform: [0.0001, 0.01]}}}}
"""


def write_study(tmp_path, name, trials, concurrent, batches=3, max_failures=None):
    path = tmp_path / f"{name}.yaml"
    text = textwrap.dedent(STUDY.format(name=name, trials=trials, concurrent=concurrent))
    if max_failures is not None:
        text += f"  max_failures: {max_failures}\n"  # a key of `sweep:` (the last section)
    path.write_text(text.replace("max_batches_per_epoch: 3", f"max_batches_per_epoch: {batches}"))
    return path


@pytest.fixture
def cluster(monkeypatch):
    """Head (1 CPU, no GPU) + a "GPU" worker (2 CPUs, 1 fake GPU); yields
    ``(cluster, gpu_node)`` with this process connected as a driver (state API)."""
    import ray
    from ray.cluster_utils import Cluster

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    sim = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    gpu_node = sim.add_node(num_cpus=2, num_gpus=1)
    sim.wait_for_nodes()
    ray.init(address=sim.address)
    try:
        yield sim, gpu_node
    finally:
        ray.shutdown()
        sim.shutdown()


def sweep_cmd(path, address):
    return [str(BIN / "dlpipe"), "sweep", str(path), "--address", address]


def sweep_env():
    """Environment of the ``dlpipe sweep`` driver: its job's workers get the fake GPU
    (`fake_gpu.runtime_env`); no ``RAY_ADDRESS`` (``--address`` names the cluster)."""
    return fake_gpu.driver_env({k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})


def placements(names_like: str, kind: str) -> dict[str, str]:
    """``{id: node_id}`` of the actors (``kind="actor"``, class name containing
    ``names_like``) or tasks (``kind="task"``, exact name) Ray's state API knows."""
    from ray.util.state import list_actors, list_tasks

    if kind == "actor":
        return {
            a.actor_id: a.node_id
            for a in list_actors(limit=1000, detail=True)
            if names_like in (a.class_name or "")
        }
    return {
        t.task_id: t.node_id
        for t in list_tasks(filters=[("name", "=", names_like)], limit=1000, detail=True)
    }


def wait_for(fn, timeout=30):
    """Poll ``fn`` until it returns something truthy (state events arrive with a lag)."""
    deadline = time.time() + timeout
    while True:
        value = fn()
        if value or time.time() > deadline:
            return value
        time.sleep(1)


@pytest.mark.slow
@pytest.mark.ray
def test_gpu_trials_run_only_on_the_gpu_node(cluster, tmp_path):
    sim, gpu_node = cluster
    path = write_study(tmp_path, "gpu", trials=3, concurrent=2)
    env = sweep_env()
    proc = subprocess.run(
        sweep_cmd(path, sim.address),
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep_dir = tmp_path / "out" / "gpu-sweep"
    trials = reports.read_table(sweep_dir, "trials")
    assert sorted(trials["trial"]) == [1, 2, 3]
    assert set(trials["status"]) <= {"ok", "reused"}
    runs = reports.read_table(sweep_dir, "runs")
    runs = runs[runs["family"] != "baseline"]
    assert len(runs) >= 1
    # the fake GPU of the test job's workers, not a C13 error
    assert all(fake_gpu.FAKE_DEVICE in d.split(",") for d in runs["devices"])

    # every trial actor and every test-split evaluation ran on the GPU node
    actors = wait_for(lambda: placements("ImplicitFunc", "actor"))
    assert actors and set(actors.values()) == {gpu_node.node_id}, actors
    evals = wait_for(lambda: placements("evaluate_model_task", "task"))
    assert evals and set(evals.values()) == {gpu_node.node_id}, evals
    head_id = sim.head_node.node_id
    assert head_id != gpu_node.node_id


def lose_gpu_node_mid_sweep(sim, gpu_node, tmp_path, name, max_failures=None):
    """Run a 4-trial sweep (one trial at a time) and remove the GPU node as trial 2
    starts, then add a replacement; returns ``(exit code, driver log, replacement)``."""
    # longer trials (a few seconds each), so that the node goes while trial 2 runs
    path = write_study(
        tmp_path, name, trials=4, concurrent=1, batches=60, max_failures=max_failures
    )
    sweep_dir = tmp_path / "out" / f"{name}-sweep"
    env = sweep_env()
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            sweep_cmd(path, sim.address),
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        trials_dir = sweep_dir / "reports" / "trials"
        deadline = time.time() + 180
        while (
            time.time() < deadline and not list(trials_dir.glob("part-*")) and proc.poll() is None
        ):
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()[-3000:]
        # trial 2 starts as trial 1 is recorded: remove its node now
        assert len(list(trials_dir.glob("part-*"))) == 1
        # a lost node (crash, preemption): killed, not shut down gracefully. A graceful
        # removal (SIGTERM) is reported by Ray as an expected termination, which Tune
        # does not retry: the test then flaked between the two outcomes
        sim.remove_node(gpu_node, allow_graceful=False)
        replacement = sim.add_node(num_cpus=2, num_gpus=1)
        sim.wait_for_nodes()
        rc = proc.wait(timeout=300)
    return rc, log.read_text(), replacement


def node_lost(text: str) -> bool:
    """Whether ``text`` holds Ray's word for an actor lost with its killed node: "its
    node has died", or, when the RPC to it broke first, "is unavailable"."""
    return "its node has died" in text or "is unavailable" in text


@pytest.mark.slow
@pytest.mark.ray
def test_gpu_node_lost_mid_sweep_still_ends_with_the_requested_trials(cluster, tmp_path):
    sim, gpu_node = cluster
    rc, text, replacement = lose_gpu_node_mid_sweep(sim, gpu_node, tmp_path, "lost")
    sweep_dir = tmp_path / "out" / "lost-sweep"
    trials = reports.read_table(sweep_dir, "trials")
    print(trials[["trial", "status", "error"]].to_string())
    assert sorted(trials["trial"]) == [1, 2, 3, 4]  # exactly num_trials, none twice
    failed = trials[trials["status"] == "failed"]
    # the trial running on the lost node (if one was) is recorded as failed, with the
    # reason; the others finished, the later ones on the replacement node
    # Observed: trial 2, running on the removed node, is recorded as failed ("The actor
    # died because its node has died"; FailureConfig(max_failures=0): Tune does not
    # retry it, so it is not trained a second time under a new number); Tune waits for
    # a GPU node again, and trials 3 and 4 run on the replacement.
    assert set(failed["trial"]) <= {2}, failed
    for error in failed["error"]:
        assert node_lost(error), error
    # a failed trial makes the command exit 3 after the reports, naming it
    assert rc == (3 if len(failed) else 0), text[-3000:]
    if len(failed):
        assert "trial 2 (dense):" in text and "1 of 4 trial(s) failed" in text
    assert (trials[trials["status"] != "failed"]["status"].isin(["ok", "reused"])).all()
    actors = wait_for(lambda: placements("ImplicitFunc", "actor"))
    assert set(actors.values()) <= {gpu_node.node_id, replacement.node_id}, actors
    assert replacement.node_id in set(actors.values())


@pytest.mark.slow
@pytest.mark.ray
def test_node_lost_with_max_failures_retries_the_trial_under_its_number(cluster, tmp_path):
    sim, gpu_node = cluster
    rc, text, replacement = lose_gpu_node_mid_sweep(
        sim, gpu_node, tmp_path, "retry", max_failures=1
    )
    assert rc == 0, text[-3000:]
    sweep_dir = tmp_path / "out" / "retry-sweep"
    trials = reports.read_table(sweep_dir, "trials")
    print(trials[["trial", "status", "run_id", "error"]].to_string())
    # trial 2 lost its node and was run again by Tune (same number, same run key)
    assert "[trial   2/4] retrying after failure 1 (max_failures 1)" in text, text[-3000:]
    assert node_lost(text), text[-3000:]
    # exactly num_trials rows, every trial ok, no trial number twice
    assert sorted(trials["trial"]) == [1, 2, 3, 4]
    assert set(trials["status"]) <= {"ok", "reused"}, trials
    assert trials["error"].isna().all()
    # one runs/history part per run key: the retry left no duplicate rows
    runs = reports.read_table(sweep_dir, "runs")
    runs = runs[runs["family"] != "baseline"]
    assert runs["run_id"].is_unique
    assert set(trials["run_id"]) <= set(runs["run_id"])
    assert (runs["status"] == "ok").all()
    history = reports.read_table(sweep_dir, "history")
    assert not history.duplicated(["run_id", "epoch"]).any()
    actors = wait_for(lambda: placements("ImplicitFunc", "actor"))
    assert replacement.node_id in set(actors.values())


@pytest.mark.slow
def test_fake_gpu_only_in_the_test_hook(monkeypatch):
    """A GPU request TF cannot serve is an error (C13); only the test hook of
    ``tests/fake_gpu.py`` records it as ``fake-GPU``."""
    from dlpipe.tasks.training import tf_setup
    from dlpipe.tasks.training.tf_setup import DeviceError, setup_tensorflow

    for key in ("TF_CPP_MIN_LOG_LEVEL", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.setenv(key, os.environ.get(key, "2" if "LOG" in key else "1"))
    try:
        devices = setup_tensorflow(1, 0.5)
    except DeviceError:
        pass
    else:
        pytest.skip(f"TensorFlow sees a real GPU here ({devices})")
    with pytest.raises(DeviceError):
        setup_tensorflow(1, 0.5)
    monkeypatch.setattr(tf_setup, "setup_tensorflow", fake_gpu.faked(setup_tensorflow))
    assert tf_setup.setup_tensorflow(1, 0.5)[-1] == fake_gpu.FAKE_DEVICE
    assert fake_gpu.FAKE_DEVICE not in tf_setup.setup_tensorflow(1, 0)
