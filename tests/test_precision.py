"""Issue 17: the image study's precision policy (``images.precision``) and the compiled
conv-base forward pass of feature extraction."""

from dataclasses import asdict

import keras
import numpy as np
import pytest

from dlpipe.models.precision import dtype_policy_scope
from dlpipe.pipelines.config import ConfigError, parse_study
from dlpipe.tasks.features.extract import compiled_forward, extract_features
from dlpipe.tasks.images.decode import load_image
from dlpipe.tasks.images.precision import cpu_flags, resolve_precision
from dlpipe.tasks.images.prepare import ImageSpec
from dlpipe.tasks.images.train import training_policy
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.fit import TrainingSpec
from dlpipe.tasks.training.records import run_key, spec_dict

from image_files import image_tree

SIZE = (16, 16)
LAYERS = 3  # convolutions of the tiny base


def tiny_base(policy="float32"):
    """3 convolutions (ReLU) and 2 poolings: (b, 16, 16, 3) -> (b, 4, 4, 8), random
    weights seeded alike under any policy (variables are float32 in every policy)."""
    keras.utils.set_random_seed(0)
    with dtype_policy_scope(policy):
        inputs = keras.Input((*SIZE, 3))
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        return keras.Model(inputs, x, name="tiny")


# ---------------------------------------------------------------------------- policy


def test_resolve_explicit_values():
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("bfloat16") == "mixed_bfloat16"
    assert resolve_precision("float16") == "mixed_float16"


def test_auto_from_faked_gpus_and_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma amx_bf16 amx_tile\n\n"
        "processor\t: 1\nflags\t\t: fpu sse2 avx2 fma avx512_bf16\n"
    )
    assert {"avx2", "amx_bf16", "avx512_bf16"} <= cpu_flags(str(info))
    assert cpu_flags(str(tmp_path / "missing")) == set()
    assert resolve_precision("auto", gpus=["GPU:0"], flags=["avx2"]) == "mixed_float16"
    assert resolve_precision("auto", gpus=[], flags={"avx2", "amx_bf16"}) == "mixed_bfloat16"
    assert resolve_precision("auto", gpus=[], flags={"avx512f", "avx512_bf16"}) == "mixed_bfloat16"
    assert resolve_precision("auto", gpus=[], flags={"avx2", "avx512f", "fma"}) == "float32"


def test_auto_on_this_machine_is_float32():
    flags = cpu_flags()
    if flags & {"avx512_bf16", "amx_bf16"}:
        pytest.skip("this CPU has native bfloat16: auto is mixed_bfloat16 here")
    assert resolve_precision("auto", gpus=[]) == "float32"


def test_unknown_precision_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"`precision` must be one of float32, bfloat16"):
        ImageSpec(precision="fp8")
    raw = {
        "study": "p",
        "pipeline": "images",
        "data": {"path": "demo:digits"},
        "images": {"precision": "half"},
        "models": [{"family": "features_head"}],
    }
    with pytest.raises(ConfigError, match=r"`images`: `precision` must be one of .*'half'"):
        parse_study(raw)
    assert parse_study({**raw, "images": {"precision": "auto"}}).images.precision == "auto"


def test_policy_scope_restores_the_previous_policy():
    with dtype_policy_scope("mixed_bfloat16"):
        layer = keras.layers.Dense(2)
    assert layer.dtype_policy.name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(ValueError, match="`policy` must be one of"):
        with dtype_policy_scope("bfloat16"):
            pass
    assert training_policy("frozen_base", ImageSpec(precision="bfloat16")) == "mixed_bfloat16"
    assert training_policy("features_head", ImageSpec(precision="bfloat16")) == "float32"
    assert training_policy("frozen_base", ImageSpec()) == "float32"


# ---------------------------------------------------------------------------- keys


def test_float32_keys_and_reports_are_those_stored_before_the_setting():
    spec = ImageSpec(size=(32, 32), weights="none")
    old = asdict(spec)
    del old["precision"]  # the settings as they were before issue 17
    assert spec_dict(spec) == old
    training = TrainingSpec()
    payload = {  # run_key's payload, written out
        "dataset": "images-abc",
        "family": "frozen_base",
        "hp": {"units": 4},
        "windows": old,
        "training": {k: v for k, v in asdict(training).items() if k != "tensorboard"},
        "seed": 1,
    }
    for name, default in (("batch_size", 32), ("steps_per_execution", 1), ("joint_heads", False)):
        if payload["training"].get(name) == default:
            del payload["training"][name]
    import hashlib

    expected = "frozen_base-" + hashlib.sha256(reports.dumps(payload).encode()).hexdigest()[:12]
    assert run_key("images-abc", "frozen_base", {"units": 4}, spec, training, 1) == expected
    bf16 = ImageSpec(size=(32, 32), weights="none", precision="bfloat16")
    assert spec_dict(bf16)["precision"] == "bfloat16"
    assert run_key("images-abc", "frozen_base", {"units": 4}, bf16, training, 1) != expected


# ---------------------------------------------------------------------------- features


