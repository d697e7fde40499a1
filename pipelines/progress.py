"""Progress of a study's training runs that people can follow anywhere (issue 16): a
rich bar on a terminal (runs and epochs), plain timestamped lines when the output is a
log file, CI, ``ray job submit`` or ``nohup`` (a run finished with its score; the
epochs at most every :data:`PLAIN_INTERVAL_S` seconds), each with the elapsed time and
an estimate of what remains."""

from __future__ import annotations

import sys
import time

#: seconds between two plain epoch lines (finished runs are always printed)
PLAIN_INTERVAL_S = 30.0


def clock(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def remaining(elapsed: float, done: float, total: float) -> float | None:
    """Seconds left when ``done`` of ``total`` units took ``elapsed`` (a constant
    rate); None before any unit is done."""
    if done <= 0 or total <= 0:
        return None
    return elapsed * max(0.0, total - done) / done


class RunProgress:
    """The progress display of one batch of training runs.

    Work is counted in epochs: a running run's finished epochs (from the
    :class:`dlpipe.tasks.training.progress.EpochBoard`) and a finished run's whole
    budget (it may have stopped early), out of ``runs x epochs``; the estimate of what
    remains is the elapsed time scaled by the work left (an upper bound when early
    stopping ends runs sooner).

    Args:
        total_runs: runs launched.
        total_epochs: their epoch budgets summed.
        enabled: show anything at all.
        plain: plain lines instead of a bar (default: when stdout is not a terminal).
        stream: where plain lines go.
        interval: seconds between plain epoch lines.
    """

    def __init__(
        self,
        total_runs: int,
        total_epochs: int,
        *,
        enabled: bool = True,
        plain: bool | None = None,
        stream=None,
        interval: float = PLAIN_INTERVAL_S,
    ):
        self.stream = stream or sys.stdout
        self.total_runs, self.total_epochs = total_runs, max(total_epochs, 1)
        self.enabled = enabled
        self.plain = (not self.stream.isatty()) if plain is None else plain
        self.interval = interval
        self.started = time.monotonic()
        self.last_line = self.started
        self.done_runs, self.epochs_done, self.shown_epochs = 0, 0, 0
        self.bar = self.task = None

    def __enter__(self):
        if self.enabled and not self.plain:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("[bold]training"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=self.total_runs)
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False

    def eta(self) -> str:
        """``~H:MM:SS left`` (``estimating`` before any epoch is done)."""
        left = remaining(self.elapsed(), self.epochs_done, self.total_epochs)
        return "estimating time left" if left is None else f"~{clock(left)} left"

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, text: str) -> None:
        """One plain line with the elapsed time."""
        print(f"[{clock(self.elapsed())}] {text}", file=self.stream, flush=True)
        self.last_line = time.monotonic()

    def run_finished(self, text: str) -> None:
        """A run finished (``text``: its id, status and score): a plain line."""
        self.done_runs += 1
        if self.enabled and self.plain:
            self.line(f"run {self.done_runs}/{self.total_runs} {text}; {self.eta()}")

    def update(self, epochs_done: int, running: int, description: str) -> None:
        """Refresh: the bar (runs done, epochs, ``description``), or a plain epoch line
        when :attr:`interval` has passed and epochs moved on."""
        self.epochs_done = min(epochs_done, self.total_epochs)
        epochs = f"epochs {self.epochs_done}/{self.total_epochs}"
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(
                self.task,
                completed=self.done_runs,
                description=f"{description}, {epochs}, {self.eta()}",
            )
            return
        due = time.monotonic() - self.last_line >= self.interval
        if due and self.epochs_done > self.shown_epochs:
            self.shown_epochs = self.epochs_done
            self.line(
                f"training: {self.done_runs}/{self.total_runs} runs done, {running} "
                f"running, {epochs}; {self.eta()}"
            )
