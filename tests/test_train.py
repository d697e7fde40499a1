"""The training task as a plain function (no Ray): metrics, history, predictions,
devices (C13 CPU path), read-only inputs (C14)."""

import json

import numpy as np
import pytest

from dlpipe.tasks.training.records import failed_run
from dlpipe.tasks.training.tf_setup import DeviceError, setup_tensorflow
from dlpipe.tasks.weather.prepare import normalize
from dlpipe.tasks.weather.train import TrainingSpec, train_model
from dlpipe.tasks.weather.windows import WindowSpec


def tiny_dataset(rows=400, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    temp = np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.1, rows)
    raw = np.stack([temp, np.cos(2 * np.pi * t / 24), rng.normal(size=rows)], axis=1)
    data, mean, std = normalize(raw, [(0, 200)])
    meta = {
        "key": "tiny",
        "target_column": 0,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "splits": {"train": [[0, 200]], "validation": [[200, 300]], "test": [[300, 400]]},
    }
    data.setflags(write=False)  # as Ray hands it to a task (C14)
    return data, meta


@pytest.mark.train
def test_train_model_returns_consistent_rows():
    data, meta = tiny_dataset()
    before = data.copy()
    windows = WindowSpec(lookback=24, step=2, delay=6, batch_size=16)
    out = train_model(
        data=data,
        meta=meta,
        family="gru",
        hp={"units": np.int64(8)},
        inputs=windows,
        training=TrainingSpec(epochs=2),
        seed=1,
        run_id="r1",
        num_cpus=1,
        num_gpus=0,
    )
    np.testing.assert_array_equal(data, before)  # C14: the read-only input is untouched
    run = out.run
    assert run["status"] == "ok" and run["epochs_run"] == 2
    assert run["hyperparameters"]["units"] == 8 and type(run["hyperparameters"]["units"]) is int
    assert run["devices"].startswith("CPU:0") and "GPU" not in run["devices"]  # C13
    assert [h["epoch"] for h in out.history] == [1, 2]
    assert all(h["lr"] > 0 for h in out.history)
    # validation windows: t from 200 + 24 - 2 = 222 to 299 - 6 = 293 -> 72 windows
    val = [p for p in out.predictions if p["split"] == "validation"]
    assert len(val) == 72
    assert [p["sample_index"] for p in val] == list(range(222 + 6, 293 + 6 + 1))
    # targets in units equal the raw data row (denormalized) at the sample index
    std, mean = meta["std"][0], meta["mean"][0]
    for p in val[:5]:
        assert p["target"] == pytest.approx(data[p["sample_index"], 0] * std + mean, rel=1e-6)
    # the reported MAE is the MAE of the stored predictions (independent recomputation)
    mae_units = np.mean([abs(p["prediction"] - p["target"]) for p in val])
    assert run["val_mae_units"] == pytest.approx(mae_units, rel=1e-5)
    assert run["val_mae"] == pytest.approx(mae_units / std, rel=1e-5)
    best = min(h["val_loss"] for h in out.history)
    assert run["best_epoch"] == 1 + [h["val_loss"] for h in out.history].index(best)


@pytest.mark.train
def test_same_seed_same_result():
    data, meta = tiny_dataset()
    windows = WindowSpec(lookback=12, step=1, delay=3, batch_size=32)
    kwargs = dict(
        data=data,
        meta=meta,
        family="dense",
        hp={},
        inputs=windows,
        training=TrainingSpec(epochs=1),
        seed=3,
        run_id="r",
    )
    a, b = train_model(**kwargs), train_model(**kwargs)
    assert a.run["val_mae"] == pytest.approx(b.run["val_mae"], rel=1e-6)


def test_c13_task_asking_for_a_gpu_without_one_fails_clearly():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: the no-GPU path cannot be checked here")
    with pytest.raises(DeviceError, match="num_gpus=0.5 but TensorFlow sees no GPU"):
        setup_tensorflow(num_cpus=1, num_gpus=0.5)
    assert setup_tensorflow(num_cpus=1, num_gpus=0)[0] == "CPU:0"


def test_failed_run_row_keeps_error_text():
    row = failed_run(
        "r9",
        "gru",
        {"units": 8},
        1,
        WindowSpec(10, 2, 3),
        ValueError("boom at layer gru_1"),
        {"num_cpus": 1},
    )
    assert row.run["status"] == "failed"
    assert "ValueError: boom at layer gru_1" in row.run["error"]
    assert json.dumps(row.run["hyperparameters"]) == '{"units": 8}'
