"""Training jobs of a study: one Ray training task per job, launched at once within the
study's resources and recorded as each arrives (the shared stage of hold-out runs,
K-fold fold runs and K-fold final models; no kind branches: the kind's trainer comes
from :func:`dlpipe.pipelines.kinds.get_kind`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dlpipe.metrics import get_metric
from dlpipe.pipelines.kinds import get_kind
from dlpipe.pipelines.sections import ModelSpec
from dlpipe.pipelines.slots import schedule, task_slots
from dlpipe.tasks.training.fit import TrainingSpec
from dlpipe.tasks.training.records import (
    PreparedDataset,
    RunError,
    RunResult,
    failed_run,
    record_run,
    run_key,
    spec_dict,
    tag_result,
)


@dataclass(frozen=True)
class TrainingJob:
    """One training run to launch.

    Attributes:
        run_id: its key.
        model: the configured model.
        seed: its seed.
        inputs: what it sees (the study config's ``model_inputs``).
        data: the dataset it trains on (hold-out: the study's; K-fold: its fold's).
        training: its training settings (a K-fold final model: fixed epochs, no callbacks).
        columns: columns set on its report rows (K-fold: ``evaluation``, ``repeat``,
            ``fold``; hold-out: none).
        extra_inputs: added to its ``runs.inputs`` JSON (a K-fold final model:
            ``final_epochs``).
    """

    run_id: str
    model: ModelSpec
    seed: int
    inputs: object
    data: PreparedDataset
    training: TrainingSpec
    columns: dict = field(default_factory=dict)
    extra_inputs: dict = field(default_factory=dict)


def model_run_key(
    dataset_key: str, cfg, model_index: int, *, evaluation: dict | None = None, training=None
) -> str:
    """Key of one configured model's run (:func:`dlpipe.tasks.training.records.run_key`
    over the resolved hyperparameters, so a study run and an identical sweep trial share
    it); K-fold runs add their ``evaluation`` payload (and a final model its
    ``training``)."""
    from dlpipe.models.registry import resolved_hparams

    model = cfg.models[model_index]
    seed = cfg.seed if model.seed is None else model.seed
    return run_key(
        dataset_key,
        model.family,
        resolved_hparams(model.family, model.hp, cfg.pipeline),
        cfg.model_inputs(model),
        cfg.training if training is None else training,
        seed,
        evaluation,
    )


def write_result(run_dir: Path, cfg, prepared: PreparedDataset, result: RunResult) -> dict:
    """Record one run of the study (:func:`dlpipe.tasks.training.records.record_run`).
    Returns the ``runs`` row."""
    return record_run(
        run_dir, result, pipeline=cfg.pipeline, study=cfg.study, dataset_key=prepared.key
    )


class PendingJobs(dict):
    """``{ObjectRef: TrainingJob}`` of launched training tasks, with the
    :class:`~dlpipe.tasks.training.progress.EpochBoard` actor they report epochs to
    (``board``; None when nothing was launched)."""

    board = None


def keeps_model(job: TrainingJob) -> bool:
    """Whether the job's trained model is kept (hold-out runs and K-fold final models;
    not K-fold fold runs, which only score the folds)."""
    return job.columns.get("evaluation") != "fold"


def save_model_plan(cfg, job: TrainingJob, run_dir: Path | None = None) -> str | None:
    """Write the job's description and its dataset's preprocessing state under
    ``<run_dir>/models/`` (:mod:`dlpipe.tasks.training.saved`) and return where its
    model will be written (by the recorder, from the bytes its task returns); None for
    a job that keeps no model (:func:`keeps_model`), or whose state cannot be written (a
    warning names the run; training goes on). ``run_dir``: the folder its results are
    recorded in (default ``cfg.run_dir``; a sweep's folder for a K-fold sweep's final
    models), so the description lies beside the model."""
    from dlpipe.tasks.training.saved import save_run_state

    if not keeps_model(job):
        return None
    kind = get_kind(cfg)
    info = {
        "kind": kind.name,
        "family": job.model.family,
        "inputs": spec_dict(job.inputs) if job.inputs is not None else None,
        "dataset_key": job.data.key,
    }
    try:
        state = kind.predict_state(cfg, job.data.meta)
        return str(save_run_state(run_dir or cfg.run_dir, job.run_id, state, info))
    except (OSError, KeyError, ValueError) as exc:  # training goes on without a kept model
        print(f"warning: run {job.run_id} keeps no model: {exc}", file=sys.stderr)
        return None


def launch_jobs(cfg, jobs: list[TrainingJob], run_dir: Path | None = None) -> PendingJobs:
    """Start the Ray training tasks of ``jobs`` (all at once, longest expected first:
    :func:`dlpipe.pipelines.slots.schedule`; Ray runs as many as the study's per-task
    resources allow), each reporting its epochs to one board: one task per job, or per
    group of jobs (:func:`job_groups`, ``resources.group_heads``), each job with its own
    result object all the same. Each kept model comes back with its result and is
    written under ``<run_dir>/models/`` by the recorder, beside its preprocessing state
    (:func:`save_model_plan`; ``run_dir``: where the results are recorded, default
    ``cfg.run_dir``). Returns ``{ObjectRef: job}``."""
    from dlpipe.tasks.training.progress import epoch_board

    kind, res = get_kind(cfg), cfg.resources
    pending = PendingJobs()
    if not jobs:
        return pending
    pending.board = epoch_board()
    ordered = schedule(kind, jobs, run_dir or cfg.run_dir, cost_estimator(kind, res, jobs))
    groups = job_groups(kind, ordered, res.group_heads, group_slots(res, kind, ordered))
    shared = [g for g in groups if len(g) > 1]
    if shared:
        print(
            f"{sum(map(len, shared))} runs share {len(shared)} training task(s) (same "
            "cached features and training settings; resources.group_heads)"
        )
    for group in groups:
        paths = [save_model_plan(cfg, job, run_dir) for job in group]
        refs = launch_group(kind, res, group, paths, pending.board)
        pending.update(zip(refs, group))
    return pending


def cost_estimator(kind, res, jobs: list[TrainingJob]):
    """The ``estimate`` of :func:`dlpipe.pipelines.slots.schedule` for ``jobs``: None when
    ordering cannot matter (the kind builds no models for estimates, or the cluster runs
    every job at once), else :func:`estimate_job_costs` bound to the study."""
    if kind.cost_model is None:
        return None
    import ray

    if len(jobs) <= task_slots(res, ray.cluster_resources()):
        return None
    return lambda some: estimate_job_costs(kind, res, some)


def estimate_job_costs(kind, res, jobs: list[TrainingJob]) -> list[float | None]:
    """Each job's estimated multiply-adds per sample, by one Ray task that builds their
    models (:func:`dlpipe.tasks.remote.estimate_costs_task`, with the first job's
    dataset metadata: a study's jobs share their input shapes). With warm workers
    (``resources.reuse_workers``) the task runs in a training worker, which goes on
    training with TensorFlow loaded; else in a worker of its own. A task that fails
    leaves the jobs unestimated (None each; a warning says why): the order only
    changes how full the slots are, never a result."""
    import ray

    from dlpipe.tasks.remote import (
        estimate_costs_task,
        estimate_costs_warm_task,
        tf_task,
        warm_runtime_env,
    )

    runs = [{"family": j.model.family, "hp": j.model.hp, "inputs": j.inputs} for j in jobs]
    args = (kind.cost_model, jobs[0].data.meta, runs)
    if res.warm_workers:
        task = estimate_costs_warm_task.options(
            runtime_env=warm_runtime_env(res.num_cpus), num_cpus=res.num_cpus, num_gpus=0
        )
    else:
        task = tf_task(estimate_costs_task, num_cpus=res.num_cpus, num_gpus=0)
    ref = task.remote(*args, num_cpus=res.num_cpus)
    try:
        return ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - any failure only loses the ordering
        print(f"warning: runs not ordered by expected cost: {exc}", file=sys.stderr)
        return [None] * len(jobs)


def group_slots(res, kind, jobs: list[TrainingJob]) -> int:
    """Tasks the cluster runs at once (:func:`dlpipe.pipelines.slots.task_slots`) when
    some job may be grouped, else 1 (Ray is not asked)."""
    if not res.group_heads or not any(j.model.family in kind.grouped_families for j in jobs):
        return 1
    import ray

    return task_slots(res, ray.cluster_resources())


def job_groups(kind, jobs: list[TrainingJob], enabled: bool, slots: int) -> list[list]:
    """``jobs`` cut into the groups that share a training task.

    Jobs of a family in ``kind.grouped_families`` that share their dataset (the same
    object), inputs and training settings form a group (where its first job stands in
    ``jobs``), dealt round-robin into ``min(len(group), slots)`` tasks, so every task
    slot still gets work; any other job is a group of its own. ``enabled`` False: one
    group per job.

    Returns:
        The groups (lists of jobs, each in ``jobs`` order), every job exactly once.
    """
    if not enabled:
        return [[job] for job in jobs]
    order, shared = [], {}
    for job in jobs:
        if job.model.family not in kind.grouped_families:
            order.append([job])
            continue
        key = (id(job.data.data), job.inputs, job.training)
        if key not in shared:
            shared[key] = []
            order.append(shared[key])
        shared[key].append(job)
    out = []
    for group in order:
        tasks = max(1, min(len(group), slots))
        out += [group[i::tasks] for i in range(tasks)]
    return out


def launch_group(kind, res, group: list[TrainingJob], paths: list, board) -> list:
    """Submit one training task for ``group`` (one job:
    :func:`dlpipe.tasks.remote.train_model_warm_task` in a reused worker where
    ``resources.reuse_workers`` allows, else :func:`~dlpipe.tasks.remote.train_model_task`
    in a fresh one; several: :func:`~dlpipe.tasks.remote.train_models_task`); ``paths``:
    each job's kept-model path or None. Returns one ObjectRef per job, in order."""
    from dlpipe.tasks.remote import (
        tf_task,
        train_model_task,
        train_model_warm_task,
        train_models_task,
        warm_runtime_env,
    )

    runs = [
        {
            "family": job.model.family,
            "hp": job.model.hp,
            "inputs": job.inputs,
            "training": job.training,
            "seed": job.seed,
            "run_id": job.run_id,
            "keep_model": path is not None,
        }
        for job, path in zip(group, paths)
    ]
    shared = {
        "data": group[0].data.data,
        "meta": group[0].data.meta,
        "num_cpus": res.num_cpus,
        "num_gpus": res.num_gpus,
    }
    options = {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus, "max_retries": res.max_retries}
    if len(group) == 1 and res.warm_workers:  # a reused worker (resources.reuse_workers)
        task = train_model_warm_task.options(runtime_env=warm_runtime_env(res.num_cpus), **options)
        return [task.remote(kind.train, board=board, **runs[0], **shared)]
    if len(group) == 1:
        task = tf_task(train_model_task, **options)
        return [task.remote(kind.train, board=board, **runs[0], **shared)]
    task = tf_task(train_models_task, num_returns=len(group), **options)
    return list(task.remote(kind.train, runs, board=board, joint=kind.train_jointly, **shared))


def job_result(cfg, ref, job: TrainingJob) -> RunResult:
    """The job's result with its columns; a run that raised is reported failed."""
    import ray

    try:
        result = ray.get(ref)
    except Exception as exc:  # a run that raised is reported, others go on
        result = getattr(exc, "cause", None) or exc
    if not isinstance(result, RunResult):  # it raised, alone or in a group (RunError)
        result = failed_run(
            job.run_id,
            job.model.family,
            job.model.hp,
            job.seed,
            job.inputs,
            result.error if isinstance(result, RunError) else result,
            resources_column(cfg.resources),
            get_kind(cfg).input_columns(job.inputs),
        )
    if job.extra_inputs and isinstance(result.run.get("inputs"), dict):
        result.run["inputs"] = {**result.run["inputs"], **job.extra_inputs}
    return tag_result(result, job.columns)


def resources_column(res) -> dict:
    """The ``resources`` of a failed run's row: the task's ``num_cpus``, ``num_gpus``
    and ``max_retries`` (``group_heads`` and ``reuse_workers`` say how runs share tasks
    and processes, not what one held)."""
    out = asdict(res)
    out.pop("group_heads", None)
    out.pop("reuse_workers", None)
    return out


def collect_jobs(run_dir, cfg, prepared, pending: dict, baseline: dict, progress: bool) -> list:
    """Wait for training tasks, writing each result as it arrives, with live progress
    (:class:`dlpipe.pipelines.progress.RunProgress`: a bar on a terminal, plain lines
    in a log). Returns the ``runs`` rows written."""
    import ray

    from dlpipe.pipelines.progress import RunProgress

    metric = get_metric(baseline["metric"])
    units = f" {prepared.units}" if prepared.units else ""
    done, failed, best, written = 0, 0, metric.worst, []
    budget = {job.run_id: job.training.epochs for job in pending.values()}
    finished_epochs = 0
    with RunProgress(len(pending), sum(budget.values()), enabled=progress) as shown:
        waiting = list(pending)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1, timeout=1.0)
            for ref in ready:
                run = write_result(run_dir, cfg, prepared, job_result(cfg, ref, pending[ref]))
                written.append(run)
                done += 1
                finished_epochs += budget.pop(pending[ref].run_id, 0)
                if run["status"] != "ok":
                    failed += 1
                    error = str(run["error"]).splitlines()[-1]
                    print(f"run {run['run_id']} failed: {error}", file=sys.stderr)
                    shown.run_finished(f"failed: {run['run_id']}")
                    continue
                if metric.is_better(run["val_metric"], best):
                    best = run["val_metric"]
                split, score = shown_score(run)
                shown_best = f"{best:.3f}" if math.isfinite(best) else "none yet"
                shown.run_finished(
                    f"ok: {run['run_id']} {split} {metric.display} {score:.3f}{units} "
                    f"(best val {shown_best}, baseline {baseline['val_metric']:.3f})"
                )
            shown_best = f"{best:.3f}" if math.isfinite(best) else "none yet"
            shown.update(
                finished_epochs + running_epochs(getattr(pending, "board", None), budget),
                len(waiting),
                f"running {len(waiting)}, failed {failed}, best {metric.display} {shown_best}"
                f"{units} (baseline {baseline['val_metric']:.3f})",
            )
    return written


def shown_score(run: dict) -> tuple[str, float]:
    """``(split, value)`` of a finished run's headline for its progress line: the
    validation score, or the test score of a run without validation rows (a K-fold
    final model)."""
    value = run.get("val_metric")
    if value is not None and math.isfinite(value):
        return "val", float(value)
    test = run.get("test_metric")
    return ("test", float(test)) if test is not None and math.isfinite(test) else ("val", value)


def running_epochs(board, budget: dict) -> int:
    """Epochs finished by the runs still training (``budget``: their run ids), as their
    tasks reported them to ``board``; 0 without a board or when it cannot be read."""
    if board is None or not budget:
        return 0
    import ray

    try:
        epochs = ray.get(board.snapshot.remote(), timeout=5)
    except Exception:  # progress is best effort: never fail a study over it
        return 0
    return sum(min(epochs.get(run_id, 0), cap) for run_id, cap in budget.items())
