"""The typed records that cross the layers of a study, and the one recorder of run results.

- :class:`PreparedDataset`: what a study kind's ``prepare`` hands to training (the data
  by reference, its key and description).
- :class:`FoldDataset`: one K-fold fold's prepared dataset (its repeat and fold).
- :class:`RunResult`: what every trainer returns (one ``runs`` row, its ``history`` and
  ``predictions`` rows), and what a failed run is reported as (:func:`failed_run`).
- :func:`run_key` / :func:`stored_run`: a run's key from everything that determines its
  result, and the stored row of a finished run (resume).
- :func:`record_run`: writes one result as report parts, for studies and sweep trials
  alike (event files, the kept model, ``history`` and ``predictions`` first, the ``runs``
  row last: a runs row only exists once its details are on disk).

Importing this module loads neither TensorFlow nor pyarrow.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.fit import TrainingSpec, error_text
from dlpipe.tasks.training.saved import write_model

#: Field metadata flag: the field is left out of :func:`spec_dict` while it holds its
#: default (a setting added after runs were stored: their keys and reports stay valid).
OMIT_AT_DEFAULT = "omit_at_default"


def spec_dict(spec) -> dict:
    """A settings dataclass as run keys, dataset keys and reports store it:
    ``dataclasses.asdict`` without the fields flagged :data:`OMIT_AT_DEFAULT` that hold
    their default value.

    Args:
        spec: A dataclass instance (e.g. the image settings).

    Returns:
        A dict of field name -> value (nested dataclasses as dicts).
    """
    out = asdict(spec)
    for f in fields(spec):
        if f.metadata.get(OMIT_AT_DEFAULT) and getattr(spec, f.name) == f.default:
            del out[f.name]
    return out


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset, as a study kind's ``prepare`` returns it.

    Attributes:
        data: the arrays training reads, usually a Ray ``ObjectRef`` to them (put in the
            object store once, passed to every training task by reference, case C14):
            weather, a normalized float32 ``(rows, features)`` array; text and images, a
            dict of arrays (see their ``prepare`` functions).
        meta: the dataset's description, as the kind's trainer reads it (``key``,
            ``splits``, ``class_names``, normalization statistics...).
        units: the headline metric's units for display (``degC``; ``""`` for accuracy).
        dataset_row: the ``datasets`` report row, written by the shared stage once the
            run directory is known to hold no other dataset (never by ``prepare``).
    """

    data: object
    meta: dict
    units: str = ""
    dataset_row: dict | None = None

    @property
    def key(self) -> str:
        """The dataset key (content and settings hash): part of every run key."""
        return self.meta["key"]


@dataclass(frozen=True)
class FoldDataset:
    """One fold's dataset of a K-fold study (or the final model's: ``repeat`` and
    ``fold`` None), as a kind's ``fold_datasets`` returns it."""

    repeat: int | None
    fold: int | None
    prepared: PreparedDataset


@dataclass
class RunResult:
    """One training run's report rows (the schemas of :mod:`dlpipe.tasks.reports.tables`).

    Attributes:
        run: the ``runs`` row (``run_id``, ``family``, ``status``, ``val_loss``,
            ``val_metric``...).
        history: ``history`` rows, one per epoch.
        predictions: ``predictions`` rows, one per scored sample and split.
        tensorboard: the run's TensorBoard event files, ``{relative path: bytes}``
            (written under ``<run_dir>/tensorboard/<run_id>/``).
        model: the trained model's ``.keras`` bytes when the run keeps its model (set by
            :func:`dlpipe.tasks.training.saved.train_keeping_model`, written at
            ``<run_dir>/models/<run_id>.keras``), else None.
    """

    run: dict
    history: list = field(default_factory=list)
    predictions: list = field(default_factory=list)
    tensorboard: dict = field(default_factory=dict)
    model: bytes | None = None


def run_key(
    dataset_key: str,
    family: str,
    hp_resolved: dict,
    inputs,
    training: TrainingSpec,
    seed: int,
    evaluation: dict | None = None,
) -> str:
    """Key of a training run from everything that determines its result.

    Args:
        dataset_key: the prepared dataset's key.
        family: the model family.
        hp_resolved: the family's resolved hyperparameters.
        inputs: what the model sees, a frozen dataclass (weather: a ``WindowSpec``; text:
            the text settings; images: the image settings), or None. Stored under the
            payload key ``windows`` (its first name), so keys of stored runs stay valid.
        training: epochs and callbacks.
        seed: the run's seed.
        evaluation: K-fold runs only: the evaluation settings and the run's place in
            them (``mode``, ``k``, ``repeats``, ``stratified``, then ``repeat``/``fold``,
            ``aggregate`` or ``final``); None (hold-out) adds nothing to the payload, so
            hold-out keys stay those of stored runs.

    Returns:
        ``"<family>-<12 hex digits of sha256>"``.
    """
    train = asdict(training)
    train.pop("tensorboard")  # event files do not change a result: keys of stored runs
    for name, default in (("batch_size", 32), ("steps_per_execution", 1), ("joint_heads", False)):
        if train.get(name) == default:  # keys of runs stored before these settings existed
            train.pop(name)
    payload = {
        "dataset": dataset_key,
        "family": family,
        "hp": hp_resolved,
        "windows": spec_dict(inputs) if inputs is not None else None,
        "training": train,
        "seed": seed,
    }
    if evaluation is not None:
        payload["evaluation"] = evaluation
    return f"{family}-{hashlib.sha256(reports.dumps(payload).encode()).hexdigest()[:12]}"


