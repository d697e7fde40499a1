"""Connecting to Ray: a running cluster when there is one, a local instance otherwise."""

from __future__ import annotations

import logging
import os


def init_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process (entry points only, never in a library).

    Args:
        address: ``"auto"``, ``"ray://host:10001"`` or ``host:port`` of a running
            cluster; ``None`` uses ``RAY_ADDRESS`` when set, else starts a fresh local
            instance (``address="local"``: never joins a stray Ray on the machine).
        num_cpus: CPUs of the local instance (default: all cores).
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 logging_level=logging.WARNING)
