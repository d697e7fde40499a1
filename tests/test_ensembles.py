"""Tests of `dlpipe.ensembles`: losses, weighted/greedy ensembles, cross-fitting.

All fast (tiny seeded arrays, no Ray, no Keras).
"""

import math

import numpy as np
import pytest

from dlpipe.ensembles import (
    LOSSES,
    CrossFitResult,
    GreedyEnsembleSelection,
    NotFittedError,
    SimpleAverage,
    WeightedAverage,
    accuracy,
    cross_fit_select,
    default_candidates,
    log_loss,
    mae,
    member_diversity,
    mse,
)
from dlpipe.ensembles.weighted import (
    _LogLossObjective,
    _MAEObjective,
    _MSEObjective,
)

N_SAMPLES = 400


def _regression_members(n_models=5, n_samples=N_SAMPLES, seed=0):
    """Members of unequal quality with shared errors: (n_models, n_samples), (n,)."""
    rng = np.random.default_rng(seed)
    y_true = rng.normal(size=n_samples)
    shared = rng.normal(size=n_samples)
    scales = np.linspace(0.5, 2.0, n_models)[:, None]
    predictions = (
        y_true
        + 0.3 * shared
        + scales * rng.normal(size=(n_models, n_samples))
        + rng.normal(0, 0.2, size=(n_models, 1))
    )
    return predictions, y_true


def _complementary_members(n_samples=N_SAMPLES):
    """y + 1, y - 3 and y + z: the unique optimum is (0.75, 0.25, 0) with loss 0.

    0.75 * (+1) + 0.25 * (-3) = 0; any weight on the third member adds the
    non-constant error z. Singles: MAE 1, 3 and mean|z| (about 1.27); simple average
    error (z - 2) / 3 (MAE about 0.76).
    """
    index = np.arange(n_samples)
    y_true = np.sin(index / 7.0) * 5.0
    z = 2.0 * np.sin(index * 1.3 + 0.1)
    predictions = np.stack([y_true + 1.0, y_true - 3.0, y_true + z])
    return predictions, y_true


ALL_ESTIMATORS = [
    pytest.param(lambda loss: SimpleAverage(loss=loss), id="simple"),
    pytest.param(lambda loss: WeightedAverage(loss=loss, method="nelder-mead"), id="nm"),
    pytest.param(lambda loss: WeightedAverage(loss=loss, method="slsqp"), id="slsqp"),
    pytest.param(lambda loss: GreedyEnsembleSelection(loss=loss), id="greedy"),
]
OPTIMIZING_ESTIMATORS = ALL_ESTIMATORS[1:]
WEIGHTED_ESTIMATORS = ALL_ESTIMATORS[1:3]


# ---------------------------------------------------------------------------------
# Losses, numbers worked out by hand
# ---------------------------------------------------------------------------------


def test_mae_and_mse_by_hand():
    y_true = [1.0, 2.0, 3.0]
    y_pred = [2.0, 2.0, 5.0]  # errors -1, 0, -2
    assert mae(y_true, y_pred) == pytest.approx(1.0)  # (1 + 0 + 2) / 3
    assert mse(y_true, y_pred) == pytest.approx(5.0 / 3.0)  # (1 + 0 + 4) / 3


def test_binary_log_loss_by_hand():
    y_true = np.array([1.0, 0.0])
    y_pred = np.array([0.8, 0.4])
    # -(ln 0.8 + ln 0.6) / 2 = (0.2231436 + 0.5108256) / 2 = 0.3669846
    direct = -np.mean(y_true * np.log(y_pred) + (1 - y_true) * np.log(1 - y_pred))
    assert log_loss(y_true, y_pred) == pytest.approx(direct, rel=1e-12)
    assert log_loss(y_true, y_pred) == pytest.approx(0.3669846, abs=1e-7)


def test_binary_log_loss_clips_probabilities():
    # Confidently wrong: -ln(1e-7) = 16.1181 per sample instead of inf.
    assert log_loss([0.0, 1.0], [1.0, 0.0]) == pytest.approx(-math.log(1e-7), rel=1e-6)
    # Confidently right: -ln(1 - 1e-7) ~= 1e-7 instead of 0.
    assert log_loss([1.0, 0.0], [1.0, 0.0]) == pytest.approx(1e-7, rel=1e-3)


