"""Model families (book ch. 6.3-6.4), the registry and hyperparameter coercion (C09).

Fast: models are built, never trained; at most one forward pass on a tiny batch.
"""

import math
import re

import keras
import numpy as np
import pytest

from dlpipe.models.hparams import coerce_hparams
from dlpipe.models.registry import (
    TIMESERIES_FAMILIES,
    build_model,
    get_family,
    resolved_hparams,
)
from dlpipe.models.timeseries import ReverseTime

T, F = 120, 14  # timesteps, features
FAMILIES = sorted(TIMESERIES_FAMILIES)


def _batch(n=3, timesteps=T, seed=0):
    return np.random.default_rng(seed).normal(size=(n, timesteps, F)).astype("float32")


def _forward(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _gru_params(f, u):
    """GRU weights with Keras 3 reset_after=True: 3 gates x (kernel, recurrent, 2 biases)."""
    return 3 * (f * u + u * u + 2 * u)


def _lstm_params(f, u):
    return 4 * (f * u + u * u + u)


def _conv_params(k, c_in, filters):
    return k * c_in * filters + filters


def _head(width):
    return width + 1  # Dense(1) on `width` features


EXPECTED_PARAMS = {
    "dense": (T * F) * 32 + 32 + _head(32),
    "gru": _gru_params(F, 32) + _head(32),
    "gru_dropout": _gru_params(F, 32) + _head(32),
    "reversed_gru": _gru_params(F, 32) + _head(32),
    "stacked_gru": _gru_params(F, 32) + _gru_params(32, 64) + _head(64),
    "bidirectional_gru": 2 * _gru_params(F, 32) + _head(2 * 32),
    "lstm": _lstm_params(F, 32) + _head(32),
    "conv1d": _conv_params(5, F, 32) + 2 * _conv_params(5, 32, 32) + _head(32),
    "conv_gru": _conv_params(5, F, 32) + _conv_params(5, 32, 32) + _gru_params(32, 32) + _head(32),
}


def test_registry_lists_the_nine_book_families():
    assert set(TIMESERIES_FAMILIES) == set(EXPECTED_PARAMS)


@pytest.mark.parametrize("name", FAMILIES)
def test_family_builds_from_defaults_and_maps_batch_to_one_value(name):
    model = build_model(name, (T, F))
    assert isinstance(model, keras.Model) and model.name == name
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert model.loss == "mae"
    assert model.get_layer("dense_out").activation is keras.activations.linear
    y = _forward(model, _batch())
    assert y.shape == (3, 1)
    assert y.dtype == np.float32
    assert model.count_params() == EXPECTED_PARAMS[name]


def test_defaults_follow_the_book_and_the_builder_signature():
    assert TIMESERIES_FAMILIES["gru_dropout"].defaults == {
        "units": 32,
        "dropout": 0.2,
        "recurrent_dropout": 0.2,
        "learning_rate": 1e-3,
    }
    stacked = TIMESERIES_FAMILIES["stacked_gru"]
    assert (stacked.defaults["units"], stacked.defaults["units_2"]) == (32, 64)
    assert stacked.param_types["units_2"] is int
    assert stacked.param_types["dropout"] is float
    assert TIMESERIES_FAMILIES["conv1d"].defaults["kernel_size"] == 5
    for family in TIMESERIES_FAMILIES.values():
        assert family.pipeline == "timeseries" and family.description


def test_reversed_gru_equals_gru_on_reversed_window():
    gru = build_model("gru", (T, F))
    reversed_gru = build_model("reversed_gru", (T, F))
    for layer_name in ("gru_1", "dense_out"):
        reversed_gru.get_layer(layer_name).set_weights(gru.get_layer(layer_name).get_weights())
    x = _batch()
    np.testing.assert_allclose(
        _forward(reversed_gru, x), _forward(gru, x[:, ::-1].copy()), rtol=1e-5, atol=1e-6
    )


def test_reverse_time_layer_round_trips_through_serialization():
    layer = ReverseTime(name="reverse_time")
    config = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, ReverseTime) and restored.name == "reverse_time"
    x = np.arange(6, dtype="float32").reshape(1, 3, 2)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored(x)), x[:, ::-1])


# Minimum timesteps, walked back from a final length of 1: conv k adds k-1 steps,
# pool p multiplies by p. conv1d (conv, pool, conv, pool, conv), k5/p3:
# 1 -> 5 -> 15 -> 19 -> 57 -> 61; with k3/p2: 1 -> 3 -> 6 -> 8 -> 16 -> 18.
# conv_gru (conv, pool, conv), k5/p3: 1 -> 5 -> 15 -> 19.
@pytest.mark.parametrize(
    "name, hp, minimum",
    [
        ("conv1d", {}, 61),
        ("conv1d", {"kernel_size": 3, "pool_size": 2}, 18),
        ("conv_gru", {}, 19),
    ],
)
def test_conv_family_minimum_timesteps_builds_and_one_fewer_raises(name, hp, minimum):
    model = build_model(name, (minimum, F), hp)
    assert _forward(model, _batch(n=1, timesteps=minimum)).shape == (1, 1)
    message = rf"at least {minimum}\b.*Received: timesteps={minimum - 1}\b"
    with pytest.raises(ValueError, match=message):
        build_model(name, (minimum - 1, F), hp)


