"""Where a sweep's runs train (issue 17): the warm worker pool of a CPU sweep, or a
fresh worker per run.

``sweep.reuse_workers`` chooses (:func:`uses_warm_workers`); the pool
(:mod:`dlpipe.tasks.sweep.pool`) lives for one call of Tune (:func:`worker_pool`) and
is ended before the test scoring, which starts its own fresh workers.
"""

from __future__ import annotations

import contextlib
import uuid

from dlpipe.pipelines.sections import ConfigError, StudyCommon

#: the last pool's :meth:`~dlpipe.tasks.sweep.pool.WorkerPool.stats` in this driver
#: (benchmarks read it); None when the last sweep used fresh workers
last_pool_stats: dict | None = None


def uses_warm_workers(cfg: StudyCommon) -> bool:
    """Whether the sweep's runs train in warm workers: ``reuse_workers`` ``true``, or
    ``auto`` with no GPU per run; never under an early-termination scheduler (its trials
    train in their own process).

    Raises:
        ConfigError: ``reuse_workers: true`` with ``resources.num_gpus`` > 0.
    """
    sweep, res = cfg.sweep, cfg.resources
    if sweep.reuse_workers == "true" and res.num_gpus:
        raise ConfigError(
            f"{cfg.source_file}: `sweep.reuse_workers: true` keeps one TensorFlow process "
            f"per worker, which never gives GPU memory back; with resources.num_gpus="
            f"{res.num_gpus} leave it at `auto` (fresh workers for GPU runs)"
        )
    if sweep.scheduler is not None or sweep.reuse_workers == "false":
        return False
    return not res.num_gpus


def pool_size(cfg: StudyCommon, parallel: int = 1) -> int:
    """Workers of the pool: the runs that may train at once, ``max_concurrent_trials``
    times ``parallel`` (a K-fold trial's fold runs at once), at most as many as the
    connected Ray's CPUs hold of one run's, at least 1."""
    import ray

    want = cfg.sweep.max_concurrent_trials * max(1, parallel)
    if not cfg.resources.num_cpus:
        return want
    fits = int(ray.cluster_resources().get("CPU", 1) // cfg.resources.num_cpus)
    return max(1, min(want, fits))


@contextlib.contextmanager
def worker_pool(cfg: StudyCommon, size: int):
    """The sweep's warm worker pool for the block: yields its actor's name (the trials'
    ``TrialContext.pool``); its workers are ended after the block and its stats kept
    in :data:`last_pool_stats`."""
    global last_pool_stats
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from dlpipe.tasks.remote import tf_worker_runtime_env
    from dlpipe.tasks.sweep.pool import MAX_WORKER_RSS, pool_actor

    name = f"dlpipe-warm-pool-{uuid.uuid4().hex[:12]}"
    # on the driver's node: the pool lives as long as the driver, not a worker node
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    pool = pool_actor.options(name=name, scheduling_strategy=here).remote(
        size, cfg.resources.num_cpus, tf_worker_runtime_env(), MAX_WORKER_RSS
    )
    try:
        yield name
    finally:
        with contextlib.suppress(ray.exceptions.RayError):
            last_pool_stats = ray.get(pool.stats.remote(), timeout=30)
            ray.get(pool.shutdown.remote(), timeout=30)
        ray.kill(pool)
