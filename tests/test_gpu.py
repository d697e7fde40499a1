"""Real-GPU checks (marker ``gpu``; skipped by ``tests/conftest.py`` when TensorFlow
sees no GPU; ``pytest -m gpu`` or ``benchmarks/gpu_check.sh`` on a GPU machine).

Through a local Ray that declares one GPU, with tasks in fresh workers (``max_calls=1``,
as the training tasks are) so each one's TensorFlow set-up applies (case C13):

* a training task asking for ``num_gpus=1`` trains on the GPU and its run row's
  ``devices`` names it;
* memory growth is on for every GPU such a task sees;
* two tasks asking for ``num_gpus=0.5`` run at the same time on the same GPU;
* a task asking for ``num_gpus=0`` sees no GPU.
"""

import os
import sys
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.ray]


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray with 2 CPUs and exactly one GPU (the first one)."""
    import ray
    from ray import cloudpickle

    saved = {k: os.environ.pop(k, None) for k in ("RAY_ADDRESS",)}
    # the tasks below are defined here: ship them by value (workers cannot import tests/)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        os.environ.update({k: v for k, v in saved.items() if v is not None})


def tiny_dataset(rows=400, seed=0):
    from dlpipe.tasks.weather.prepare import normalize

    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    raw = np.stack(
        [
            np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.1, rows),
            np.cos(2 * np.pi * t / 24),
            rng.normal(size=rows),
        ],
        axis=1,
    )
    data, mean, std = normalize(raw, [(0, 200)])
    meta = {
        "key": "tiny",
        "target_column": 0,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "splits": {"train": [[0, 200]], "validation": [[200, 300]], "test": [[300, 400]]},
    }
    return data, meta


def probe(num_gpus: float, barrier_dir: str | None = None, name: str = "") -> dict:
    """What a task holding ``num_gpus`` sees after ``setup_tensorflow``; with
    ``barrier_dir``, it also waits (up to 60 s) until its twin has started too."""
    import ray

    from dlpipe.tasks.training.tf_setup import setup_tensorflow

    devices = setup_tensorflow(1, num_gpus)
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    out = {
        "devices": devices,
        "gpus": len(gpus),
        "ray_gpu_ids": ray.get_gpu_ids(),
        "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "memory_growth": [tf.config.experimental.get_memory_growth(g) for g in gpus],
    }
    if gpus:
        with tf.device("/GPU:0"):
            out["op_device"] = tf.matmul(tf.ones((64, 64)), tf.ones((64, 64))).device
    if barrier_dir:
        open(os.path.join(barrier_dir, name), "w").close()
        deadline = time.time() + 60
        while time.time() < deadline and len(os.listdir(barrier_dir)) < 2:
            time.sleep(0.1)
        out["met_twin"] = len(os.listdir(barrier_dir)) == 2
    return out


def remote_probe(ray, num_gpus: float):
    return ray.remote(max_calls=1, num_cpus=1, num_gpus=num_gpus)(probe)


def test_training_task_with_one_gpu_trains_on_it(local_ray):
    from dlpipe.tasks.remote import train_model_task
    from dlpipe.tasks.weather.train import TrainingSpec, train_model
    from dlpipe.tasks.weather.windows import WindowSpec

    data, meta = tiny_dataset()
    ref = train_model_task.options(num_cpus=1, num_gpus=1).remote(
        train_model,
        data=data,
        meta=meta,
        family="gru",
        hp={"units": 8},
        inputs=WindowSpec(lookback=24, step=2, delay=6, batch_size=16),
        training=TrainingSpec(epochs=2),
        seed=1,
        run_id="gpu-run",
        num_cpus=1,
        num_gpus=1,
    )
    run = local_ray.get(ref, timeout=300).run
    assert run["status"] == "ok", run["error"]
    assert "GPU:0" in run["devices"].split(","), run["devices"]
    assert "fake-GPU" not in run["devices"]
    assert np.isfinite(run["val_mae"])


def test_gpu_task_has_memory_growth_and_runs_ops_on_the_gpu(local_ray):
    out = local_ray.get(remote_probe(local_ray, 1).remote(1), timeout=300)
    assert out["gpus"] >= 1 and len(out["ray_gpu_ids"]) == 1, out
    assert out["memory_growth"] and all(out["memory_growth"]), out
    assert "GPU:0" in out["devices"] and out["op_device"].endswith("GPU:0"), out


def test_two_half_gpu_tasks_share_one_gpu(local_ray, tmp_path):
    task = remote_probe(local_ray, 0.5)
    refs = [task.remote(0.5, str(tmp_path), name) for name in ("a", "b")]
    a, b = local_ray.get(refs, timeout=300)
    assert a["met_twin"] and b["met_twin"], (a, b)  # they ran at the same time ...
    assert a["ray_gpu_ids"] == b["ray_gpu_ids"] and len(a["ray_gpu_ids"]) == 1, (a, b)
    for out in (a, b):  # ... on the same GPU, each with memory growth (no starving)
        assert out["gpus"] == 1 and all(out["memory_growth"]), out
        assert out["op_device"].endswith("GPU:0"), out


def test_task_without_gpu_sees_none(local_ray):
    out = local_ray.get(remote_probe(local_ray, 0).remote(0), timeout=300)
    assert out["gpus"] == 0 and out["ray_gpu_ids"] == [], out
    assert not any("GPU" in d for d in out["devices"]), out
    assert out["cuda_visible"] == "", out
