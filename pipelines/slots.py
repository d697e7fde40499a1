"""Fuller slots (issue 17): a study's training tasks are submitted longest expected first,
and every study reports how full it kept its task slots.

Ray starts tasks in submission order when slots are short, so the longest runs start
first and the short ones fill the gaps at the end, instead of one long run starting last
and running alone. Ordering changes no run's numbers: each run has its own seed.

Expected cost of a job (:func:`expected_costs`), in seconds where the run directory
tells:

1. the mean ``wall_time_s`` of the run directory's finished runs (status ``ok``) of the
   same family, evaluation role (hold-out, K-fold ``fold`` or ``final``) and inputs
   (every field of the job's inputs equal in the stored ``inputs`` JSON);
2. else ``cost per sample x epochs x rate``: ``epochs`` is the job's budget, ``rate``
   the seconds per unit of the jobs of rule 1 (1 when none), so both rules compare. The
   cost per sample is

   * where the kind can build its models (:attr:`~dlpipe.pipelines.kinds.base.
     StudyKind.cost_model`), the model's estimated multiply-adds per sample
     (:mod:`dlpipe.tasks.training.costs`), computed by one Ray task in a training
     worker before the study's training tasks are submitted (the driver loads no
     TensorFlow); a job whose model could not be built takes the median of the others;
   * else ``params x sample length``: ``params`` is the family's parameter count
     recorded by its latest finished run in the run directory (a family that never ran
     there takes the median of the known families' counts, or 1), the sample length is
     the kind's (:meth:`~dlpipe.pipelines.kinds.base.StudyKind.sample_length`: window
     timesteps, sequence length, image pixels, 1 for a tabular row).

   Without estimates, a new run directory of one kind and one window gives every job
   the same cost; the estimates tell a stacked GRU (~2.8M multiply-adds a window in the
   weather demo, 156 s) from a dense net of twice its weights (~42k, 10 s).

Equal costs keep the study file's order (a stable sort).

Slot efficiency (:class:`SlotUse`): the sum of the study's task wall times over the
slots, divided by the training stage's wall time: 1.0 when every slot was busy from the
first launch to the last result. Each study appends its figures to
``<run_dir>/slots.json`` (a list, the latest last), which a report can show.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.records import spec_dict

SLOTS_FILE = "slots.json"


def job_inputs(job) -> dict:
    """The job's inputs as its ``runs`` row stores them (JSON types), with its extra
    inputs (a K-fold final model's ``final_epochs``)."""
    inputs = spec_dict(job.inputs) if job.inputs is not None else {}
    return json.loads(reports.dumps({**inputs, **job.extra_inputs}))


def number(value) -> float | None:
    """``value`` as a finite float, or None (None, NaN, pandas NA, not a number)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def finished_runs(runs) -> list[dict]:
    """The model runs of a ``runs`` table usable as history: status ``ok``, a positive
    wall time, not a baseline nor a K-fold aggregate row; each as ``{"family",
    "evaluation", "inputs" (dict), "wall", "params", "finished_at"}``."""
    out = []
    for row in runs.to_dict("records"):
        evaluation = row.get("evaluation")
        evaluation = evaluation if isinstance(evaluation, str) else None
        wall = number(row.get("wall_time_s"))
        if row.get("status") != "ok" or row.get("family") == "baseline":
            continue
        if evaluation == "mean" or wall is None or wall <= 0:
            continue
        inputs = row.get("inputs")
        out.append(
            {
                "family": row["family"],
                "evaluation": evaluation,
                "inputs": json.loads(inputs) if isinstance(inputs, str) else {},
                "wall": wall,
                "params": number(row.get("params")),
                "finished_at": row.get("finished_at"),
            }
        )
    return out


def previous_wall(job, history: list[dict]) -> float | None:
    """Mean wall time (s) of the runs of ``history`` (:func:`finished_runs`) matching the
    job's family, evaluation role and inputs; None when none matches."""
    inputs, role = job_inputs(job), job.columns.get("evaluation")
    walls = [
        run["wall"]
        for run in history
        if run["family"] == job.model.family
        and run["evaluation"] == role
        and all(run["inputs"].get(name) == value for name, value in inputs.items())
    ]
    return sum(walls) / len(walls) if walls else None


def family_params(history: list[dict]) -> dict[str, float]:
    """``{family: parameter count of its latest run in history}`` (runs with a count)."""
    latest = {}
    for run in sorted(history, key=lambda r: str(r["finished_at"])):
        if run["params"] is not None:
            latest[run["family"]] = run["params"]
    return latest


def expected_costs(kind, jobs: list, runs, estimates: list | None = None) -> list[float]:
    """Each job's expected cost (module docstring), in the order of ``jobs``.

    Args:
        kind: the study kind (:meth:`~dlpipe.pipelines.kinds.base.StudyKind.sample_length`).
        jobs: :class:`~dlpipe.pipelines.jobs.TrainingJob` objects.
        runs: the run directory's ``runs`` table (a pandas DataFrame; empty for a new one).
        estimates: each job's estimated multiply-adds per sample (None where unknown),
            or None for no estimates.

    Returns:
        Costs: seconds, or estimate units times the seconds per unit of the matched jobs.
    """
    history = finished_runs(runs)
    known_estimates = [e for e in estimates or () if e is not None and e > 0]
    if known_estimates:
        fill = statistics.median(known_estimates)
        per_sample = [e if e is not None and e > 0 else fill for e in estimates]
    else:
        params = family_params(history)
        fallback = statistics.median(params.values()) if params else 1.0
        per_sample = [
            params.get(job.model.family, fallback) * kind.sample_length(job.inputs) for job in jobs
        ]
    units = [p * max(1, job.training.epochs) for p, job in zip(per_sample, jobs, strict=True)]
    walls = [previous_wall(job, history) for job in jobs]
    known = [(w, u) for w, u in zip(walls, units, strict=True) if w is not None and u > 0]
    rate = sum(w for w, _ in known) / sum(u for _, u in known) if known else 1.0
    return [w if w is not None else u * rate for w, u in zip(walls, units, strict=True)]


def longest_first(jobs: list, costs: list[float]) -> list:
    """``jobs`` by expected cost, highest first; equal costs keep their order."""
    order = sorted(range(len(jobs)), key=lambda i: -costs[i])
    return [jobs[i] for i in order]


def model_key(job) -> tuple:
    """What fixes a job's model and its cost: family, hyperparameters and inputs (K-fold
    folds of one model share it)."""
    return (job.model.family, reports.dumps(job.model.hp), reports.dumps(job_inputs(job)))


def schedule(kind, jobs: list, run_dir: str | Path, estimate=None) -> list:
    """``jobs`` longest expected first (:func:`expected_costs` from the ``runs`` report
    of ``run_dir``).

    Args:
        estimate: ``estimate(jobs) -> [multiply-adds per sample or None]`` (one Ray task,
            :func:`dlpipe.pipelines.jobs.estimate_job_costs`), asked once per distinct
            model (:func:`model_key`) and only when some job has no finished run to go
            by and the jobs are of more than one model; None: no estimates.
    """
    if len(jobs) < 2:
        return list(jobs)
    runs = reports.read_table(run_dir, "runs")
    estimates = None
    models = {}
    for job in jobs:
        models.setdefault(model_key(job), job)
    history = finished_runs(runs)
    if (
        estimate is not None
        and len(models) > 1
        and any(previous_wall(job, history) is None for job in jobs)
    ):
        found = dict(zip(models, estimate(list(models.values())), strict=True))
        estimates = [found[model_key(job)] for job in jobs]
    return longest_first(jobs, expected_costs(kind, jobs, runs, estimates))


def task_slots(resources, cluster: dict) -> int:
    """How many training tasks Ray can run at once: the cluster's CPUs // the task's
    ``num_cpus`` and, when it asks for GPUs, GPUs // ``num_gpus`` (the smaller), at
    least 1.

    Args:
        resources: the study's per-task resources (``num_cpus``, ``num_gpus``).
        cluster: ``ray.cluster_resources()`` (``{"CPU": 16.0, "GPU": 2.0, ...}``).
    """
    fits = []
    if resources.num_cpus:
        fits.append(int(cluster.get("CPU", 0) // resources.num_cpus))
    if resources.num_gpus:
        fits.append(int(cluster.get("GPU", 0) // resources.num_gpus))
    return max(1, min(fits)) if fits else 1


@dataclass(frozen=True)
class SlotUse:
    """How full a study kept its task slots.

    Attributes:
        tasks: training tasks the study ran (failed ones included).
        task_wall_s: the sum of their wall times (s; a run that raised counts 0).
        slots: tasks Ray could run at once (:func:`task_slots`).
        study_wall_s: the training stage's wall time (s), from the first launch to the
            last result.
    """

    tasks: int
    task_wall_s: float
    slots: int
    study_wall_s: float

    @property
    def efficiency(self) -> float | None:
        """``task_wall_s / slots / study_wall_s``; None when nothing trained."""
        if self.tasks == 0 or self.study_wall_s <= 0 or self.slots <= 0:
            return None
        return self.task_wall_s / self.slots / self.study_wall_s

    def line(self) -> str:
        """The line every study prints at its end."""
        value = self.efficiency
        shown = "n/a" if value is None else f"{value:.2f}"
        return (
            f"slots: {self.tasks} tasks, sum of task wall {self.task_wall_s:.1f} s over "
            f"{self.slots} slots, study wall {self.study_wall_s:.1f} s: efficiency {shown}"
        )


def slot_use(rows: list[dict], slots: int, study_wall_s: float) -> SlotUse:
    """The :class:`SlotUse` of the ``runs`` rows a study's training tasks wrote."""
    total = sum((number(row.get("wall_time_s")) or 0.0 for row in rows), 0.0)
    return SlotUse(len(rows), total, slots, study_wall_s)


def write_slot_use(run_dir: str | Path, use: SlotUse) -> Path:
    """Append ``use`` (its fields, ``efficiency`` and ``finished_at``) to
    ``<run_dir>/slots.json`` (atomically). Returns its path."""
    path = Path(run_dir) / SLOTS_FILE
    entries = json.loads(path.read_text()) if path.is_file() else []
    entries.append(
        {
            **asdict(use),
            "efficiency": use.efficiency,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    reports.atomic_write_bytes(path, json.dumps(entries, indent=1).encode())
    return path
