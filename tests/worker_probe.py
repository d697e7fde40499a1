"""Test helper run inside Ray workers (tests/test_clean_workers.py): a training function
that also reports which of pyarrow/pandas the worker process has loaded."""

import sys


def train_and_report(**kwargs):
    """:func:`dlpipe.tasks.weather.train.train_model`, then ``(status, epochs_run,
    sorted top-level pyarrow/pandas modules loaded in this process)``."""
    from dlpipe.tasks.weather.train import train_model

    out = train_model(**kwargs)
    loaded = sorted(
        k for k in sys.modules if k.split(".")[0] in ("pyarrow", "pandas") and k.count(".") == 0
    )
    return out.run["status"], out.run["epochs_run"], loaded, MARKED


MARKED = False


def mark():
    """A job-level ``worker_process_setup_hook``: records that it ran in this worker."""
    global MARKED
    MARKED = True