def test_multiclass_log_loss_by_hand():
    y_true = np.array([0, 2])
    y_pred = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    # -(ln 0.7 + ln 0.6) / 2 = (0.3566749 + 0.5108256) / 2 = 0.4337503
    direct = -np.mean(np.log(y_pred[np.arange(2), y_true]))
    assert log_loss(y_true, y_pred) == pytest.approx(direct, rel=1e-12)
    assert log_loss(y_true, y_pred) == pytest.approx(0.4337503, abs=1e-7)


def test_multiclass_log_loss_clips_then_renormalizes():
    # [1, 0, 0] -> [1 - 1e-7, 1e-7, 1e-7] / (1 + 1e-7); label 1 gets 1e-7 / (1 + 1e-7).
    expected = -math.log(1e-7 / (1.0 + 1e-7))
    assert log_loss([1], [[1.0, 0.0, 0.0]]) == pytest.approx(expected, rel=1e-12)


def test_accuracy_by_hand():
    # Binary: class 1 where p > 0.5 -> [1, 1, 0, 0] vs [1, 0, 1, 0]: 2 of 4 right.
    assert accuracy([1, 0, 1, 0], [0.9, 0.6, 0.5, 0.1]) == pytest.approx(0.5)
    # Multi-class argmax -> [1, 0, 2] vs [1, 2, 2]: 2 of 3 right.
    y_pred = [[0.2, 0.7, 0.1], [0.5, 0.2, 0.3], [0.1, 0.1, 0.8]]
    assert accuracy([1, 2, 2], y_pred) == pytest.approx(2.0 / 3.0)


def test_losses_registry():
    assert set(LOSSES) == {"mae", "mse", "log_loss", "accuracy"}
    assert LOSSES["mae"] == (mae, False)
    assert LOSSES["accuracy"] == (accuracy, True)
    assert not LOSSES["log_loss"][1] and not LOSSES["mse"][1]


@pytest.mark.parametrize(
    "function, y_true, y_pred, message",
    [
        (mae, [1.0, 2.0], [1.0, 2.0, 3.0], r"y_pred.shape=\(3,\)"),
        (mse, [[1.0]], [[1.0]], r"y_true.shape=\(1, 1\)"),
        (log_loss, [0, 1], [0.5, 0.5, 0.5], r"y_pred.shape=\(3,\)"),
        (log_loss, [0, 3], [[0.5, 0.5], [0.5, 0.5]], "integer labels in \\[0, 2\\)"),
        (log_loss, [2.0, 0.0], [0.5, 0.5], r"in \[0, 1\]"),
        (accuracy, [0.5], [[0.5, 0.5]], "integer labels"),
    ],
)
def test_losses_reject_bad_inputs(function, y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        function(y_true, y_pred)


# ---------------------------------------------------------------------------------
# Objectives: fast paths agree with the losses, gradients with finite differences
# ---------------------------------------------------------------------------------


def _simplex_point(n, seed):
    weights = np.random.default_rng(seed).random(n)
    return weights / weights.sum()


def test_fast_objectives_match_the_losses():
    predictions, y_true = _regression_members()
    weights = _simplex_point(predictions.shape[0], 1)
    combined = weights @ predictions
    assert _MSEObjective(predictions, y_true, "mse").value(weights) == pytest.approx(
        mse(y_true, combined), rel=1e-10
    )
    assert _MAEObjective(predictions, y_true, "mae").value(weights) == pytest.approx(
        mae(y_true, combined),
        rel=1e-5,  # float32 working copy
    )


def _finite_difference(function, weights, step=1e-6):
    gradient = np.empty_like(weights)
    for j in range(weights.size):
        delta = np.zeros_like(weights)
        delta[j] = step
        difference = function(weights + delta) - function(weights - delta)
        gradient[j] = difference / (2 * step)
    return gradient


def test_log_loss_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    # Binary: (3 models, 50 samples) probabilities of class 1.
    y_binary = rng.integers(0, 2, size=50).astype(float)
    p_binary = rng.uniform(0.05, 0.95, size=(3, 50))
    objective = _LogLossObjective(p_binary, y_binary, "log_loss")
    weights = _simplex_point(3, 4)
    np.testing.assert_allclose(
        objective.gradient(weights),
        _finite_difference(objective.value, weights),
        rtol=1e-5,
        atol=1e-8,
    )
    # Multi-class: (3 models, 50 samples, 4 classes).
    labels = rng.integers(0, 4, size=50)
    p_multi = rng.dirichlet(np.ones(4), size=(3, 50))
    objective = _LogLossObjective(p_multi, labels, "log_loss")
    np.testing.assert_allclose(
        objective.gradient(weights),
        _finite_difference(objective.value, weights),
        rtol=1e-5,
        atol=1e-8,
    )


# ---------------------------------------------------------------------------------
# Estimators: issue 4 acceptance
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["mae", "mse"])
@pytest.mark.parametrize("make", ALL_ESTIMATORS)
def test_weights_on_the_simplex(make, loss):
    predictions, y_true = _regression_members(n_models=6)
    estimator = make(loss)
    assert estimator.fit(predictions, y_true) is estimator
    assert estimator.weights_.shape == (6,)
    assert np.all(estimator.weights_ >= 0.0)
    assert abs(estimator.weights_.sum() - 1.0) < 1e-9
    np.testing.assert_allclose(estimator.predict(predictions), estimator.weights_ @ predictions)
    assert estimator.score_ == pytest.approx(
        LOSSES[loss][0](y_true, estimator.predict(predictions))
    )


