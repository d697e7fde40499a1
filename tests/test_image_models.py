"""Image model families (book ch. 5, 7.3.1): the small convnet's parameter count, every
builder's output, fine-tuning by layer name, conv bases and their weights, the
registry entries and default search spaces. Fast: tiny inputs, weights=None bases,
no training."""

import keras
import numpy as np
import pytest
from hyperopt.pyll.stochastic import sample

from dlpipe.models.images import (
    BOOK_FINE_TUNE_LAYERS,
    WeightsUnavailableError,
    build_features_head,
    build_frozen_base,
    build_small_convnet,
    build_small_convnet_dropout,
    conv_base,
    fine_tune,
)
from dlpipe.models.registry import IMAGE_FAMILIES, build_model, get_family, resolved_hparams
from dlpipe.models.spaces import IMAGE_SPACES
from dlpipe.tasks.sweep.space import decode, sweep_space, validate_space

SMALL = (48, 48, 3)


def _forward(model, shape, n=2):
    x = np.random.default_rng(0).uniform(0, 1, (n, *shape)).astype("float32")
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_small_convnet_has_the_books_3453121_parameters():
    model = build_small_convnet((150, 150, 3))
    assert model.count_params() == 3_453_121
    assert model.get_layer("flatten").output.shape == (None, 7 * 7 * 128)
    assert [model.get_layer(f"conv2d_{i}").filters for i in range(1, 5)] == [32, 64, 128, 128]
    assert model.get_layer("dense_1").units == 512
    assert model.get_layer("dense_out").activation is keras.activations.sigmoid
    assert model.loss == "binary_crossentropy"
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert np.isclose(lr, 1e-4)


def test_small_convnet_dropout_is_the_same_network_plus_dropout_and_augmentation():
    model = build_small_convnet_dropout((150, 150, 3))
    assert model.name == "small_convnet_dropout"
    assert model.count_params() == 3_453_121  # dropout and augmentation add no weights
    names = [layer.name for layer in model.layers]
    assert names[1] == "augmentation"
    assert names.index("dropout") == names.index("dense_1") - 1  # Dropout before Dense 512
    assert model.get_layer("dropout").rate == 0.5


def test_in_model_augmentation_is_inactive_at_inference():
    model = build_small_convnet_dropout(SMALL)
    x = np.random.default_rng(0).uniform(0, 1, (2, *SMALL)).astype("float32")
    first = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_array_equal(first, keras.ops.convert_to_numpy(model(x, training=False)))
    block = model.get_layer("augmentation")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(block(x, training=False)), x)


@pytest.mark.parametrize(
    "builder, shape, kwargs, out",
    [
        (build_small_convnet, SMALL, {}, (2, 1)),
        (build_small_convnet, (50, 46, 1), {"num_classes": 5}, (2, 5)),
        (build_small_convnet, SMALL, {"batch_norm": True, "separable": True}, (2, 1)),
        (build_small_convnet_dropout, SMALL, {"num_classes": 3}, (2, 3)),
        (build_features_head, (4, 4, 512), {}, (2, 1)),
        (build_features_head, (2048,), {"num_classes": 10}, (2, 10)),
        (build_frozen_base, SMALL, {"weights": "none"}, (2, 1)),
        (
            build_frozen_base,
            (64, 64, 3),
            {"weights": "none", "base": "mobilenet_v2", "num_classes": 4},
            (2, 4),
        ),
    ],
)
def test_builder_output_shapes(builder, shape, kwargs, out):
    model = builder(shape, **kwargs)
    y = _forward(model, shape)
    assert y.shape == out and y.dtype == np.float32
    if out[1] == 1:
        assert model.loss == "binary_crossentropy"
        assert np.all((0 <= y) & (y <= 1))
    else:
        assert model.loss == "sparse_categorical_crossentropy"
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_features_head_matches_the_book():
    model = build_features_head((4, 4, 512))
    assert model.count_params() == 8192 * 256 + 256 + 256 + 1
    assert model.get_layer("dropout").rate == 0.5
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert np.isclose(lr, 2e-5)


