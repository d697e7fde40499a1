"""Arrays fed in the training thread (issues 14, 17): :func:`array_batches` gives what
Keras' own array pipeline gives, bit for bit, without its background threads."""

import numpy as np
import pytest

from dlpipe.tasks.training.arrays import array_batches


def fit(x, y, xv, yv, *, ours: bool, seed=3, loss="mse", units=1, spe=1):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            keras.layers.Dropout(0.25),  # draws from the seed every step
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(units),
        ]
    )
    model.compile("rmsprop", loss, steps_per_execution=spe)
    if ours:
        history = model.fit(
            array_batches(x, y, 7, shuffle=True),
            validation_data=array_batches(xv, yv, 7, shuffle=False),
            epochs=5,
            verbose=0,
            shuffle=False,  # the batches shuffle themselves (Keras warns otherwise)
        )
    else:
        history = model.fit(
            x, y, validation_data=(xv, yv), batch_size=7, shuffle=True, epochs=5, verbose=0
        )
    return model.get_weights(), history.history


@pytest.mark.train
@pytest.mark.parametrize("spe", [1, 3])
def test_same_weights_and_history_as_fit_on_arrays(spe):
    """A regression fit (float64 inputs: cast to float32 as Keras casts them; 45 rows
    in batches of 7: a last batch of 3) and a classification fit (int labels) on our
    batches equal ``fit(x, y, shuffle=True)`` bit for bit: weights, losses, validation
    losses; a control with another seed differs."""
    rng = np.random.default_rng(0)
    x, xv = rng.normal(size=(45, 4)), rng.normal(size=(12, 4))
    y, yv = x @ rng.normal(size=(4, 1)), xv @ rng.normal(size=(4, 1))
    w_ours, h_ours = fit(x, y, xv, yv, ours=True, spe=spe)
    w_keras, h_keras = fit(x, y, xv, yv, ours=False, spe=spe)
    assert all(np.array_equal(a, b) for a, b in zip(w_ours, w_keras))
    assert h_ours == h_keras and len(h_ours["loss"]) == 5
    w_other, _ = fit(x, y, xv, yv, ours=True, seed=4, spe=spe)
    assert not all(np.array_equal(a, b) for a, b in zip(w_ours, w_other))
    labels, val_labels = (x[:, 0] > 0).astype("int64"), (xv[:, 0] > 0).astype("int64")
    args = dict(loss="sparse_categorical_crossentropy", units=2, spe=spe)
    w_ours, h_ours = fit(x, labels, xv, val_labels, ours=True, **args)
    w_keras, h_keras = fit(x, labels, xv, val_labels, ours=False, **args)
    assert all(np.array_equal(a, b) for a, b in zip(w_ours, w_keras))
    assert h_ours == h_keras


def test_batches_cover_every_row_once_in_the_order_keras_draws():
    """Every epoch: ceil(n / batch) batches, every row exactly once, the last batch
    n % batch rows, in the order Keras' own array pipeline draws for the same seed (a
    shuffled permutation; Keras 3.15 on TensorFlow draws the same one each epoch, and so
    do these batches); unshuffled keeps the rows' order."""
    import tensorflow as tf
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    x = np.arange(23, dtype="float32")[:, None]
    tf.random.set_seed(0)
    ds = array_batches(x, np.arange(23), 5, shuffle=True)
    tf.random.set_seed(0)
    keras_ds = ArrayDataAdapter(x, np.arange(23), batch_size=5, shuffle=True).get_tf_dataset()
    assert int(ds.cardinality()) == 5
    assert [len(b[0]) for b in ds] == [5, 5, 5, 5, 3]
    for _ in range(2):
        order = np.concatenate([b[1].numpy() for b in ds])
        assert sorted(order.tolist()) == list(range(23)) and order.tolist() != list(range(23))
        assert order.tolist() == np.concatenate([b[1].numpy() for b in keras_ds]).tolist()
    plain = np.concatenate([b[0].numpy()[:, 0] for b in array_batches(x, x, 5, shuffle=False)])
    assert plain.tolist() == list(range(23))
    with pytest.raises(ValueError, match="x has 23 rows and y 22"):
        array_batches(x, np.arange(22), 5, shuffle=True)
