"""Text classification model families (Deep Learning with Python, ch. 3.4 and 6.1-6.4).

Inputs come from :mod:`dlpipe.tasks.text.tokenize`: either multi-hot rows of width
`max_words + 2` (`build_multihot_dense`), or padded int sequences of length `maxlen`
whose indices are < `vocab_size` (every other family; 0 = padding, 1 = out of
vocabulary, so `vocab_size = max_words + 2` = 10,002 for the book's 10,000 words).

Heads: `num_classes=1` is binary (Dense 1 sigmoid, binary crossentropy), as in the
book's IMDB studies; `num_classes >= 3` is single-label multi-class (Dense n softmax,
sparse categorical crossentropy on int labels). Models are compiled with RMSprop and
the `accuracy` metric. Layers are named by their place; the Embedding layer is always
`"embedding"`, so pretrained vectors are loaded with
`model.get_layer("embedding").set_weights([matrix])`.
"""

from __future__ import annotations

import numbers

from dlpipe.models.lazy_keras import keras


def build_multihot_dense(
    input_shape, *, num_classes=1, units=16, learning_rate=1e-3
) -> keras.Model:
    """Multi-hot dense: Dense relu, Dense relu, output (book 3.4.3).

    Args:
        input_shape: `(width,)`: multi-hot width, `max_words + 2` (10,002 in the book).
        num_classes: 1 for binary (sigmoid), >= 3 for multi-class (softmax).
        units: Width of both hidden Dense layers.
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping float32 `(batch, width)` to
        `(batch, max(num_classes, 1))`.

    Raises:
        ValueError: If `input_shape` is not one positive int, or `num_classes` is 2
            or below 1.
    """
    inputs = keras.Input(shape=_check_input_shape(input_shape), name="multi_hot")
    x = keras.layers.Dense(units, activation="relu", name="dense_1")(inputs)
    x = keras.layers.Dense(units, activation="relu", name="dense_2")(x)
    return _compile(
        inputs, x, name="multihot_dense", num_classes=num_classes, learning_rate=learning_rate
    )


def build_embedding_flatten(
    input_shape, *, num_classes=1, vocab_size=10002, embedding_dim=8, learning_rate=1e-3
) -> keras.Model:
    """Embedding learned from scratch, Flatten, output (book 6.1.2, maxlen 20).

    Args:
        input_shape: `(maxlen,)`: padded sequence length.
        num_classes: 1 for binary (sigmoid), >= 3 for multi-class (softmax).
        vocab_size: Embedding rows, `max_words + 2`.
        embedding_dim: Embedding vector length.
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping int `(batch, maxlen)` to
        `(batch, max(num_classes, 1))`.

    Raises:
        ValueError: If `input_shape` is not one positive int, or `num_classes` is 2
            or below 1.
    """
    inputs, x = _embedded(input_shape, vocab_size, embedding_dim)
    x = keras.layers.Flatten(name="flatten")(x)  # (batch, maxlen * embedding_dim)
    return _compile(
        inputs, x, name="embedding_flatten", num_classes=num_classes, learning_rate=learning_rate
    )


def build_glove_dense(
    input_shape,
    *,
    num_classes=1,
    vocab_size=10002,
    embedding_dim=100,
    trainable_embedding=False,
    units=32,
    learning_rate=1e-3,
) -> keras.Model:
    """Pretrained (GloVe) embedding, frozen by default, Flatten, Dense relu, output (book 6.1.3).

    The builder takes plain values only; the caller loads the vectors after building:
    `model.get_layer("embedding").set_weights([matrix])` with `matrix` of shape
    `(vocab_size, embedding_dim)` from :func:`dlpipe.tasks.text.glove.embedding_matrix`.
    Setting weights keeps the layer frozen and needs no recompilation. The book's
    setting: 200 training samples, maxlen 100, glove.6B.100d.

    Args:
        input_shape: `(maxlen,)`: padded sequence length.
        num_classes: 1 for binary (sigmoid), >= 3 for multi-class (softmax).
        vocab_size: Embedding rows, `max_words + 2`.
        embedding_dim: Embedding vector length; must equal the GloVe file's (100).
        trainable_embedding: Train the embedding too (False: frozen, as in the book).
        units: Width of the hidden Dense layer.
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping int `(batch, maxlen)` to
        `(batch, max(num_classes, 1))`.

    Raises:
        ValueError: If `input_shape` is not one positive int, or `num_classes` is 2
            or below 1.
    """
    inputs, x = _embedded(input_shape, vocab_size, embedding_dim, trainable=trainable_embedding)
    x = keras.layers.Flatten(name="flatten")(x)  # (batch, maxlen * embedding_dim)
    x = keras.layers.Dense(units, activation="relu", name="dense_1")(x)
    return _compile(
        inputs, x, name="glove_dense", num_classes=num_classes, learning_rate=learning_rate
    )