@pytest.mark.parametrize("loss", ["mae", "mse"])
@pytest.mark.parametrize("make", OPTIMIZING_ESTIMATORS)
def test_dominating_member_gets_almost_all_the_weight(make, loss):
    predictions, y_true = _regression_members(n_models=4)
    predictions[2] = y_true  # exact
    estimator = make(loss).fit(predictions, y_true)
    assert estimator.weights_[2] > 0.99
    assert estimator.score_ == pytest.approx(0.0, abs=1e-9)


def test_dominating_member_in_classification():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, size=200)
    predictions = rng.dirichlet(np.ones(3), size=(3, 200))  # (3, 200, 3)
    predictions[1] = 0.02 + 0.94 * np.eye(3)[labels]  # confident and right
    for method in ("nelder-mead", "slsqp"):
        estimator = WeightedAverage(loss="log_loss", method=method)
        estimator.fit(predictions, labels)
        assert estimator.weights_[1] > 0.99
        assert estimator.predict(predictions).shape == (200, 3)
        np.testing.assert_allclose(estimator.predict(predictions).sum(axis=1), 1.0)
    greedy = GreedyEnsembleSelection(loss="accuracy").fit(predictions, labels)
    assert greedy.weights_[1] > 0.99
    assert greedy.score_ == 1.0


@pytest.mark.parametrize("loss", ["mae", "mse"])
@pytest.mark.parametrize("make", WEIGHTED_ESTIMATORS)
def test_identical_members_get_equal_weights(make, loss):
    predictions, y_true = _regression_members(n_models=3)
    duplicated = predictions[[0, 1, 0, 2]]  # members 0 and 2 identical
    weights = make(loss).fit(duplicated, y_true).weights_
    assert abs(weights[0] - weights[2]) < 1e-6
    # All members identical: uniform.
    copies = np.stack([predictions[1]] * 3)
    np.testing.assert_allclose(make(loss).fit(copies, y_true).weights_, 1.0 / 3.0)


def test_identical_dominating_members_share_the_weight():
    predictions, y_true = _regression_members(n_models=3)
    members = np.stack([y_true, predictions[0], y_true, predictions[1]])
    for method in ("nelder-mead", "slsqp"):
        estimator = WeightedAverage(loss="mae", method=method)
        weights = estimator.fit(members, y_true).weights_
        np.testing.assert_allclose(weights, [0.5, 0.0, 0.5, 0.0], atol=1e-9)


@pytest.mark.parametrize("loss", ["mae", "mse"])
@pytest.mark.parametrize("make", ALL_ESTIMATORS)
def test_deterministic_for_a_random_state(make, loss):
    predictions, y_true = _regression_members(n_models=5, seed=7)
    first = make(loss).fit(predictions, y_true).weights_
    second = make(loss).fit(predictions, y_true).weights_
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("loss", ["mae", "mse"])
@pytest.mark.parametrize("make", OPTIMIZING_ESTIMATORS)
def test_fitted_loss_not_worse_than_best_single_member(make, loss):
    # Three members with known predictions: y + 0.5, y - 0.8 and y + noise.
    rng = np.random.default_rng(11)
    y_true = rng.normal(size=300)
    noisy = y_true + rng.normal(0, 0.7, 300)
    predictions = np.stack([y_true + 0.5, y_true - 0.8, noisy])
    loss_function = LOSSES[loss][0]
    best_single = min(loss_function(y_true, member) for member in predictions)
    estimator = make(loss).fit(predictions, y_true)
    assert estimator.score_ <= best_single + 1e-12
    np.testing.assert_allclose(
        estimator.member_scores_, [loss_function(y_true, m) for m in predictions]
    )


