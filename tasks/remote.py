"""Thin Ray wrappers over the plain task functions (one definition each, module level).

Resources are set per call with ``.options(num_cpus=..., num_gpus=...)``. Training
tasks are declared with ``max_calls=1``: every training task gets a fresh worker
process, so its TensorFlow thread and device settings (case C13) apply, and its GPU
memory is freed when it ends (``.options(num_gpus=...)`` alone does not give that); the
runs of a grouped task (:func:`train_models_task`) share one, the Keras session cleared
between them.

No pyarrow in a TensorFlow process (issue 11, section 3): the worker of every task that
runs TensorFlow (training, evaluation, image validation and features) runs
:func:`dlpipe.tasks.training.tf_setup.tf_worker_setup` as its Ray worker set-up hook,
when the process starts, before it deserializes any task argument (Ray's serializers
import pyarrow then, and Keras -> pandas would later): it refuses pyarrow for the life
of the process, then runs the job's own ``worker_process_setup_hook`` if there is one.
Submit those tasks through :func:`tf_task` (it sets the hook and keeps the job's);
tasks return plain rows and arrays and the driver is the only Parquet writer. The task
modules are imported inside each task, so a worker loads only what its task needs (a
weather training worker: no pandas data code, no text or image code).
"""

from __future__ import annotations

import ray
from ray._private import ray_constants

from dlpipe.tasks.training.tf_setup import CHAINED_SETUP_HOOK_ENV, keep_pyarrow_out
from dlpipe.tasks.training.warm import WarmTrainer

#: Set in the environment of the workers of the tasks that run TensorFlow (their
#: ``runtime_env``; Ray starts those tasks in workers of their own); the set-up hook
#: keeps pyarrow out only there (tokenization and data-preparation workers keep it).
TF_WORKER_ENV = "DLPIPE_TF_WORKER"
#: the environment variable Ray's worker reads its set-up hook from at start-up (what
#: ``runtime_env={"worker_process_setup_hook": ...}`` becomes for a job; a task's
#: ``runtime_env`` can only set it as an environment variable)
RAY_SETUP_HOOK_ENV = getattr(
    ray_constants, "WORKER_PROCESS_SETUP_HOOK_ENV_VAR", "__RAY_WORKER_PROCESS_SETUP_HOOK_ENV_VAR"
)
TF_WORKER_SETUP = "dlpipe.tasks.training.tf_setup.tf_worker_setup"
_TF_WORKER = {"env_vars": {TF_WORKER_ENV: "1", RAY_SETUP_HOOK_ENV: TF_WORKER_SETUP}}


def tf_worker_runtime_env(extra_env: dict | None = None) -> dict:
    """The ``runtime_env`` of a TensorFlow task: :data:`TF_WORKER_ENV`, the set-up hook
    :func:`dlpipe.tasks.training.tf_setup.tf_worker_setup`, and the job's own set-up hook
    (read from the current runtime env) passed on in :data:`~dlpipe.tasks.training.tf_setup.
    CHAINED_SETUP_HOOK_ENV`, so a user's hook still runs in these workers.

    Args:
        extra_env: more environment variables for the worker.
    """
    env = dict(_TF_WORKER["env_vars"], **(extra_env or {}))
    current = (ray.get_runtime_context().runtime_env or {}).get("env_vars") or {}
    job_hook = current.get(RAY_SETUP_HOOK_ENV)
    if job_hook and job_hook != TF_WORKER_SETUP:
        env[CHAINED_SETUP_HOOK_ENV] = job_hook
    return {"env_vars": env}


def tf_task(task, **options):
    """``task.options(**options)`` with :func:`tf_worker_runtime_env`: how every task
    that runs TensorFlow is submitted (needs a connected Ray)."""
    return task.options(runtime_env=tf_worker_runtime_env(), **options)


@ray.remote(num_returns=2, num_cpus=1)
def prepare_weather_task(spec, split, windows, cache_dir=None):
    """Ray task: :func:`dlpipe.tasks.weather.prepare.prepare_weather` -> (data, meta).

    The normalized array goes to the object store once; training tasks receive it by
    reference (zero-copy, read-only: case C14).
    """
    from dlpipe.tasks.weather import prepare as weather_prepare

    prepared = weather_prepare.prepare_weather(spec, split, windows, cache_dir)
    return prepared.data, prepared.meta


@ray.remote(num_returns=2, num_cpus=1)
def prepare_tabular_task(spec, split, task=None, run_dir=None):
    """Ray task: :func:`dlpipe.tasks.tabular.data.prepare_tabular` -> (arrays, meta);
    the arrays go to the object store once and training tasks receive them by
    reference (case C14)."""
    from dlpipe.tasks.tabular import data as tabular_data

    return tabular_data.prepare_tabular(spec, split, task, run_dir)


