"""Test helper: the fake GPU of a simulated cluster (tests/test_cluster_sim.py).

A simulated cluster's "GPU" node declares a GPU that Ray schedules but TensorFlow cannot
see, so a trial asking for one would raise ``DeviceError`` (case C13). In the workers
of a test job only, `install` wraps ``setup_tensorflow``: where the real one raises
``DeviceError``, the task runs on the CPU and ``"fake-GPU"`` is recorded among its
devices. Production code knows nothing of it.

Ray runs `install` in every worker process of a job whose runtime env names it
(``worker_process_setup_hook``, see `runtime_env`), before the worker imports any task
code, so the modules that import ``setup_tensorflow`` by name get the wrapped one. The
workers find this module through ``PYTHONPATH`` (the runtime env's ``env_vars``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FAKE_DEVICE = "fake-GPU"
HOOK = f"{__name__}.install"
TESTS_DIR = str(Path(__file__).resolve().parent)
#: The variable through which Ray hands a submitted job's config (its runtime env) to
#: the driver process (``ray job submit`` sets it; ``ray.init`` reads it).
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def faked(setup_tensorflow):
    """``setup_tensorflow`` that serves a GPU request TF cannot see with the CPU.

    Args:
        setup_tensorflow: the real :func:`dlpipe.tasks.training.tf_setup.setup_tensorflow`.

    Returns:
        A function of the same signature: the real one's devices, or, where it raises
        ``DeviceError``, the CPU devices plus ``"fake-GPU"``.
    """
    from dlpipe.tasks.training.tf_setup import DeviceError

    def fake_setup_tensorflow(num_cpus: float = 1, num_gpus: float = 0) -> list[str]:
        try:
            return setup_tensorflow(num_cpus, num_gpus)
        except DeviceError:
            return setup_tensorflow(num_cpus, 0) + [FAKE_DEVICE]

    fake_setup_tensorflow.__wrapped__ = setup_tensorflow
    return fake_setup_tensorflow


def install() -> None:
    """The worker process set-up hook: wraps ``tf_setup.setup_tensorflow`` (once)."""
    from dlpipe.tasks.training import tf_setup

    if not hasattr(tf_setup.setup_tensorflow, "__wrapped__"):
        tf_setup.setup_tensorflow = faked(tf_setup.setup_tensorflow)


def runtime_env() -> dict:
    """The runtime env of a job whose workers have the fake GPU."""
    path = os.pathsep.join(p for p in (TESTS_DIR, os.environ.get("PYTHONPATH")) if p)
    return {"worker_process_setup_hook": HOOK, "env_vars": {"PYTHONPATH": path}}


def driver_env(environ: dict) -> dict:
    """``environ`` for a driver subprocess (e.g. ``dlpipe sweep --address``) whose job
    gets `runtime_env`, as a job submitted with ``--runtime-env`` would."""
    return {**environ, JOB_CONFIG_ENV: json.dumps({"runtime_env": runtime_env()})}
