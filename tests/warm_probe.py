"""Test helpers for tests/test_warm_workers.py: tiny training calls run in a fresh
process or as a later call of a warm worker (``python warm_probe.py fresh|warm OUT``),
and trainers the pool's Ray workers run (``PYTHONPATH`` = this folder)."""

import json
import os
import sys
import tempfile

import numpy as np


def tiny_spec(family: str, hp: dict, seed: int, run_id: str) -> dict:
    """A :meth:`WarmTrainer.run` spec of a 2-epoch weather run on 300 synthetic rows."""
    from dlpipe.tasks.training.fit import TrainingSpec
    from dlpipe.tasks.weather.prepare import normalize
    from dlpipe.tasks.weather.train import train_model
    from dlpipe.tasks.weather.windows import WindowSpec

    rng = np.random.default_rng(0)
    t = np.arange(300)
    raw = np.stack(
        [np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.1, 300), np.cos(t / 7), rng.normal(size=300)],
        axis=1,
    )
    data, mean, std = normalize(raw, [(0, 150)])
    meta = {
        "key": "tiny",
        "target_column": 0,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "splits": {"train": [[0, 150]], "validation": [[150, 225]], "test": [[225, 300]]},
    }
    kwargs = dict(
        data=data,
        meta=meta,
        family=family,
        hp=hp,
        inputs=WindowSpec(lookback=12, step=1, delay=2, batch_size=16),
        training=TrainingSpec(epochs=2),
        seed=seed,
        run_id=run_id,
        num_cpus=1,
        num_gpus=0,
        evaluate_test=False,
    )
    return {"train": train_model, "keep_model": True, "kwargs": kwargs}


def outcome(result) -> dict:
    """What must not depend on the process: history (not its seconds), predictions,
    validation loss, and the saved model's layer names and weights."""
    import keras

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.keras")
        with open(path, "wb") as f:
            f.write(result.model)
        model = keras.models.load_model(path, compile=False)
    return {
        "history": [{k: v for k, v in h.items() if k != "seconds"} for h in result.history],
        "predictions": result.predictions,
        "val_loss": result.run["val_loss"],
        "model": model.name,
        "layers": [layer.name for layer in model.layers],
        "variables": [v.path for v in model.weights],
        "weights": [w.tolist() for w in model.get_weights()],
    }


def main(mode: str, out: str) -> None:
    from dlpipe.tasks.training.warm import WarmTrainer

    worker = WarmTrainer(1)
    if mode == "warm":  # an earlier run of another model and seed in the same process
        worker.run(tiny_spec("gru", {"units": 16}, 11, "first"))
        worker.run(tiny_spec("dense", {"units": 8}, 5, "second"))
    result = worker.run(tiny_spec("gru", {"units": 8}, 3, "probe"))
    other = {}
    if mode == "warm":  # control: the same model with seed 4 next, in the same worker
        other = outcome(worker.run(tiny_spec("gru", {"units": 8}, 4, "probe")))
    with open(out, "w") as f:
        json.dump({**outcome(result), "runs": worker.stats()["runs"], "other": other}, f)


def report_process(**kwargs):
    """A trainer: the worker's pid, the seed it got, and which of TensorFlow/pyarrow
    its process holds."""
    return {
        "pid": os.getpid(),
        "seed": kwargs.get("seed"),
        "tensorflow": "tensorflow" in sys.modules,
        "pyarrow": "pyarrow" in sys.modules,
    }


def crash(**kwargs):
    """A trainer whose worker process dies."""
    os._exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
