"""Per-fold datasets of a tabular K-fold study (book ch. 3.6.4 with 3.6.2): plain
functions, no Ray (:func:`dlpipe.tasks.remote.tabular_folds_task` runs
:func:`fold_arrays` as one Ray task).

The table is read and split as :func:`dlpipe.tasks.tabular.data.prepare_tabular` does
(same kept rows, same test split); the folds partition every non-test row
(:func:`dlpipe.tasks.training.folds.make_folds`). Each fold's arrays are encoded with
the statistics of that fold's TRAINING rows only (mean/std, one-hot categories), its
validation and the test rows with them; the final model's arrays (every non-test row
trains, no validation rows) with the statistics of all non-test rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlpipe.tasks.tabular.data import (
    TabularDataSpec,
    TabularSplitSpec,
    check_target_varies,
    encode_features,
    read_split_rows,
)
from dlpipe.tasks.training.classifier import SPLIT_CODES
from dlpipe.tasks.training.folds import TEST, TRAIN, fold_codes, make_folds


def encode_fold(read: dict, codes: np.ndarray) -> tuple[dict, dict]:
    """``(arrays, encoding)`` of the kept rows under split ``codes``, encoded with the
    statistics of the rows coded TRAIN only (:func:`encode_features`)."""
    x, encoding = encode_features(read["columns"], read["rows"], codes == TRAIN, read["file"])
    arrays = {
        "x": x,
        "labels": read["labels"],
        "split": codes,
        "rows": read["rows"].astype(np.int64),
    }
    return arrays, encoding


def fold_arrays(
    spec: TabularDataSpec,
    split: TabularSplitSpec,
    task: str | None,
    run_dir: str | Path | None,
    evaluation,
    seed: int,
) -> list[tuple[dict, dict]]:
    """The arrays of every fold and of the final model.

    Args:
        spec, split, task, run_dir: as :func:`dlpipe.tasks.tabular.data.prepare_tabular`.
        evaluation: the study's :class:`~dlpipe.pipelines.sections.EvaluationSpec`
            (``k``, ``repeats``, ``stratify``).
        seed: the study seed (fold shuffles, :func:`dlpipe.tasks.training.folds.repeat_seed`).

    Returns:
        ``repeats * k`` fold entries (repeat-major) then the final model's entry; each
        ``(arrays, info)``: arrays as ``prepare_tabular``'s; info: ``repeat``, ``fold``
        (None for the final), ``split_counts`` and the encoding (``input_columns``,
        ``mean``, ``std``, ``categories``...).

    Raises:
        ValueError: too few non-test rows (or rows of a class, stratified) for ``k``.
    """
    read = read_split_rows(spec, split, task, run_dir)
    codes = read["codes"]
    pool = np.flatnonzero(codes != TEST)  # the non-test rows, positions among kept rows
    classification = bool(read["class_names"])
    stratified = evaluation.stratify(classification) and classification
    folds = make_folds(
        len(pool),
        evaluation.k,
        repeats=evaluation.repeats,
        labels=read["labels"][pool] if stratified else None,
        seed=seed,
        class_names=read["class_names"] or None,
    )
    out = []
    for fold in folds:
        fc = fold_codes(codes, pool[fold.train], pool[fold.validation])
        out.append(fold_entry(read, fc, fold.repeat, fold.fold))
    final = fold_codes(codes, pool, np.zeros(0, dtype=np.int64))
    out.append(fold_entry(read, final, None, None))
    return out


def fold_entry(read: dict, codes: np.ndarray, repeat, fold) -> tuple[dict, dict]:
    """``(arrays, info)`` of one fold (or the final model: ``repeat``/``fold`` None)."""
    if not read["class_names"]:
        check_target_varies(read["labels"], codes == TRAIN, read["target"], read["file"])
    arrays, encoding = encode_fold(read, codes)
    counts = {name: int((codes == c).sum()) for name, c in SPLIT_CODES.items()}
    return arrays, {"repeat": repeat, "fold": fold, "split_counts": counts, **encoding}
