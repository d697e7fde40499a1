"""Tabular (vector data) model families (Deep Learning with Python, ch. 3.5-3.6, 4.4).

Inputs come from :mod:`dlpipe.tasks.tabular.data`: one float32 row per sample, numeric
features normalized with the training split's mean and standard deviation, categorical
ones one-hot encoded, so `input_shape` is `(width,)`.

Heads follow the study's task (fixed by the data, never searched):

- `task="regression"`: Dense 1, no activation; loss `mse`, metric `mae` on the raw
  target, so MAE is in the target's units (book listing 3.25, Boston housing);
- `task="binary"`: Dense 1 sigmoid; `binary_crossentropy`, `accuracy`;
- `task="multiclass"`: Dense `num_classes` softmax; `sparse_categorical_crossentropy` on
  int labels, `accuracy`.

Models are compiled with RMSprop, the book's optimizer for these studies.
"""

from __future__ import annotations

import numbers

from dlpipe.models.lazy_keras import keras

TASKS = ("regression", "binary", "multiclass")


def build_dense(
    input_shape, *, task="regression", num_classes=1, units=64, learning_rate=1e-3
) -> keras.Model:
    """Two Dense relu layers and the task's head (book listing 3.25: 64-64).

    Args:
        input_shape: `(width,)`: features after one-hot encoding.
        task: `regression`, `binary` or `multiclass` (the data fixes it).
        num_classes: 1 for regression and binary, >= 2 for multiclass (softmax).
        units: Width of both hidden Dense layers.
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping float32 `(batch, width)` to
        `(batch, num_classes)`.

    Raises:
        ValueError: If `input_shape` is not one positive int, `task` is unknown, or
            `num_classes` does not fit the task.
    """
    inputs = keras.Input(shape=_check_input_shape(input_shape), name="features")
    x = keras.layers.Dense(units, activation="relu", name="dense_1")(inputs)
    x = keras.layers.Dense(units, activation="relu", name="dense_2")(x)
    return _compile(
        inputs, x, name="dense", task=task, num_classes=num_classes, learning_rate=learning_rate
    )


def build_dense_dropout(
    input_shape, *, task="regression", num_classes=1, units=64, dropout=0.3, learning_rate=1e-3
) -> keras.Model:
    """Two Dense relu layers, each followed by Dropout, and the task's head (book 4.4.3).

    Args:
        input_shape: `(width,)`: features after one-hot encoding.
        task: `regression`, `binary` or `multiclass` (the data fixes it).
        num_classes: 1 for regression and binary, >= 2 for multiclass (softmax).
        units: Width of both hidden Dense layers.
        dropout: Fraction of each hidden layer's outputs zeroed in training, in [0, 1).
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping float32 `(batch, width)` to
        `(batch, num_classes)`.

    Raises:
        ValueError: As :func:`build_dense`, or `dropout` outside [0, 1).
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    inputs = keras.Input(shape=_check_input_shape(input_shape), name="features")
    x = keras.layers.Dense(units, activation="relu", name="dense_1")(inputs)
    x = keras.layers.Dropout(dropout, name="dropout_1")(x)
    x = keras.layers.Dense(units, activation="relu", name="dense_2")(x)
    x = keras.layers.Dropout(dropout, name="dropout_2")(x)
    return _compile(
        inputs,
        x,
        name="dense_dropout",
        task=task,
        num_classes=num_classes,
        learning_rate=learning_rate,
    )


def build_dense_l2(
    input_shape, *, task="regression", num_classes=1, units=64, l2=1e-3, learning_rate=1e-3
) -> keras.Model:
    """Two Dense relu layers with L2 weight regularization and the task's head (book
    4.4.2: `regularizers.l2(0.001)` adds `l2 * w**2` per weight to the loss).

    Args:
        input_shape: `(width,)`: features after one-hot encoding.
        task: `regression`, `binary` or `multiclass` (the data fixes it).
        num_classes: 1 for regression and binary, >= 2 for multiclass (softmax).
        units: Width of both hidden Dense layers.
        l2: L2 factor of the hidden layers' kernels, >= 0.
        learning_rate: RMSprop step size.

    Returns:
        A compiled Functional model mapping float32 `(batch, width)` to
        `(batch, num_classes)`.

    Raises:
        ValueError: As :func:`build_dense`, or a negative `l2`.
    """
    if l2 < 0:
        raise ValueError(f"`l2` must be >= 0. Received: l2={l2!r}")
    inputs = keras.Input(shape=_check_input_shape(input_shape), name="features")
    x = inputs
    for i in (1, 2):
        x = keras.layers.Dense(
            units,
            activation="relu",
            kernel_regularizer=keras.regularizers.L2(l2),
            name=f"dense_{i}",
        )(x)
    return _compile(
        inputs, x, name="dense_l2", task=task, num_classes=num_classes, learning_rate=learning_rate
    )


def head(task: str, num_classes: int) -> tuple[int, str | None, str, str]:
    """``(units, activation, loss, metric)`` of the task's output layer.

    Raises:
        ValueError: unknown task, or `num_classes` that does not fit it.
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {', '.join(TASKS)}. Received: task={task!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise ValueError(f"`num_classes` must be an integer. Received: {num_classes!r}")
    if task == "multiclass":
        if num_classes < 2:
            raise ValueError(
                f"`num_classes` must be >= 2 for a multiclass head. Received: {num_classes}"
            )
        return num_classes, "softmax", "sparse_categorical_crossentropy", "accuracy"
    if num_classes != 1:
        raise ValueError(
            f"`num_classes` must be 1 for task {task!r} (one output unit). "
            f"Received: num_classes={num_classes}"
        )
    if task == "binary":
        return 1, "sigmoid", "binary_crossentropy", "accuracy"
    return 1, None, "mse", "mae"


def _compile(
    inputs, features, *, name: str, task: str, num_classes: int, learning_rate: float
) -> keras.Model:
    """Add the task's head and compile with RMSprop, its loss and its metric."""
    units, activation, loss, metric = head(task, num_classes)
    outputs = keras.layers.Dense(units, activation=activation, name="dense_out")(features)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate),
        loss=loss,
        metrics=[metric],
    )
    return model


def _check_input_shape(input_shape) -> tuple[int]:
    """Return `input_shape` as `(width,)` or raise ValueError."""
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 1
        or isinstance(input_shape[0], bool)
        or not isinstance(input_shape[0], numbers.Integral)
        or input_shape[0] <= 0
    ):
        raise ValueError(
            "`input_shape` must be a tuple of one positive integer (the feature width). "
            f"Received: input_shape={input_shape!r}"
        )
    return (int(input_shape[0]),)
