"""Losses for scoring ensembles: regression, binary and multi-class classification.

Every function has the same signature, ``loss(y_true, y_pred) -> float``, and returns
the mean over samples. `LOSSES` maps each name to ``(function, greater_is_better)`` so
that an optimizer can minimize ``sign * loss`` without knowing which loss it holds:
`mae`, `mse` and `log_loss` are minimized, `accuracy` is maximized.

Shapes:
    regression (`mae`, `mse`): ``y_true`` (n_samples,), ``y_pred`` (n_samples,).
    binary (`log_loss`, `accuracy`): ``y_true`` (n_samples,) in {0, 1},
        ``y_pred`` (n_samples,) probabilities of class 1.
    multi-class (`log_loss`, `accuracy`): ``y_true`` (n_samples,) integer labels in
        [0, n_classes), ``y_pred`` (n_samples, n_classes) class probabilities.

NaN in ``y_pred`` propagates to a NaN loss (the estimators in `weighted` reject NaN
predictions before they get here).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from dlpipe.metrics import get_metric

EPSILON = 1e-7
"""Probabilities are clipped to ``[EPSILON, 1 - EPSILON]`` before logs (as Keras)."""


def _check_regression(y_true, y_pred, name: str) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim != 1 or y_pred.shape != y_true.shape:
        raise ValueError(
            f"`{name}` expects `y_true` and `y_pred` of the same shape (n_samples,). "
            f"Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
        )
    if y_true.size == 0:
        raise ValueError(f"`{name}` needs at least 1 sample. Received: y_true.shape={y_true.shape}")
    return y_true, y_pred


def _check_classification(y_true, y_pred, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validates binary ((n,), (n,)) or multi-class ((n,), (n, k)) inputs.

    Returns ``y_true`` as float64 for binary and as int64 labels for multi-class.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim != 1 or y_pred.ndim not in (1, 2) or y_pred.shape[0] != y_true.shape[0]:
        raise ValueError(
            f"`{name}` expects `y_true` of shape (n_samples,) and `y_pred` of shape "
            "(n_samples,) (binary) or (n_samples, n_classes) (multi-class). "
            f"Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
        )
    if y_true.size == 0:
        raise ValueError(f"`{name}` needs at least 1 sample. Received: y_true.shape={y_true.shape}")
    if y_pred.ndim == 1:
        y_true = y_true.astype(np.float64)
        if np.any((y_true < 0) | (y_true > 1)):
            raise ValueError(
                f"`{name}` (binary) expects `y_true` in [0, 1]. "
                f"Received: min={y_true.min()}, max={y_true.max()}"
            )
        return y_true, y_pred
    n_classes = y_pred.shape[1]
    if n_classes < 2:
        raise ValueError(
            f"`{name}` (multi-class) expects `y_pred` with n_classes >= 2. "
            f"Received: y_pred.shape={y_pred.shape}"
        )
    labels = y_true.astype(np.int64)
    if np.any(labels != y_true) or np.any((labels < 0) | (labels >= n_classes)):
        raise ValueError(
            f"`{name}` (multi-class) expects integer labels in [0, {n_classes}) in "
            f"`y_true`. Received: y_true.shape={y_true.shape}, "
            f"min={y_true.min()}, max={y_true.max()}"
        )
    return labels, y_pred


def mae(y_true, y_pred) -> float:
    """Mean absolute error, ``mean(|y_true - y_pred|)``.

    Args:
        y_true: targets, shape (n_samples,).
        y_pred: predictions, shape (n_samples,), same unit as ``y_true``.

    Returns:
        The MAE in the unit of ``y_true`` (lower is better).

    Raises:
        ValueError: if the shapes differ, are not 1-D, or are empty.
    """
    y_true, y_pred = _check_regression(y_true, y_pred, "mae")
    return float(np.mean(np.abs(y_true - y_pred)))


def mse(y_true, y_pred) -> float:
    """Mean squared error, ``mean((y_true - y_pred) ** 2)``.

    Args:
        y_true: targets, shape (n_samples,).
        y_pred: predictions, shape (n_samples,).

    Returns:
        The MSE in squared units of ``y_true`` (lower is better).

    Raises:
        ValueError: if the shapes differ, are not 1-D, or are empty.
    """
    y_true, y_pred = _check_regression(y_true, y_pred, "mse")
    return float(np.mean((y_true - y_pred) ** 2))


def clip_probabilities(y_pred: np.ndarray) -> np.ndarray:
    """Clips probabilities to ``[EPSILON, 1 - EPSILON]``; rows renormalized if 2-D.

    Args:
        y_pred: shape (n_samples,) probabilities of class 1, or (n_samples, n_classes).

    Returns:
        A new float64 array of the same shape.
    """
    clipped = np.clip(np.asarray(y_pred, dtype=np.float64), EPSILON, 1.0 - EPSILON)
    if clipped.ndim == 2:
        clipped /= clipped.sum(axis=1, keepdims=True)
    return clipped


def log_loss(y_true, y_pred) -> float:
    """Cross-entropy of predicted probabilities (binary or multi-class).

    Binary: ``-mean(y log p + (1 - y) log(1 - p))`` with ``p`` clipped to
    ``[EPSILON, 1 - EPSILON]``. Multi-class: ``-mean(log p[i, y_i])`` with each row
    clipped to ``[EPSILON, 1 - EPSILON]`` and then renormalized to sum to 1.

    Args:
        y_true: shape (n_samples,); binary targets in [0, 1] or integer class labels.
        y_pred: shape (n_samples,) probabilities of class 1, or (n_samples, n_classes)
            class probabilities.

    Returns:
        The mean log loss in nats (lower is better).

    Raises:
        ValueError: on mismatched shapes, binary targets outside [0, 1], or
            multi-class labels that are not integers in [0, n_classes).
    """
    y_true, y_pred = _check_classification(y_true, y_pred, "log_loss")
    p = clip_probabilities(y_pred)
    if p.ndim == 1:
        return float(-np.mean(y_true * np.log(p) + (1.0 - y_true) * np.log1p(-p)))
    return float(-np.mean(np.log(p[np.arange(p.shape[0]), y_true])))


def accuracy(y_true, y_pred) -> float:
    """Fraction of correct predictions (a score: greater is better).

    Binary: class 1 is predicted where ``y_pred > 0.5`` (as `keras.metrics.
    BinaryAccuracy`); multi-class: the predicted class is ``argmax(y_pred, axis=1)``
    (first maximum on ties).

    Args:
        y_true: shape (n_samples,); binary targets in {0, 1} or integer class labels.
        y_pred: shape (n_samples,) probabilities of class 1, or (n_samples, n_classes).

    Returns:
        Accuracy in [0, 1]. `LOSSES` marks it ``greater_is_better=True``.

    Raises:
        ValueError: on mismatched shapes or invalid labels (see `log_loss`).
    """
    y_true, y_pred = _check_classification(y_true, y_pred, "accuracy")
    if y_pred.ndim == 1:
        predicted = (y_pred > 0.5).astype(np.float64)
    else:
        predicted = np.argmax(y_pred, axis=1)
    return float(np.mean(predicted == y_true))


LOSSES: dict[str, tuple[Callable[[np.ndarray, np.ndarray], float], bool]] = {
    name: (function, get_metric(name).higher_is_better)
    for name, function in (
        ("mae", mae),
        ("mse", mse),
        ("log_loss", log_loss),
        ("accuracy", accuracy),
    )
}
"""name -> (function, greater_is_better); the direction comes from the one metric table,
:data:`dlpipe.metrics.METRICS`."""


def get_loss(name: str) -> tuple[Callable[[np.ndarray, np.ndarray], float], bool]:
    """Looks up a loss by name.

    Args:
        name: a key of `LOSSES`.

    Returns:
        ``(function, greater_is_better)``.

    Raises:
        ValueError: if ``name`` is not a key of `LOSSES`.
    """
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"`loss` must be one of {sorted(LOSSES)}. Received: loss={name!r}")
    return LOSSES[name]
