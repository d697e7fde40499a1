"""Several training runs in one task (issue 17): heads on the same cached features, one
after another in one worker, so the worker start-up, the TensorFlow import and the
data load are paid once for all of them.

Each run is what it would be in a task of its own: the kind's trainer with its own
keyword arguments (seed, run id, hyperparameters...), its own kept model and epoch
reports; the Keras session is cleared between runs, so a run builds its model from the
same state as in a fresh process (layer and object names, seeds) and gives the same
results. A run that raises does not stop the others: its place in the returned list
holds a :class:`~dlpipe.tasks.training.records.RunError`.

Plain functions, no Ray (the Ray task is :func:`dlpipe.tasks.remote.train_models_task`).
"""

from __future__ import annotations

from collections.abc import Callable

from dlpipe.tasks.training.fit import error_text
from dlpipe.tasks.training.records import RunError, RunResult
from dlpipe.tasks.training.saved import train_keeping_model
from dlpipe.tasks.training.warm import reset_keras_state

__all__ = ["train_group"]


def train_group(
    train: Callable[..., RunResult],
    shared: dict,
    runs: list[dict],
    hook_of: Callable[[str], Callable[[int, dict], None]] | None = None,
) -> list[RunResult | RunError]:
    """Train ``runs`` one after another in this process.

    Args:
        train: the kind's training function (``train(**kwargs) -> RunResult``).
        shared: keyword arguments of every run (``data``, ``meta``, resources...): the
            data is deserialized once for the whole group.
        runs: each run's own keyword arguments (``family``, ``hp``, ``inputs``,
            ``training``, ``seed``, ``run_id``, and ``keep_model``: whether its result
            carries its trained model's bytes,
            :func:`dlpipe.tasks.training.saved.train_keeping_model`).
        hook_of: ``run_id -> epoch_hook`` (the driver's progress board), or None.

    Returns:
        One entry per run, in order: its :class:`RunResult`, or a :class:`RunError`
        holding the error text of a run that raised.
    """
    out: list[RunResult | RunError] = []
    for i, own in enumerate(runs):
        kwargs = {**shared, **own}
        keep_model = bool(kwargs.pop("keep_model", False))
        if hook_of is not None:
            kwargs["epoch_hook"] = hook_of(kwargs["run_id"])
        try:
            if i:  # the first run sets TensorFlow up (C13) before Keras is imported
                reset_keras_state(None)
            out.append(train_keeping_model(train, keep_model, **kwargs))
        except Exception as exc:  # this run failed; the others go on
            out.append(RunError(error_text(exc)))
    return out
