"""Text model families (book ch. 3.4, 6.1-6.4): builds, heads, parameter counts, the
frozen GloVe embedding, the registry under pipeline="text", and every default search
space sampled and built. Fast: no training beyond one step on a tiny batch."""

import keras
import numpy as np
import pytest
from hyperopt.pyll.stochastic import sample

from dlpipe.models.registry import (
    TEXT_FAMILIES,
    TIMESERIES_FAMILIES,
    build_model,
    get_family,
    resolved_hparams,
)
from dlpipe.models.spaces import TEXT_SPACES
from dlpipe.tasks.sweep.space import decode, sweep_space, validate_space

MAXLEN, WIDTH, VOCAB = 50, 102, 10002  # sequence length, multi-hot width, default vocab_size
FAMILIES = sorted(TEXT_FAMILIES)


def _input_shape(name):
    return (WIDTH,) if name == "multihot_dense" else (MAXLEN,)


def _batch(name, n=4, seed=0):
    rng = np.random.default_rng(seed)
    if name == "multihot_dense":
        return (rng.random((n, WIDTH)) < 0.1).astype("float32")
    return rng.integers(0, VOCAB, size=(n, MAXLEN)).astype("int32")


def _forward(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_registry_lists_the_book_text_families():
    assert set(TEXT_FAMILIES) == {
        "multihot_dense",
        "embedding_flatten",
        "glove_dense",
        "simple_rnn",
        "lstm",
        "bidirectional_lstm",
        "conv1d",
    }
    for family in TEXT_FAMILIES.values():
        assert family.pipeline == "text" and family.description
        assert family.defaults["num_classes"] == 1
        if family.name != "multihot_dense":
            assert family.defaults["vocab_size"] == 10002
    assert get_family("lstm", "text").build is not get_family("lstm").build  # timeseries lstm
    assert set(TIMESERIES_FAMILIES) >= {"gru", "lstm", "conv1d"}


@pytest.mark.parametrize("name", FAMILIES)
def test_binary_head_from_defaults(name):
    model = build_model(name, _input_shape(name), pipeline="text")
    assert model.name == name
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert model.loss == "binary_crossentropy"
    assert model.get_layer("dense_out").activation is keras.activations.sigmoid
    y = _forward(model, _batch(name))
    assert y.shape == (4, 1) and ((y > 0) & (y < 1)).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_three_class_softmax_head(name):
    model = build_model(name, _input_shape(name), {"num_classes": 3}, pipeline="text")
    assert model.loss == "sparse_categorical_crossentropy"
    assert model.get_layer("dense_out").activation is keras.activations.softmax
    y = _forward(model, _batch(name))
    assert y.shape == (4, 3)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_param_counts_follow_the_formulas():
    # multi-hot dense: W*16 + 16, 16*16 + 16, head 16*c + c
    for c, out in ((1, 1), (3, 3)):
        model = build_model("multihot_dense", (WIDTH,), {"num_classes": c}, pipeline="text")
        assert model.count_params() == WIDTH * 16 + 16 + 16 * 16 + 16 + 16 * out + out
    # book 6.1.2: Embedding(10000, 8) at maxlen 20 -> 80,000 + Dense(1) on 160 = 80,161;
    # with the 2 reserved rows: 10,002 * 8 + 161
    model = build_model("embedding_flatten", (20,), pipeline="text")
    assert model.count_params() == 10002 * 8 + 20 * 8 + 1
    model = build_model(
        "embedding_flatten", (20,), {"vocab_size": 102, "num_classes": 3}, pipeline="text"
    )
    assert model.count_params() == 102 * 8 + (20 * 8) * 3 + 3


def test_glove_embedding_is_frozen_and_holds_the_set_weights():
    model = build_model(
        "glove_dense", (MAXLEN,), {"vocab_size": 30, "embedding_dim": 4}, pipeline="text"
    )
    embedding = model.get_layer("embedding")
    assert embedding.trainable is False and embedding.trainable_weights == []
    matrix = np.random.default_rng(0).normal(size=(30, 4)).astype("float32")
    embedding.set_weights([matrix])
    x = np.random.default_rng(1).integers(0, 30, size=(8, MAXLEN)).astype("int32")
    y = np.array([0, 1] * 4, dtype="float32")
    before = model.get_layer("dense_1").get_weights()[0].copy()
    model.train_on_batch(x, y)
    np.testing.assert_array_equal(embedding.get_weights()[0], matrix)  # unchanged
    assert not np.array_equal(model.get_layer("dense_1").get_weights()[0], before)
    trainable = build_model(
        "glove_dense", (MAXLEN,), {"trainable_embedding": True}, pipeline="text"
    )
    assert trainable.get_layer("embedding").trainable is True


def test_embedding_layer_has_the_same_name_in_every_sequence_family():
    for name in FAMILIES:
        if name != "multihot_dense":
            model = build_model(name, (MAXLEN,), {"vocab_size": 12}, pipeline="text")
            assert model.get_layer("embedding").input_dim == 12


def test_conv1d_minimum_maxlen():
    # walked back from 1: conv k7 -> 7, pool 5 -> 35, conv k7 -> 41
    model = build_model("conv1d", (41,), {"vocab_size": 12}, pipeline="text")
    assert _forward(model, np.ones((1, 41), "int32")).shape == (1, 1)
    with pytest.raises(ValueError, match=r"at least 41\b.*Received: maxlen=40\b"):
        build_model("conv1d", (40,), pipeline="text")


@pytest.mark.parametrize(
    "num_classes, message",
    [
        (2, r"For two classes use num_classes=1\. Received: num_classes=2"),
        (0, r"`num_classes` of family `lstm` must be a positive integer\. Received: num_classes=0"),
    ],
)
def test_num_classes_two_or_zero_raises(num_classes, message):
    with pytest.raises(ValueError, match=message):
        build_model("lstm", (MAXLEN,), {"num_classes": num_classes}, pipeline="text")


@pytest.mark.parametrize("bad", [(50, 1), (), (0,), (True,), (50.0,), "50", None])
def test_bad_input_shape_raises(bad):
    with pytest.raises(ValueError, match=r"`input_shape` must be .*Received: input_shape="):
        build_model("embedding_flatten", bad, pipeline="text")


def test_c09_hyperopt_values_reach_text_layers_as_python_types():
    resolved = resolved_hparams(
        "lstm",
        {"units": 48.0, "num_classes": np.int64(3), "embedding_dim": np.float32(16)},
        pipeline="text",
    )
    assert (resolved["units"], resolved["num_classes"], resolved["embedding_dim"]) == (48, 3, 16)
    assert all(type(resolved[k]) is int for k in ("units", "num_classes", "embedding_dim"))
    with pytest.raises(ValueError, match=r"`units` of family `lstm` must be an integer"):
        resolved_hparams("lstm", {"units": 48.5}, pipeline="text")


def test_every_text_family_ships_a_default_space():
    assert set(TEXT_SPACES) == set(TEXT_FAMILIES)


@pytest.mark.parametrize("family", sorted(TEXT_SPACES))
def test_default_text_space_samples_build_models(family):
    space = validate_space(TEXT_SPACES[family], family)
    expr = sweep_space({family: space})
    seen = set()
    for i in range(20):
        fam, hps = decode(sample(expr, rng=np.random.default_rng(i)))
        assert fam == family
        resolved = resolved_hparams(fam, hps, pipeline="text")
        seen.add(tuple(sorted(resolved.items())))
        for key, value in resolved.items():
            assert type(value) is TEXT_FAMILIES[family].param_types[key]
        if i < 2:  # building is the slow part; the hp checks cover all 20
            model = build_model(fam, _input_shape(fam), hps, pipeline="text")
            assert model.output_shape == (None, 1)
    assert len(seen) > 8  # the space really varies
