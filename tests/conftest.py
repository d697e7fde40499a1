"""Shared test helpers: files in the exact real formats, written by the tests."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from dlpipe.tasks.weather.read import JENA_COLUMNS


def jena_header() -> str:
    """Header line of jena_climate_2009_2016.csv, quoted exactly as published."""
    return ",".join(f'"{c}"' for c in ("Date Time",) + JENA_COLUMNS)


def write_jena(path, values, times=None, start=datetime(2009, 1, 1, 0, 10)):
    """Write a CSV in the exact Jena layout: `01.01.2009 00:10:00,996.52,-8.02,...`.

    Args:
        values: (rows, 14) floats.
        times: optional list of strings for the Date Time column (else every 10 min).
    """
    values = np.asarray(values, dtype=np.float64)
    if times is None:
        times = [
            (start + timedelta(minutes=10 * i)).strftime("%d.%m.%Y %H:%M:%S")
            for i in range(len(values))
        ]
    lines = [jena_header()]
    for t, row in zip(times, values):
        lines.append(",".join([t] + [f"{v:.2f}" for v in row]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def jena_like(rows: int, seed: int = 0) -> np.ndarray:
    """Plausible Jena-scale values (pressure ~990, temperature daily cycle, ...)."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    temp = 10 + 8 * np.sin(2 * np.pi * t / 144) + rng.normal(0, 0.5, rows)
    base = np.array([990, 0, 283, 5, 75, 12, 9, 3, 6, 9, 1200, 2, 3, 180], dtype=np.float64)
    out = base + rng.normal(0, 1, (rows, 14))
    out[:, 1] = temp
    out[:, 11] = np.abs(out[:, 11])
    out[:, 12] = out[:, 11] + 1
    return out


@pytest.fixture
def jena_csv(tmp_path):
    """A 3,000-row CSV in the exact Jena layout."""
    return write_jena(tmp_path / "jena_climate_2009_2016.csv", jena_like(3000))


_GPU_VISIBLE: bool | None = None


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU here, checked once and cheaply: ``nvidia-smi -L``
    first (no driver, no GPU), then TensorFlow in a subprocess (this process never
    imports it for the check: some tests need TF unloaded)."""
    global _GPU_VISIBLE
    if _GPU_VISIBLE is None:
        import shutil
        import subprocess
        import sys

        _GPU_VISIBLE = False
        smi = shutil.which("nvidia-smi")
        try:
            listed = (
                smi is not None
                and "GPU"
                in subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
            )
            if listed:
                probe = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        "import tensorflow as tf; "
                        "print(len(tf.config.list_physical_devices('GPU')))",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                last = (probe.stdout.split() or ["0"])[-1]
                _GPU_VISIBLE = probe.returncode == 0 and last.isdigit() and int(last) > 0
        except (OSError, subprocess.TimeoutExpired):
            _GPU_VISIBLE = False
    return _GPU_VISIBLE


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``gpu`` when TensorFlow sees no GPU (``pytest -m gpu`` on
    a GPU machine runs them; ``benchmarks/gpu_check.sh`` does)."""
    marked = [item for item in items if item.get_closest_marker("gpu")]
    if not marked or gpu_visible():
        return
    skip = pytest.mark.skip(reason="needs a GPU visible to TensorFlow (none found)")
    for item in marked:
        item.add_marker(skip)
