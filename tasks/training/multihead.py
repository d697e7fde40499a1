"""Several classifier heads trained together, one compiled step for all (issue 17).

Heads on the same cached features (``features_head``) are small: trained one after
another, each step pays TensorFlow's per-step work for ~a millisecond of arithmetic.
:func:`fit_heads` trains them as one model with parallel heads: every head sees the
same batch; one ``GradientTape`` records every head's loss and takes the gradient of
their sum (the heads share no weights, so each head's gradients are those of its own
loss); then each head's own optimizer applies its own gradients at its own learning
rate. A whole epoch of steps runs in one ``tf.function`` call (the batches gathered
from the features in memory by a permutation: no per-step Python work).

What each head keeps of its own: its initial weights and dropout masks (its model is
built by the caller after ``keras.utils.set_random_seed(seed)``, as a separate run
builds it), its loss, optimizer, learning rate and optimizer state (the optimizer's own
slot variables; a plain ``RMSprop`` - the heads' optimizer - is applied by TensorFlow's
fused ``ResourceApplyRMSProp`` kernel, the same formula as Keras's
``RMSprop.update_step`` with ``momentum=0``, ``centered=False``: ``v = rho v + (1 - rho)
g^2; w -= lr g / sqrt(v + epsilon)``; any other optimizer by its own ``apply``), its
callbacks (the study's: epoch recorder and best weights, TensorBoard, TerminateOnNaN,
EarlyStopping, ReduceLROnPlateau: :func:`dlpipe.tasks.training.fit.callbacks`), its
epoch rows and validation scores. A head that early stopping stops leaves the joint
step (the others go on). Steps per epoch and epochs are those of a separate run: the
same number of updates.

What the heads share: the batch order. Each epoch's order is a permutation drawn from
``shuffle_seed`` and the epoch (:func:`epoch_order`), not Keras's ``fit`` shuffling,
so results are identical in kind to separate runs, not bit-identical. The last batch of
an epoch holds the remainder (``n % batch_size`` samples), as in ``fit``.

Plain functions, no Ray; TensorFlow imported inside, after the caller's
:func:`dlpipe.tasks.training.tf_setup.setup_tensorflow`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from dlpipe.tasks.training.fit import TrainingSpec, callbacks, read_folder, tensorboard_folder
from dlpipe.tasks.training.fit import epoch_recorder as make_recorder

__all__ = [
    "JOINT_SHUFFLE_SEED",
    "epoch_order",
    "fit_heads",
    "joint_loss",
    "predict_heads",
    "uses_fused_rmsprop",
]

#: the seed of the batch order of jointly trained heads (each head's own seed still sets
#: its initial weights and dropout masks)
JOINT_SHUFFLE_SEED = 0

#: the compiled losses a joint step computes itself: name -> (Keras loss class, binary)
_LOSSES = {
    "binary_crossentropy": ("BinaryCrossentropy", True),
    "sparse_categorical_crossentropy": ("SparseCategoricalCrossentropy", False),
}


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the ``n`` training samples in ``epoch`` (0-based): a permutation
    drawn by ``numpy.random.default_rng([seed, epoch])``, int32 ``(n,)``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n).astype(np.int32)


def joint_loss(model) -> str | None:
    """The name of ``model``'s compiled loss when a joint step can compute it
    (``binary_crossentropy`` or ``sparse_categorical_crossentropy``, with a sigmoid or
    softmax output), else None."""
    loss = model.loss
    return loss if isinstance(loss, str) and loss in _LOSSES else None


def uses_fused_rmsprop(optimizer) -> bool:
    """Whether ``optimizer`` is a plain Keras ``RMSprop`` (no momentum, not centered, no
    weight decay, clipping, EMA, gradient accumulation or loss scaling) that the joint
    step applies with TensorFlow's fused ``ResourceApplyRMSProp`` kernel."""
    import keras

    return (
        type(optimizer) is keras.optimizers.RMSprop
        and not optimizer.momentum
        and not optimizer.centered
        and not optimizer.weight_decay
        and optimizer.clipnorm is None
        and optimizer.clipvalue is None
        and optimizer.global_clipnorm is None
        and not optimizer.use_ema
        and not getattr(optimizer, "gradient_accumulation_steps", None)
    )


