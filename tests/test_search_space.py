"""Search spaces: validation (C12 one-value ranges), translation to Hyperopt, decoding
(C09 types, C10 values not indices), warm-start points; every default space sampled
and built into a model."""

import numpy as np
import pytest
from hyperopt import Trials, fmin, hp, space_eval, tpe
from hyperopt.pyll.stochastic import sample

from dlpipe.models.registry import TIMESERIES_FAMILIES, build_model, resolved_hparams
from dlpipe.models.spaces import TIMESERIES_SPACES
from dlpipe.tasks.sweep.space import (
    SpaceError,
    decode,
    flatten_hp,
    sweep_space,
    to_hyperopt,
    validate_space,
    warm_start_point,
)


def test_every_family_ships_a_default_space():
    assert set(TIMESERIES_SPACES) == set(TIMESERIES_FAMILIES)


@pytest.mark.parametrize("family", sorted(TIMESERIES_SPACES))
def test_default_space_samples_build_models(family):
    space = validate_space(TIMESERIES_SPACES[family], family)
    expr = sweep_space({family: space})
    seen = set()
    for i in range(25):
        fam, hps = decode(sample(expr, rng=np.random.default_rng(i)))
        assert fam == family
        resolved = resolved_hparams(fam, hps)
        seen.add(tuple(sorted(resolved.items())))
        for key, value in resolved.items():
            assert type(value) is TIMESERIES_FAMILIES[family].param_types[key]
        if i < 3:  # building is the slow part; the hp checks cover all 25
            model = build_model(fam, (120, 11), hps)
            assert model.output_shape == (None, 1)
    assert len(seen) > 10  # the space really varies


def test_c09_quniform_and_numpy_choice_reach_layers_as_int():
    space = {
        "units": hp.quniform("units", 16, 64, 16),
        "filters": hp.choice("filters", np.arange(16, 65, 16)),
    }
    point = sample(space, rng=np.random.default_rng(0))
    assert isinstance(point["units"], float)  # what Hyperopt hands over: 32.0
    assert isinstance(point["filters"], np.integer)  # numpy.int64
    units = resolved_hparams("dense", {"units": point["units"]})["units"]
    filters = resolved_hparams("conv1d", {"filters": point["filters"]})["filters"]
    assert type(units) is int and type(filters) is int
    build_model("dense", (20, 3), {"units": point["units"]})
    build_model("conv1d", (80, 3), {"filters": point["filters"]})
    with pytest.raises(ValueError, match="units.*32.5"):
        resolved_hparams("dense", {"units": 32.5})


def test_c10_choice_gives_values_not_indices():
    space = validate_space({"units": {"choice": [200, 512, 1000]}})
    expr = sweep_space({"dense": space})
    trials = Trials()
    best = fmin(
        lambda c: abs(decode(c)[1]["units"] - 512),
        expr,
        algo=tpe.suggest,
        max_evals=15,
        trials=trials,
        rstate=np.random.default_rng(0),
        show_progressbar=False,
    )
    assert best == {"dense/units": 1}  # fmin returns the index...
    assert decode(space_eval(expr, best))[1] == {"units": 512}  # ...we report the value


def test_c12_one_value_ranges_become_constants():
    space = validate_space(
        {
            "a": {"randint": [1, 2]},
            "b": {"uniform": [0.5, 0.5]},
            "c": {"choice": [7]},
            "d": {"quniform": [32, 32, 16]},
            "e": {"normal": [1.0, 0]},
            "f": {"uniform": [0, 1]},
        }
    )
    assert space == {"a": 1, "b": 0.5, "c": 7, "d": 32, "e": 1.0, "f": {"uniform": [0, 1]}}
    point = sample(to_hyperopt(space, "x"), rng=np.random.default_rng(0))
    assert point["a"] == 1 and 0 <= point["f"] <= 1
    from dlpipe.tasks.sweep.space import is_constant

    assert not is_constant(space)
    assert is_constant(validate_space({"units": {"randint": [1, 2]}, "g": {"lr": 0.1}}))


@pytest.mark.parametrize(
    "space, message",
    [
        ({"u": {"uniform": [1]}}, r"`s.u.uniform` takes 2 numbers"),
        ({"u": {"uniform": [2, 1]}}, r"low <= high"),
        ({"u": {"loguniform": [0, 1]}}, r"bounds must be > 0"),
        ({"u": {"quniform": [1, 5, 0]}}, r"step q must be > 0"),
        ({"u": {"randint": [1.5, 3]}}, r"integers"),
        ({"u": {"choice": []}}, r"non-empty list"),
        ({"u": {"unifrom": [0, 1]}}, r"unknown distribution `unifrom`"),
        ({"u": [1, 2]}, r"wrapped in a distribution"),
        ({"u": {"uniform": ["a", 1]}}, r"finite numbers"),
    ],
)
def test_bad_spaces_name_the_entry(space, message):
    with pytest.raises(SpaceError, match=message):
        validate_space(space, "s")


def test_conditional_subspace_and_labels():
    space = validate_space(TIMESERIES_SPACES["gru"], "gru")
    expr = sweep_space({"gru": space, "dense": validate_space(TIMESERIES_SPACES["dense"])})
    families, dropouts = set(), set()
    for i in range(40):
        fam, hps = decode(sample(expr, rng=np.random.default_rng(i)))
        families.add(fam)
        if fam == "gru":
            assert set(hps) == {"units", "dropout", "recurrent_dropout", "learning_rate"}
            dropouts.add(hps["dropout"] == 0.0)
    assert families == {"gru", "dense"} and dropouts == {True, False}
    with pytest.raises(SpaceError, match="set twice"):
        flatten_hp({"a": 1, "g": {"a": 2}})


def test_warm_start_point_labels_and_indices():
    spaces = {
        "gru": validate_space(TIMESERIES_SPACES["gru"]),
        "conv1d": validate_space(TIMESERIES_SPACES["conv1d"]),
    }
    point = warm_start_point(
        spaces,
        {
            "family": "conv1d",
            "filters": 32,
            "kernel_size": 5,
            "pool_size": 3,
            "learning_rate": 1e-3,
        },
    )
    assert point == {
        "family": 1,
        "conv1d/filters": 32,
        "conv1d/kernel_size": 1,
        "conv1d/pool_size": 1,
        "conv1d/learning_rate": 1e-3,
    }
    gru = warm_start_point(
        spaces,
        {
            "family": "gru",
            "units": 32,
            "dropout": 0.0,
            "recurrent_dropout": 0.0,
            "learning_rate": 1e-3,
        },
    )
    assert gru["gru/regularization"] == 0  # the no-dropout option
    with pytest.raises(SpaceError, match="must give `units`"):
        warm_start_point(
            spaces,
            {"family": "gru", "dropout": 0.0, "recurrent_dropout": 0.0, "learning_rate": 1e-3},
        )
    with pytest.raises(SpaceError, match="not one of"):
        warm_start_point(
            spaces,
            {
                "family": "conv1d",
                "filters": 32,
                "kernel_size": 4,
                "pool_size": 3,
                "learning_rate": 1e-3,
            },
        )