def test_ch7_variants_use_their_layers():
    model = build_small_convnet(SMALL, batch_norm=True, separable=True)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"SeparableConv2D", "BatchNormalization"} <= kinds and "Conv2D" not in kinds
    assert model.get_layer("separable_conv2d_1").filters == 32


def test_small_convnet_minimum_size():
    build_small_convnet((46, 46, 3))
    with pytest.raises(ValueError, match=r"at least 46 .*Received: input_shape=\(45, 46, 3\)"):
        build_small_convnet((45, 46, 3))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (48, 48)}, r"`input_shape` must be a tuple of three positive"),
        ({"input_shape": SMALL, "dropout": 1.0}, r"`dropout` must be in \[0, 1\)"),
        ({"input_shape": SMALL, "num_classes": 0}, r"`num_classes` must be a positive integer"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_small_convnet(**kwargs)


# ---------------------------------------------------------------------------- fine-tuning


@pytest.fixture
def frozen_vgg16():
    return build_frozen_base(SMALL, weights="none", augment=False)


def test_frozen_base_trains_only_the_head(frozen_vgg16):
    base = frozen_vgg16.get_layer("vgg16")
    assert not base.trainable and not any(layer.trainable for layer in base.layers)
    assert [w.path for w in frozen_vgg16.trainable_weights] == [
        "dense_1/kernel",
        "dense_1/bias",
        "dense_out/kernel",
        "dense_out/bias",
    ]


def test_fine_tune_unfreezes_exactly_the_named_layers(frozen_vgg16):
    model = fine_tune(frozen_vgg16)
    assert model is frozen_vgg16
    base = model.get_layer("vgg16")
    trainable = {layer.name for layer in base.layers if layer.trainable}
    assert trainable == set(BOOK_FINE_TUNE_LAYERS)
    names = [layer.name for layer in base.layers]
    below = names[: names.index("block5_conv1")]
    assert below and not any(base.get_layer(n).trainable for n in below)
    assert not base.get_layer("block5_pool").trainable
    assert [w.path for w in model.trainable_weights] == [
        "block5_conv1/kernel",
        "block5_conv1/bias",
        "block5_conv2/kernel",
        "block5_conv2/bias",
        "block5_conv3/kernel",
        "block5_conv3/bias",
        "dense_1/kernel",
        "dense_1/bias",
        "dense_out/kernel",
        "dense_out/bias",
    ]
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert np.isclose(lr, 1e-5) and model.loss == "binary_crossentropy"
    # a narrower second call re-freezes what is no longer named
    fine_tune(model, unfreeze=["block5_conv3"])
    assert {layer.name for layer in base.layers if layer.trainable} == {"block5_conv3"}


def test_fine_tune_selects_by_name_on_a_flat_model():
    base = conv_base("vgg16", weights=None, input_shape=SMALL)
    base.trainable = False
    fine_tune(base, unfreeze=["block4_conv3", "block5_conv1"])
    assert {layer.name for layer in base.layers if layer.trainable} == {
        "block4_conv3",
        "block5_conv1",
    }


@pytest.mark.parametrize(
    "unfreeze, message",
    [
        (
            ["block5_conv1", "block9_conv1"],
            r"\['block9_conv1'\] that model `frozen_base`.*"
            r"'block5_conv3'",
        ),
        ("block5_conv1", r"`unfreeze` must be a non-empty list"),
        ([], r"`unfreeze` must be a non-empty list"),
    ],
)
def test_fine_tune_bad_names_raise_and_change_nothing(frozen_vgg16, unfreeze, message):
    with pytest.raises(ValueError, match=message):
        fine_tune(frozen_vgg16, unfreeze=unfreeze)
    assert len(frozen_vgg16.trainable_weights) == 4


# ---------------------------------------------------------------------------- conv bases


def test_conv_base_missing_local_weights_file_names_the_path(tmp_path):
    missing = tmp_path / "weights" / "vgg16_notop.h5"
    with pytest.raises(ValueError, match=rf"No such file: '{missing}'"):
        conv_base("vgg16", weights=str(missing), input_shape=SMALL)
    with pytest.raises(ValueError, match=r"must end with '\.h5' or '\.keras'"):
        wrong = tmp_path / "weights.bin"
        wrong.write_bytes(b"x")
        conv_base("vgg16", weights=str(wrong), input_shape=SMALL)


def test_conv_base_loads_a_local_weights_file(tmp_path):
    source = conv_base("vgg16", weights=None, input_shape=SMALL)
    path = tmp_path / "vgg16_notop.weights.h5"
    source.save_weights(path)
    loaded = conv_base("VGG16", weights=str(path), input_shape=SMALL)
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert loaded.get_layer("block5_conv1") is not None


def test_conv_base_imagenet_download_failure_says_to_pass_a_file(monkeypatch):
    def offline(**kwargs):
        assert kwargs["weights"] == "imagenet" and kwargs["include_top"] is False
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    with pytest.raises(WeightsUnavailableError, match=r"pass the path of the local weights"):
        conv_base("vgg16", weights="imagenet", input_shape=SMALL)


@pytest.mark.parametrize(
    "name, shape, out",
    [
        ("vgg19", (48, 48, 3), (None, 1, 1, 512)),
        ("ResNet50", (64, 64, 3), (None, 2, 2, 2048)),
        ("InceptionV3", (75, 75, 3), (None, 1, 1, 2048)),
        ("xception", (71, 71, 3), (None, 3, 3, 2048)),
        ("MobileNetV2", (64, 64, 3), (None, 2, 2, 1280)),
    ],
)
def test_conv_bases_by_name(name, shape, out):
    assert conv_base(name, weights=None, input_shape=shape).output_shape == out


def test_conv_base_unknown_name():
    with pytest.raises(ValueError, match=r"`base` must be one of .*Received: base='alexnet'"):
        conv_base("alexnet", weights=None, input_shape=SMALL)


# ---------------------------------------------------------------------------- registry


def test_registry_lists_the_image_families():
    assert set(IMAGE_FAMILIES) == {
        "small_convnet",
        "small_convnet_dropout",
        "features_head",
        "frozen_base",
    }
    family = get_family("small_convnet", "images")
    assert family.pipeline == "images" and family.defaults["learning_rate"] == 1e-4
    assert family.param_types["batch_norm"] is bool
    assert get_family("frozen_base", "images").param_types["weights"] is str
    model = build_model("small_convnet", SMALL, {"filters": 16.0}, pipeline="images")
    assert model.get_layer("conv2d_1").filters == 16  # C09 coercion


def test_every_image_family_ships_a_default_space():
    assert set(IMAGE_SPACES) == set(IMAGE_FAMILIES)


INPUTS = {
    "small_convnet": SMALL,
    "small_convnet_dropout": SMALL,
    "features_head": (2, 2, 32),
    "frozen_base": SMALL,
}


@pytest.mark.parametrize("family", sorted(IMAGE_SPACES))
def test_default_image_space_samples_build_models(family):
    space = validate_space(IMAGE_SPACES[family], family)
    expr = sweep_space({family: space})
    seen = set()
    for i in range(20):
        fam, hps = decode(sample(expr, rng=np.random.default_rng(i)))
        assert fam == family
        resolved = resolved_hparams(fam, hps, pipeline="images")
        seen.add(tuple(sorted(resolved.items())))
        for key, value in resolved.items():
            assert type(value) is IMAGE_FAMILIES[family].param_types[key]
        if i < 2:  # building is the slow part
            if family == "frozen_base":
                hps = {**hps, "weights": "none"}  # no download in tests
            model = build_model(fam, INPUTS[family], hps, pipeline="images")
            assert model.output_shape == (None, 1)
    assert len(seen) > 10