class _Head:
    """One head in the joint step: its model, variables, loss and update."""

    def __init__(self, model):
        import keras
        import tensorflow as tf

        name = joint_loss(model)
        if name is None:
            raise ValueError(f"a joint step cannot compute the loss {model.loss!r}")
        cls, self.binary = _LOSSES[name]
        self.loss = getattr(keras.losses, cls)()
        self.model = model
        self.variables = list(model.trainable_variables)
        self.optimizer = opt = model.optimizer
        if not opt.built:
            opt.build(self.variables)
        self.fused = uses_fused_rmsprop(opt)
        if self.fused:
            self.velocities = [opt._velocities[opt._get_variable_index(v)] for v in self.variables]
            # ResourceApplyRMSProp's momentum slot: with momentum 0 it holds the last step
            # (lr g / sqrt(v + eps)), scratch only (the optimizer's state is its velocities)
            self.scratch = [
                tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in self.variables
            ]

    def target(self, y):
        import tensorflow as tf

        return tf.cast(tf.reshape(y, (-1, 1)), tf.float32) if self.binary else y

    def correct(self, y, p):
        import tensorflow as tf

        if self.binary:
            hit = tf.equal(tf.cast(p[:, 0] > 0.5, tf.int32), tf.cast(y, tf.int32))
        else:
            hit = tf.equal(tf.cast(tf.argmax(p, axis=-1), tf.int32), tf.cast(y, tf.int32))
        return tf.reduce_sum(tf.cast(hit, tf.float32))

    def apply(self, grads):
        import tensorflow as tf

        opt = self.optimizer
        if not self.fused:
            opt.apply(grads, self.variables)
            return
        lr = tf.cast(opt.learning_rate, tf.float32)
        rho = tf.constant(opt.rho, tf.float32)
        eps = tf.constant(opt.epsilon, tf.float32)
        zero = tf.constant(0.0, tf.float32)
        for var, ms, mom, grad in zip(self.variables, self.velocities, self.scratch, grads):
            tf.raw_ops.ResourceApplyRMSProp(
                var=var.value.handle,
                ms=ms.value.handle,
                mom=mom.handle,
                lr=lr,
                rho=rho,
                momentum=zero,
                epsilon=eps,
                grad=tf.cast(grad, tf.float32),
            )
        opt.iterations.assign_add(1)


