"""The trained models a study keeps, and the preprocessing state beside them (issue 15).

Layout under ``<run_dir>/models/``:

* ``<run_id>.keras``: the trained model (best weights): the training task saves it to a
  temporary file and returns its bytes with its result (:func:`train_keeping_model`),
  and the recorder writes them here (:func:`write_model`), so the model reaches the run
  directory from any node of a cluster, as TensorBoard event files do;
* ``<run_id>.json``: what the run is (``run_id``, ``kind``, ``family``, ``inputs``,
  ``dataset_key``) and which preprocessing state it was trained with (``state``);
* ``state-<id>.json``: a dataset's preprocessing state as the study kind stores it
  (normalization statistics, vocabulary, image settings, encoding...), written once
  per distinct state (``<id>``: 12 hex digits of its content's sha256) and shared by
  every run trained on it.

Plain files, no Ray, no TensorFlow: the driver writes the JSON files when it launches a
run and the model when its result arrives; :mod:`dlpipe.pipelines.predict` and bundles
read them.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from dlpipe.tasks.reports import tables as reports

MODELS_DIR = "models"


def models_dir(run_dir: str | Path) -> Path:
    """``<run_dir>/models`` (absolute: training workers may run in another folder)."""
    return Path(run_dir).resolve() / MODELS_DIR


def model_path(run_dir: str | Path, run_id: str) -> Path:
    """Where run ``run_id``'s trained model is saved: ``models/<run_id>.keras``."""
    return models_dir(run_dir) / f"{run_id}.keras"


def train_keeping_model(train, keep_model: bool, **kwargs):
    """Run a kind's trainer and return its result with the trained model's bytes.

    The trainer saves the model (its ``model_path`` argument) to a temporary ``.keras``
    file of this process, whose bytes become the result's ``model``: the process that
    trains never writes the run directory, which may be on another node.

    Args:
        train: the kind's training function (``train(**kwargs) -> RunResult``).
        keep_model: whether the run keeps its model; False runs ``train(**kwargs)``.
        kwargs: the trainer's keyword arguments (``run_id`` among them; no
            ``model_path``).

    Returns:
        The trainer's :class:`dlpipe.tasks.training.records.RunResult`, its ``model`` set
        to the ``.keras`` file's bytes when the trainer saved one (None otherwise: a run
        that failed before saving).
    """
    if not keep_model:
        return train(**kwargs)
    with tempfile.TemporaryDirectory(prefix="dlpipe-model-") as folder:
        path = Path(folder) / f"{kwargs['run_id']}.keras"
        result = train(model_path=str(path), **kwargs)
        if path.is_file():
            result.model = path.read_bytes()
    return result


def write_model(run_dir: str | Path, run_id: str, payload: bytes | None) -> None:
    """Write a run's trained model (``.keras`` bytes) atomically at :func:`model_path`;
    nothing when ``payload`` is None (a run that keeps no model)."""
    if payload is not None:
        reports.atomic_write_bytes(model_path(run_dir, run_id), payload)


def state_id(state: dict) -> str:
    """Content id of a preprocessing state: 12 hex digits of the sha256 of its canonical
    JSON (sorted keys), so the same state is written once."""
    return hashlib.sha256(reports.dumps(state).encode()).hexdigest()[:12]


def save_run_state(run_dir: str | Path, run_id: str, state: dict, info: dict) -> Path:
    """Write run ``run_id``'s description and its preprocessing state (once per state).

    Args:
        run_dir: the study's run directory.
        run_id: the run's key.
        state: the kind's preprocessing state (JSON-able dict).
        info: the run's ``kind``, ``family``, ``inputs``, ``dataset_key``.

    Returns:
        The path the run's model is written to (:func:`model_path`, by the recorder).
    """
    folder = models_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    sid = state_id(state)
    state_file = folder / f"state-{sid}.json"
    if not state_file.is_file():
        reports.atomic_write_bytes(state_file, reports.dumps(state).encode())
    record = {**info, "run_id": run_id, "state": sid, "model": f"{run_id}.keras"}
    reports.atomic_write_bytes(folder / f"{run_id}.json", reports.dumps(record).encode())
    return model_path(run_dir, run_id)


def read_run_info(run_dir: str | Path, run_id: str) -> dict:
    """Run ``run_id``'s description (``models/<run_id>.json``).

    Raises:
        FileNotFoundError: the run kept no model (trained before runs kept their models,
            a sweep trial, or a K-fold fold run), naming the file.
    """
    path = models_dir(run_dir) / f"{run_id}.json"
    if not path.is_file() or not model_path(run_dir, run_id).is_file():
        raise FileNotFoundError(
            f"run {run_id} has no saved model in {models_dir(run_dir)} (runs keep their "
            "model since dlpipe saves them; K-fold fold runs keep none): train it again "
            "with `dlpipe run` after deleting its reports, or choose another model"
        )
    return json.loads(path.read_text())


def read_state(run_dir: str | Path, sid: str) -> dict:
    """The preprocessing state ``state-<sid>.json`` of ``run_dir``."""
    return json.loads((models_dir(run_dir) / f"state-{sid}.json").read_text())
