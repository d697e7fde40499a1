"""Ensembles of stored model predictions: simple, weighted and greedy averages.

The estimators follow the scikit-learn shape (``fit`` returns ``self``, fitted state in
attributes ending in ``_``, a fixed default ``random_state``) but take the members'
predictions instead of features:

    predictions: (n_models, n_samples) for regression and binary classification
        (probabilities of class 1), or (n_models, n_samples, n_classes) for multi-class
        classification (class probabilities).
    y_true: (n_samples,) targets, binary targets or integer class labels.

An ensemble predicts ``sum_j weights_[j] * predictions[j]`` with ``weights_`` on the
probability simplex (>= 0, sum 1), so an ensemble of probabilities is a probability.

Sources:
    F. Chollet, *Deep Learning with Python*, ch. 7.3.3 (model ensembling): a weighted
        average with weights learned on validation data, e.g. by Nelder-Mead.
    R. Caruana, A. Niculescu-Mizil, G. Crew, A. Ksikes, "Ensemble selection from
        libraries of models", ICML 2004: greedy forward selection with replacement.
    scipy.optimize.minimize, methods "Nelder-Mead" (with ``adaptive=True``, Gao & Han
        2012) and "SLSQP".
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import optimize

from .metrics import EPSILON, get_loss


class NotFittedError(ValueError, AttributeError):
    """Raised by ``predict`` before ``fit`` (as scikit-learn's ``NotFittedError``)."""


# ----------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------

_REGRESSION_LOSSES = ("mae", "mse")


def check_predictions(predictions, y_true=None, loss: str | None = None):
    """Validates a stack of member predictions (and targets) and converts to float64.

    Args:
        predictions: array of shape (n_models, n_samples) or
            (n_models, n_samples, n_classes), or a sequence of n_models arrays of shape
            (n_samples,) or (n_samples, n_classes).
        y_true: optional targets of shape (n_samples,).
        loss: optional loss name; checks the prediction shape fits it (`mae`/`mse`
            need (n_models, n_samples)).

    Returns:
        ``predictions`` as a float64 array (n_models, n_samples[, n_classes]), and
        ``y_true`` as a 1-D array (or None when not given).

    Raises:
        ValueError: fewer than 1 model, a member whose shape differs from member 0's or
            from ``y_true``, non-finite predictions, or a shape the loss cannot score.
            The message names the offending member index and the shapes.
    """
    if isinstance(predictions, np.ndarray):
        stacked = predictions
    else:
        members = [np.asarray(member) for member in predictions]
        if not members:
            raise ValueError("`predictions` must hold at least 1 model. Received: 0 members")
        for index, member in enumerate(members):
            if member.shape != members[0].shape:
                raise ValueError(
                    f"`predictions` member {index} has shape {member.shape}, but "
                    f"member 0 has shape {members[0].shape}. All members must predict "
                    "the same samples."
                )
            if y_true is not None and (member.ndim == 0 or member.shape[0] != np.shape(y_true)[0]):
                raise ValueError(
                    f"`predictions` member {index} has shape {member.shape}, which "
                    f"does not match `y_true` of shape {np.shape(y_true)}."
                )
        stacked = np.stack(members)
    if not np.issubdtype(stacked.dtype, np.number) or np.iscomplexobj(stacked):
        raise ValueError(
            "`predictions` must be real numbers. "
            f"Received: dtype={stacked.dtype}, shape={stacked.shape}"
        )
    stacked = np.asarray(stacked, dtype=np.float64)
    if stacked.ndim not in (2, 3):
        raise ValueError(
            "`predictions` must have shape (n_models, n_samples) or "
            f"(n_models, n_samples, n_classes). Received: shape={stacked.shape}"
        )
    if stacked.shape[0] < 1:
        raise ValueError(
            f"`predictions` must hold at least 1 model. Received: shape={stacked.shape}"
        )
    if stacked.shape[1] < 1:
        raise ValueError(
            f"`predictions` must hold at least 1 sample. Received: shape={stacked.shape}"
        )
    finite = np.isfinite(stacked.reshape(stacked.shape[0], -1))
    bad_members = np.flatnonzero(~finite.all(axis=1))
    if bad_members.size:
        index = int(bad_members[0])
        count = int((~finite[index]).sum())
        raise ValueError(
            f"`predictions` member {index} contains {count} non-finite value(s) (NaN "
            f"or inf); members with non-finite values: {bad_members.tolist()}. "
            f"Received: shape={stacked.shape}"
        )
    if loss in _REGRESSION_LOSSES and stacked.ndim != 2:
        raise ValueError(
            f"`predictions` must have shape (n_models, n_samples) for loss={loss!r}. "
            f"Received: shape={stacked.shape}"
        )
    if y_true is None:
        return stacked, None
    y_true = np.asarray(y_true)
    if y_true.ndim != 1 or y_true.shape[0] != stacked.shape[1]:
        raise ValueError(
            f"`y_true` must have shape (n_samples,) = ({stacked.shape[1]},) to match "
            f"`predictions` of shape {stacked.shape} (every member, from member 0, "
            f"predicts {stacked.shape[1]} samples). "
            f"Received: y_true.shape={y_true.shape}"
        )
    if not np.all(np.isfinite(y_true.astype(np.float64))):
        raise ValueError(
            "`y_true` must be finite. "
            f"Received: {int((~np.isfinite(y_true.astype(np.float64))).sum())} "
            f"non-finite value(s), shape={y_true.shape}"
        )
    return stacked, y_true


def _combine(weights: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """``sum_j weights[j] * predictions[j]``: (n_models,) x (n_models, ...) -> (...)."""
    return np.tensordot(weights, predictions, axes=1)


def combine(weights, predictions) -> np.ndarray:
    """Combines member predictions with given (stored) weights: what a fitted
    ensemble's ``predict`` computes, for weights read back from the ``ensembles``
    report (issue 15: ``dlpipe predict --model ensemble``).

    Args:
        weights: (n_models,), >= 0.
        predictions: (n_models, n_samples[, n_classes]), the members in the weights'
            order.

    Returns:
        (n_samples,) or (n_samples, n_classes): ``sum_j weights[j] * predictions[j]``.

    Raises:
        ValueError: invalid predictions (:func:`check_predictions`), or a number of
            weights that differs from the members.
    """
    predictions, _ = check_predictions(predictions)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if weights.shape[0] != predictions.shape[0]:
        raise ValueError(
            f"`weights` must hold one weight per member ({predictions.shape[0]}). "
            f"Received: {weights.shape[0]} weights"
        )
    return _combine(weights, predictions)


def _unique_members(predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups members whose predictions are exactly identical.

    Args:
        predictions: (n_models, n_samples[, n_classes]) float64.

    Returns:
        ``first`` (n_unique,): index of the first member of each group, ascending;
        ``group`` (n_models,): the group of each member.
    """
    n_models = predictions.shape[0]
    flat = predictions.reshape(n_models, -1)
    # Exact keys from up to 256 evenly spaced values (identical members share their
    # key); members with equal keys are then compared in full. No arithmetic here:
    # BLAS may round identical rows of a matmul differently.
    probe = np.unique(np.linspace(0, flat.shape[1] - 1, num=256).astype(np.int64))
    # (+ 0.0 turns -0.0 into 0.0, which compare equal.)
    keys = [(flat[index, probe] + 0.0).tobytes() for index in range(n_models)]
    first: list[int] = []
    group = np.empty(n_models, dtype=np.int64)
    by_key: dict[bytes, list[int]] = {}
    for index in range(n_models):
        candidates = by_key.setdefault(keys[index], [])
        for g in candidates:
            if np.array_equal(flat[first[g]], flat[index]):
                group[index] = g
                break
        else:
            group[index] = len(first)
            candidates.append(len(first))
            first.append(index)
    return np.asarray(first, dtype=np.int64), group


# ----------------------------------------------------------------------------------
# Objectives: sign * loss of a combination, with fast paths per loss
# ----------------------------------------------------------------------------------


class _Objective:
    """Signed loss of ``sum_j w_j P_j`` (lower is better) for w on the simplex.

    The generic version scores with the metric itself, O(m n k) per evaluation, and has
    no gradient. Subclasses precompute what makes repeated evaluation cheap.
    """

    has_gradient = False

    def __init__(self, predictions: np.ndarray, y_true: np.ndarray, loss: str):
        self.predictions = predictions
        self.y_true = y_true
        self.function, greater_is_better = get_loss(loss)
        self.sign = -1.0 if greater_is_better else 1.0

    def value(self, weights: np.ndarray) -> float:
        combined = _combine(weights, self.predictions)
        return self.sign * self.function(self.y_true, combined)

    def gradient(self, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def add_one_values(self, counts: np.ndarray) -> np.ndarray:
        """Signed loss of ``(counts @ P + P_j) / (sum(counts) + 1)`` for each member j.

        Args:
            counts: (n_models,) how often each member is already selected.

        Returns:
            (n_models,) signed losses.
        """
        total = _combine(counts.astype(np.float64), self.predictions)
        size = counts.sum() + 1.0
        return np.array(
            [
                self.sign * self.function(self.y_true, (total + member) / size)
                for member in self.predictions
            ]
        )


class _MSEObjective(_Objective):
    """MSE through the residual Gram matrix: O(m^2) per evaluation after O(m^2 n) once.

    With ``sum(w) == 1`` the ensemble residual is ``w @ R`` with ``R = P - y``, so
    ``mse(w) = w^T H w`` with ``H = R R^T / n`` (no cancellation against ``y``).
    """

    has_gradient = True
    _chunk_samples = 8192  # columns of R materialized at once while building H

    def __init__(self, predictions, y_true, loss):
        super().__init__(predictions, y_true, loss)
        n_models, n_samples = predictions.shape
        y = y_true.astype(np.float64)
        gram = np.zeros((n_models, n_models))
        for start in range(0, n_samples, self._chunk_samples):
            stop = start + self._chunk_samples
            block = predictions[:, start:stop] - y[start:stop]  # (m, chunk)
            gram += block @ block.T
        self.gram = gram / n_samples  # (m, m)

    def value(self, weights):
        return float(max(weights @ self.gram @ weights, 0.0))

    def gradient(self, weights):
        return 2.0 * (self.gram @ weights)

    def add_one_values(self, counts):
        counts = counts.astype(np.float64)
        gram_counts = self.gram @ counts
        size = counts.sum() + 1.0
        values = counts @ gram_counts + 2.0 * gram_counts + np.diag(self.gram)
        return np.maximum(values, 0.0) / size**2


class _MAEObjective(_Objective):
    """MAE with one matmul ``w @ P`` (one pass over the predictions) per evaluation.

    The MAE has no O(m^2) summary like the Gram matrix of `_MSEObjective`, so every
    evaluation reads all predictions; they are held in float32 to halve that memory
    traffic (the fitted weights are then checked with the exact float64 loss). The
    residual ``w @ P - sum(w) * y`` equals ``w @ (P - y)``, so the value and the
    subgradient stay consistent when an optimizer steps slightly off ``sum(w) == 1``.
    """

    has_gradient = True
    _chunk_elements = 2_000_000  # members x samples scored at once by add_one_values

    def __init__(self, predictions, y_true, loss):
        super().__init__(predictions, y_true, loss)
        self.predictions32 = predictions.astype(np.float32)  # (m, n)
        self.y32 = y_true.astype(np.float32)  # (n,)

    def _residual(self, weights):
        weights = np.asarray(weights, dtype=np.float32)
        return weights @ self.predictions32 - weights.sum() * self.y32  # (n,) float32

    def value(self, weights):
        return float(np.mean(np.abs(self._residual(weights)), dtype=np.float64))

    def gradient(self, weights):
        # A subgradient (sign(0) = 0): d/dw_j mean|r| = mean(sign(r) * (P_j - y)).
        signs = np.sign(self._residual(weights))
        gradient = self.predictions32 @ signs - self.y32 @ signs
        return gradient.astype(np.float64) / signs.shape[0]

    def add_one_values(self, counts):
        base = self._residual(counts) - self.y32  # (n,)
        size = counts.sum() + 1.0
        n_models, n_samples = self.predictions32.shape
        step = max(1, self._chunk_elements // n_samples)
        values = np.empty(n_models)
        for start in range(0, n_models, step):
            block = self.predictions32[start : start + step] + base  # (step, n)
            values[start : start + step] = np.abs(block).mean(axis=1, dtype=np.float64)
        return values / size


class _LogLossObjective(_Objective):
    """Log loss with its analytic gradient (zero on clipped entries)."""

    has_gradient = True

    def gradient(self, weights):
        p_raw = _combine(weights, self.predictions)
        n_samples = p_raw.shape[0]
        inside = (p_raw > EPSILON) & (p_raw < 1.0 - EPSILON)
        p = np.clip(p_raw, EPSILON, 1.0 - EPSILON)
        if p.ndim == 1:
            y = self.y_true.astype(np.float64)
            d_p = -(y / p - (1.0 - y) / (1.0 - p)) / n_samples  # (n,)
            return self.predictions @ (d_p * inside)
        # loss = -mean(log c[i, y_i] - log S_i), c = clipped, S_i = sum_k c[i, k]
        rows = np.arange(n_samples)
        labels = self.y_true.astype(np.int64)
        d_c = np.repeat((1.0 / p.sum(axis=1))[:, np.newaxis], p.shape[1], axis=1)
        d_c[rows, labels] -= 1.0 / p[rows, labels]
        d_c *= inside / n_samples  # (n, k)
        return np.tensordot(self.predictions, d_c, axes=([1, 2], [0, 1]))


def _make_objective(predictions, y_true, loss) -> _Objective:
    if loss == "mse":
        return _MSEObjective(predictions, y_true, loss)
    if loss == "mae":
        return _MAEObjective(predictions, y_true, loss)
    if loss == "log_loss":
        return _LogLossObjective(predictions, y_true, loss)
    return _Objective(predictions, y_true, loss)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def _to_simplex(weights: np.ndarray) -> np.ndarray:
    """Clips tiny negatives to 0 and renormalizes so the weights sum to 1."""
    weights = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    total = weights.sum()
    if not np.isfinite(total) or total <= 0.0:
        return np.full(weights.shape, 1.0 / weights.size)
    return weights / total


# ----------------------------------------------------------------------------------
# Estimators
# ----------------------------------------------------------------------------------


class _BaseEnsemble:
    """Shared ``predict``, parameter access and validation."""

    _param_names: tuple[str, ...] = ()

    def get_params(self) -> dict[str, Any]:
        """Returns the constructor parameters as a dict (as scikit-learn)."""
        return {name: getattr(self, name) for name in self._param_names}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def _validate_fit(self, predictions, y_true):
        loss_function, greater_is_better = get_loss(self.loss)
        predictions, y_true = check_predictions(predictions, y_true, self.loss)
        # Scoring every member validates the targets (labels, ranges) for the loss.
        member_scores = np.array([loss_function(y_true, member) for member in predictions])
        self.n_models_ = predictions.shape[0]
        self.prediction_shape_ = predictions.shape[2:]
        self.member_scores_ = member_scores
        return predictions, y_true, loss_function, (-1.0 if greater_is_better else 1.0)

    def predict(self, predictions) -> np.ndarray:
        """Combines member predictions with the fitted weights.

        Args:
            predictions: (n_models, n_samples[, n_classes]), the members in the order
                used for ``fit``.

        Returns:
            (n_samples,) or (n_samples, n_classes): ``sum_j weights_[j] *
            predictions[j]``.

        Raises:
            NotFittedError: if called before ``fit``.
            ValueError: on invalid predictions or a number of members or classes that
                differs from ``fit``.
        """
        if not hasattr(self, "weights_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. "
                "Call `fit(predictions, y_true)` first."
            )
        predictions, _ = check_predictions(predictions)
        if (
            predictions.shape[0] != self.n_models_
            or predictions.shape[2:] != self.prediction_shape_
        ):
            expected = ("n_samples",) + tuple(self.prediction_shape_)
            raise ValueError(
                f"`predictions` must have shape ({self.n_models_}, "
                f"{', '.join(map(str, expected))}) as in `fit`. "
                f"Received: shape={predictions.shape}"
            )
        return _combine(self.weights_, predictions)

    def score(self, predictions, y_true) -> float:
        """The ensemble's ``loss`` on new data (e.g. the test set).

        Args:
            predictions: (n_models, n_samples[, n_classes]).
            y_true: (n_samples,).

        Returns:
            ``loss(y_true, predict(predictions))`` (raw, not signed).
        """
        loss_function, _ = get_loss(self.loss)
        predictions, y_true = check_predictions(predictions, y_true, self.loss)
        return loss_function(y_true, self.predict(predictions))


class SimpleAverage(_BaseEnsemble):
    """Uniform average of all members (the book's baseline, ch. 7.3.3).

    Args:
        loss: name of the loss reported as ``score_`` (see `metrics.LOSSES`).

    Attributes:
        weights_: (n_models,) all ``1 / n_models``.
        score_: loss of the average on the fit data.
        member_scores_: (n_models,) loss of each member on the fit data.
    """

    _param_names = ("loss",)

    def __init__(self, loss: str = "mae"):
        self.loss = loss

    def fit(self, predictions, y_true) -> "SimpleAverage":
        """Sets uniform weights and scores the average.

        Args:
            predictions: (n_models, n_samples[, n_classes]).
            y_true: (n_samples,).

        Returns:
            self.

        Raises:
            ValueError: on invalid inputs (see `check_predictions`) or loss name.
        """
        predictions, y_true, loss_function, _ = self._validate_fit(predictions, y_true)
        self.weights_ = np.full(predictions.shape[0], 1.0 / predictions.shape[0])
        self.score_ = loss_function(y_true, _combine(self.weights_, predictions))
        return self


_METHODS = ("nelder-mead", "slsqp")


class WeightedAverage(_BaseEnsemble):
    """Weighted average with weights on the probability simplex fitted by scipy.

    The weights are learned on validation data (Chollet, DLwP ch. 7.3.3) by
    `scipy.optimize.minimize`:

    * ``"nelder-mead"`` (as in the book): weights are the softmax of free parameters,
      so they are always >= 0 and sum to 1; adaptive Nelder-Mead (Gao & Han 2012),
      which holds up better with many members.
    * ``"slsqp"``: weights optimized directly with bounds ``w >= 0`` (``w <= 1`` is
      implied) and the equality constraint ``sum(w) = 1``; analytic gradient for
      `mse` and `log_loss`, a subgradient for `mae`, finite differences for
      `accuracy` (piecewise constant, so SLSQP stays at the start point). Tiny
      negatives are clipped and the weights renormalized.

    The optimizer starts from the better of the uniform average and the best single
    member (one-hot); the fitted weights are whichever of the start and the optimizer's
    result scores better with the exact loss, so ``score_`` is never worse than the
    best single member nor than the simple average. Members with exactly identical
    predictions are merged before optimizing and share their weight equally. `mse`
    is evaluated through the (n_models x n_models) residual Gram matrix, so its cost
    per step does not depend on n_samples.

    Args:
        loss: loss name (see `metrics.LOSSES`); accuracy is maximized.
        method: ``"nelder-mead"`` or ``"slsqp"``.
        random_state: reserved for stochastic restarts; the fit is deterministic and
            does not use it.
        max_iter: optimizer iterations at most (Nelder-Mead: also at most
            ``2 * max_iter + n_models + 1`` loss evaluations). Bounds the fit time:
            one `mae` evaluation is one pass over the (n_models, n_samples)
            predictions.
        tol: relative tolerance on the loss for convergence.

    Attributes:
        weights_: (n_models,) >= 0, summing to 1.
        score_: loss of the weighted average on the fit data.
        member_scores_: (n_models,) loss of each member on the fit data.
        start_: ``"uniform"`` or ``"member {j}"``, the start point.
        n_iter_: optimizer iterations (0 when there is a single distinct member).
        converged_: whether the optimizer reported success.
    """

    _param_names = ("loss", "method", "random_state", "max_iter", "tol")

    def __init__(
        self,
        loss: str = "mae",
        method: str = "nelder-mead",
        random_state: int = 0,
        max_iter: int = 1000,
        tol: float = 1e-8,
    ):
        self.loss = loss
        self.method = method
        self.random_state = random_state
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, predictions, y_true) -> "WeightedAverage":
        """Learns simplex weights that minimize the loss on ``(predictions, y_true)``.

        Args:
            predictions: (n_models, n_samples[, n_classes]).
            y_true: (n_samples,).

        Returns:
            self.

        Raises:
            ValueError: on invalid inputs (see `check_predictions`), loss name,
                ``method``, ``max_iter`` or ``tol``.
        """
        if self.method not in _METHODS:
            raise ValueError(
                f"`method` must be one of {_METHODS}. Received: method={self.method!r}"
            )
        if not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(
                f"`max_iter` must be an integer >= 1. Received: max_iter={self.max_iter!r}"
            )
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise ValueError(f"`tol` must be a number > 0. Received: tol={self.tol!r}")
        predictions, y_true, loss_function, sign = self._validate_fit(predictions, y_true)
        n_models = predictions.shape[0]

        def exact(weights: np.ndarray) -> float:
            return loss_function(y_true, _combine(weights, predictions))

        # Start: the better of uniform weights and the best single member.
        uniform = np.full(n_models, 1.0 / n_models)
        best_member = int(np.argmin(sign * self.member_scores_))
        uniform_score = exact(uniform)
        if sign * uniform_score <= sign * self.member_scores_[best_member]:
            start, start_score, self.start_ = uniform, uniform_score, "uniform"
        else:
            start = np.zeros(n_models)
            start[best_member] = 1.0
            start_score = self.member_scores_[best_member]
            self.start_ = f"member {best_member}"

        # Identical members are merged: the loss cannot tell them apart.
        first, group = _unique_members(predictions)
        multiplicity = np.bincount(group, minlength=first.size).astype(np.float64)
        start_unique = np.bincount(group, weights=start, minlength=first.size)
        start = start_unique[group] / multiplicity[group]  # same combination, shared
        self.n_iter_, self.converged_ = 0, True
        if first.size > 1:
            distinct = predictions if first.size == n_models else predictions[first]
            objective = _make_objective(distinct, y_true, self.loss)
            optimized_unique = self._optimize(objective, start_unique)
            candidate = optimized_unique[group] / multiplicity[group]
            candidate /= candidate.sum()
            candidate_score = exact(candidate)
            if sign * candidate_score <= sign * start_score:
                start, start_score = candidate, candidate_score
        self.weights_ = start / start.sum()
        self.score_ = exact(self.weights_)
        return self

    def _optimize(self, objective: _Objective, start: np.ndarray) -> np.ndarray:
        """Runs scipy from ``start`` (n_distinct,); returns weights on the simplex."""
        n = start.size
        # Scale the objective so that tolerances are relative to the members' losses.
        scale = max(float(np.mean(np.abs(self.member_scores_))), 1e-12)
        if self.method == "nelder-mead":
            # A strictly positive start: softmax cannot reach an exact one-hot.
            softened = 0.99 * start + 0.01 / n
            logits = np.log(softened)
            # Vertex i moves member i's logit by +1 (its weight by a factor of about e).
            simplex = logits + np.vstack([np.zeros(n), np.eye(n)])  # (n + 1, n)
            result = optimize.minimize(
                lambda z: objective.value(_softmax(z)) / scale,
                logits,
                method="Nelder-Mead",
                options={
                    "initial_simplex": simplex,
                    "maxiter": int(self.max_iter),
                    "maxfev": 2 * int(self.max_iter) + n + 1,
                    "xatol": 1e-6,
                    "fatol": self.tol,
                    "adaptive": True,
                },
            )
            weights = _softmax(result.x)
        else:
            jac = (lambda w: objective.gradient(w) / scale) if objective.has_gradient else None
            result = optimize.minimize(
                lambda w: objective.value(w) / scale,
                start,
                jac=jac,
                method="SLSQP",
                # w <= 1 follows from w >= 0 and sum(w) = 1; leaving the upper
                # bound implicit makes each SLSQP subproblem about 4x cheaper.
                bounds=[(0.0, None)] * n,
                constraints=[
                    {
                        "type": "eq",
                        "fun": lambda w: np.array([w.sum() - 1.0]),
                        "jac": lambda w: np.ones((1, n)),
                    }
                ],
                options={"maxiter": int(self.max_iter), "ftol": self.tol},
            )
            weights = result.x
        self.n_iter_ = int(getattr(result, "nit", 0))
        self.converged_ = bool(result.success)
        return _to_simplex(weights)


class GreedyEnsembleSelection(_BaseEnsemble):
    """Greedy forward selection with replacement (Caruana et al., ICML 2004).

    Starting from an empty ensemble, each iteration adds (again, possibly) the member
    whose addition gives the best loss of the running average; ties go to the lowest
    member index. After ``n_iterations`` the ensemble is truncated to the best prefix:
    the iteration count whose running ensemble scored best (the shortest on ties).
    The weights are the selection counts divided by their total, so they lie on the
    simplex and are multiples of ``1 / n_selected_``. Selection with replacement is the
    robust alternative to continuous weights: it overfits the validation set less.
    Step 1 takes the best single member, so ``score_`` is never worse than it (for
    `mae`, up to the float32 rounding of the candidate scores; see `_MAEObjective`).

    Args:
        loss: loss name (see `metrics.LOSSES`); accuracy is maximized.
        n_iterations: number of selection steps (>= 1).
        random_state: reserved for bagged ensemble selection (Caruana et al. 2004:
            repeat the selection on random subsets of the members and average);
            the current algorithm is deterministic and does not use it.

    Attributes:
        weights_: (n_models,) ``counts_ / counts_.sum()``.
        counts_: (n_models,) int, how often each member was selected in the best prefix.
        n_selected_: length of the best prefix.
        loss_history_: (n_iterations,) loss of the running ensemble after each step.
        selection_: (n_iterations,) member chosen at each step.
        score_: loss of the ensemble on the fit data.
        member_scores_: (n_models,) loss of each member on the fit data.
    """

    _param_names = ("loss", "n_iterations", "random_state")

    def __init__(self, loss: str = "mae", n_iterations: int = 50, random_state: int = 0):
        self.loss = loss
        self.n_iterations = n_iterations
        self.random_state = random_state

    def fit(self, predictions, y_true) -> "GreedyEnsembleSelection":
        """Runs greedy selection with replacement and keeps the best prefix.

        Args:
            predictions: (n_models, n_samples[, n_classes]).
            y_true: (n_samples,).

        Returns:
            self.

        Raises:
            ValueError: on invalid inputs (see `check_predictions`), loss name or
                ``n_iterations``.
        """
        if not isinstance(self.n_iterations, (int, np.integer)) or self.n_iterations < 1:
            raise ValueError(
                "`n_iterations` must be an integer >= 1. "
                f"Received: n_iterations={self.n_iterations!r}"
            )
        predictions, y_true, loss_function, sign = self._validate_fit(predictions, y_true)
        objective = _make_objective(predictions, y_true, self.loss)
        counts = np.zeros(predictions.shape[0], dtype=np.int64)
        selection = np.empty(self.n_iterations, dtype=np.int64)
        history = np.empty(self.n_iterations)
        for step in range(self.n_iterations):
            values = objective.add_one_values(counts)  # signed: lower is better
            chosen = int(np.argmin(values))  # first minimum: lowest index on ties
            counts[chosen] += 1
            selection[step] = chosen
            history[step] = values[chosen]
        best = int(np.argmin(history))  # shortest best prefix on ties
        self.selection_ = selection
        self.loss_history_ = sign * history
        self.n_selected_ = best + 1
        self.counts_ = np.bincount(selection[: best + 1], minlength=predictions.shape[0])
        self.weights_ = self.counts_ / self.counts_.sum()
        self.score_ = loss_function(y_true, _combine(self.weights_, predictions))
        return self


__all__ = [
    "GreedyEnsembleSelection",
    "NotFittedError",
    "SimpleAverage",
    "WeightedAverage",
    "check_predictions",
]
