"""Epochs of running training tasks, seen by the driver (issue 16): each training task
reports its finished epochs to one small Ray actor per study, which the driver's
progress display reads about once a second.

Importing this module loads neither Ray nor TensorFlow; :func:`epoch_board` creates the
actor (driver side), :func:`epoch_reporter` the hook a training task passes to
:func:`dlpipe.tasks.training.fit.fit_model`.
"""

from __future__ import annotations

from collections.abc import Callable


class EpochBoard:
    """``{run_id: epochs finished}`` of a study's training tasks (a Ray actor's state)."""

    def __init__(self):
        self.epochs: dict[str, int] = {}

    def report(self, run_id: str, epoch: int) -> None:
        """Training task ``run_id`` finished its 1-based ``epoch``."""
        self.epochs[run_id] = max(epoch, self.epochs.get(run_id, 0))

    def snapshot(self) -> dict[str, int]:
        """Epochs finished per run so far."""
        return dict(self.epochs)


def epoch_board():
    """A new :class:`EpochBoard` actor (no CPU held, so it never delays a training
    task). Call on the driver, after ``ray.init``."""
    import ray

    return ray.remote(num_cpus=0)(EpochBoard).remote()


def epoch_reporter(board, run_id: str) -> Callable[[int, dict], None]:
    """An ``epoch_hook`` that tells ``board`` (fire and forget) each finished epoch."""

    def hook(epoch: int, logs: dict) -> None:
        board.report.remote(run_id, epoch)

    return hook