@ray.remote(num_cpus=1)
def tabular_folds_task(spec, split, task, run_dir, evaluation, seed):
    """Ray task: :func:`dlpipe.tasks.tabular.folds.fold_arrays` -> every fold's arrays,
    the final model's, then the list of their infos; call it with
    ``.options(num_returns=folds + 2)`` so each fold's arrays are their own object in
    the store, put once, sent to its training tasks by reference (case C14)."""
    from dlpipe.tasks.tabular import folds as tabular_folds

    entries = tabular_folds.fold_arrays(spec, split, task, run_dir, evaluation, seed)
    return (*[arrays for arrays, _ in entries], [info for _, info in entries])


@ray.remote(num_cpus=1)
def weather_folds_task(spec, split, windows, folds):
    """Ray task: :func:`dlpipe.tasks.weather.folds.fold_arrays` -> every fold's normalized
    array, the final model's, then the list of their infos; call it with
    ``.options(num_returns=folds + 2)`` so each array is its own object in the store,
    put once, sent to its training tasks by reference (case C14)."""
    from dlpipe.tasks.weather import folds as weather_folds

    entries = weather_folds.fold_arrays(spec, split, windows, folds)
    return (*[data for data, _ in entries], [info for _, info in entries])


@ray.remote(num_cpus=1)
def text_shard_task(function: str, *args):
    """Ray task: one tokenization shard, ``count_words`` or ``encode_shard`` of
    :mod:`dlpipe.tasks.text.prepare` (names, so the task stays one definition)."""
    from dlpipe.tasks.text import prepare as text_prepare

    return getattr(text_prepare, function)(*args)


@ray.remote(max_calls=1, num_cpus=1, runtime_env=_TF_WORKER)
def validate_images_task(paths: list[str], size: tuple[int, int], *args):
    """Ray task: validate one shard of image files in a fresh worker (its TF set-up,
    C13) -> ``(ok_paths, bad, notes)`` (:func:`dlpipe.tasks.images.prepare.validate_shard`,
    ``args``: its ``max_pixels``)."""
    keep_pyarrow_out()
    from dlpipe.tasks.images import prepare as image_prepare

    return image_prepare.validate_shard(paths, size, *args)


@ray.remote(max_calls=1, num_cpus=1, runtime_env=_TF_WORKER, num_returns=2)
def image_features_task(paths, labels, images, root, seed, num_cpus=1, num_gpus=0):
    """Ray task: conv-base features of every split through the feature cache
    (:func:`dlpipe.tasks.features.study.cache_features`) -> ``(features, report)``; set
    ``.options(num_gpus=...)`` to run the conv base on a GPU."""
    keep_pyarrow_out()
    from dlpipe.tasks.features import study as study_features

    return study_features.cache_features(paths, labels, images, root, seed, num_cpus, num_gpus)


@ray.remote(max_calls=1, num_cpus=1, runtime_env=_TF_WORKER)
def train_model_task(train, board=None, keep_model=False, **kwargs):
    """Ray task: one training run in a fresh worker process.

    Args:
        train: the study kind's training function (a plain module-level function such as
            :func:`dlpipe.tasks.weather.train.train_model`; Ray sends it by reference, so
            the worker imports that kind's module only).
        board: an :class:`dlpipe.tasks.training.progress.EpochBoard` actor told of every
            finished epoch (the driver's progress display), or None.
        keep_model: return the trained model's ``.keras`` bytes in the result's ``model``
            (:func:`dlpipe.tasks.training.saved.train_keeping_model`): the recorder
            writes them into the run directory, which this worker may not see.
        kwargs: its keyword arguments (``data``, ``meta``, ``family``, ``hp``,
            ``inputs``, ``training``, ``seed``, ``run_id``, resources...).

    Returns:
        The :class:`dlpipe.tasks.training.records.RunResult` of the run.
    """
    keep_pyarrow_out()
    from dlpipe.tasks.training.saved import train_keeping_model

    if board is not None:
        from dlpipe.tasks.training.progress import epoch_reporter

        kwargs["epoch_hook"] = epoch_reporter(board, kwargs["run_id"])
    return train_keeping_model(train, keep_model, **kwargs)


#: runs a reused training worker trains before Ray starts a new process in its place
#: (bounds what a long study could leave behind in one process)
WARM_MAX_CALLS = 64
#: set in a warm training worker's environment: its TensorFlow threads (workers of
#: different thread counts are different ``runtime_env`` and never share a process)
WARM_THREADS_ENV = "DLPIPE_WARM_THREADS"


def warm_runtime_env(num_cpus: float) -> dict:
    """The ``runtime_env`` of :data:`train_model_warm_task` for runs of ``num_cpus``:
    :func:`tf_worker_runtime_env` plus :data:`WARM_THREADS_ENV`."""
    return tf_worker_runtime_env({WARM_THREADS_ENV: str(max(1, int(num_cpus)))})


