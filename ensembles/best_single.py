"""The best single member as a one-hot "ensemble": the reference every ensemble must beat.

Scikit-learn shaped like the estimators of `weighted` (``fit`` returns ``self``, fitted
``weights_``, ``predict``), so that `cross_fit_select` cross-fits it like the others.
"""

from __future__ import annotations

import numpy as np

from dlpipe.metrics import get_metric

from .metrics import get_loss


class BestSingleMember:
    """The member with the best loss on the fit data, as a one-hot "ensemble".

    The reference every ensemble must beat, in the estimator shape of
    `dlpipe.ensembles` so that `cross_fit_select` can cross-fit it like the others
    (on each fold it picks the best member of the training folds). Ties go to the
    lowest member index.

    Args:
        loss: loss name (see `dlpipe.ensembles.LOSSES`); accuracy is maximized.

    Attributes:
        weights_: (n_models,) one-hot.
        best_index_: index of the chosen member.
        member_scores_: (n_models,) loss of each member on the fit data.
        score_: loss of the chosen member on the fit data.
    """

    def __init__(self, loss: str = "mae"):
        self.loss = loss

    def fit(self, predictions, y_true) -> "BestSingleMember":
        """Scores every member and keeps the best.

        Args:
            predictions: (n_models, n_samples).
            y_true: (n_samples,).

        Returns:
            self.

        Raises:
            ValueError: on an unknown loss or mismatched shapes.
        """
        loss_function, _ = get_loss(self.loss)
        predictions = np.asarray(predictions, dtype=np.float64)
        scores = np.array([loss_function(y_true, member) for member in predictions])
        self.member_scores_ = scores
        best = get_metric(self.loss).best_index(scores)  # first best on ties
        if best is None:
            raise ValueError(f"no member has a finite {self.loss} on the validation split")
        self.best_index_ = best
        self.weights_ = np.zeros(predictions.shape[0])
        self.weights_[self.best_index_] = 1.0
        self.score_ = float(scores[self.best_index_])
        return self

    def predict(self, predictions) -> np.ndarray:
        """The chosen member's predictions: (n_models, n_samples) -> (n_samples,).

        Raises:
            ValueError: if called before ``fit`` or with another number of members.
        """
        if not hasattr(self, "weights_"):
            raise ValueError(
                "This BestSingleMember instance is not fitted yet. "
                "Call `fit(predictions, y_true)` first."
            )
        predictions = np.asarray(predictions, dtype=np.float64)
        if predictions.shape[0] != self.weights_.size:
            raise ValueError(
                f"`predictions` must hold {self.weights_.size} members as in "
                f"`fit`. Received: shape={predictions.shape}"
            )
        return predictions[self.best_index_]


__all__ = ["BestSingleMember"]
