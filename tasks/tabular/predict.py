"""Predictions for new table rows (issue 15): the table is read and its feature columns
checked as preparation reads them (:func:`dlpipe.tasks.tabular.read.read_table_file`,
:func:`dlpipe.tasks.tabular.data.read_columns`), then encoded with the stored training
encoding by the functions that encoded the training rows
(:func:`dlpipe.tasks.tabular.data.scale`: normalized, a missing cell filled with the
training mean; :func:`~dlpipe.tasks.tabular.data.one_hot_rows`: the training
categories, an unseen category an all-zero row).

Plain numpy and pandas, no Ray, no TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from dlpipe.tasks.tabular.data import TabularDataSpec, one_hot_rows, read_columns, scale
from dlpipe.tasks.tabular.read import ROWS_SUFFIX, read_table_file, read_table_or_rows


def predict_state(spec: TabularDataSpec, meta: dict) -> dict:
    """The preprocessing state of a prepared table (JSON-able): the ``data`` section,
    the task, target and class names, the feature columns in order, and the training
    encoding (``input_columns``, per numeric column ``mean``/``std``, per categorical
    column ``categories``)."""
    return {
        "kind": "tabular",
        "dataset_key": meta["key"],
        "data": asdict(spec),
        "task": meta["task"],
        "target": meta["target"],
        "class_names": list(meta["class_names"]),
        "features": list(meta["features"]),
        "input_columns": list(meta["input_columns"]),
        "mean": dict(meta["mean"]),
        "std": dict(meta["std"]),
        "categories": {k: list(v) for k, v in meta["categories"].items()},
    }


def encode_table(state: dict, path) -> tuple[np.ndarray, dict, dict]:
    """``(x float32 (rows, inputs), ids, unseen)`` of a new table.

    Args:
        state: :func:`predict_state` of the study's dataset.
        path: a ``.csv``/``.tsv``/``.parquet`` table holding the feature columns (any
            order; other columns, the target among them, are ignored).

    Returns:
        ``x`` in the training input columns' order; ``ids`` = ``{"row": 0-based data
        rows}``; ``unseen`` = ``{column: rows holding a category not seen in training}``
        (only columns with any).

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file and the field: a feature column absent, a
            non-number in a numeric column (with its line).
    """
    table = read_table_or_rows(path)
    columns = [str(c) for c in table.frame.columns]
    absent = [c for c in state["features"] if c not in columns]
    if absent:
        raise ValueError(
            f"{table.source}: field(s) {absent}: feature column(s) the model was trained on "
            f"are not in the table; its columns are {columns}"
        )
    data = dict(state["data"])
    data["features"], data["categorical"] = tuple(data["features"]), tuple(data["categorical"])
    values, _ = read_columns(table, TabularDataSpec(**data), state["features"])
    blocks, unseen = [], {}
    for column, (cells, missing) in values.items():
        if column in state["categories"]:
            matrix, count = one_hot_rows(cells, missing, state["categories"][column])
            blocks.append(matrix)
            if count:
                unseen[column] = count
            continue
        scaled = scale(cells, state["mean"][column], state["std"][column])
        blocks.append(scaled[:, None].astype(np.float32))
    x = np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)
    return x, {"row": np.arange(len(x), dtype=np.int64)}, unseen


def write_table_shards(path, folder, size: int) -> list[dict]:
    """A table's rows cut into shards of ``size`` rows under ``folder`` ->
    ``[{"path", "offset"}]`` (``offset``: the shard's first 0-based data row).

    A Parquet table is not copied: each shard is a small JSON file naming the table and
    its rows (``*.rows.json``, read by :func:`~dlpipe.tasks.tabular.read.read_rows`), so
    cutting a large table costs its metadata only. Shards follow the table's row groups
    (a Parquet file is read a row group at a time): consecutive groups are joined up to
    ``size`` rows, a larger group is cut into pieces of about ``size`` rows. A CSV/TSV
    table is read and its rows written as Parquet files.
    """
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(path).expanduser()
    if source.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(source).metadata
        group_rows = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        out = []
        for start, stop in row_group_shards(group_rows, size):
            shard = folder / f"shard-{start:09d}{ROWS_SUFFIX}"
            spec = {"source": str(source.resolve()), "start": start, "stop": stop}
            shard.write_text(json.dumps(spec))
            out.append({"path": str(shard), "offset": start})
        return out
    frame = read_table_file(path).frame
    out = []
    for i in range(0, len(frame), size):
        shard = folder / f"shard-{i:09d}.parquet"
        frame.iloc[i : i + size].to_parquet(shard, index=False)
        out.append({"path": str(shard), "offset": i})
    return out


def row_group_shards(group_rows: list[int], size: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` row ranges covering a table whose row groups hold
    ``group_rows`` rows: consecutive groups joined while the range stays within ``size``
    rows, a group larger than ``size`` cut into ``round(rows / size)`` near-equal pieces
    (each range within one group, or made of whole groups).

    >>> row_group_shards([7, 7, 7, 7, 2], 15)
    [(0, 14), (14, 28), (28, 30)]
    >>> row_group_shards([1000, 500], 300)
    [(0, 333), (333, 667), (667, 1000), (1000, 1250), (1250, 1500)]
    """
    out, start, row = [], 0, 0
    for n in group_rows:
        if n > size:
            if row > start:
                out.append((start, row))
            pieces = max(1, round(n / size))
            bounds = [row + (n * k + pieces // 2) // pieces for k in range(pieces + 1)]
            out.extend(zip(bounds[:-1], bounds[1:]))
            start = row = row + n
            continue
        if row + n - start > size:
            out.append((start, row))
            start = row
        row += n
    if row > start:
        out.append((start, row))
    return out