@ray.remote(max_calls=WARM_MAX_CALLS, num_cpus=1, runtime_env=_TF_WORKER)
def train_model_warm_task(train, board=None, keep_model=False, **kwargs):
    """Ray task: one CPU training run in a reused worker (issues 14, 17): as
    :func:`train_model_task`, but Ray keeps the worker process for the next run of the
    same ``runtime_env`` (:func:`warm_runtime_env`), so TensorFlow starts once per
    worker; the worker's :func:`~dlpipe.tasks.training.warm.process_trainer` resets
    Keras' state and the seeds before each run, so a run gives what a fresh worker
    gives (tests/test_warm_workers.py). CPU runs only (GPU memory is never given back
    by TensorFlow); a worker is replaced after :data:`WARM_MAX_CALLS` runs.

    Returns:
        The :class:`dlpipe.tasks.training.records.RunResult` of the run.
    """
    keep_pyarrow_out()
    from dlpipe.tasks.training.warm import process_trainer

    trainer = process_trainer(kwargs.get("num_cpus", 1))
    if board is not None:
        from dlpipe.tasks.training.progress import epoch_reporter

        kwargs["epoch_hook"] = epoch_reporter(board, kwargs["run_id"])
    return trainer.run({"train": train, "keep_model": keep_model, "kwargs": kwargs})


def _estimate_costs(cost_model, meta, runs, num_cpus, warm):
    keep_pyarrow_out()
    from dlpipe.tasks.training.costs import estimate_costs

    if warm:
        from dlpipe.tasks.training.warm import process_trainer

        process_trainer(num_cpus)
    else:
        from dlpipe.tasks.training.tf_setup import setup_tensorflow

        setup_tensorflow(num_cpus, 0)
    return estimate_costs(cost_model, meta, runs)


@ray.remote(max_calls=1, num_cpus=1, runtime_env=_TF_WORKER)
def estimate_costs_task(cost_model, meta, runs, num_cpus=1):
    """Ray task: each run's estimated per-sample cost
    (:func:`dlpipe.tasks.training.costs.estimate_costs`) in a fresh worker, so a study
    can order its training tasks longest first before any has run
    (:mod:`dlpipe.pipelines.slots`). GPUs stay hidden (building a model needs none).

    Returns:
        One float (or None) per run.
    """
    return _estimate_costs(cost_model, meta, runs, num_cpus, warm=False)


@ray.remote(max_calls=WARM_MAX_CALLS, num_cpus=1, runtime_env=_TF_WORKER)
def estimate_costs_warm_task(cost_model, meta, runs, num_cpus=1):
    """Ray task: :func:`estimate_costs_task` in a reused training worker (launch it
    with :func:`warm_runtime_env`), set up as
    :func:`~dlpipe.tasks.training.warm.process_trainer` sets one up, so the worker goes
    on to train with TensorFlow already loaded.

    Returns:
        One float (or None) per run.
    """
    return _estimate_costs(cost_model, meta, runs, num_cpus, warm=True)


@ray.remote(max_calls=1, num_cpus=1, runtime_env=_TF_WORKER)
def train_models_task(train, runs, board=None, joint=None, **shared):
    """Ray task: several training runs, one after another, in one fresh worker
    (:func:`dlpipe.tasks.training.grouped.train_group`; issue 17: heads on the same
    cached features). Call it with ``.options(num_returns=len(runs))`` (2 or more): each
    run's result (a ``RunResult``, or a ``RunError`` for a run that raised) is its own
    object, as if each run were its own task.

    Args:
        train: the study kind's training function.
        runs: each run's own keyword arguments (with ``keep_model``).
        board: the progress :class:`~dlpipe.tasks.training.progress.EpochBoard`, or None.
        joint: the kind's joint trainer (images: heads with ``training.joint_heads``
            train in one compiled step), or None.
        shared: keyword arguments of every run (``data``, ``meta``, resources): top-level
            arguments, so Ray fetches their object references once for the group.
    """
    keep_pyarrow_out()
    from dlpipe.tasks.training.grouped import train_group

    hook_of = None
    if board is not None:
        from dlpipe.tasks.training.progress import epoch_reporter

        def hook_of(run_id):
            return epoch_reporter(board, run_id)

    return tuple(train_group(train, shared, runs, hook_of, joint))


@ray.remote(max_calls=1, num_cpus=1, runtime_env=_TF_WORKER)
def evaluate_model_task(evaluate, **kwargs):
    """Ray task: the study kind's saved-model evaluator (``evaluate(**kwargs)``, e.g.
    :func:`dlpipe.tasks.weather.train.evaluate_saved_model`) in a fresh worker ->
    ``{"loss", "metric", "predictions"}``."""
    keep_pyarrow_out()
    return evaluate(**kwargs)


#: Ray actor of a warm training worker (:class:`dlpipe.tasks.training.warm.WarmTrainer`,
#: issue 17): CPU sweep runs one after another in one process. Create it with
#: ``.options(num_cpus=..., runtime_env=tf_worker_runtime_env())`` (no pyarrow, as the
#: TensorFlow tasks above); ``max_restarts=-1``: a worker that died, or that the pool
#: recycles with ``ray.kill(worker, no_restart=False)``, starts again in a new process
#: (the call it was running fails; Tune retries the trial by its ``FailureConfig``).
training_worker = ray.remote(max_restarts=-1, num_cpus=1)(WarmTrainer)
