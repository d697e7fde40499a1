"""Weather timeseries model families (Deep Learning with Python, ch. 6.3-6.4).

Every builder maps a window of shape `(timesteps, features)` to one regression value:
the normalized temperature `delay` steps after the window. With the book's data,
`timesteps = lookback // step` (1440 // 6 = 240 hourly steps for 10 days) and
`features = 14` normalized weather columns. Models are compiled with RMSprop and MAE
loss, without output activation. Layers are named by their place so that weights can
be selected by name.
"""

from __future__ import annotations

import numbers

from dlpipe.models.lazy_keras import keras

# The layers that shrink the time axis, in order ("conv" = Conv1D, "pool" =
# MaxPooling1D); the minimum timesteps is derived from them (`_min_timesteps`).
_CONV1D_STAGES = ("conv", "pool", "conv", "pool", "conv")
_CONV_GRU_STAGES = ("conv", "pool", "conv")


_REVERSE_TIME = None


def reverse_time_layer():
    """The `ReverseTime` layer class, defined and registered with Keras's serializer
    (package `dlpipe`) on first use, so that importing this module loads no TensorFlow.
    Call it before `keras.saving.load_model` of a model that holds the layer."""
    global _REVERSE_TIME
    if _REVERSE_TIME is None:

        @keras.saving.register_keras_serializable(package="dlpipe")
        class ReverseTime(keras.layers.Layer):
            """Reverse the time axis of a sequence batch: step `t` becomes step
            `T - 1 - t`.

            Input shape: `(batch, timesteps, features)`; output shape: the same.
            """

            def call(self, inputs):
                return keras.ops.flip(inputs, axis=1)

            def compute_output_shape(self, input_shape):
                return input_shape

            def get_config(self):
                # No arguments beyond the base ones (name, dtype, trainable).
                return super().get_config()

        _REVERSE_TIME = ReverseTime
    return _REVERSE_TIME


def __getattr__(name: str):
    """`from dlpipe.models.timeseries import ReverseTime` (PEP 562)."""
    if name == "ReverseTime":
        return reverse_time_layer()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_dense(input_shape, *, units=32, learning_rate=1e-3) -> keras.Model:
    """Densely connected baseline: Flatten, Dense relu, Dense 1 (book 6.3.4).

    Args:
        input_shape: `(timesteps, features)`, positive ints.
        units: Width of the hidden Dense layer.
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping `(batch, timesteps, features)` to
        `(batch, 1)`.

    Raises:
        ValueError: If `input_shape` is not two positive ints.
    """
    inputs = keras.Input(shape=_check_input_shape(input_shape), name="window")
    x = keras.layers.Flatten(name="flatten")(inputs)  # (batch, timesteps * features)
    x = keras.layers.Dense(units, activation="relu", name="dense_1")(x)
    return _compile(inputs, x, name="dense", learning_rate=learning_rate)


def build_gru(
    input_shape, *, units=32, dropout=0.0, recurrent_dropout=0.0, learning_rate=1e-3
) -> keras.Model:
    """First recurrent baseline: GRU, Dense 1 (book 6.3.5).

    Args:
        input_shape: `(timesteps, features)`, positive ints.
        units: GRU state size.
        dropout: Fraction of the input units dropped, in [0, 1).
        recurrent_dropout: Fraction of the recurrent units dropped, in [0, 1).
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping `(batch, timesteps, features)` to
        `(batch, 1)`.

    Raises:
        ValueError: If `input_shape` is not two positive ints.
    """
    inputs = keras.Input(shape=_check_input_shape(input_shape), name="window")
    x = keras.layers.GRU(units, dropout=dropout, recurrent_dropout=recurrent_dropout, name="gru_1")(
        inputs
    )
    return _compile(inputs, x, name="gru", learning_rate=learning_rate)


