"""Choosing an ensembling method without overfitting the validation set.

Weights learned on validation data score optimistically on that same data; comparing
methods by those scores favours the most flexible one. `cross_fit_select` compares the
methods by cross-fitting instead (fit on K-1 folds of the validation samples, score on
the held-out fold), then refits the chosen method on all validation samples. The test
set is not touched here: score it once, at the end, with the returned estimator.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from .metrics import get_loss
from .weighted import (
    GreedyEnsembleSelection,
    SimpleAverage,
    WeightedAverage,
    check_predictions,
)

_TIE_RTOL = 1e-9  # cross-fitted scores this close (relative) count as a tie


@dataclasses.dataclass
class CrossFitResult:
    """Outcome of `cross_fit_select`.

    Attributes:
        scores: method name -> mean of the held-out fold losses (raw loss values).
        fold_scores: method name -> (n_folds,) held-out loss of each fold.
        chosen: name of the method with the best cross-fitted score.
        estimator: the chosen method refitted on all validation samples.
        loss: the loss name the scores are in.
        greater_is_better: whether higher scores are better (accuracy).
        n_folds: number of folds.
    """

    scores: dict[str, float]
    fold_scores: dict[str, np.ndarray]
    chosen: str
    estimator: Any
    loss: str
    greater_is_better: bool
    n_folds: int


def default_candidates(loss: str = "mae", random_state: int = 0) -> dict[str, Callable]:
    """The four methods of issue 4 as estimator factories, for `cross_fit_select`.

    Args:
        loss: loss name each estimator optimizes.
        random_state: passed to the estimators that take one.

    Returns:
        Ordered dict: ``simple_average``, ``weighted_nelder_mead``,
        ``weighted_slsqp``, ``greedy_selection``; each value builds a fresh estimator.
    """
    return {
        "simple_average": lambda: SimpleAverage(loss=loss),
        "weighted_nelder_mead": lambda: WeightedAverage(
            loss=loss, method="nelder-mead", random_state=random_state
        ),
        "weighted_slsqp": lambda: WeightedAverage(
            loss=loss, method="slsqp", random_state=random_state
        ),
        "greedy_selection": lambda: GreedyEnsembleSelection(loss=loss, random_state=random_state),
    }


def _fold_indices(n_samples: int, n_folds: int, random_state: int) -> list[np.ndarray]:
    """Shuffled, near-equal folds of ``range(n_samples)`` (seeded)."""
    order = np.random.default_rng(random_state).permutation(n_samples)
    return [np.sort(fold) for fold in np.array_split(order, n_folds)]


def cross_fit_select(
    predictions,
    y_true,
    candidates: Mapping[str, Callable[[], Any]],
    *,
    n_folds: int = 5,
    random_state: int = 0,
    loss: str = "mae",
) -> CrossFitResult:
    """Chooses an ensembling method by cross-fitting on validation predictions.

    For each candidate, a fresh estimator is fitted on K-1 folds of the validation
    samples and scored with ``loss`` on the held-out fold; the K fold scores are
    averaged. The method with the best average wins (on ties within a relative 1e-9,
    the first in ``candidates`` order, so list simpler methods first) and is refitted
    on all samples. The folds are shuffled with
    ``random_state`` and not stratified.

    Args:
        predictions: validation predictions, (n_models, n_samples) or
            (n_models, n_samples, n_classes).
        y_true: validation targets, (n_samples,).
        candidates: method name -> zero-argument factory returning an unfitted
            estimator with ``fit(predictions, y_true)`` and ``predict(predictions)``
            (see `default_candidates`). The estimators may optimize another loss; they
            are compared with ``loss``.
        n_folds: number of folds K, 2 <= K <= n_samples.
        random_state: seed of the fold assignment.
        loss: loss name used to score the held-out folds (see `metrics.LOSSES`).

    Returns:
        A `CrossFitResult` with per-method cross-fitted scores, the chosen name and
        the refitted estimator.

    Raises:
        ValueError: on invalid predictions or targets (see `check_predictions`), an
            empty ``candidates``, a factory that is not callable, or ``n_folds``
            outside [2, n_samples].
    """
    loss_function, greater_is_better = get_loss(loss)
    predictions, y_true = check_predictions(predictions, y_true, loss)
    n_samples = predictions.shape[1]
    if not candidates:
        raise ValueError("`candidates` must name at least 1 method. Received: {}")
    for name, factory in candidates.items():
        if not callable(factory):
            raise ValueError(
                f"`candidates[{name!r}]` must be a factory returning an estimator. "
                f"Received: {factory!r}"
            )
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 2 or n_folds > n_samples:
        raise ValueError(
            f"`n_folds` must be an integer in [2, n_samples={n_samples}]. "
            f"Received: n_folds={n_folds!r}"
        )
    folds = _fold_indices(n_samples, n_folds, random_state)
    fold_scores: dict[str, np.ndarray] = {}
    for name, factory in candidates.items():
        per_fold = np.empty(n_folds)
        for k, held_out in enumerate(folds):
            train = np.concatenate([fold for j, fold in enumerate(folds) if j != k])
            estimator = factory().fit(predictions[:, train], y_true[train])
            per_fold[k] = loss_function(
                y_true[held_out], estimator.predict(predictions[:, held_out])
            )
        fold_scores[name] = per_fold
    scores = {name: float(np.mean(values)) for name, values in fold_scores.items()}
    sign = -1.0 if greater_is_better else 1.0
    best = min(sign * score for score in scores.values())
    tolerance = _TIE_RTOL * max(abs(best), 1e-300)
    # The first candidate within rounding of the best: list simpler methods first.
    chosen = next(name for name, score in scores.items() if sign * score <= best + tolerance)
    estimator = candidates[chosen]().fit(predictions, y_true)
    return CrossFitResult(
        scores=scores,
        fold_scores=fold_scores,
        chosen=chosen,
        estimator=estimator,
        loss=loss,
        greater_is_better=greater_is_better,
        n_folds=n_folds,
    )


def member_diversity(predictions) -> np.ndarray:
    """Pairwise Pearson correlation of the members' predictions.

    Multi-class predictions are flattened per member (samples x classes). A member
    with constant predictions has an undefined correlation: NaN off the diagonal.

    Args:
        predictions: (n_models, n_samples) or (n_models, n_samples, n_classes).

    Returns:
        (n_models, n_models) symmetric matrix, 1 on the diagonal; low values mean
        diverse members (the book, ch. 7.3.3: diversity matters more than the best
        single score).

    Raises:
        ValueError: on invalid predictions (see `check_predictions`).
    """
    predictions, _ = check_predictions(predictions)
    flat = predictions.reshape(predictions.shape[0], -1)
    centered = flat - flat.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", centered, centered))  # (n_models,)
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = (centered @ centered.T) / np.outer(norms, norms)
    correlation = np.clip(correlation, -1.0, 1.0)
    np.fill_diagonal(correlation, 1.0)
    return correlation


__all__ = [
    "CrossFitResult",
    "cross_fit_select",
    "default_candidates",
    "member_diversity",
]