@pytest.mark.parametrize("loss", ["mae", "mse"])
@pytest.mark.parametrize("method", ["nelder-mead", "slsqp"])
def test_weighting_beats_every_member_and_the_simple_average(method, loss):
    predictions, y_true = _complementary_members()
    loss_function = LOSSES[loss][0]
    singles = [loss_function(y_true, member) for member in predictions]
    simple = SimpleAverage(loss=loss).fit(predictions, y_true).score_
    estimator = WeightedAverage(loss=loss, method=method).fit(predictions, y_true)
    np.testing.assert_allclose(estimator.weights_, [0.75, 0.25, 0.0], atol=1e-4)
    assert estimator.score_ < 1e-3
    assert estimator.score_ < min(singles) and estimator.score_ < simple


def test_greedy_selection_with_replacement_and_best_prefix():
    predictions, y_true = _complementary_members()
    greedy = GreedyEnsembleSelection(loss="mse", n_iterations=20)
    greedy.fit(predictions, y_true)
    # Step 1 takes the best single member (member 0, MSE 1); the history is the loss
    # of the running ensemble and the kept prefix is its (first) minimum.
    assert greedy.selection_[0] == 0
    assert greedy.n_selected_ == int(np.argmin(greedy.loss_history_)) + 1
    assert greedy.counts_.sum() == greedy.n_selected_
    np.testing.assert_allclose(greedy.weights_, greedy.counts_ / greedy.n_selected_)
    assert greedy.score_ == pytest.approx(greedy.loss_history_.min(), rel=1e-9)
    assert greedy.score_ < min(mse(y_true, member) for member in predictions)


def test_greedy_ties_go_to_the_lowest_index():
    predictions, y_true = _regression_members(n_models=2)
    copies = np.stack([predictions[1], predictions[0], predictions[1]])
    greedy = GreedyEnsembleSelection(loss="mae", n_iterations=5).fit(copies, y_true)
    assert greedy.counts_[2] == 0  # the copy at index 0 always wins the tie


def test_greedy_maximizes_accuracy():
    # Binary: member 0 right on 3/4, member 1 on 1/4 -> keep member 0 only.
    y_true = np.array([1, 0, 1, 0])
    predictions = np.array([[0.9, 0.2, 0.8, 0.7], [0.1, 0.8, 0.2, 0.4]])
    greedy = GreedyEnsembleSelection(loss="accuracy", n_iterations=3)
    greedy.fit(predictions, y_true)
    np.testing.assert_array_equal(greedy.weights_, [1.0, 0.0])
    assert greedy.score_ == pytest.approx(0.75)


# ---------------------------------------------------------------------------------
# Cross-fitting and diversity
# ---------------------------------------------------------------------------------


def test_cross_fit_select_picks_a_weighted_method_and_refits():
    predictions, y_true = _complementary_members()
    noise = np.random.default_rng(2).normal(0, 0.1, size=y_true.shape)
    candidates = default_candidates(loss="mae")
    result = cross_fit_select(predictions, y_true + noise, candidates, n_folds=4, loss="mae")
    assert isinstance(result, CrossFitResult)
    assert list(result.scores) == [
        "simple_average",
        "weighted_nelder_mead",
        "weighted_slsqp",
        "greedy_selection",
    ]
    assert all(folds.shape == (4,) for folds in result.fold_scores.values())
    assert result.chosen in ("weighted_nelder_mead", "weighted_slsqp")
    assert result.scores[result.chosen] < result.scores["simple_average"]
    # Refit on all validation samples: same weights as a fresh fit on everything.
    refit = candidates[result.chosen]().fit(predictions, y_true + noise)
    np.testing.assert_array_equal(result.estimator.weights_, refit.weights_)


def test_cross_fit_select_scores_accuracy_greater_is_better():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, size=120)
    good = np.where(labels == 1, 0.8, 0.2)
    predictions = np.stack([good, 1.0 - good, np.full(120, 0.6)])
    result = cross_fit_select(
        predictions,
        labels,
        {
            "simple": lambda: SimpleAverage(loss="accuracy"),
            "greedy": lambda: GreedyEnsembleSelection(loss="accuracy"),
        },
        n_folds=3,
        loss="accuracy",
    )
    assert result.greater_is_better
    assert result.chosen == "greedy"
    assert result.scores["greedy"] == pytest.approx(1.0)


