"""Parquet reports (DESIGN.md "Reports"): fixed schemas, atomic part files, read-back.

Each table is a Parquet *dataset*: a folder ``<run_dir>/reports/<table>/`` of part
files that pandas, pyarrow and DuckDB read together. A part is written to a temporary
name and renamed into place, so a crash never leaves a torn file; runs append new parts
and never rewrite old ones.

Types (shared case C15): every table has one fixed pyarrow schema; hyperparameters are a
JSON string with sorted keys (so ``64`` stays an int and ``"auto"`` a string after a
round trip); metrics are float64 with NaN for failed runs; numpy scalars become Python
scalars before they are written.
"""

from __future__ import annotations

import functools
import json
import math
import os
import secrets
from pathlib import Path

import numpy as np

# pyarrow is imported inside the functions that build, write or read Parquet, which only
# the driver calls: a process that runs TensorFlow never loads it (issue 11, section 3:
# TensorFlow >= 2.20 and pyarrow's native libraries in one process have aborted at
# worker exit). Importing this module (run keys, ``dumps``, ``atomic_write_bytes``) is
# pyarrow-free; ``SCHEMAS`` is built on first use.

__all__ = [
    "SCHEMAS",  # noqa: F822 (SCHEMAS: module __getattr__, below)
    "to_python",
    "dumps",
    "atomic_write_bytes",
    "make_table",
    "write_part",
    "part_exists",
    "read_part",
    "read_table",
]


