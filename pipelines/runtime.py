"""Connecting to Ray: a running cluster when there is one, a local instance otherwise."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

_STARTED_LOCAL = False


class RayStartError(RuntimeError):
    """Ray could not be started or joined (one line, exit 2)."""


def ensure_private_token(path: Path | None = None) -> Path | None:
    """Create the token file of Ray's token authentication owner-only (mode 600), in an
    owner-only folder, before Ray writes one with the default umask (Ray 2.60 writes
    ``~/.ray/auth_token`` mode 644: readable by every local user, and the job API
    accepts it). An existing token file readable by others is narrowed to 600.

    Nothing is done when ``RAY_AUTH_MODE`` turns token authentication off, or when the
    token comes from ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``.

    Returns:
        The token file, or None when none is used.
    """
    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    if mode and mode != "token":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    if path is None:
        if os.environ.get("RAY_AUTH_TOKEN_PATH"):
            return None
        path = Path.home() / ".ray" / "auth_token"
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return path
    import secrets

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))  # Ray's own tokens: 32 random bytes as hex
    return path


def init_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process (entry points only, never in a library).

    A local instance's token file is made owner-only first
    (:func:`ensure_private_token`).

    Args:
        address: ``"auto"``, ``"ray://host:10001"`` or ``host:port`` of a running
            cluster; ``None`` uses ``RAY_ADDRESS`` when set, else starts a fresh local
            instance (``address="local"``: never joins a stray Ray on the machine).
        num_cpus: CPUs of the local instance (default: all cores).

    Raises:
        RayStartError: ``address`` names no running cluster (an explicit
            ``host:port`` with nothing listening is refused in seconds).
    """
    global _STARTED_LOCAL
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except ConnectionError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RayStartError(
                f"--address {address}: no running Ray cluster could be joined ({first}). "
                "Start one (`ray start --head`, or `ray up cluster.yaml`) or leave out "
                "--address for a local run"
            ) from None
    else:
        ensure_private_token()
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
        _STARTED_LOCAL = True


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when an explicit ``host:port`` (or ``ray://host:port``) address has
    nothing listening: Ray itself retries such an address for minutes, printing native
    warnings. ``auto`` and ``local`` are left to Ray.

    Raises:
        RayStartError: one line naming the address and the connection error.
    """
    import socket

    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise RayStartError(f"--address {address}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RayStartError(
            f"--address {address}: no Ray cluster answers at {host}:{port} "
            f"({exc.strerror or exc}). Check the head node's address and port (`ray status` "
            "on the head), or leave out --address for a local run"
        ) from None


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
        missing.append(
            f"resources.num_gpus={num_gpus} but the Ray cluster has {total.get('GPU', 0):g} GPU(s)"
        )
    if num_cpus > total.get("CPU", 0):
        missing.append(
            f"resources.num_cpus={num_cpus:g} but the Ray cluster has "
            f"{total.get('CPU', 0):g} CPU(s)"
        )
    if not missing:
        return
    text = "; ".join(missing)
    if _STARTED_LOCAL:
        raise ValueError(
            f"{text}: no task could ever be scheduled. Lower the request in the "
            "study file, or connect to a cluster that has such nodes (--address)"
        )
    print(f"warning: {text}; waiting for the cluster to add such nodes", file=sys.stderr)
