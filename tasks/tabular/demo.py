"""Demo tables: real data sets shipped inside scikit-learn's wheel, written as CSV files
so the demo reads, checks and splits them the same way as users' tables.
"""

from __future__ import annotations

import io
from pathlib import Path

#: ``demo:<name>`` -> (package, what it holds, target column)
DEMO_TABLES = {
    "diabetes": (
        "scikit-learn",
        "442 patients x 10 baseline variables (raw units); target `progression`: disease "
        "progression one year later (25-346)",
        "progression",
    ),
    "wine": (
        "scikit-learn",
        "178 wines x 13 chemical measurements; target `cultivar`: class_0/1/2",
        "cultivar",
    ),
    "breast_cancer": (
        "scikit-learn",
        "569 tumours x 30 cell-nucleus measurements; target `diagnosis`: malignant/benign",
        "diagnosis",
    ),
}


def demo_frame(name: str):
    """The demo table ``name`` as a pandas DataFrame (features, then the target column;
    class targets spelled by their names).

    Raises:
        ValueError: unknown name.
        ImportError: scikit-learn is not installed (the message says what to install).
    """
    if name not in DEMO_TABLES:
        raise ValueError(f"demo table must be one of {sorted(DEMO_TABLES)}. Received: {name!r}")
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise ImportError(
            f"demo:{name} needs scikit-learn, which ships the table inside its wheel: "
            "pip install scikit-learn"
        ) from exc
    if name == "diabetes":
        bunch = datasets.load_diabetes(scaled=False, as_frame=True)
    else:
        bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.rename(columns={"target": DEMO_TABLES[name][2]})
    if name != "diabetes":
        target = DEMO_TABLES[name][2]
        frame[target] = [str(bunch.target_names[int(v)]) for v in frame[target]]
    return frame


def write_demo_table(name: str, folder: str | Path) -> Path:
    """Write ``demo:<name>`` as ``<folder>/<name>.csv`` once (atomically); later calls
    return the written file.

    Returns:
        The CSV's path.

    Raises:
        ValueError, ImportError: as :func:`demo_frame`.
    """
    from dlpipe.tasks.reports.tables import atomic_write_bytes

    path = Path(folder) / f"{name}.csv"
    if not path.is_file():
        buffer = io.StringIO()
        demo_frame(name).to_csv(buffer, index=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue().encode())
    return path