def build_gru_dropout(
    input_shape, *, units=32, dropout=0.2, recurrent_dropout=0.2, learning_rate=1e-3
) -> keras.Model:
    """Dropout-regularized GRU, Dense 1 (book 6.3.6).

    Same layers as `build_gru`, with the book's dropout defaults.

    Args:
        input_shape: `(timesteps, features)`, positive ints.
        units: GRU state size.
        dropout: Fraction of the input units dropped, in [0, 1).
        recurrent_dropout: Fraction of the recurrent units dropped, in [0, 1).
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping `(batch, timesteps, features)` to
        `(batch, 1)`.

    Raises:
        ValueError: If `input_shape` is not two positive ints.
    """
    inputs = keras.Input(shape=_check_input_shape(input_shape), name="window")
    x = keras.layers.GRU(units, dropout=dropout, recurrent_dropout=recurrent_dropout, name="gru_1")(
        inputs
    )
    return _compile(inputs, x, name="gru_dropout", learning_rate=learning_rate)


def build_stacked_gru(
    input_shape,
    *,
    units=32,
    units_2=64,
    dropout=0.1,
    recurrent_dropout=0.5,
    learning_rate=1e-3,
) -> keras.Model:
    """Two stacked GRUs, the second with relu activation, Dense 1 (book 6.3.7).

    Args:
        input_shape: `(timesteps, features)`, positive ints.
        units: State size of the first GRU (returns the full sequence).
        units_2: State size of the second GRU.
        dropout: Fraction of the input units dropped in both GRUs, in [0, 1).
        recurrent_dropout: Fraction of the recurrent units dropped in both GRUs.
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping `(batch, timesteps, features)` to
        `(batch, 1)`.

    Raises:
        ValueError: If `input_shape` is not two positive ints.
    """
    inputs = keras.Input(shape=_check_input_shape(input_shape), name="window")
    x = keras.layers.GRU(
        units,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        return_sequences=True,
        name="gru_1",
    )(inputs)  # (batch, timesteps, units)
    x = keras.layers.GRU(
        units_2,
        activation="relu",
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        name="gru_2",
    )(x)
    return _compile(inputs, x, name="stacked_gru", learning_rate=learning_rate)


def build_reversed_gru(
    input_shape, *, units=32, dropout=0.0, recurrent_dropout=0.0, learning_rate=1e-3
) -> keras.Model:
    """GRU on the time-reversed window, Dense 1 (book 6.3.8).

    The reversal is the model's first layer (`ReverseTime`), so windows are fed in
    chronological order as for every other family.

    Args:
        input_shape: `(timesteps, features)`, positive ints.
        units: GRU state size.
        dropout: Fraction of the input units dropped, in [0, 1).
        recurrent_dropout: Fraction of the recurrent units dropped, in [0, 1).
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping `(batch, timesteps, features)` to
        `(batch, 1)`.

    Raises:
        ValueError: If `input_shape` is not two positive ints.
    """
    inputs = keras.Input(shape=_check_input_shape(input_shape), name="window")
    x = reverse_time_layer()(name="reverse_time")(inputs)  # step t -> step timesteps - 1 - t
    x = keras.layers.GRU(units, dropout=dropout, recurrent_dropout=recurrent_dropout, name="gru_1")(
        x
    )
    return _compile(inputs, x, name="reversed_gru", learning_rate=learning_rate)


def build_bidirectional_gru(
    input_shape, *, units=32, dropout=0.0, recurrent_dropout=0.0, learning_rate=1e-3
) -> keras.Model:
    """Bidirectional GRU (states of both directions concatenated), Dense 1 (book 6.3.8).

    Args:
        input_shape: `(timesteps, features)`, positive ints.
        units: State size of each direction's GRU (output width `2 * units`).
        dropout: Fraction of the input units dropped, in [0, 1).
        recurrent_dropout: Fraction of the recurrent units dropped, in [0, 1).
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping `(batch, timesteps, features)` to
        `(batch, 1)`.

    Raises:
        ValueError: If `input_shape` is not two positive ints.
    """
    inputs = keras.Input(shape=_check_input_shape(input_shape), name="window")
    gru = keras.layers.GRU(
        units, dropout=dropout, recurrent_dropout=recurrent_dropout, name="gru_1"
    )
    x = keras.layers.Bidirectional(gru, name="bidirectional_1")(inputs)  # (batch, 2u)
    return _compile(inputs, x, name="bidirectional_gru", learning_rate=learning_rate)


