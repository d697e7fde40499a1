"""TensorBoard event files read back with TensorBoard's own reader, compared with the
``history`` report (issue 16)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dlpipe.tasks.reports import tables as reports

#: (event folder, tag) -> history column; accuracy only where the history has it
PAIRS = (
    ("train", "epoch_loss", "loss"),
    ("train", "epoch_learning_rate", "lr"),
    ("validation", "epoch_loss", "val_loss"),
    ("train", "epoch_accuracy", "metric"),
    ("validation", "epoch_accuracy", "val_metric"),
)


def tensors(folder: Path) -> dict:
    """``{tag: {step: array}}`` of one event folder."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    acc = event_accumulator.EventAccumulator(
        str(folder), size_guidance={event_accumulator.TENSORS: 0}
    )
    acc.Reload()
    return {
        tag: {e.step: tensor_util.make_ndarray(e.tensor_proto) for e in acc.Tensors(tag)}
        for tag in acc.Tags()["tensors"]
    }


def assert_events_match_history(run_dir: Path) -> int:
    """For every run of ``run_dir`` with history rows: the per-epoch loss, learning rate,
    validation loss and (classification) accuracies in its event files equal the
    ``history`` report's (Keras's step = epoch - 1). Returns the runs checked."""
    history = reports.read_table(run_dir, "history")
    checked = 0
    for run_id, rows in history.groupby("run_id"):
        rows = rows.sort_values("epoch")
        folders = {
            name: tensors(Path(run_dir) / "tensorboard" / run_id / name)
            for name in ("train", "validation")
        }
        for folder, tag, column in PAIRS:
            expected = {int(e): v for e, v in zip(rows["epoch"], rows[column])}
            if all(v is None or not math.isfinite(v) for v in expected.values()):
                continue  # not logged by this kind (weather: no accuracy)
            got = {int(s) + 1: float(v) for s, v in folders[folder][tag].items()}
            assert sorted(got) == sorted(expected), (run_id, tag)
            np.testing.assert_allclose(
                [got[e] for e in sorted(got)], [expected[e] for e in sorted(got)], rtol=1e-6
            )
        checked += 1
    return checked
