"""One entry point for every pipeline's training and evaluation functions.

Ray tasks (:mod:`dlpipe.tasks.remote`) and sweep trials (:mod:`dlpipe.tasks.sweep.trial`) call
:func:`train_run` with the study's ``pipeline``; it imports that pipeline's trainer only
(so a weather worker never imports the text or image code) and passes the model's input
geometry (``inputs``: windows, text settings or image settings) under the trainer's own
argument name.
"""

from __future__ import annotations

import importlib

#: pipeline -> (module, training function, name of its input-geometry argument)
TRAINERS = {
    "timeseries": ("dlpipe.tasks.weather.train", "train_model", "windows"),
    "text": ("dlpipe.tasks.text.train", "train_text_model", "inputs"),
    "images": ("dlpipe.tasks.images.train", "train_image_model", "inputs"),
}


def train_run(pipeline: str, *, inputs, **kwargs) -> dict:
    """Train one model of ``pipeline`` (``timeseries`` or ``text``).

    Args:
        pipeline: the study's pipeline.
        inputs: the model's input geometry (a ``WindowSpec`` or ``TextSpec``).
        kwargs: the trainer's other arguments (``data``, ``meta``, ``family``, ``hp``,
            ``training``, ``seed``, ``run_id``, resources, ``evaluate_test``,
            ``model_path``, ``epoch_hook``).

    Returns:
        ``{"run", "history", "predictions"}`` report rows.

    Raises:
        ValueError: unknown pipeline; whatever the trainer raises.
    """
    if pipeline not in TRAINERS:
        raise ValueError(f"`pipeline` must be one of {', '.join(TRAINERS)}. Received: {pipeline!r}")
    module, function, argument = TRAINERS[pipeline]
    train = getattr(importlib.import_module(module), function)
    return train(**{argument: inputs}, **kwargs)


#: pipeline -> (module, evaluation function, name of its input-geometry argument)
EVALUATORS = {
    "timeseries": ("dlpipe.tasks.weather.train", "evaluate_saved_model", "windows"),
    "text": ("dlpipe.tasks.text.train", "evaluate_saved_text_model", "inputs"),
    "images": ("dlpipe.tasks.images.train", "evaluate_saved_image_model", "inputs"),
}


def evaluate_run(pipeline: str, *, inputs, **kwargs) -> dict:
    """Score a saved model of ``pipeline`` once on one split.

    Returns:
        ``{"loss", "metric", "predictions"}``: the model's loss, the headline metric
        (MAE in the target's units, or accuracy) and the prediction rows.
    """
    module, function, argument = EVALUATORS[pipeline]
    evaluate = getattr(importlib.import_module(module), function)
    kwargs = {
        k: v
        for k, v in kwargs.items()
        if pipeline in ("text", "images") or k not in ("batch_size", "family")
    }
    out = evaluate(**{argument: inputs}, **kwargs)
    if pipeline == "timeseries":
        out = {"loss": out["mae"], "metric": out["mae_units"], "predictions": out["predictions"]}
    return out
