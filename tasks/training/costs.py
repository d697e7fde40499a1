"""What one sample costs a model: an estimate of its multiply-adds, from the built model
(issue 17: fuller slots need each run's expected cost before any run has finished).

A layer's weights are each used once per position it is applied at, so its
multiply-adds per sample are about ``weights x positions`` (:func:`layer_cost`):

* recurrent layers (``GRU``, ``LSTM``, ``SimpleRNN``, and ``Bidirectional`` around
  them, which holds both directions' weights) run their cell once per input timestep:
  ``positions = timesteps`` (the input's axis 1), whether or not they return
  sequences;
* ``Embedding`` looks rows up, it multiplies nothing: ``positions x output_dim``;
* every other layer with weights (``Dense``, ``Conv1D``/``Conv2D``, normalization):
  ``positions`` = the product of its output's axes between batch and channels (1 for a
  ``Dense`` on a flat vector, the output length of a ``Conv1D``, ``height x width`` of
  a ``Conv2D``);
* layers without weights (pooling, ``Flatten``, ``Dropout``) count 0;
* a nested model counts its own layers.

This is the usual FLOP count of convolutional and recurrent nets (e.g. the per-layer
MAC counts of Howard et al. 2017, MobileNets, Table 2), up to biases and activations. It
ranks runs (a stacked GRU far above a dense net of twice its weights); it does not
predict seconds (dropout masks, sequential steps and batch size change the rate), which
is why :mod:`dlpipe.pipelines.slots` turns it into seconds with the run directory's
measured walls when there are any.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def _positions(shape) -> int:
    """Product of the axes between batch and channels of ``shape`` (1 for rank <= 2)."""
    inner = [int(d) for d in tuple(shape)[1:-1] if d is not None]
    return math.prod(inner) if inner else 1


def layer_cost(layer) -> float:
    """Multiply-adds per sample of one built Keras layer (module docstring).

    Args:
        layer: a layer of a built functional or sequential Keras 3 model (it has been
            called, so ``layer.input`` / ``layer.output`` are symbolic tensors).

    Returns:
        The estimate, >= 0 (a nested model: the sum over its layers).
    """
    import keras

    if isinstance(layer, keras.Model):
        return model_cost(layer)
    weights = layer.count_params() if layer.built else 0
    if not weights:
        return 0.0
    if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
        return float(weights * int(layer.input.shape[1]))
    if isinstance(layer, keras.layers.Embedding):
        return float(_positions(layer.output.shape) * int(layer.output.shape[-1]))
    return float(weights * _positions(layer.output.shape))


def model_cost(model) -> float:
    """Estimated multiply-adds of one sample through ``model`` (module docstring): the
    sum of :func:`layer_cost` over its layers.

    Example: ``GRU(4)`` on windows ``(10, 3)`` has ``3 x 4 x (3 + 4 + 2) = 108`` weights
    applied at 10 timesteps: 1,080; a ``Dense(1)`` on its state adds 5.
    """
    return float(sum(layer_cost(layer) for layer in model.layers))


def estimate_costs(cost_model: Callable, meta: dict, runs: Sequence[dict]) -> list[float | None]:
    """Build each run's model and estimate its per-sample cost (:func:`model_cost`).

    Args:
        cost_model: the study kind's builder ``cost_model(family, hp, inputs, meta) ->
            keras.Model`` (the model its training task would build, untrained).
        meta: the prepared dataset's metadata (what fixes input shapes and widths).
        runs: ``{"family", "hp", "inputs"}`` per run.

    Returns:
        One estimate per run, in order; None for a run whose model could not be built
        here (its training task reports the error itself).
    """
    import keras

    out = []
    for run in runs:
        try:
            out.append(model_cost(cost_model(run["family"], run["hp"], run["inputs"], meta)))
        except (ValueError, TypeError, KeyError):
            out.append(None)
        keras.backend.clear_session(free_memory=False)
    return out
