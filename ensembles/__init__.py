"""Ensembles of stored model predictions (issue 4): pure numpy/scipy, no Ray or Keras.

Public API:
    metrics: `mae`, `mse`, `log_loss`, `accuracy`, and `LOSSES` (name ->
        (function, greater_is_better)).
    weighted: `SimpleAverage`, `WeightedAverage` (Nelder-Mead or SLSQP on the
        probability simplex, Chollet DLwP ch. 7.3.3), `GreedyEnsembleSelection`
        (Caruana et al., 2004), all scikit-learn shaped (``fit`` returns self,
        ``weights_``, ``predict``); `combine` (stored weights applied to members).
    best_single: `BestSingleMember` (the member with the best loss, one-hot weights:
        the reference every ensemble must beat), in the same shape.
    selection: `cross_fit_select` (choose the method by cross-fitting on validation
        folds, then refit on all validation data) and `member_diversity`.
"""

from .best_single import BestSingleMember
from .metrics import LOSSES, accuracy, get_loss, log_loss, mae, mse
from .selection import (
    CrossFitResult,
    cross_fit_select,
    default_candidates,
    member_diversity,
)
from .weighted import (
    GreedyEnsembleSelection,
    NotFittedError,
    SimpleAverage,
    WeightedAverage,
    check_predictions,
    combine,
)

__all__ = [
    "LOSSES",
    "BestSingleMember",
    "CrossFitResult",
    "GreedyEnsembleSelection",
    "NotFittedError",
    "SimpleAverage",
    "WeightedAverage",
    "accuracy",
    "check_predictions",
    "combine",
    "cross_fit_select",
    "default_candidates",
    "get_loss",
    "log_loss",
    "mae",
    "member_diversity",
    "mse",
]
