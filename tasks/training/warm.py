"""A warm training worker: one process that trains run after run (issue 17).

TensorFlow and Keras take ~6 s of CPU to import; a small sweep trial trains for a few
seconds, so a fresh worker per trial spends most of its time starting. A
:class:`WarmTrainer` sets TensorFlow up once (:func:`setup_tensorflow`: its threads,
GPUs hidden; no pyarrow, issue 11) and then trains one run after another. Before each
run it resets what one run leaves behind in the process (:func:`reset_keras_state`:
Keras' session, layer names and graphs; the Python, NumPy and TensorFlow seeds), so a
run trained as the n-th call of a warm worker gives the same history, predictions and
model as in a fresh worker (checked bit for bit in tests/test_warm_workers.py).

CPU runs only: TensorFlow keeps the GPU memory a process allocated until the process
ends, so GPU runs keep fresh ``max_calls=1`` workers. Plain class, no Ray: the Ray actor
is :data:`dlpipe.tasks.remote.training_worker`, the pool that leases them is
:mod:`dlpipe.tasks.sweep.pool`.
"""

from __future__ import annotations

import gc
import os
import resource
import sys

from dlpipe.tasks.training.saved import train_keeping_model
from dlpipe.tasks.training.tf_setup import keep_pyarrow_out, setup_tensorflow

#: a warm worker collects garbage in full before every this-many-th run (a full
#: collection with TensorFlow loaded takes ~0.15 s here, as long as a small run's
#: epoch; Python's own generational collector runs in between)
FULL_GC_EVERY = 8


def reset_keras_state(seed: int | None, *, collect: bool = True) -> None:
    """Leave this process as a fresh worker would meet the next run.

    ``keras.backend.clear_session()`` drops the models, graphs and layer-name counters
    of earlier runs (a 2nd ``GRU`` would otherwise be ``gru_1`` in the saved model);
    ``keras.utils.set_random_seed(seed)`` resets Python's ``random``, NumPy's global
    generator and TensorFlow's global seed with its op-seed counter (the trainers seed
    again themselves; this also covers code that draws before the trainer seeds).

    Args:
        seed: the run's seed, or None to leave the seeds alone.
        collect: also run a full garbage collection (``gc.collect()``: frees the
            earlier runs' reference cycles now; ~0.15 s with TensorFlow loaded, Keras'
            ``clear_session(free_memory=True)`` docs advise skipping it in short loops).
            Results do not depend on it.
    """
    import keras

    keras.backend.clear_session(free_memory=False)
    if collect:
        gc.collect()
    if seed is not None:
        keras.utils.set_random_seed(seed)


def rss_bytes() -> int:
    """This process's resident set size in bytes (``/proc/self/statm``; where there is
    no ``/proc``, the peak RSS of ``getrusage``)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def resolve_refs(kwargs: dict) -> dict:
    """``kwargs`` with every Ray ObjectRef value replaced by its object (a run's
    ``data`` arrives by reference inside the pooled call; zero-copy, read-only)."""
    if "ray" not in sys.modules:
        return kwargs
    import ray

    return {k: ray.get(v) if isinstance(v, ray.ObjectRef) else v for k, v in kwargs.items()}


class WarmTrainer:
    """Trains runs one after another in one process (module docstring).

    Args:
        num_cpus: the runs' CPUs: TensorFlow's intra-op threads (C13), fixed for the
            life of the process.
    """

    def __init__(self, num_cpus: float = 1):
        keep_pyarrow_out()
        self.num_cpus = num_cpus
        self.devices = setup_tensorflow(num_cpus, 0)
        self.runs = 0

    def run(self, spec: dict):
        """Train one run after :func:`reset_keras_state`.

        Args:
            spec: ``{"train": the kind's trainer, "keep_model": bool, "kwargs": its
                keyword arguments}`` (what :func:`dlpipe.tasks.remote.train_model_task`
                takes; ``kwargs["seed"]`` is the run's seed).

        Returns:
            The trainer's :class:`dlpipe.tasks.training.records.RunResult` (with the
            ``.keras`` bytes when ``keep_model``).
        """
        kwargs = resolve_refs(spec["kwargs"])
        reset_keras_state(kwargs.get("seed"), collect=self.runs % FULL_GC_EVERY == 0)
        try:
            return train_keeping_model(spec["train"], spec.get("keep_model", False), **kwargs)
        finally:
            self.runs += 1

    def stats(self) -> dict:
        """``{"pid", "rss" (bytes), "runs"}`` of this worker."""
        return {"pid": os.getpid(), "rss": rss_bytes(), "runs": self.runs}


_PROCESS_TRAINER: WarmTrainer | None = None


def process_trainer(num_cpus: float) -> WarmTrainer:
    """This process's one :class:`WarmTrainer` (created by the first call): what a
    reused Ray task worker (:data:`dlpipe.tasks.remote.train_model_warm_task`) trains
    with, run after run.

    Args:
        num_cpus: the run's CPUs; TensorFlow's threads are fixed by the first run.

    Raises:
        RuntimeError: ``num_cpus`` differs from the first run's (the worker's TensorFlow
            threads cannot change; the caller keys its workers by thread count).
    """
    global _PROCESS_TRAINER
    if _PROCESS_TRAINER is None:
        _PROCESS_TRAINER = WarmTrainer(num_cpus)
    elif max(1, int(_PROCESS_TRAINER.num_cpus)) != max(1, int(num_cpus)):
        raise RuntimeError(
            f"this warm worker runs TensorFlow with {_PROCESS_TRAINER.num_cpus} CPU(s); "
            f"a run asking for {num_cpus} needs a worker of its own"
        )
    return _PROCESS_TRAINER
