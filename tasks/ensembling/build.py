"""Building the ensembles: the methods compared, the build's key, and the rows of the
``ensembles`` table (`build_ensembles`).

Guarding against validation overfitting (the book, ch. 7.3.3: weights are learned on
validation data): the method is chosen by cross-fitting on validation folds
(`dlpipe.ensembles.cross_fit_select`: fit on K-1 folds, score the held-out fold), every
method is then refitted on all validation samples, and the test split is scored once
per method, at the end, with those refitted weights. Test scores are reported, never
used to choose.

Sources:
    F. Chollet, *Deep Learning with Python*, ch. 7.3.3 (model ensembling).
    R. Caruana, A. Niculescu-Mizil, G. Crew, A. Ksikes, "Ensemble selection from
        libraries of models", ICML 2004.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import numpy as np

from dlpipe.ensembles import (
    BestSingleMember,
    accuracy,
    cross_fit_select,
    default_candidates,
    get_loss,
    member_diversity,
)
from dlpipe.tasks.ensembling.members import SPLITS, MemberPredictions
from dlpipe.tasks.reports import tables as reports

BEST_SINGLE = "best_single"


def ensemble_candidates(loss: str = "mae", random_state: int = 0) -> dict:
    """The methods compared by the stage, simplest first (ties go to the first).

    Returns:
        Ordered dict name -> estimator factory: ``best_single``, ``simple_average``,
        ``weighted_nelder_mead``, ``weighted_slsqp``, ``greedy_selection``.
    """
    return {
        BEST_SINGLE: lambda: BestSingleMember(loss=loss),
        **default_candidates(loss=loss, random_state=random_state),
    }


def ensemble_key(members: MemberPredictions, *, loss: str, n_folds: int, random_state: int) -> str:
    """Key of one ensemble build: members, their aligned data and the settings.

    Returns:
        ``"ens-<12 hex>"``; the same members with the same predictions and settings give
        the same key (a rerun rewrites the same part with the same numbers). A K-fold
        build's key holds its ``fit`` too.
    """
    payload = {
        "members": list(members.run_ids),
        "loss": loss,
        "n_folds": n_folds,
        "random_state": random_state,
        "align": members.align,
    }
    if members.fit is not None:  # K-fold builds only: hold-out keys stay as they were
        payload["fit"] = members.fit
    digest = hashlib.sha256()
    digest.update(reports.dumps(payload).encode())
    for split in SPLITS:
        for array in (
            members.sample_index(split),
            members.predictions(split),
            members.targets(split),
        ):
            digest.update(np.ascontiguousarray(array).tobytes())
    return f"ens-{digest.hexdigest()[:12]}"


def _mean_pairwise_correlation(predictions: np.ndarray) -> float:
    """Mean off-diagonal Pearson correlation of (n_members, n_samples); NaN if < 2."""
    n = predictions.shape[0]
    if n < 2:
        return float("nan")
    correlation = member_diversity(predictions)
    off_diagonal = correlation[~np.eye(n, dtype=bool)]
    finite = off_diagonal[np.isfinite(off_diagonal)]
    return float(finite.mean()) if finite.size else float("nan")


def build_ensembles(
    members: MemberPredictions,
    *,
    loss: str = "mae",
    n_folds: int = 5,
    random_state: int = 0,
) -> list[dict]:
    """Chooses, refits and scores the ensembling methods; rows of the ``ensembles`` table.

    1. Cross-fitting on validation (`dlpipe.ensembles.cross_fit_select`): each method
       of `ensemble_candidates` is fitted on K-1 folds of the validation samples and
       scored on the held-out fold; the best mean wins (``chosen``; ties go to the
       simpler method, in the order best single, simple average, Nelder-Mead, SLSQP,
       greedy).
    2. Every method is refitted on all validation samples (``val_score`` is that
       in-sample score, optimistic for the fitted weights).
    3. Test is scored once per method with the refitted weights (``test_score``); it
       decides nothing.

    Args:
        members: aligned predictions (see `load_member_predictions`).
        loss: loss name (``mae``, ``mse``; ``log_loss``/``accuracy`` for
            probabilities of class 1), in the predictions' units.
        n_folds: cross-fitting folds K, 2 <= K <= n_val.
        random_state: seed of the folds and of the estimators.

    Returns:
        One row per method, in candidate order, in the ``ensembles`` schema of
        `dlpipe.tasks.reports.tables`: ``members`` (JSON list of all member run ids) and
        ``weights`` (JSON list aligned with it, >= 0, summing to 1); ``cv_score``,
        ``val_score``, ``test_score``, ``val_test_gap`` (test - val); the best single
        member (best validation loss over all validation samples) in
        ``best_single_val``/``best_single_test``; the mean pairwise correlation of the
        members' validation predictions; ``val_accuracy``/``test_accuracy`` of the
        combined probabilities for the classification losses (None otherwise);
        ``sources``; ``fit`` (K-fold studies: ``oof`` or ``holdout``, see
        `dlpipe.tasks.ensembling.oof`; None for hold-out studies). All rows share one
        ``ensemble_id`` (see `ensemble_key`).

    Raises:
        ValueError: unknown ``loss``, ``n_folds`` outside [2, n_val], or predictions
            the loss cannot score (see `dlpipe.ensembles.cross_fit_select`).
    """
    loss_function, greater_is_better = get_loss(loss)
    val_x, val_y = members.val_predictions, members.val_targets
    test_x, test_y = members.test_predictions, members.test_targets
    candidates = ensemble_candidates(loss, random_state)
    result = cross_fit_select(
        val_x, val_y, candidates, n_folds=n_folds, random_state=random_state, loss=loss
    )

    fitted = {
        name: (result.estimator if name == result.chosen else factory().fit(val_x, val_y))
        for name, factory in candidates.items()
    }
    best = fitted[BEST_SINGLE].best_index_
    best_val = loss_function(val_y, val_x[best])
    best_test = loss_function(test_y, test_x[best])  # test: once per method, below too
    correlation = _mean_pairwise_correlation(val_x)
    ensemble_id = ensemble_key(members, loss=loss, n_folds=n_folds, random_state=random_state)
    created = datetime.now(timezone.utc)
    classification = loss in ("log_loss", "accuracy")
    rows = []
    for name, estimator in fitted.items():
        weights = np.asarray(estimator.weights_, dtype=np.float64)
        val_pred, test_pred = estimator.predict(val_x), estimator.predict(test_x)
        val_score = loss_function(val_y, val_pred)
        test_score = best_test if name == BEST_SINGLE else loss_function(test_y, test_pred)
        rows.append(
            {
                "ensemble_id": ensemble_id,
                "method": name,
                "chosen": name == result.chosen,
                "loss": loss,
                "members": json.dumps(list(members.run_ids)),
                "weights": json.dumps([float(w) for w in weights]),
                "cv_score": result.scores[name],
                "val_score": val_score,
                "test_score": test_score,
                "val_test_gap": test_score - val_score,
                "best_single_val": best_val,
                "best_single_test": best_test,
                "mean_pairwise_correlation": correlation,
                # the accuracy of the combined probabilities, beside the fitted loss
                "val_accuracy": accuracy(val_y, val_pred) if classification else None,
                "test_accuracy": accuracy(test_y, test_pred) if classification else None,
                "sources": json.dumps(list(members.sources)),
                "fit": members.fit,  # K-fold studies: holdout | oof; else None (left out)
                "created_at": created,
            }
        )
    return rows


__all__ = [
    "BEST_SINGLE",
    "build_ensembles",
    "ensemble_candidates",
    "ensemble_key",
]
