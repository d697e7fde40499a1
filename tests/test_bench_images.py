"""The analytic multiply-add counter of benchmarks/bench_images.py (cheap: tiny models
and one VGG16 built with random weights)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "bench_images", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_images.py"
)
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def test_two_conv_layers_and_dense_by_hand():
    inputs = keras.Input((10, 12, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)  # valid: (8, 10, 4)
    x = keras.layers.Conv2D(5, (1, 2), strides=2, padding="same", name="c2")(x)  # (4, 5, 5)
    x = keras.layers.MaxPooling2D(name="pool")(x)  # (2, 2, 5): not counted
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(7, name="d")(x)  # 20 -> 7
    counted = bench.count_macs(keras.Model(inputs, outputs))
    c1 = 8 * 10 * 4 * 3 * 3 * 3  # H_out * W_out * C_out * k_h * k_w * C_in
    c2 = 4 * 5 * 5 * 1 * 2 * 4
    assert counted["layers"] == [("c1", c1), ("c2", c2), ("d", 20 * 7)]
    assert counted["total"] == c1 + c2 + 140 == 9580


def test_conv_macs_agree_with_keras_parameter_count():
    # one grouped Conv2D: MACs = output positions x (weights without biases)
    inputs = keras.Input((33, 17, 6))
    layer = keras.layers.Conv2D(12, (5, 3), strides=(2, 1), padding="valid", groups=2)
    model = keras.Model(inputs, layer(inputs))
    h, w, c = model.output_shape[1:]
    assert (h, w, c) == (15, 15, 12)
    weights = layer.count_params() - 12  # minus the biases
    assert bench.count_macs(model)["total"] == h * w * weights == 15 * 15 * 5 * 3 * (6 // 2) * 12


def test_nested_and_depthwise_separable():
    inner_in = keras.Input((8, 8, 4))
    inner = keras.Model(
        inner_in, keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(inner_in)
    )
    inputs = keras.Input((8, 8, 4))
    outputs = keras.layers.SeparableConv2D(6, 3, name="sep")(inner(inputs))  # (6, 6, 6)
    counted = bench.count_macs(keras.Model(inputs, outputs))
    assert counted["layers"] == [("dw", 8 * 8 * 3 * 3 * 4), ("sep", 6 * 6 * (3 * 3 * 4 + 4 * 6))]


def test_vgg16_at_150_is_13_2_gflop():
    keras.utils.set_random_seed(0)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(150, 150, 3))
    macs = bench.count_macs(base)["total"]
    assert 2 * macs / 1e9 == pytest.approx(13.23, abs=0.01)
    assert len(bench.count_macs(base)["layers"]) == 13  # the 13 convolutions