@functools.cache
def _schemas() -> dict:
    """The fixed pyarrow schema of every report table (built once, on first use)."""
    import pyarrow as pa

    def kind_field(name, type_, kind):
        """A column that only studies of ``kind`` write (:func:`kind_columns`)."""
        return pa.field(name, type_, metadata={"kind": kind})

    def kfold_field(name, type_):
        """A column only K-fold studies set (:func:`optional_columns`): left out of a
        part where no row sets it, so hold-out reports keep their columns."""
        return pa.field(name, type_, metadata={"optional": "kfold"})

    return {
        "runs": pa.schema(
            [
                ("run_id", pa.string()),
                ("pipeline", pa.string()),
                ("study", pa.string()),
                ("dataset_key", pa.string()),
                ("family", pa.string()),
                ("hyperparameters", pa.string()),  # JSON, sorted keys
                ("seed", pa.int64()),
                kind_field("lookback", pa.int64(), "timeseries"),
                kind_field("step", pa.int64(), "timeseries"),
                kind_field("delay", pa.int64(), "timeseries"),
                ("epochs_run", pa.int64()),
                ("best_epoch", pa.int64()),
                ("params", pa.int64()),
                kind_field("val_mae", pa.float64(), "timeseries"),  # normalized units
                kind_field("test_mae", pa.float64(), "timeseries"),
                kind_field("val_mae_units", pa.float64(), "timeseries"),  # target's units (degC)
                kind_field("test_mae_units", pa.float64(), "timeseries"),
                ("metric", pa.string()),  # headline metric: mae (target units) | accuracy
                ("val_loss", pa.float64()),  # the model's loss (weather: normalized MAE)
                ("test_loss", pa.float64()),
                ("val_metric", pa.float64()),  # the headline metric on validation
                ("test_metric", pa.float64()),
                ("inputs", pa.string()),  # JSON: what the model saw (maxlen, image size...)
                ("wall_time_s", pa.float64()),
                ("node", pa.string()),
                ("resources", pa.string()),  # JSON
                ("devices", pa.string()),
                ("gpu_type", pa.string()),  # GPU model name(s), "" on CPU
                ("gpu_seconds", pa.float64()),  # wall time x GPUs held
                ("status", pa.string()),  # ok | failed
                ("error", pa.string()),
                ("finished_at", pa.timestamp("ms", tz="UTC")),
                # K-fold studies only (evaluation: kfold / iterated_kfold), null otherwise:
                # evaluation = fold (one fold's model) | mean (the model's aggregate over
                # its folds: val_loss/val_metric are the fold mean, *_std their standard
                # deviation (ddof=0), folds the fold runs it averages, epochs_run/
                # best_epoch null) | final (trained on every non-test row for the epochs
                # the averaged fold curve chose, inputs.final_epochs; its test_metric is
                # the model's test figure; val_* NaN)
                kfold_field("evaluation", pa.string()),
                kfold_field("repeat", pa.int64()),  # 0-based; null for mean/final rows
                kfold_field("fold", pa.int64()),  # 0-based within its repeat
                kfold_field("folds", pa.int64()),
                kfold_field("val_loss_std", pa.float64()),
                kfold_field("val_metric_std", pa.float64()),
            ]
        ),
        "history": pa.schema(
            [
                ("run_id", pa.string()),
                ("epoch", pa.int64()),
                ("loss", pa.float64()),
                ("val_loss", pa.float64()),
                ("lr", pa.float64()),
                ("metric", pa.float64()),  # training accuracy (classification), else NaN;
                # K-fold fold runs: the headline metric (accuracy, or MAE in target units)
                ("val_metric", pa.float64()),
                ("seconds", pa.float64()),
                kfold_field("repeat", pa.int64()),  # K-fold fold runs, else null
                kfold_field("fold", pa.int64()),
            ]
        ),
        "predictions": pa.schema(
            [
                ("run_id", pa.string()),
                ("split", pa.string()),
                ("sample_index", pa.int64()),  # row of the target in the dataset array
                ("prediction", pa.float64()),  # target units; P(class 1) when binary;
                # the predicted class when multi-class
                ("target", pa.float64()),  # target units, or the class label
                ("probabilities", pa.list_(pa.float64())),  # multi-class only: one per class
                kfold_field("repeat", pa.int64()),  # K-fold fold runs, else null
                kfold_field("fold", pa.int64()),
            ]
        ),
        "trials": pa.schema(
            [
                ("sweep_id", pa.string()),
                ("trial", pa.int64()),  # 1-based trial number in proposal order
                ("run_id", pa.string()),
                ("family", pa.string()),
                ("hyperparameters", pa.string()),  # JSON, sorted keys, resolved values (C10)
                ("val_loss", pa.float64()),  # the searched objective, NaN when failed
                kind_field("val_mae_units", pa.float64(), "timeseries"),
                ("val_metric", pa.float64()),  # the study's headline metric (MAE, accuracy)
                ("status", pa.string()),  # ok | failed | reused | stopped (by ASHA)
                ("error", pa.string()),
                ("searcher", pa.string()),  # tpe | random
                ("warm_start", pa.bool_()),
                ("reused_from", pa.string()),  # run_id whose result was reused, else null
                # K-fold sweeps only: val_loss/val_metric above are the fold means; the
                # fold scores (JSON lists, (repeat, fold) order) and the headline's std
                kfold_field("val_loss_folds", pa.string()),
                kfold_field("val_metric_folds", pa.string()),
                kfold_field("val_metric_std", pa.float64()),
                ("resources", pa.string()),  # JSON
                ("node", pa.string()),
                ("started_at", pa.timestamp("ms", tz="UTC")),
                ("ended_at", pa.timestamp("ms", tz="UTC")),
            ]
        ),
        "ensembles": pa.schema(
            [
                ("ensemble_id", pa.string()),
                ("method", pa.string()),  # best_single | simple_average | weighted_* | greedy
                ("chosen", pa.bool_()),  # picked by cross-fitting on validation
                ("loss", pa.string()),  # mae | mse | log_loss | accuracy
                ("members", pa.string()),  # JSON list of run_ids
                ("weights", pa.string()),  # JSON list of floats, aligned with members
                ("cv_score", pa.float64()),  # cross-fitted validation score
                ("val_score", pa.float64()),
                ("test_score", pa.float64()),
                ("val_test_gap", pa.float64()),  # test_score - val_score
                ("best_single_val", pa.float64()),
                ("best_single_test", pa.float64()),
                ("mean_pairwise_correlation", pa.float64()),
                ("val_accuracy", pa.float64()),  # classification losses only, else NaN
                ("test_accuracy", pa.float64()),
                ("sources", pa.string()),  # JSON list of run directories
                # K-fold studies only: where the weights were fitted: oof (out-of-fold
                # predictions of every non-test sample) | holdout (fold 0 of repeat 0)
                kfold_field("fit", pa.string()),
                ("created_at", pa.timestamp("ms", tz="UTC")),
            ]
        ),
        "datasets": pa.schema(
            [
                ("dataset_key", pa.string()),
                ("source", pa.string()),
                ("rows", pa.int64()),
                ("columns", pa.string()),  # JSON list
                ("target", pa.string()),
                ("splits", pa.string()),  # JSON {split: [start, stop]}
                ("sentinel_counts", pa.string()),  # JSON {column: count}
                ("quality", pa.string()),  # JSON
            ]
        ),
    }


