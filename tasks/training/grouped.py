"""Several training runs in one task (issue 17): heads on the same cached features, one
after another in one worker, so the worker start-up, the TensorFlow import and the
data load are paid once for all of them.

Each run is what it would be in a task of its own: the kind's trainer with its own
keyword arguments (seed, run id, hyperparameters...), its own kept model and epoch
reports; the Keras session is cleared between runs, so a run builds its model from the
same state as in a fresh process (layer and object names, seeds) and gives the same
results. A run that raises does not stop the others: its place in the returned list
holds a :class:`~dlpipe.tasks.training.records.RunError`.

With a kind's joint trainer (``joint``; images: heads on cached features whose study
sets ``training.joint_heads``, :func:`dlpipe.tasks.images.heads.train_heads_jointly`),
the runs it takes train together in one compiled step first
(:mod:`dlpipe.tasks.training.multihead`); the others train one after another as above.
Should the joint trainer raise as a whole (not one run's error), every run falls back
to that sequential path, with a warning.

Plain functions, no Ray (the Ray task is :func:`dlpipe.tasks.remote.train_models_task`).
"""

from __future__ import annotations

import sys
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
    joint: Callable[..., list] | None = None,
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
        joint: the kind's joint trainer, ``joint(shared, runs, hook_of)`` -> one entry
            per run (its result, or None for a run it leaves to this function), or None.

    Returns:
        One entry per run, in order: its :class:`RunResult`, or a :class:`RunError`
        holding the error text of a run that raised.
    """
    done: list = [None] * len(runs)
    if joint is not None and len(runs) > 1:
        try:
            done = list(joint(shared, runs, hook_of))
        except Exception as exc:  # the whole joint step failed: train them one by one
            print(
                f"warning: joint training failed ({error_text(exc)}); training the "
                "runs one after another",
                file=sys.stderr,
            )
            done = [None] * len(runs)
    out: list[RunResult | RunError] = []
    for i, own in enumerate(runs):
        if done[i] is not None:
            out.append(done[i])
            continue
        kwargs = {**shared, **own}
        keep_model = bool(kwargs.pop("keep_model", False))
        if hook_of is not None:
            kwargs["epoch_hook"] = hook_of(kwargs["run_id"])
        try:
            if i or any(d is not None for d in done):  # the first run sets TensorFlow up
                # (C13) before Keras is imported
                reset_keras_state(None)
            out.append(train_keeping_model(train, keep_model, **kwargs))
        except Exception as exc:  # this run failed; the others go on
            out.append(RunError(error_text(exc)))
    return out
