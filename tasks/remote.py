"""Thin Ray wrappers over the plain task functions (one definition each, module level).

Resources are set per call with ``.options(num_cpus=..., num_gpus=...)``. Training
tasks are declared with ``max_calls=1``: every training run gets a fresh worker
process, so its TensorFlow thread and device settings (case C13) apply, and its GPU
memory is freed when it ends (``.options(num_gpus=...)`` alone does not give that).
"""

from __future__ import annotations

import ray

from dlpipe.tasks import train, weather_data


@ray.remote(num_returns=2, num_cpus=1)
def prepare_weather_task(spec, split, windows, cache_dir=None):
    """Ray task: :func:`dlpipe.tasks.weather_data.prepare_weather` -> (data, meta).

    The normalized array goes to the object store once; training tasks receive it by
    reference (zero-copy, read-only: case C14).
    """
    prepared = weather_data.prepare_weather(spec, split, windows, cache_dir)
    return prepared.data, prepared.meta


@ray.remote(max_calls=1, num_cpus=1)
def train_model_task(**kwargs):
    """Ray task: :func:`dlpipe.tasks.train.train_model` in a fresh worker process."""
    return train.train_model(**kwargs)


@ray.remote(max_calls=1, num_cpus=1)
def evaluate_model_task(**kwargs):
    """Ray task: :func:`dlpipe.tasks.train.evaluate_saved_model` in a fresh worker."""
    return train.evaluate_saved_model(**kwargs)