def stored_run(run_dir: str | Path, run_id: str) -> dict | None:
    """The stored ``runs`` row of ``run_id`` if it finished with status ok, else None."""
    if not reports.part_exists(run_dir, "runs", run_id):
        return None
    row = reports.read_part(run_dir, "runs", run_id)[0]
    return row if row["status"] == "ok" else None


@dataclass(frozen=True)
class RunError:
    """A run that raised inside a task that trains several runs
    (:func:`dlpipe.tasks.training.grouped.train_group`): its error, as
    :func:`~dlpipe.tasks.training.fit.error_text` wrote it, in place of its result (the
    other runs of the task go on); the driver reports it as :func:`failed_run` does."""

    error: str


def failed_run(
    run_id: str,
    family: str,
    hp: dict,
    seed: int,
    inputs,
    error: BaseException | str,
    resources: dict,
    input_columns: dict | None = None,
) -> RunResult:
    """The result of a run that raised: status ``failed``, the error text, NaN metrics.

    Args:
        inputs: the run's input geometry (a dataclass, stored as ``inputs`` JSON) or None.
        input_columns: the kind's own ``runs`` columns for these inputs (weather:
            ``lookback``, ``step``, ``delay``).
    """
    run = {
        "run_id": run_id,
        "family": family,
        "hyperparameters": hp,
        "seed": seed,
        "status": "failed",
        "error": error_text(error),
        "resources": resources,
        **(input_columns or {}),
    }
    if inputs is not None:
        run["inputs"] = spec_dict(inputs)
    return RunResult(run)


def tag_result(result: RunResult, columns: dict) -> RunResult:
    """``result`` with ``columns`` (a K-fold run's ``fold``, ``repeat``, ``evaluation``)
    set on its ``runs`` row and on every ``history`` and ``predictions`` row (the
    ``runs``-only ``evaluation`` column stays off the other tables)."""
    if not columns:
        return result
    rows_only = {k: v for k, v in columns.items() if k in ("fold", "repeat")}
    return RunResult(
        {**result.run, **columns},
        [{**row, **rows_only} for row in result.history],
        [{**row, **rows_only} for row in result.predictions],
        result.tensorboard,
        result.model,
    )


def baseline_result(
    run_id: str, seed: int, hyperparameters: dict, metric: str, scores: dict, **columns
) -> RunResult:
    """The ``runs`` row of a baseline (family ``baseline``: no parameters, no epochs, no
    training time), the same for every kind.

    Args:
        hyperparameters: the baseline's rule and its fitted values (JSON).
        metric: the headline metric name (``mae``, ``accuracy``).
        scores: ``val_loss``, ``test_loss``, ``val_metric``, ``test_metric``.
        columns: the kind's own columns (weather: windows and normalized MAE).
    """
    return RunResult(
        {
            "run_id": run_id,
            "family": "baseline",
            "hyperparameters": hyperparameters,
            "seed": seed,
            **columns,
            "epochs_run": 0,
            "params": 0,
            "metric": metric,
            **scores,
            "wall_time_s": 0.0,
            "resources": {},
            "devices": "",
            "status": "ok",
        }
    )


def record_run(
    run_dir: str | Path, result: RunResult, *, pipeline: str, study: str, dataset_key: str
) -> dict:
    """Write one run's TensorBoard event files, trained model (``models/<run_id>.keras``,
    :func:`dlpipe.tasks.training.saved.write_model`), ``history``, ``predictions`` and
    then its ``runs`` row, with the study's columns (``pipeline``, ``study``,
    ``dataset_key``, ``finished_at``).

    The one recorder of run results: study runs, baselines and sweep trials.

    Returns:
        The ``runs`` row as written.
    """
    run = dict(
        result.run,
        pipeline=pipeline,
        study=study,
        dataset_key=dataset_key,
        finished_at=datetime.now(timezone.utc),
    )
    run_id = run["run_id"]
    write_event_files(run_dir, run_id, result.tensorboard)
    write_model(run_dir, run_id, result.model)
    reports.write_part(run_dir, "history", run_id, result.history)
    reports.write_part(run_dir, "predictions", run_id, result.predictions)
    reports.write_part(run_dir, "runs", run_id, [run], kind=pipeline)
    return run


def write_event_files(run_dir: str | Path, run_id: str, files: dict[str, bytes]) -> None:
    """Write a run's TensorBoard event files under ``<run_dir>/tensorboard/<run_id>/``
    (each atomically; a rerun of the run replaces the folder's files)."""
    if not files:
        return
    root = Path(run_dir) / "tensorboard" / run_id
    if root.is_dir():
        shutil.rmtree(root)
    for name, payload in files.items():
        path = root / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise ValueError(f"event file path outside the run's folder: {name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        reports.atomic_write_bytes(path, payload)