def test_cross_fit_select_prefers_the_first_candidate_on_ties():
    predictions, y_true = _regression_members()
    result = cross_fit_select(
        predictions,
        y_true,
        {"plain": SimpleAverage, "same": lambda: SimpleAverage(loss="mae")},
        n_folds=3,
    )
    assert result.scores["plain"] == result.scores["same"]
    assert result.chosen == "plain"
    # The estimator is scored once on unseen data, e.g. the test set.
    test_predictions, test_y = _regression_members(seed=9)
    assert result.estimator.score(test_predictions, test_y) == pytest.approx(
        mae(test_y, test_predictions.mean(axis=0))
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_folds": 1}, r"`n_folds` must be an integer in \[2, n_samples=400\]"),
        ({"candidates": {}}, "`candidates` must name at least 1 method"),
        ({"candidates": {"x": 3}}, r"`candidates\['x'\]` must be a factory"),
    ],
)
def test_cross_fit_select_rejects_bad_arguments(kwargs, message):
    predictions, y_true = _regression_members()
    arguments = {"candidates": default_candidates()} | kwargs
    with pytest.raises(ValueError, match=message):
        cross_fit_select(predictions, y_true, **arguments)


def test_member_diversity():
    base = np.sin(np.arange(50) / 3.0)
    other = np.cos(np.arange(50) / 5.0)
    predictions = np.stack([base, 2.0 * base + 1.0, -base, other, np.ones(50)])
    correlation = member_diversity(predictions)
    assert correlation.shape == (5, 5)
    np.testing.assert_allclose(np.diag(correlation), 1.0)
    assert correlation[0, 1] == pytest.approx(1.0)
    assert correlation[0, 2] == pytest.approx(-1.0)
    assert correlation[0, 3] == pytest.approx(np.corrcoef(base, other)[0, 1])
    assert np.isnan(correlation[0, 4])  # constant member: undefined
    np.testing.assert_allclose(correlation[:4, :4], correlation[:4, :4].T)


# ---------------------------------------------------------------------------------
# Input errors name the member and the shapes
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("make", ALL_ESTIMATORS)
def test_input_errors_name_the_member(make):
    predictions, y_true = _regression_members(n_models=3, n_samples=20)
    estimator = make("mae")
    ragged = [predictions[0], predictions[1], predictions[2][:19]]
    message = r"member 2 has shape \(19,\).*member 0 has shape \(20,\)"
    with pytest.raises(ValueError, match=message):
        estimator.fit(ragged, y_true)
    message = r"member 0 has shape \(20,\).*`y_true` of shape \(21,\)"
    with pytest.raises(ValueError, match=message):
        estimator.fit(list(predictions), np.zeros(21))
    with pytest.raises(ValueError, match=r"y_true.shape=\(21,\)"):
        estimator.fit(predictions, np.zeros(21))
    with_nan = predictions.copy()
    with_nan[1, 4] = np.nan
    message = r"member 1 contains 1 non-finite.*shape=\(3, 20\)"
    with pytest.raises(ValueError, match=message):
        estimator.fit(with_nan, y_true)
    with pytest.raises(ValueError, match="at least 1 model"):
        estimator.fit([], y_true)
    message = r"at least 1 model. Received: shape=\(0, 20\)"
    with pytest.raises(ValueError, match=message):
        estimator.fit(np.zeros((0, 20)), y_true)
    with pytest.raises(ValueError, match=r"\(n_models, n_samples\) for loss='mae'"):
        estimator.fit(np.zeros((3, 20, 2)), y_true)


def test_predict_and_parameter_errors():
    predictions, y_true = _regression_members(n_models=3, n_samples=20)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        WeightedAverage().predict(predictions)
    fitted = WeightedAverage().fit(predictions, y_true)
    with pytest.raises(ValueError, match=r"shape \(3, n_samples\).*shape=\(2, 20\)"):
        fitted.predict(predictions[:2])
    with pytest.raises(ValueError, match="`loss` must be one of"):
        SimpleAverage(loss="hinge").fit(predictions, y_true)
    with pytest.raises(ValueError, match="`method` must be one of"):
        WeightedAverage(method="bfgs").fit(predictions, y_true)
    with pytest.raises(ValueError, match="`max_iter` must be an integer >= 1"):
        WeightedAverage(max_iter=0).fit(predictions, y_true)
    with pytest.raises(ValueError, match="`n_iterations` must be an integer >= 1"):
        GreedyEnsembleSelection(n_iterations=0).fit(predictions, y_true)
