"""Progress that a log file can follow (issue 16): plain lines off a terminal, with the
elapsed time and an estimate of what remains; the epoch board training tasks report to."""

import io

import pytest

from dlpipe.pipelines import progress as progress_mod
from dlpipe.pipelines.progress import RunProgress, clock, remaining
from dlpipe.tasks.training.progress import EpochBoard


class FakeClock:
    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now


def test_clock_and_estimate_by_hand():
    assert clock(3725) == "1:02:05" and clock(59.6) == "0:01:00" and clock(-3) == "0:00:00"
    assert remaining(60.0, 10, 40) == pytest.approx(180.0)  # 10 epochs/min, 30 left
    assert remaining(60.0, 0, 40) is None and remaining(5.0, 40, 40) == 0.0


def test_plain_lines_with_elapsed_time_and_time_left(monkeypatch):
    now = FakeClock()
    monkeypatch.setattr(progress_mod.time, "monotonic", now)
    out = io.StringIO()  # not a terminal: plain lines
    with RunProgress(3, 30, stream=out, interval=30.0) as shown:
        assert shown.plain and shown.bar is None
        now.now = 110.0
        shown.update(5, 3, "ignored in plain mode")  # 10 s since start: not yet due
        assert out.getvalue() == ""
        now.now = 160.0  # 60 s: 15 of 30 epochs -> 60 s more
        shown.update(15, 3, "")
        shown.update(15, 3, "")  # nothing new: no second line
        now.now = 180.0  # 80 s: one run done (10 epochs) + 10 running = 20 of 30;
        shown.update(20, 2, "")  # 20 s after the last line: not due
        shown.run_finished("ok: gru-a val MAE 2.100 degC (best 2.100, baseline 2.500)")
    assert out.getvalue().splitlines() == [
        "[0:01:00] training: 0/3 runs done, 3 running, epochs 15/30; ~0:01:00 left",
        "[0:01:20] run 1/3 ok: gru-a val MAE 2.100 degC (best 2.100, baseline 2.500); "
        "~0:00:40 left",
    ]


def test_disabled_progress_prints_nothing():
    out = io.StringIO()
    with RunProgress(2, 4, enabled=False, stream=out, interval=0.0) as shown:
        shown.update(2, 1, "x")
        shown.run_finished("ok: a")
    assert out.getvalue() == ""


def test_epoch_board_keeps_the_latest_epoch_per_run():
    board = EpochBoard()
    for run_id, epoch in (("a", 1), ("a", 3), ("b", 2), ("a", 2)):
        board.report(run_id, epoch)
    assert board.snapshot() == {"a": 3, "b": 2}


def test_terminal_bar_shows_runs_epochs_and_time_left(monkeypatch):
    now = FakeClock()
    monkeypatch.setattr(progress_mod.time, "monotonic", now)
    with RunProgress(4, 40, plain=False, stream=io.StringIO()) as shown:
        shown.run_finished("ok: a")
        now.now = 130.0  # 30 s for 10 of 40 epochs -> 90 s more
        shown.update(10, 3, "running 3, failed 0")
        task = shown.bar.tasks[0]
        assert task.completed == 1 and task.total == 4
        assert task.description == "running 3, failed 0, epochs 10/40, ~0:01:30 left"