def __getattr__(name: str):
    """``reports.SCHEMAS`` (table -> ``pyarrow.Schema``), built lazily (PEP 562)."""
    if name == "SCHEMAS":
        return _schemas()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def to_python(value):
    """Numpy scalars/arrays to Python scalars/lists (recursively), for JSON and Arrow."""
    if isinstance(value, dict):
        return {str(k): to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_python(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def dumps(value) -> str:
    """Canonical JSON for report columns: sorted keys, Python scalars, NaN allowed."""
    return json.dumps(to_python(value), sort_keys=True)


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file and a rename.

    The file's mode follows the user's umask, like any file the process creates (the
    plots): ``0o666 & ~umask``, so 0644 under umask 022 and 0640 under 027. The
    temporary file is created with ``os.open(..., 0o666)`` and the kernel applies the
    umask (``tempfile.mkstemp`` would make it 0600 whatever the umask).

    Args:
        path: the destination; its folder is created when missing.
        payload: the file's bytes.

    Raises:
        OSError: the folder or the file cannot be written (the temporary file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _coerce(field, value):
    import pyarrow as pa

    value = to_python(value)
    if value is None:
        return float("nan") if pa.types.is_floating(field.type) else None
    if pa.types.is_floating(field.type):
        return float(value)
    if pa.types.is_integer(field.type):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"column `{field.name}` must be an integer. Received: {value}")
        return int(value)
    if pa.types.is_string(field.type) and not isinstance(value, str):
        return dumps(value)
    return value


def kind_columns(table: str, kind: str | None = None) -> set[str]:
    """The columns of ``table`` that belong to one study kind (schema field metadata
    ``kind``; e.g. ``runs.lookback`` of timeseries studies); with ``kind``, those of the
    other kinds: what a study of ``kind`` does not write."""
    return {
        f.name
        for f in _schemas()[table]
        if f.metadata and b"kind" in f.metadata and f.metadata[b"kind"].decode() != kind
    }


def optional_columns(table: str) -> set[str]:
    """The columns of ``table`` only K-fold studies set (schema field metadata
    ``optional``): written only in parts where some row sets them."""
    return {f.name for f in _schemas()[table] if f.metadata and b"optional" in f.metadata}


def _unset(value) -> bool:
    """None or NaN: what a row of another kind may hold in a kind's own column."""
    value = to_python(value)
    return value is None or (isinstance(value, float) and math.isnan(value))


def make_table(table: str, rows: list[dict], kind: str | None = None):
    """Rows (dicts) to a pyarrow Table with the table's fixed schema.

    Args:
        kind: the study kind writing the rows (``timeseries``, ``text``...): the other
            kinds' own columns (:func:`kind_columns`) are left out, so every part of a
            study has the same columns and its reports carry no all-null columns of
            another kind. None: every column.

    A K-fold column (:func:`optional_columns`) no row sets is left out too.
    Missing keys become null (NaN for float columns); unknown keys (and another kind's
    column set in a row) raise ValueError. Returns a ``pyarrow.Table``.
    """
    import pyarrow as pa

    schema = _schemas()[table]
    other = kind_columns(table, kind) if kind is not None else set()
    unset = {c for c in optional_columns(table) if all(_unset(r.get(c)) for r in rows)}
    schema = pa.schema([f for f in schema if f.name not in other | unset])
    names = set(schema.names)
    for row in rows:
        extra = {
            k for k, v in row.items() if k not in names and not (k in other | unset and _unset(v))
        }
        if extra:
            raise ValueError(f"unknown column(s) {sorted(extra)} for table `{table}`")
    columns = {f.name: [_coerce(f, r.get(f.name)) for r in rows] for f in schema}
    return pa.table(columns, schema=schema)


def write_part(
    run_dir: str | os.PathLike, table: str, part: str, rows: list[dict], kind: str | None = None
) -> Path:
    """Write ``rows`` as part file ``<run_dir>/reports/<table>/part-<part>.parquet``
    (``kind``: the study kind's columns only, see :func:`make_table`).

    Atomic (temporary name, then rename). Returns the path.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tbl = make_table(table, rows, kind)
    path = Path(run_dir) / "reports" / table / f"part-{part}.parquet"
    sink = pa.BufferOutputStream()
    pq.write_table(tbl, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
    return path


def part_exists(run_dir: str | os.PathLike, table: str, part: str) -> bool:
    """Whether ``part-<part>.parquet`` of ``table`` is already written (resume)."""
    return (Path(run_dir) / "reports" / table / f"part-{part}.parquet").is_file()


def read_part(run_dir: str | os.PathLike, table: str, part: str) -> list[dict]:
    """The rows of one part file as Python dicts (nulls stay None, ints stay int)."""
    import pyarrow.parquet as pq

    path = Path(run_dir) / "reports" / table / f"part-{part}.parquet"
    return pq.read_table(path, schema=_schemas()[table]).to_pylist()


def read_table(run_dir: str | os.PathLike, table: str):
    """All part files of ``table`` as one pandas DataFrame (empty with the schema's
    columns when none is written yet).

    A kind's own column (:func:`kind_columns`) appears only when some part sets it;
    integer columns holding nulls stay integers (pandas ``Int64``), the others are
    ``int64``.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(run_dir) / "reports" / table
    files = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    schema = _schemas()[table]
    if not files:
        return schema.empty_table().to_pandas()
    data = pa.concat_tables([pq.read_table(f, schema=schema) for f in files])
    own = kind_columns(table) | optional_columns(table)  # kinds' own and K-fold columns
    keep = [n for n in data.column_names if n not in own or data.column(n).null_count < len(data)]
    data = data.select(keep)
    frame = data.to_pandas()
    for name in keep:  # an integer column with nulls: Int64, not float64
        column = data.column(name)
        if pa.types.is_integer(column.type) and column.null_count:
            frame[name] = column.to_pandas(types_mapper={column.type: pd.Int64Dtype()}.get)
    return frame
