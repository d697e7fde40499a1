"""Fuller slots (issue 17): training jobs longest expected first, and the slot efficiency
every study prints. Fake jobs and hand-built ``runs`` tables; no Ray, no training."""

from __future__ import annotations

import json
from dataclasses import asdict

import pandas as pd
import pytest

from dlpipe.pipelines.jobs import TrainingJob
from dlpipe.pipelines.kinds import get_kind
from dlpipe.pipelines.sections import ModelSpec
from dlpipe.pipelines.slots import (
    SlotUse,
    expected_costs,
    longest_first,
    schedule,
    slot_use,
    task_slots,
    write_slot_use,
)
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.fit import TrainingSpec
from dlpipe.tasks.training.records import PreparedDataset
from dlpipe.tasks.weather.windows import WindowSpec

KIND = get_kind("timeseries")
DATA = PreparedDataset(None, {"key": "k"})


def job(run_id, family, lookback, step=6, epochs=10, evaluation=None):
    return TrainingJob(
        run_id,
        ModelSpec(family),
        1,
        WindowSpec(lookback=lookback, step=step, delay=12, batch_size=32),
        DATA,
        TrainingSpec(epochs=epochs),
        {"evaluation": evaluation} if evaluation else {},
    )


def stored(family, lookback, wall, params, *, status="ok", evaluation=None, at="2026-01-01"):
    inputs = asdict(WindowSpec(lookback=lookback, step=6, delay=12, batch_size=32))
    return {
        "family": family,
        "status": status,
        "evaluation": evaluation,
        "inputs": reports.dumps({**inputs, "extra": "stored rows may hold more"}),
        "wall_time_s": wall,
        "params": params,
        "finished_at": pd.Timestamp(at),
    }


def test_without_history_longer_windows_and_more_epochs_go_first():
    # units = 1 (no parameter count known) x timesteps x epochs: 20x10, 40x10, 20x30, 20x10
    jobs = [
        job("a", "gru", 120),
        job("b", "gru", 240),
        job("c", "dense", 120, epochs=30),
        job("d", "lstm", 120),
    ]
    costs = expected_costs(KIND, jobs, pd.DataFrame())
    assert costs == [200.0, 400.0, 600.0, 200.0]
    assert [j.run_id for j in longest_first(jobs, costs)] == ["c", "b", "a", "d"]  # a, d: ties


def test_previous_wall_times_then_estimates_at_the_same_rate():
    jobs = [job("A", "gru", 120), job("B", "dense", 120), job("C", "lstm", 240)]
    runs = pd.DataFrame(
        [
            stored("gru", 120, 100.0, 1000),  # A's family, role and inputs: 100 s
            stored("gru", 120, 999.0, 1000, evaluation="fold"),  # another role
            stored("gru", 120, 999.0, 1000, evaluation="mean"),  # aggregate row
            stored("gru", 120, 999.0, 1000, status="failed"),
            stored("dense", 60, 5.0, 400, at="2026-01-01"),  # other inputs: count only
            stored("dense", 60, 5.0, 500, at="2026-01-02"),  # the latest count wins
            stored("baseline", 120, 0.0, 0),
            stored("lstm", 120, 7.0, float("nan")),  # no count recorded: lstm unknown
        ]
    )
    # params: gru 1000, dense 500, lstm (never ran) median 750; timesteps 20, 20, 40
    # units: A 1000*20*10 = 200000, B 500*20*10 = 100000, C 750*40*10 = 300000
    # rate from A: 100 s / 200000 = 0.0005 s per unit -> B 50 s, C 150 s
    costs = expected_costs(KIND, jobs, runs)
    assert costs == pytest.approx([100.0, 50.0, 150.0])
    assert [j.run_id for j in longest_first(jobs, costs)] == ["C", "A", "B"]


def test_a_final_model_matches_final_runs_with_its_epochs():
    final = TrainingJob(
        "F",
        ModelSpec("gru"),
        1,
        WindowSpec(lookback=120, step=6, delay=12, batch_size=32),
        DATA,
        TrainingSpec(epochs=4),
        {"evaluation": "final"},
        {"final_epochs": 4},
    )
    row = stored("gru", 120, 40.0, 1000, evaluation="final")
    inputs = json.loads(row["inputs"])
    other = dict(row, inputs=reports.dumps({**inputs, "final_epochs": 9}), wall_time_s=90.0)
    mine = dict(row, inputs=reports.dumps({**inputs, "final_epochs": 4}))
    assert expected_costs(KIND, [final], pd.DataFrame([other, mine])) == [40.0]


