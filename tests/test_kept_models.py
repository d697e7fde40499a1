"""Kept models travel to the recorder (issue 15 follow-up): the process that trains saves
the model to a temporary file and returns its bytes; the recorder (the driver for a
study, the trial for a sweep) writes them at ``<run_dir>/models/<run_id>.keras``, so a
worker on another node never needs the run directory. No Ray here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlpipe.tasks.training.records import RunResult, record_run, tag_result
from dlpipe.tasks.training.saved import model_path, train_keeping_model

RUN = {"run_id": "gru-abc", "family": "gru", "status": "ok", "val_loss": 1.0}


def fake_trainer(seen: dict):
    """A trainer that writes known bytes where it is told to save its model and
    remembers its arguments."""

    def train(*, run_id, model_path=None, **kwargs):
        seen.update(kwargs, run_id=run_id, model_path=model_path)
        if model_path is not None:
            Path(model_path).write_bytes(b"PK\x03\x04 model of " + run_id.encode())
        return RunResult(dict(RUN, run_id=run_id))

    return train


def test_trainer_saves_to_a_temporary_file_whose_bytes_come_back(tmp_path):
    seen = {}
    result = train_keeping_model(fake_trainer(seen), True, run_id="gru-abc", seed=3)
    assert result.model == b"PK\x03\x04 model of gru-abc"
    assert seen["seed"] == 3
    saved_at = Path(seen["model_path"])
    assert saved_at.name == "gru-abc.keras"
    assert not saved_at.exists() and not saved_at.parent.exists()  # the temp folder is gone


def test_a_run_keeping_no_model_gets_no_model_path():
    seen = {}
    result = train_keeping_model(fake_trainer(seen), False, run_id="gru-abc")
    assert seen["model_path"] is None and result.model is None


def test_recorder_writes_the_returned_bytes_at_the_model_path(tmp_path):
    result = train_keeping_model(fake_trainer({}), True, run_id="gru-abc")
    result = tag_result(result, {"evaluation": "final"})  # the bytes survive tagging
    record_run(tmp_path, result, pipeline="timeseries", study="s", dataset_key="k")
    path = model_path(tmp_path, "gru-abc")
    assert path == tmp_path.resolve() / "models" / "gru-abc.keras"
    assert path.read_bytes() == b"PK\x03\x04 model of gru-abc"
    assert list(path.parent.iterdir()) == [path]  # written atomically: no temp file left


def test_recorder_writes_no_model_for_a_result_without_one(tmp_path):
    record_run(tmp_path, RunResult(dict(RUN)), pipeline="timeseries", study="s", dataset_key="k")
    assert not (tmp_path / "models").exists()


@pytest.mark.train
def test_a_real_keras_model_round_trips_through_the_recorder(tmp_path):
    import keras

    def train(*, run_id, model_path, **_):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.save(model_path)
        return RunResult(dict(RUN, run_id=run_id), predictions=[model.get_weights()])

    result = train_keeping_model(train, True, run_id="dense-1")
    record_run(
        tmp_path,
        RunResult(result.run, model=result.model),
        pipeline="timeseries",
        study="s",
        dataset_key="k",
    )
    loaded = keras.saving.load_model(model_path(tmp_path, "dense-1"))
    for got, want in zip(loaded.get_weights(), result.predictions[0], strict=True):
        np.testing.assert_array_equal(got, want)
