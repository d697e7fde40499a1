"""Per-sample cost estimates of built models (issue 17, fuller slots): hand-worked
multiply-add counts, and the weather families' estimates built as their training task
builds them."""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

from dlpipe.tasks.training.costs import estimate_costs, layer_cost, model_cost  # noqa: E402
from dlpipe.tasks.weather.train import cost_model  # noqa: E402
from dlpipe.tasks.weather.windows import WindowSpec  # noqa: E402


def test_gru_dense_conv_and_embedding_by_hand():
    inputs = keras.Input((10, 3))
    x = keras.layers.GRU(4)(inputs)  # 3 gates x 4 units x (3 inputs + 4 state + 2 biases)
    out = keras.layers.Dense(1)(x)  # 4 + 1 weights, applied once
    model = keras.Model(inputs, out)
    assert model.layers[1].count_params() == 3 * 4 * (3 + 4 + 2) == 108
    assert model_cost(model) == 108 * 10 + 5

    conv_in = keras.Input((20, 3))
    c = keras.layers.Conv1D(8, 5)(conv_in)  # 5 x 3 x 8 + 8 = 128 weights at 16 positions
    c = keras.layers.MaxPooling1D(2)(c)  # no weights
    c = keras.layers.Bidirectional(keras.layers.LSTM(2))(c)  # 2 x 4 x 2 x (8 + 2 + 1) at 8 steps
    conv = keras.Model(conv_in, c)
    assert conv.layers[3].count_params() == 2 * 4 * 2 * (8 + 2 + 1) == 176
    assert model_cost(conv) == 128 * 16 + 0 + 176 * 8

    words = keras.Input((7,))
    e = keras.layers.Embedding(1000, 16)(words)  # lookups: 7 x 16, not 16,000 weights
    e = keras.layers.Dense(2)(e)  # (16 + 1) x 2 at 7 positions
    emb = keras.Model(words, e)
    assert layer_cost(emb.layers[1]) == 7 * 16
    assert model_cost(emb) == 7 * 16 + 34 * 7


def test_a_nested_model_counts_its_layers():
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, keras.layers.Dense(3)(inner_in))
    outer_in = keras.Input((6,))
    outer = keras.Model(outer_in, keras.layers.Dense(1)(inner(outer_in)))
    assert model_cost(outer) == (6 * 3 + 3) + (3 + 1)


def test_weather_families_rank_as_their_training_does():
    meta = {"columns": [f"c{i}" for i in range(11)]}
    windows = WindowSpec(lookback=120, step=1, delay=24, batch_size=64)
    families = ["dense", "gru", "stacked_gru", "bidirectional_gru", "conv1d", "nonexistent"]
    runs = [{"family": f, "hp": {}, "inputs": windows} for f in families]
    costs = dict(zip(families, estimate_costs(cost_model, meta, runs), strict=True))
    assert costs["nonexistent"] is None  # an unknown family: no estimate, no error
    gru_weights = 3 * 32 * (11 + 32 + 2)
    assert costs["gru"] == gru_weights * 120 + 33
    assert costs["bidirectional_gru"] == 2 * gru_weights * 120 + 65
    # the weather demo's walls: stacked GRU 156 s > bidirectional 76 s > GRU 51 s >
    # conv1d 13 s > dense 10 s (runs/weather-demo, 2026-12-01); the dense net has the
    # most weights (42,305) but the fewest multiply-adds
    order = sorted(families[:-1], key=costs.get, reverse=True)
    assert order == ["stacked_gru", "bidirectional_gru", "gru", "conv1d", "dense"]