def test_compiled_forward_matches_predict_any_batch(tmp_path):
    base = tiny_base()
    paths = image_tree(tmp_path / "train", ["a", "b"], per_class=4, size=SIZE)
    out = extract_features(paths, base, size=SIZE, preprocessing=1 / 255, batch_size=3)
    assert out.forward_batches == 3  # 3 + 3 + partial 2: one compiled graph serves all
    x = np.stack([load_image(p, SIZE) for p in paths]) / np.float32(255)
    expected = base.predict(x, batch_size=8, verbose=0)
    np.testing.assert_allclose(out.features, expected, rtol=1e-5, atol=1e-6)
    forward = compiled_forward(base)
    assert forward is compiled_forward(base)  # one compiled function per model
    # batch 3, then the partial batch 2 relaxes the batch dimension: no further traces
    assert forward.experimental_get_tracing_count() == 2
    np.testing.assert_allclose(forward(x[:5]).numpy(), expected[:5], rtol=1e-5, atol=1e-6)
    assert forward.experimental_get_tracing_count() == 2


def test_bfloat16_features_close_to_float32_stored_float32_other_key(tmp_path):
    f32, bf16 = tiny_base(), tiny_base("mixed_bfloat16")
    bf16.set_weights(f32.get_weights())
    assert bf16.layers[1].compute_dtype == "bfloat16"
    paths = image_tree(tmp_path / "train", ["a", "b"], per_class=3, size=SIZE)
    kw = dict(size=SIZE, preprocessing=1 / 255, batch_size=4, cache_root=tmp_path / "cache")
    a, b = extract_features(paths, f32, **kw), extract_features(paths, bf16, **kw)
    assert b.features.dtype == np.float32 and b.features.shape == a.features.shape
    assert b.base_key != a.base_key and b.forward_images == len(paths)
    rel = np.linalg.norm(b.features - a.features) / np.linalg.norm(a.features)
    # bfloat16 keeps 8 significant bits: each rounding (input, weights, each layer's
    # output) errs by at most 2^-9 relative; with float32 accumulation, 3 roundings per
    # layer give <= 3 * 2^-9 per layer (ReLU and pooling do not grow it); allowing the
    # random weights to double it: 2 * LAYERS * 3 * 2^-9 = 0.035
    bound = 2 * LAYERS * 3 * 2.0**-9
    assert 0 < rel < bound, rel  # > 0: really computed in bfloat16
    cached = extract_features(paths, bf16, **kw)
    assert cached.hits == len(paths) and cached.features.dtype == np.float32
    np.testing.assert_array_equal(cached.features, b.features)


@pytest.mark.train
def test_study_cache_key_has_the_policy_only_when_not_float32(tmp_path):
    from dlpipe.tasks.features.keys import base_key, model_fingerprint
    from dlpipe.tasks.features.study import cache_features

    paths = image_tree(tmp_path / "train", ["a", "b"], per_class=1, size=(32, 32))
    split = {"train": paths, "validation": [], "test": []}
    labels = {"train": np.array([0, 1]), "validation": np.zeros(0), "test": np.zeros(0)}
    spec = ImageSpec(size=(32, 32), weights="none", preprocessing="base")
    f32, report32 = cache_features(split, labels, spec, str(tmp_path / "cache"), seed=3)
    keras.utils.set_random_seed(3)
    from dlpipe.models.images import conv_base

    fingerprint = model_fingerprint(conv_base("vgg16", weights=None, input_shape=(32, 32, 3)))
    # the key written before issue 17: no `extra`
    assert report32["base_key"] == base_key("vgg16", fingerprint, (32, 32), "vgg16")
    assert "precision" not in report32
    bf16_spec = ImageSpec(size=(32, 32), weights="none", preprocessing="base", precision="bfloat16")
    bf16, report = cache_features(split, labels, bf16_spec, str(tmp_path / "cache"), seed=3)
    assert report["precision"] == "mixed_bfloat16"
    assert report["base"]["extra"] == {"precision": "mixed_bfloat16"}
    assert report["base_key"] != report32["base_key"] and report["misses"] == 2
    assert bf16.dtype == np.float32 and bf16.shape == f32.shape == (2, 1, 1, 512)
    assert keras.config.dtype_policy().name == "float32"  # the scope was left


@pytest.mark.train
def test_frozen_base_trains_under_the_policy():
    from dlpipe.models.registry import build_model

    hp = {"base": "vgg16", "weights": "none", "units": 4, "augment": False, "num_classes": 1}
    with dtype_policy_scope("mixed_bfloat16"):
        model = build_model("frozen_base", (32, 32, 3), hp, "images")
    vgg = model.get_layer("vgg16")
    assert vgg.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert vgg.get_layer("block1_conv1").kernel.dtype == "float32"  # mixed: float32 weights
    x = np.random.default_rng(0).uniform(-100, 100, (4, 32, 32, 3)).astype(np.float32)
    history = model.fit(x, np.array([0, 1, 0, 1]), epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    with dtype_policy_scope("mixed_float16"):  # float16 training scales the loss
        small = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        small.compile(optimizer="rmsprop", loss="mse")
    assert isinstance(small.optimizer, keras.optimizers.LossScaleOptimizer)
