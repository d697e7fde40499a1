"""K-fold and iterated K-fold validation folds (book ch. 3.6.4, listing 3.27; 2nd ed. 4.2).

Plain numpy, no Ray. The folds partition the rows a study may train and validate on
(every row but the test split): per repeat, ``k`` disjoint validation folds that cover
each of those rows exactly once; a fold's training rows are the other ``k - 1`` folds.
Stratified folds deal each class's shuffled rows round-robin over the folds, so every
fold holds within one sample of its share of each class. Iterated K-fold reshuffles
before each repeat, with a seed derived from the study seed and the repeat.

Forward chaining (time series, :func:`forward_chaining_folds`) never shuffles: the
time-ordered rows are cut into ``folds + 1`` consecutive blocks; fold ``j`` trains on
blocks ``0..j`` (an expanding window) and validates on block ``j + 1``, so no fold
trains on rows later than the ones it is validated on.

:func:`aggregate_row` sums up one model's fold runs (mean and std over the folds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlpipe.tasks.training.classifier import SPLIT_CODES
from dlpipe.tasks.training.records import RunResult

TRAIN, VALIDATION, TEST = (SPLIT_CODES[s] for s in ("train", "validation", "test"))


@dataclass(frozen=True)
class Fold:
    """One validation fold of one repeat.

    Attributes:
        repeat: 0-based repeat (always 0 for plain K-fold).
        fold: 0-based fold within its repeat.
        train: sorted row positions (into the array the folds were made from) that
            train this fold's model.
        validation: sorted row positions that validate it.
    """

    repeat: int
    fold: int
    train: np.ndarray
    validation: np.ndarray


def repeat_seed(seed: int, repeat: int) -> np.random.Generator:
    """The shuffle of one repeat: a generator seeded by ``(seed, repeat)``, so each repeat
    is reshuffled and the same study seed always gives the same partitions."""
    return np.random.default_rng([int(seed), int(repeat)])


def check_fold_counts(n: int, k: int, labels: np.ndarray | None, class_names=None) -> None:
    """Enough rows for ``k`` folds (and, stratified, enough rows of every class).

    Args:
        n: rows to partition.
        k: folds.
        labels: int class codes of those rows when stratified, else None.
        class_names: names of the codes, for the message (default: the codes).

    Raises:
        ValueError: naming the counts: fewer rows than folds, or a class with fewer
            rows than folds under stratification.
    """
    if n < k:
        raise ValueError(f"K-fold needs at least k rows: {n} non-test row(s) for k={k}")
    if labels is None:
        return
    counts = np.bincount(np.asarray(labels, np.int64))
    for code, count in enumerate(counts):
        if 0 < count < k:
            name = class_names[code] if class_names is not None else code
            raise ValueError(
                f"stratified K-fold needs at least k rows per class: class {name!r} has "
                f"{count} non-test row(s) for k={k} (use fewer folds or `stratified: false`)"
            )


def make_folds(
    n: int,
    k: int,
    *,
    repeats: int = 1,
    labels: np.ndarray | None = None,
    seed: int = 0,
    class_names=None,
) -> list[Fold]:
    """The folds of ``repeats`` shuffled K-fold partitions of ``n`` rows.

    Args:
        n: rows to partition (positions ``0..n-1``).
        k: folds per repeat (>= 2).
        repeats: partitions, each reshuffled (:func:`repeat_seed`).
        labels: ``(n,)`` int class codes: stratify by class; None: plain shuffle.
        seed: the study seed.
        class_names: names of the class codes (error messages only).

    Returns:
        ``repeats * k`` folds, repeat-major; per repeat, fold sizes differ by at most 1.

    Raises:
        ValueError: ``k < 2`` or ``repeats < 1``; too few rows (:func:`check_fold_counts`).
    """
    if k < 2 or repeats < 1:
        raise ValueError(
            f"K-fold needs k >= 2 and repeats >= 1. Received: k={k}, repeats={repeats}"
        )
    check_fold_counts(n, k, labels, class_names)
    folds = []
    for repeat in range(repeats):
        rng = repeat_seed(seed, repeat)
        if labels is None:
            order = rng.permutation(n)
        else:
            labels = np.asarray(labels)
            order = np.concatenate(
                [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
            )
        assigned = np.empty(n, dtype=np.int64)
        assigned[order] = np.arange(n) % k  # round-robin: each class spread evenly
        for fold in range(k):
            folds.append(
                Fold(
                    repeat,
                    fold,
                    np.flatnonzero(assigned != fold),
                    np.flatnonzero(assigned == fold),
                )
            )
    return folds


def forward_chaining_folds(n: int, folds: int) -> list[Fold]:
    """Time-ordered folds with expanding training windows over rows ``0..n-1``.

    The rows are cut into ``folds + 1`` consecutive blocks of nearly equal length
    (edges ``round(linspace(0, n, folds + 2))``); fold ``j`` trains on every row before
    block ``j + 1`` and validates on block ``j + 1``.

    Args:
        n: time-ordered rows (positions ``0..n-1``, earliest first).
        folds: number of folds (>= 1).

    Returns:
        ``folds`` :class:`Fold` (``repeat`` 0), each with ``train = arange(0, s)`` and
        ``validation = arange(s, e)``: every training position is below every
        validation position, and each fold's training rows hold the previous fold's.

    Raises:
        ValueError: ``folds < 1`` or fewer than ``folds + 1`` rows.
    """
    if folds < 1 or n < folds + 1:
        raise ValueError(
            f"forward chaining needs folds >= 1 and at least folds + 1 rows. "
            f"Received: folds={folds}, rows={n}"
        )
    edges = np.linspace(0, n, folds + 2).round().astype(np.int64)
    return [
        Fold(0, j, np.arange(0, edges[j + 1]), np.arange(edges[j + 1], edges[j + 2]))
        for j in range(folds)
    ]


def fold_codes(codes: np.ndarray, train: np.ndarray, validation: np.ndarray) -> np.ndarray:
    """Split codes of one fold: the test rows stay test, ``train``/``validation``
    (positions into ``codes``) become the training and validation rows."""
    out = np.full(len(codes), TEST, dtype=np.int8)
    out[train] = TRAIN
    out[validation] = VALIDATION
    return out


def split_code_folds(
    codes: np.ndarray, labels: np.ndarray, evaluation, seed: int, class_names=None
) -> list[tuple[int | None, int | None, np.ndarray]]:
    """The split codes of every K-fold fold of a classification dataset, then the final
    model's (every non-test row trains): the folds partition the non-test rows
    (:func:`make_folds`, stratified by class unless ``stratified: false``).

    Args:
        codes: ``(n,)`` split codes (:data:`~dlpipe.tasks.training.classifier.SPLIT_CODES`).
        labels: ``(n,)`` int class codes.
        evaluation: the study's :class:`~dlpipe.pipelines.sections.EvaluationSpec`.
        seed: the study seed (fold shuffles).
        class_names: names of the class codes (error messages).

    Returns:
        ``repeats * k`` ``(repeat, fold, codes)`` (repeat-major), then
        ``(None, None, codes)`` of the final model.

    Raises:
        ValueError: too few non-test rows (or rows of a class, stratified) for ``k``.
    """
    pool = np.flatnonzero(np.asarray(codes) != TEST)
    stratified = evaluation.stratify(True)
    folds = make_folds(
        len(pool),
        evaluation.k,
        repeats=evaluation.repeats,
        labels=np.asarray(labels)[pool] if stratified else None,
        seed=seed,
        class_names=class_names,
    )
    out = [(f.repeat, f.fold, fold_codes(codes, pool[f.train], pool[f.validation])) for f in folds]
    out.append((None, None, fold_codes(codes, pool, np.zeros(0, dtype=np.int64))))
    return out


def split_counts(codes: np.ndarray) -> dict:
    """Rows per split of split ``codes`` (``{split: count}``)."""
    return {s: int((np.asarray(codes) == c).sum()) for s, c in SPLIT_CODES.items()}


def class_counts(codes: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """Rows per class of every split (``{split: [count per class]}``)."""
    codes, labels = np.asarray(codes), np.asarray(labels)
    return {
        s: np.bincount(labels[codes == c], minlength=num_classes).tolist()
        for s, c in SPLIT_CODES.items()
    }


def aggregate_row(run_id: str, folds) -> RunResult:
    """The model's aggregate ``runs`` row over its fold rows (a ``runs`` frame): mean and
    std (ddof=0) of ``val_loss``/``val_metric`` over the ok folds, ``folds`` = their
    count; failed when any fold failed (a K-fold study's ``mean`` row,
    :mod:`dlpipe.pipelines.kfold`, and a K-fold sweep trial's,
    :mod:`dlpipe.tasks.sweep.kfold_trial`)."""
    ok = folds[folds["status"] == "ok"]
    first = (ok if len(ok) else folds).iloc[0]
    bad = len(folds) - len(ok)
    row = {
        "run_id": run_id,
        "evaluation": "mean",
        "folds": len(ok),
        "status": "ok" if bad == 0 and len(ok) else "failed",
        "error": f"{bad} of {len(folds)} fold run(s) failed" if bad else None,
        "wall_time_s": float(folds["wall_time_s"].sum()),
    }
    for name in ("family", "hyperparameters", "seed", "metric", "inputs", "resources"):
        row[name] = first[name]
    if len(ok):
        row.update(params=int(first["params"]), devices=first["devices"], node=first["node"])
    for name in ("val_loss", "val_metric"):
        values = ok[name].to_numpy(np.float64)
        row[name] = float(values.mean()) if len(values) else float("nan")
        row[f"{name}_std"] = float(values.std()) if len(values) else float("nan")
    return RunResult(row)