def _epoch_function(heads: list[_Head], x, y, batch_size: int):
    """A ``tf.function(order) -> (loss sums (H,), correct counts (H,))``: one epoch of
    joint steps over ``x[order]`` in batches of ``batch_size``."""
    import tensorflow as tf

    n = int(x.shape[0])
    steps = -(-n // batch_size)
    variables = [v for h in heads for v in h.variables]

    def step(xb, yb):
        with tf.GradientTape() as tape:
            preds = [h.model(xb, training=True) for h in heads]
            losses = [h.loss(h.target(yb), p) for h, p in zip(heads, preds)]
            total = tf.add_n(losses)
        grads = tape.gradient(total, variables)
        k = 0
        for h in heads:
            h.apply(grads[k : k + len(h.variables)])
            k += len(h.variables)
        b = tf.cast(tf.shape(yb)[0], tf.float32)
        return (
            tf.stack([loss * b for loss in losses]),
            tf.stack([h.correct(yb, p) for h, p in zip(heads, preds)]),
        )

    @tf.function
    def epoch(order):
        loss_sum = tf.zeros((len(heads),), tf.float32)
        hits = tf.zeros((len(heads),), tf.float32)
        for s in tf.range(steps):
            idx = order[s * batch_size : tf.minimum((s + 1) * batch_size, n)]
            losses, correct = step(tf.gather(x, idx), tf.gather(y, idx))
            loss_sum += losses
            hits += correct
        return loss_sum, hits

    return epoch


def _score_function(heads: list[_Head], batch_size: int):
    """A ``tf.function(x, y) -> (loss sums (H,), correct counts (H,))`` of every head in
    inference mode, batch by batch (as ``evaluate`` scores)."""
    import tensorflow as tf

    @tf.function
    def score(x, y):
        n = tf.shape(x)[0]
        loss_sum = tf.zeros((len(heads),), tf.float32)
        hits = tf.zeros((len(heads),), tf.float32)
        for s in tf.range((n + batch_size - 1) // batch_size):
            xb = x[s * batch_size : tf.minimum((s + 1) * batch_size, n)]
            yb = y[s * batch_size : tf.minimum((s + 1) * batch_size, n)]
            b = tf.cast(tf.shape(yb)[0], tf.float32)
            preds = [h.model(xb, training=False) for h in heads]
            loss_sum += tf.stack([h.loss(h.target(yb), p) * b for h, p in zip(heads, preds)])
            hits += tf.stack([h.correct(yb, p) for h, p in zip(heads, preds)])
        return loss_sum, hits

    return score


def fit_heads(
    models: list,
    x: np.ndarray,
    y: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray] | None,
    *,
    training: TrainingSpec,
    run_ids: list[str],
    epoch_hooks: list[Callable[[int, dict], None] | None] | None = None,
    shuffle_seed: int = JOINT_SHUFFLE_SEED,
) -> list:
    """Train compiled heads together on the same inputs (the module docstring says how).

    Args:
        models: compiled Keras models, each with a :func:`joint_loss` (sigmoid +
            ``binary_crossentropy`` or softmax + ``sparse_categorical_crossentropy``);
            they share no variables.
        x: training inputs, float32 ``(n, *input_shape)``; y: int labels ``(n,)``.
        validation: ``(x_val, y_val)`` scored after every epoch (``val_loss``,
            ``val_accuracy``), or None.
        training: ``epochs``, ``batch_size``, the callbacks' settings
            (``steps_per_execution`` does not apply: one call per epoch).
        run_ids: one per model, copied into its epoch rows.
        epoch_hooks: one per model (or None): ``hook(epoch, logs)`` after each epoch.
        shuffle_seed: the seed of every epoch's batch order (:func:`epoch_order`).

    Returns:
        One epoch recorder per model, as :func:`dlpipe.tasks.training.fit.fit_model`
        returns it (``rows``, ``best_epoch``, ``diverged``, ``tensorboard``); each
        model holds its best epoch's weights (when early stopping restores them).

    Raises:
        ValueError: a model whose loss a joint step cannot compute; lengths that differ.
    """
    import contextlib

    import keras
    import tensorflow as tf

    if len(run_ids) != len(models):
        raise ValueError(f"{len(models)} models but {len(run_ids)} run ids")
    hooks = list(epoch_hooks or [None] * len(models))
    heads = [_Head(m) for m in models]
    xt = tf.constant(np.asarray(x, np.float32))
    yt = tf.constant(np.asarray(y).astype(np.int32))
    if validation is not None:
        xv = tf.constant(np.asarray(validation[0], np.float32))
        yv = tf.constant(np.asarray(validation[1]).astype(np.int32))
    n = int(xt.shape[0])
    recorders = [make_recorder(r, training.early_stopping, h) for r, h in zip(run_ids, hooks)]
    compiled: dict[tuple, tuple] = {}
    with contextlib.ExitStack() as stack:
        lists = []
        for model, recorder in zip(models, recorders):
            log_dir = stack.enter_context(tensorboard_folder(training.tensorboard))
            recorder.log_dir = log_dir
            cbs = keras.callbacks.CallbackList(callbacks(training, recorder, log_dir), model=model)
            model.stop_training = False
            cbs.on_train_begin()
            lists.append(cbs)
        active = list(range(len(models)))
        for epoch in range(training.epochs):
            if not active:
                break
            key = tuple(active)
            if key not in compiled:
                group = [heads[i] for i in active]
                compiled[key] = (
                    _epoch_function(group, xt, yt, training.batch_size),
                    _score_function(group, training.batch_size),
                )
            fit_epoch, score = compiled[key]
            for i in active:
                lists[i].on_epoch_begin(epoch)
            t0 = time.perf_counter()
            order = tf.constant(epoch_order(shuffle_seed, epoch, n))
            loss_sum, hits = (t.numpy() for t in fit_epoch(order))
            val = score(xv, yv) if validation is not None else None
            val_loss, val_hits = (None, None) if val is None else (t.numpy() for t in val)
            seconds = (time.perf_counter() - t0) / len(active)
            for j, i in enumerate(active):
                logs = {"loss": float(loss_sum[j] / n), "accuracy": float(hits[j] / n)}
                if val is not None:
                    nv = int(xv.shape[0])
                    logs["val_loss"] = float(val_loss[j] / nv)
                    logs["val_accuracy"] = float(val_hits[j] / nv)
                recorders[i]._t0 = time.perf_counter() - seconds  # its share of the epoch
                lists[i].on_epoch_end(epoch, logs)
                if not math.isfinite(logs["loss"]):  # TerminateOnNaN works per batch in fit
                    models[i].stop_training = True
            active = [i for i in active if not models[i].stop_training]
        for i, (model, recorder) in enumerate(zip(models, recorders)):
            lists[i].on_train_end()
            recorder.tensorboard = read_folder(recorder.log_dir) if recorder.log_dir else {}
            recorder.restore_best(model)
    return recorders


def predict_heads(models: list, x: np.ndarray, batch_size: int = 1024) -> list[np.ndarray]:
    """Every model's outputs on ``x`` (inference mode), computed together: one compiled
    call per ``batch_size`` rows for all models (in place of one ``predict`` each, which
    traces a function per model).

    Args:
        models: Keras models taking ``x``'s samples.
        x: float32 inputs ``(n, *input_shape)``.
        batch_size: rows per call.

    Returns:
        One float32 array ``(n, outputs)`` per model, in order.
    """
    import tensorflow as tf

    @tf.function
    def forward(xb):
        return [m(xb, training=False) for m in models]

    x = np.asarray(x, np.float32)
    parts = [forward(tf.constant(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    if not parts:
        return [np.zeros((0, int(m.output_shape[-1])), np.float32) for m in models]
    return [np.concatenate([p[j].numpy() for p in parts]) for j in range(len(models))]
