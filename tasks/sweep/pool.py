"""The warm worker pool of a CPU sweep (issue 17): trials lease warm training workers.

A sweep whose runs need no GPU trains them in a fixed set of warm workers
(:data:`dlpipe.tasks.remote.training_worker`, one
:class:`~dlpipe.tasks.training.warm.WarmTrainer` each), so TensorFlow's start-up is
paid once per worker instead of once per trial. A :class:`WorkerPool` actor (a named,
threaded actor holding no resources; the driver creates it for the sweep and ends it
after Tune) owns the workers and leases them: a trial (or each fold run of a K-fold
trial) calls :func:`launch_in_pool`, the pool waits for a free worker, runs the call
there and frees the worker when the run ends, whether the trial still waits or not (a
lost trial never keeps a worker). The pool never deserializes a call or its result:
the call travels as an ObjectRef and the result comes back as the worker's own
ObjectRef (:func:`run_result`), so the pool process imports neither the trainers nor
TensorFlow.

Resources: the workers hold the runs' CPUs (``num_cpus`` each), the trials hold none
(:func:`dlpipe.tasks.sweep.trial.trial_resources`), so nothing is counted twice; the
pool has as many workers as runs may train at once. A worker that died (the run's call
fails: Tune retries the trial by its ``FailureConfig``) restarts in a new process
(``max_restarts=-1``); a worker whose resident memory passed the pool's bound after a
run is recycled the same way (``ray.kill(worker, no_restart=False)``).
"""

from __future__ import annotations

import queue
import threading
import time

import ray

#: a warm worker whose RSS is past this after a run is started again (bytes)
MAX_WORKER_RSS = 4 * 1024**3
#: seconds the pool waits for a worker's stats after a run (a restarting worker)
STATS_TIMEOUT_S = 120


class WorkerPool:
    """Leases ``size`` warm training workers (module docstring).

    Args:
        size: number of workers (runs that may train at once).
        num_cpus: CPUs of each worker (the run's ``resources.num_cpus``).
        runtime_env: the workers' ``runtime_env``
            (:func:`dlpipe.tasks.remote.tf_worker_runtime_env`, computed on the driver).
        max_rss: recycle a worker whose RSS is past this many bytes after a run.
    """

    def __init__(self, size: int, num_cpus: float, runtime_env: dict, max_rss: int):
        from dlpipe.tasks.remote import training_worker

        self.max_rss = max_rss
        self.workers = [
            training_worker.options(num_cpus=num_cpus, runtime_env=runtime_env).remote(num_cpus)
            for _ in range(size)
        ]
        self.free = queue.Queue()
        for index in range(size):
            self.free.put(index)
        self.lock = threading.Lock()
        self.pids: set[int] = set()
        self.runs = 0
        self.recycled = 0

    def run(self, call: list):
        """Run one training call in the next free worker and wait for it to end.

        Args:
            call: ``[ObjectRef]`` to the :meth:`WarmTrainer.run` spec (in a list, so
                the pool passes it on unread).

        Returns:
            ``[ObjectRef]`` to the run's result (or its error), read by the trial.
        """
        index = self.free.get()
        try:
            self.worker_stats(index)  # a restarting worker refuses calls: wait for it
            ref = self.workers[index].run.remote(call[0])
            ray.wait([ref], fetch_local=False)
            with self.lock:
                self.runs += 1
            self.after_run(index)
        finally:
            self.free.put(index)
        return [ref]

    def after_run(self, index: int) -> None:
        """Note the worker's process; recycle it when its RSS is past the bound."""
        worker = self.workers[index]
        stats = self.worker_stats(index)
        if stats is None:
            return
        with self.lock:
            self.pids.add(stats["pid"])
            if stats["rss"] > self.max_rss:
                self.recycled += 1
                ray.kill(worker, no_restart=False)

    def worker_stats(self, index: int) -> dict | None:
        """The worker's :meth:`WarmTrainer.stats`, once it is up (a restarting worker
        answers ``ActorUnavailableError`` until its new process has started); None
        when it is gone or not up within :data:`STATS_TIMEOUT_S`."""
        deadline = time.monotonic() + STATS_TIMEOUT_S
        while True:
            try:
                return ray.get(self.workers[index].stats.remote(), timeout=STATS_TIMEOUT_S)
            except ray.exceptions.ActorUnavailableError:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.2)
            except (ray.exceptions.RayError, TimeoutError):
                return None

    def stats(self) -> dict:
        """``{"workers": worker processes seen (TensorFlow start-ups), "runs": calls
        ended (failed ones too), "recycled": workers started again for their RSS,
        "size"}``."""
        with self.lock:
            return {
                "workers": len(self.pids),
                "runs": self.runs,
                "recycled": self.recycled,
                "size": len(self.workers),
            }

    def shutdown(self) -> None:
        """End every worker (their CPUs are free when this returns)."""
        for worker in self.workers:
            ray.kill(worker, no_restart=True)


#: the pool's Ray actor: no resources, one thread per waiting run (calls past that
#: many wait in Ray's queue)
pool_actor = ray.remote(num_cpus=0, max_concurrency=128)(WorkerPool)


def launch_in_pool(pool_name: str, train, keep_model: bool, **kwargs):
    """Start one training call in the sweep's pool (named actor ``pool_name``).

    Args:
        pool_name: the :class:`WorkerPool` actor's name.
        train: the kind's trainer.
        keep_model: return the model's ``.keras`` bytes with the result.
        kwargs: the trainer's keyword arguments (``data`` may be an ObjectRef).

    Returns:
        An ObjectRef for :func:`run_result`.
    """
    pool = ray.get_actor(pool_name)
    spec = ray.put({"train": train, "keep_model": keep_model, "kwargs": kwargs})
    return pool.run.remote([spec])


def run_result(ref):
    """The :class:`~dlpipe.tasks.training.records.RunResult` of a training call: a
    pooled one (:func:`launch_in_pool`: the worker's ref in a list) or a fresh
    worker's (:func:`dlpipe.tasks.remote.train_model_task`).

    Raises:
        ray.exceptions.RayError: the run's worker died or the trainer raised.
    """
    value = ray.get(ref)
    if isinstance(value, list) and value and isinstance(value[0], ray.ObjectRef):
        return ray.get(value[0])
    return value