def build_conv1d(
    input_shape, *, filters=32, kernel_size=5, pool_size=3, learning_rate=1e-3
) -> keras.Model:
    """1D convnet: 3 Conv1D relu, MaxPooling1D between, global max pool, Dense 1 (book 6.4.4).

    Convolutions use "valid" padding (length `L -> L - kernel_size + 1`) and pooling
    divides the length (`L -> L // pool_size`), so the window must be long enough:
    61 timesteps with the defaults.

    Args:
        input_shape: `(timesteps, features)`, positive ints.
        filters: Output channels of each Conv1D.
        kernel_size: Conv1D window, in timesteps.
        pool_size: MaxPooling1D window and stride, in timesteps.
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping `(batch, timesteps, features)` to
        `(batch, 1)`.

    Raises:
        ValueError: If `input_shape` is not two positive ints, or its timesteps are
            fewer than the conv/pool stack needs (the message gives both numbers).
    """
    shape = _check_input_shape(input_shape)
    _check_timesteps(shape, _CONV1D_STAGES, kernel_size, pool_size, family="conv1d")
    inputs = keras.Input(shape=shape, name="window")
    x = keras.layers.Conv1D(filters, kernel_size, activation="relu", name="conv1d_1")(inputs)
    x = keras.layers.MaxPooling1D(pool_size, name="max_pooling1d_1")(x)
    x = keras.layers.Conv1D(filters, kernel_size, activation="relu", name="conv1d_2")(x)
    x = keras.layers.MaxPooling1D(pool_size, name="max_pooling1d_2")(x)
    x = keras.layers.Conv1D(filters, kernel_size, activation="relu", name="conv1d_3")(x)
    x = keras.layers.GlobalMaxPooling1D(name="global_max_pooling1d")(x)  # (batch, filters)
    return _compile(inputs, x, name="conv1d", learning_rate=learning_rate)


def build_conv_gru(
    input_shape,
    *,
    filters=32,
    kernel_size=5,
    pool_size=3,
    units=32,
    dropout=0.1,
    recurrent_dropout=0.5,
    learning_rate=1e-3,
) -> keras.Model:
    """Conv1D front end shortening the sequence, then a GRU, Dense 1 (book 6.4.5).

    The book feeds it windows sampled at step 3 (two points per hour, twice the
    resolution of the other families); choosing the step is the caller's business.
    With the defaults the window needs at least 19 timesteps.

    Args:
        input_shape: `(timesteps, features)`, positive ints.
        filters: Output channels of each Conv1D.
        kernel_size: Conv1D window, in timesteps.
        pool_size: MaxPooling1D window and stride, in timesteps.
        units: GRU state size.
        dropout: Fraction of the GRU input units dropped, in [0, 1).
        recurrent_dropout: Fraction of the GRU recurrent units dropped, in [0, 1).
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping `(batch, timesteps, features)` to
        `(batch, 1)`.

    Raises:
        ValueError: If `input_shape` is not two positive ints, or its timesteps are
            fewer than the conv/pool stack needs (the message gives both numbers).
    """
    shape = _check_input_shape(input_shape)
    _check_timesteps(shape, _CONV_GRU_STAGES, kernel_size, pool_size, family="conv_gru")
    inputs = keras.Input(shape=shape, name="window")
    x = keras.layers.Conv1D(filters, kernel_size, activation="relu", name="conv1d_1")(inputs)
    x = keras.layers.MaxPooling1D(pool_size, name="max_pooling1d_1")(x)
    x = keras.layers.Conv1D(filters, kernel_size, activation="relu", name="conv1d_2")(x)
    x = keras.layers.GRU(units, dropout=dropout, recurrent_dropout=recurrent_dropout, name="gru_1")(
        x
    )
    return _compile(inputs, x, name="conv_gru", learning_rate=learning_rate)