def test_schedule_reads_the_run_directorys_runs(tmp_path):
    jobs = [job("short", "gru", 60), job("long", "gru", 480)]
    assert [j.run_id for j in schedule(KIND, jobs, tmp_path)] == ["long", "short"]


@pytest.mark.parametrize(
    ("cluster", "cpus", "gpus", "slots"),
    [
        ({"CPU": 16.0, "GPU": 2.0}, 2, 0, 8),
        ({"CPU": 16.0, "GPU": 2.0}, 1, 1, 2),
        ({"CPU": 16.0, "GPU": 2.0}, 1, 0.5, 4),
        ({"CPU": 3.0}, 0.5, 0, 6),
        ({"CPU": 1.0}, 2, 0, 1),
    ],
)
def test_task_slots(cluster, cpus, gpus, slots):
    from dlpipe.pipelines.sections import ResourcesSpec

    assert task_slots(ResourcesSpec(num_cpus=cpus, num_gpus=gpus), cluster) == slots


def test_efficiency_on_hand_worked_numbers(tmp_path):
    rows = [
        {"wall_time_s": 30.0},
        {"wall_time_s": 20.0},
        {"wall_time_s": 10.0},
        {"status": "failed"},  # raised: no wall time
    ]
    use = slot_use(rows, slots=2, study_wall_s=40.0)
    # (30 + 20 + 10) / 2 slots / 40 s = 0.75
    assert use == SlotUse(tasks=4, task_wall_s=60.0, slots=2, study_wall_s=40.0)
    assert use.efficiency == pytest.approx(0.75)
    assert use.line() == (
        "slots: 4 tasks, sum of task wall 60.0 s over 2 slots, study wall 40.0 s: efficiency 0.75"
    )
    idle = slot_use([], slots=2, study_wall_s=0.1)
    assert idle.efficiency is None and idle.line().endswith("efficiency n/a")
    write_slot_use(tmp_path, use)
    write_slot_use(tmp_path, idle)
    entries = json.loads((tmp_path / "slots.json").read_text())
    assert [e["tasks"] for e in entries] == [4, 0]
    assert [type(e["task_wall_s"]) for e in entries] == [float, float]  # 0.0, not 0
    assert entries[0]["efficiency"] == pytest.approx(0.75) and entries[1]["efficiency"] is None


def test_estimates_rank_jobs_of_one_window_and_fill_the_unknown():
    # one window, 10 epochs each: without estimates every job costs the same
    jobs = [job("d", "dense", 120), job("s", "stacked_gru", 120), job("g", "gru", 120)]
    assert len(set(expected_costs(KIND, jobs, pd.DataFrame()))) == 1
    # estimates per sample: dense 40, stacked 2,000, gru unknown -> median 1,020
    costs = expected_costs(KIND, jobs, pd.DataFrame(), [40.0, 2000.0, None])
    assert costs == [400.0, 20000.0, 10200.0]
    assert [j.run_id for j in longest_first(jobs, costs)] == ["s", "g", "d"]


def test_estimates_take_the_rate_of_finished_runs():
    jobs = [job("A", "gru", 120), job("B", "dense", 120)]
    runs = pd.DataFrame([stored("gru", 120, 50.0, 1000)])  # A ran: 50 s for 500 x 10 units
    costs = expected_costs(KIND, jobs, runs, [500.0, 2000.0])
    assert costs == pytest.approx([50.0, 2000 * 10 * 50.0 / 5000])


def test_schedule_asks_once_per_distinct_model_and_only_when_needed(tmp_path):
    asked = []

    def estimate(some):
        asked.append([j.run_id for j in some])
        return [{"dense": 40.0, "stacked_gru": 2000.0}[j.model.family] for j in some]

    folds = [job(f"f{i}", "dense", 120) for i in range(3)]
    assert schedule(KIND, folds, tmp_path, estimate) == folds  # one model: never asked
    assert asked == []
    jobs = [job("d1", "dense", 120), job("s", "stacked_gru", 120), job("d2", "dense", 120)]
    order = [j.run_id for j in schedule(KIND, jobs, tmp_path, estimate)]
    assert asked == [["d1", "s"]] and order == ["s", "d1", "d2"]
    # every job has a finished run to go by: the walls decide, nothing is asked
    reports.write_part(tmp_path, "runs", "r1", [stored("dense", 120, 9.0, 1)])
    reports.write_part(tmp_path, "runs", "r2", [stored("stacked_gru", 120, 3.0, 1)])
    reports_jobs = [job("d", "dense", 120, step=6), job("s", "stacked_gru", 120, step=6)]
    assert [j.run_id for j in schedule(KIND, reports_jobs, tmp_path, estimate)] == ["d", "s"]
    assert len(asked) == 1