def build_simple_rnn(
    input_shape,
    *,
    num_classes=1,
    vocab_size=10002,
    embedding_dim=32,
    units=32,
    learning_rate=1e-3,
) -> keras.Model:
    """Embedding, SimpleRNN, output (book 6.2.1, maxlen 500).

    Args:
        input_shape: `(maxlen,)`: padded sequence length.
        num_classes: 1 for binary (sigmoid), >= 3 for multi-class (softmax).
        vocab_size: Embedding rows, `max_words + 2`.
        embedding_dim: Embedding vector length.
        units: SimpleRNN state size.
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping int `(batch, maxlen)` to
        `(batch, max(num_classes, 1))`.

    Raises:
        ValueError: If `input_shape` is not one positive int, or `num_classes` is 2
            or below 1.
    """
    inputs, x = _embedded(input_shape, vocab_size, embedding_dim)
    x = keras.layers.SimpleRNN(units, name="simple_rnn_1")(x)  # (batch, units)
    return _compile(
        inputs, x, name="simple_rnn", num_classes=num_classes, learning_rate=learning_rate
    )


def build_lstm(
    input_shape,
    *,
    num_classes=1,
    vocab_size=10002,
    embedding_dim=32,
    units=32,
    learning_rate=1e-3,
) -> keras.Model:
    """Embedding, LSTM, output (book 6.2.3; 10 epochs, batch 128 in the book).

    The book's "reversed LSTM" (6.3.8) is this family on reversed sequences
    (`texts_to_sequences(..., reverse=True)`).

    Args:
        input_shape: `(maxlen,)`: padded sequence length.
        num_classes: 1 for binary (sigmoid), >= 3 for multi-class (softmax).
        vocab_size: Embedding rows, `max_words + 2`.
        embedding_dim: Embedding vector length.
        units: LSTM state size.
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping int `(batch, maxlen)` to
        `(batch, max(num_classes, 1))`.

    Raises:
        ValueError: If `input_shape` is not one positive int, or `num_classes` is 2
            or below 1.
    """
    inputs, x = _embedded(input_shape, vocab_size, embedding_dim)
    x = keras.layers.LSTM(units, name="lstm_1")(x)  # (batch, units)
    return _compile(inputs, x, name="lstm", num_classes=num_classes, learning_rate=learning_rate)


def build_bidirectional_lstm(
    input_shape,
    *,
    num_classes=1,
    vocab_size=10002,
    embedding_dim=32,
    units=32,
    learning_rate=1e-3,
) -> keras.Model:
    """Embedding, Bidirectional LSTM (both states concatenated), output (book 6.3.8).

    Args:
        input_shape: `(maxlen,)`: padded sequence length.
        num_classes: 1 for binary (sigmoid), >= 3 for multi-class (softmax).
        vocab_size: Embedding rows, `max_words + 2`.
        embedding_dim: Embedding vector length.
        units: State size of each direction's LSTM (output width `2 * units`).
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping int `(batch, maxlen)` to
        `(batch, max(num_classes, 1))`.

    Raises:
        ValueError: If `input_shape` is not one positive int, or `num_classes` is 2
            or below 1.
    """
    inputs, x = _embedded(input_shape, vocab_size, embedding_dim)
    lstm = keras.layers.LSTM(units, name="lstm_1")
    x = keras.layers.Bidirectional(lstm, name="bidirectional_1")(x)  # (batch, 2 * units)
    return _compile(
        inputs, x, name="bidirectional_lstm", num_classes=num_classes, learning_rate=learning_rate
    )


