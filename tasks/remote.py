"""Thin Ray wrappers over the plain task functions (one definition each, module level).

Resources are set per call with ``.options(num_cpus=..., num_gpus=...)``. Training
tasks are declared with ``max_calls=1``: every training run gets a fresh worker
process, so its TensorFlow thread and device settings (case C13) apply, and its GPU
memory is freed when it ends (``.options(num_gpus=...)`` alone does not give that).
"""

from __future__ import annotations

import ray

from dlpipe.tasks import image_prepare, text_prepare, trainers, weather_data


@ray.remote(num_returns=2, num_cpus=1)
def prepare_weather_task(spec, split, windows, cache_dir=None):
    """Ray task: :func:`dlpipe.tasks.weather_data.prepare_weather` -> (data, meta).

    The normalized array goes to the object store once; training tasks receive it by
    reference (zero-copy, read-only: case C14).
    """
    prepared = weather_data.prepare_weather(spec, split, windows, cache_dir)
    return prepared.data, prepared.meta


@ray.remote(num_cpus=1)
def text_shard_task(function: str, *args):
    """Ray task: one tokenization shard, ``count_words`` or ``encode_shard`` of
    :mod:`dlpipe.tasks.text_prepare` (names, so the task stays one definition)."""
    return getattr(text_prepare, function)(*args)


@ray.remote(max_calls=1, num_cpus=1)
def validate_images_task(paths: list[str], size: tuple[int, int]):
    """Ray task: validate one shard of image files in a fresh worker (its TF set-up,
    C13) -> ``(ok_paths, bad)`` (:func:`dlpipe.tasks.image_prepare.validate_shard`)."""
    return image_prepare.validate_shard(paths, size)


@ray.remote(max_calls=1, num_cpus=1, num_returns=2)
def image_features_task(paths, labels, images, root, seed, num_cpus=1, num_gpus=0):
    """Ray task: conv-base features of every split through the feature cache
    (:func:`dlpipe.tasks.image_prepare.cache_features`) -> ``(features, report)``; set
    ``.options(num_gpus=...)`` to run the conv base on a GPU."""
    return image_prepare.cache_features(paths, labels, images, root, seed, num_cpus, num_gpus)


@ray.remote(max_calls=1, num_cpus=1)
def train_model_task(pipeline: str = "timeseries", **kwargs):
    """Ray task: one training run (:func:`dlpipe.tasks.trainers.train_run`) in a fresh
    worker process. ``windows=`` (weather) is accepted as the ``inputs`` of the run."""
    if "windows" in kwargs:
        kwargs["inputs"] = kwargs.pop("windows")
    return trainers.train_run(pipeline, **kwargs)


@ray.remote(max_calls=1, num_cpus=1)
def evaluate_model_task(pipeline: str = "timeseries", **kwargs):
    """Ray task: :func:`dlpipe.tasks.trainers.evaluate_run` in a fresh worker ->
    ``{"loss", "metric", "predictions"}``."""
    if "windows" in kwargs:
        kwargs["inputs"] = kwargs.pop("windows")
    return trainers.evaluate_run(pipeline, **kwargs)
