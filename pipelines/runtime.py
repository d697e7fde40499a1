"""Connecting to Ray: a running cluster when there is one, a local instance otherwise."""

from __future__ import annotations

import logging
import os
import sys

_STARTED_LOCAL = False


def init_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process (entry points only, never in a library).

    Args:
        address: ``"auto"``, ``"ray://host:10001"`` or ``host:port`` of a running
            cluster; ``None`` uses ``RAY_ADDRESS`` when set, else starts a fresh local
            instance (``address="local"``: never joins a stray Ray on the machine).
        num_cpus: CPUs of the local instance (default: all cores).
    """
    global _STARTED_LOCAL
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 logging_level=logging.WARNING)
        _STARTED_LOCAL = True


def check_resources(num_cpus: float, num_gpus: float) -> None:
    """Fail fast when no node can ever run a task with these resources.

    On a local instance that dlpipe started, a task asking for more CPUs or GPUs than
    the machine has would wait forever: that is an error naming the setting. On a
    cluster, an autoscaler may still add such nodes: a warning is printed instead.

    Raises:
        ValueError: the local instance lacks the requested CPUs or GPUs.
    """
    import ray

    total = ray.cluster_resources()
    missing = []
    if num_gpus and total.get("GPU", 0) < min(num_gpus, 1):
        missing.append(f"resources.num_gpus={num_gpus} but the Ray cluster has "
                       f"{total.get('GPU', 0):g} GPU(s)")
    if num_cpus > total.get("CPU", 0):
        missing.append(f"resources.num_cpus={num_cpus:g} but the Ray cluster has "
                       f"{total.get('CPU', 0):g} CPU(s)")
    if not missing:
        return
    text = "; ".join(missing)
    if _STARTED_LOCAL:
        raise ValueError(f"{text}: no task could ever be scheduled. Lower the request in the "
                         "study file, or connect to a cluster that has such nodes (--address)")
    print(f"warning: {text}; waiting for the cluster to add such nodes", file=sys.stderr)