def build_lstm(
    input_shape, *, units=32, dropout=0.0, recurrent_dropout=0.0, learning_rate=1e-3
) -> keras.Model:
    """LSTM, Dense 1: the GRU baseline with an LSTM cell (book 6.2.3 applied to 6.3).

    Args:
        input_shape: `(timesteps, features)`, positive ints.
        units: LSTM state size.
        dropout: Fraction of the input units dropped, in [0, 1).
        recurrent_dropout: Fraction of the recurrent units dropped, in [0, 1).
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping `(batch, timesteps, features)` to
        `(batch, 1)`.

    Raises:
        ValueError: If `input_shape` is not two positive ints.
    """
    inputs = keras.Input(shape=_check_input_shape(input_shape), name="window")
    x = keras.layers.LSTM(
        units, dropout=dropout, recurrent_dropout=recurrent_dropout, name="lstm_1"
    )(inputs)
    return _compile(inputs, x, name="lstm", learning_rate=learning_rate)


def _compile(inputs, features, *, name: str, learning_rate: float) -> keras.Model:
    """Add the Dense(1) regression head and compile with RMSprop and MAE loss."""
    outputs = keras.layers.Dense(1, name="dense_out")(features)  # (batch, 1)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate), loss="mae")
    return model


def _check_input_shape(input_shape) -> tuple[int, int]:
    """Return `input_shape` as `(timesteps, features)` or raise ValueError."""
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 2
        or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0
            for d in input_shape
        )
    ):
        raise ValueError(
            "`input_shape` must be a tuple of two positive integers "
            f"(timesteps, features). Received: input_shape={input_shape!r}"
        )
    return int(input_shape[0]), int(input_shape[1])


def _min_timesteps(stages, kernel_size: int, pool_size: int) -> int:
    """Fewest timesteps for which every stage leaves a sequence of length >= 1.

    Walks the stages backwards from a final length of 1: a "valid" convolution needs
    `kernel_size - 1` more steps than it outputs; a pooling with stride = window
    outputs `L // pool_size`, so it needs `pool_size` times its output length.
    """
    needed = 1
    for stage in reversed(stages):
        needed = needed + kernel_size - 1 if stage == "conv" else needed * pool_size
    return needed


def _check_timesteps(shape, stages, kernel_size, pool_size, *, family: str) -> None:
    """Raise ValueError if the window is too short for the conv/pool stack."""
    needed = _min_timesteps(stages, kernel_size, pool_size)
    if shape[0] < needed:
        raise ValueError(
            f"The timesteps of family `{family}` must be at least {needed} for its "
            f"conv/pool stack (kernel_size={kernel_size}, pool_size={pool_size}). "
            f"Received: timesteps={shape[0]} (input_shape={shape})"
        )


def conv1d_min_timesteps(hp: dict) -> int:
    """Fewest window timesteps :func:`build_conv1d` accepts with the resolved
    hyperparameters ``hp`` (``kernel_size``, ``pool_size``)."""
    return _min_timesteps(_CONV1D_STAGES, hp["kernel_size"], hp["pool_size"])


def conv_gru_min_timesteps(hp: dict) -> int:
    """Fewest window timesteps :func:`build_conv_gru` accepts with the resolved
    hyperparameters ``hp`` (``kernel_size``, ``pool_size``)."""
    return _min_timesteps(_CONV_GRU_STAGES, hp["kernel_size"], hp["pool_size"])