@pytest.mark.parametrize(
    "bad", [(120,), (120, 14, 1), (0, 14), (120, -1), (120.0, 14), (True, 14), "120x14", None]
)
def test_bad_input_shape_raises(bad):
    with pytest.raises(ValueError, match=r"`input_shape` must be .*Received: input_shape="):
        build_model("gru", bad)


@pytest.mark.parametrize("units", [32.0, np.int64(32), np.float32(32.0)], ids=repr)
@pytest.mark.parametrize("name, layer_name", [("dense", "dense_1"), ("gru", "gru_1")])
def test_c09_numeric_units_become_int_and_build(name, layer_name, units):
    hp = {"units": units}
    resolved = resolved_hparams(name, hp)
    assert resolved["units"] == 32 and type(resolved["units"]) is int
    model = build_model(name, (T, F), hp)
    assert model.get_layer(layer_name).units == 32


@pytest.mark.parametrize("units", [32.5, np.float64(32.5)], ids=repr)
def test_c09_non_integral_units_raise_naming_key_and_value(units):
    with pytest.raises(ValueError) as info:
        build_model("gru", (T, F), {"units": units})
    expected = r"`units` of family `gru` must be an integer\. Received: units=.*32\.5"
    assert re.search(expected, str(info.value))


def test_c09_numpy_learning_rate_becomes_float():
    resolved = resolved_hparams("gru", {"learning_rate": np.float64(1e-3)})
    assert type(resolved["learning_rate"]) is float and resolved["learning_rate"] == 1e-3
    model = build_model("gru", (T, F), {"learning_rate": np.float32(5e-4)})
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert math.isclose(lr, 5e-4, rel_tol=1e-6)


def test_c09_unknown_key_raises_listing_known_keys():
    with pytest.raises(ValueError, match=r"\['unitz'\].*family `gru`.*'learning_rate'.*'units'"):
        build_model("gru", (T, F), {"unitz": 32})


PARAM_TYPES = {"units": int, "rate": float, "activation": str, "batch_norm": bool}


def test_c09_coerce_returns_plain_python_types():
    out = coerce_hparams(
        {
            "units": np.int32(8),
            "rate": 1,
            "activation": np.str_("relu"),
            "batch_norm": np.bool_(True),
        },
        PARAM_TYPES,
        family="demo",
    )
    assert out == {"units": 8, "rate": 1.0, "activation": "relu", "batch_norm": True}
    assert [type(v) for v in out.values()] == [int, float, str, bool]


@pytest.mark.parametrize(
    "key, value",
    [
        ("units", "abc"),
        ("units", True),
        ("units", float("inf")),
        ("units", None),
        ("rate", float("nan")),
        ("rate", np.float32("inf")),
        ("rate", "0.1"),
        ("rate", False),
        ("activation", 1),
        ("batch_norm", 1),
        ("batch_norm", "true"),
    ],
    ids=repr,
)
def test_c09_coerce_rejects_inexact_values(key, value):
    message = rf"`{key}` of family `demo` must be .*Received: {key}="
    with pytest.raises(ValueError, match=message):
        coerce_hparams({key: value}, PARAM_TYPES, family="demo")


def test_get_family_unknown_name_raises_listing_known_families():
    known = r"'bidirectional_gru'.*'conv1d'.*'lstm'.*Received: name='transformer'"
    with pytest.raises(ValueError, match=known):
        get_family("transformer")
    with pytest.raises(ValueError, match=r"Received: pipeline='vision'"):
        get_family("gru", pipeline="vision")


@pytest.mark.parametrize(
    "hp, message",
    [
        ({"units": -3}, "`units` of family `gru` must be a positive integer"),
        ({"units": 0}, "`units` of family `gru` must be a positive integer"),
        ({"learning_rate": 0.0}, "`learning_rate` of family `gru` must be > 0"),
        ({"dropout": 1.0}, r"`dropout` of family `gru` must be in \[0, 1\)"),
        ({"recurrent_dropout": -0.1}, r"`recurrent_dropout` of family `gru` must be in"),
    ],
)
def test_out_of_range_hyperparameters_are_rejected_before_building(hp, message):
    from dlpipe.models.registry import resolved_hparams

    with pytest.raises(ValueError, match=message):
        resolved_hparams("gru", hp)