def build_conv1d(
    input_shape,
    *,
    num_classes=1,
    vocab_size=10002,
    embedding_dim=128,
    filters=32,
    kernel_size=7,
    pool_size=5,
    learning_rate=1e-4,
) -> keras.Model:
    """Embedding, Conv1D, MaxPooling1D, Conv1D, global max pool, output (book 6.4.3).

    Convolutions use "valid" padding (`L -> L - kernel_size + 1`) and pooling divides
    the length (`L -> L // pool_size`), so `maxlen` must be at least
    `kernel_size * pool_size + kernel_size - 1`: 41 with the defaults (the book uses
    maxlen 500 and RMSprop lr 1e-4).

    Args:
        input_shape: `(maxlen,)`: padded sequence length.
        num_classes: 1 for binary (sigmoid), >= 3 for multi-class (softmax).
        vocab_size: Embedding rows, `max_words + 2`.
        embedding_dim: Embedding vector length.
        filters: Output channels of each Conv1D.
        kernel_size: Conv1D window, in tokens.
        pool_size: MaxPooling1D window and stride, in tokens.
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping int `(batch, maxlen)` to
        `(batch, max(num_classes, 1))`.

    Raises:
        ValueError: If `input_shape` is not one positive int, `maxlen` is shorter than
            the conv/pool stack needs (the message gives both numbers), or
            `num_classes` is 2 or below 1.
    """
    (maxlen,) = _check_input_shape(input_shape)
    # walked back from a final length of 1: conv_2 needs k, the pool k * p, conv_1 + k - 1
    needed = kernel_size * pool_size + kernel_size - 1
    if maxlen < needed:
        raise ValueError(
            f"The maxlen of family `conv1d` must be at least {needed} for its conv/pool "
            f"stack (kernel_size={kernel_size}, pool_size={pool_size}). "
            f"Received: maxlen={maxlen} (input_shape={tuple(input_shape)})"
        )
    inputs, x = _embedded(input_shape, vocab_size, embedding_dim)
    x = keras.layers.Conv1D(filters, kernel_size, activation="relu", name="conv1d_1")(x)
    x = keras.layers.MaxPooling1D(pool_size, name="max_pooling1d_1")(x)
    x = keras.layers.Conv1D(filters, kernel_size, activation="relu", name="conv1d_2")(x)
    x = keras.layers.GlobalMaxPooling1D(name="global_max_pooling1d")(x)  # (batch, filters)
    return _compile(inputs, x, name="conv1d", num_classes=num_classes, learning_rate=learning_rate)


def _embedded(input_shape, vocab_size: int, embedding_dim: int, *, trainable: bool = True):
    """The int sequence input and its Embedding: `(inputs, (batch, maxlen, dim))`."""
    inputs = keras.Input(shape=_check_input_shape(input_shape), dtype="int32", name="sequence")
    embedding = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")
    embedding.trainable = trainable
    return inputs, embedding(inputs)


def _compile(inputs, features, *, name: str, num_classes: int, learning_rate: float) -> keras.Model:
    """Add the classification head and compile with RMSprop and accuracy."""
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, numbers.Integral)
        or num_classes < 1
        or num_classes == 2
    ):
        raise ValueError(
            "`num_classes` must be 1 (binary: one sigmoid unit) or at least 3 (softmax). "
            f"For two classes use num_classes=1. Received: num_classes={num_classes!r}"
        )
    if num_classes == 1:
        outputs = keras.layers.Dense(1, activation="sigmoid", name="dense_out")(features)
        loss = "binary_crossentropy"
    else:
        outputs = keras.layers.Dense(num_classes, activation="softmax", name="dense_out")(features)
        loss = "sparse_categorical_crossentropy"
    model = keras.Model(inputs, outputs, name=name)
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate),
        loss=loss,
        metrics=["accuracy"],
    )
    return model


def _check_input_shape(input_shape) -> tuple[int]:
    """Return `input_shape` as `(length,)` or raise ValueError."""
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 1
        or isinstance(input_shape[0], bool)
        or not isinstance(input_shape[0], numbers.Integral)
        or input_shape[0] <= 0
    ):
        raise ValueError(
            "`input_shape` must be a tuple of one positive integer (maxlen, or the "
            f"multi-hot width). Received: input_shape={input_shape!r}"
        )
    return (int(input_shape[0]),)


def conv1d_min_maxlen(hp: dict) -> int:
    """Shortest ``maxlen`` :func:`build_conv1d` accepts with the resolved hyperparameters
    ``hp``: conv, pool, conv leave ``k * p + k - 1`` tokens at least (see its docstring)."""
    k, p = hp["kernel_size"], hp["pool_size"]
    return k * p + k - 1
