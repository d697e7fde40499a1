"""TensorBoard's HParams tab for a sweep (issue 16): one session per trial with its
hyperparameters and scores, and the experiment's list of hyperparameters and metrics.

Written by the driver from the ``trials`` report with TensorBoard's own protobuf
builders and event writer (no TensorFlow): ``<sweep_dir>/tensorboard/hparams/`` holds
the experiment, ``hparams/trial-0001/`` ... one session per trial (a trial's curves are
its run's folder, ``<sweep_dir>/tensorboard/<run_id>/``, named by the ``run_id``
hyperparameter).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

#: the scores every session logs (scalar tags), as the trials report names them
METRICS = ("val_loss", "val_metric")


def hparam_value(value):
    """A value TensorBoard's HParams accept (bool, number, string): lists, mappings
    and None as their JSON text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def trial_hparams(trial) -> dict:
    """``{name: value}`` of one ``trials`` row: ``family``, ``run_id``, ``status`` and
    each resolved hyperparameter as ``hp.<name>``."""
    raw = trial["hyperparameters"]
    hp = json.loads(raw) if isinstance(raw, str) and raw else {}
    out = {"family": trial["family"], "run_id": trial["run_id"] or "", "status": trial["status"]}
    out.update({f"hp.{k}": hparam_value(v) for k, v in sorted(hp.items())})
    return out


def write_events(folder: Path, summaries: list) -> None:
    """One event file in ``folder`` holding ``summaries`` (``Summary`` protos) at step 0."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder))
    for summary in summaries:
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary))
    writer.close()


def write_hparams(sweep_dir: str | Path, trials) -> Path:
    """Write the HParams experiment and one session per trial (replacing earlier ones).

    Args:
        sweep_dir: the sweep directory.
        trials: the ``trials`` report (a DataFrame): ``trial``, ``run_id``, ``family``,
            ``hyperparameters`` (JSON), ``val_loss``, ``val_metric``, ``status``.

    Returns:
        The HParams folder, ``<sweep_dir>/tensorboard/hparams``.
    """
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb

    root = Path(sweep_dir) / "tensorboard" / "hparams"
    if root.is_dir():
        shutil.rmtree(root)
    sessions = [(int(t["trial"]), trial_hparams(t), t) for t in trials.to_dict("records")]
    names = sorted({name for _, values, _ in sessions for name in values})
    write_events(
        root,
        [
            hp.hparams_config_pb(
                [hp.HParam(name) for name in names], [hp.Metric(m) for m in METRICS]
            )
        ],
    )
    for number, values, trial in sessions:
        name = f"trial-{number:04d}"
        scores = [
            scalar_pb(m, float(trial[m]))
            for m in METRICS
            if trial.get(m) is not None and math.isfinite(float(trial[m]))
        ]
        write_events(root / name, [hp.hparams_pb(values, trial_id=name), *scores])
    return root
