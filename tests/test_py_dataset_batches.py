"""PyDatasets fed in the training thread (issue 17): :func:`py_dataset_batches` gives
what Keras' own ``PyDatasetAdapter`` gives, bit for bit, without its prefetch thread."""

import numpy as np
import pytest

from dlpipe.tasks.training.arrays import py_dataset_batches


def shuffled_dataset(x, y, batch_size, *, shuffle, seed=0):
    """A PyDataset like the weather and text kinds' own: its own NumPy generator draws
    a new row order in ``on_epoch_end``."""
    import keras

    class Rows(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(x))
            if shuffle:
                self.rng.shuffle(self.order)
            self.epochs_ended = 0

        def __len__(self):
            return -(-len(x) // batch_size)

        def __getitem__(self, i):
            rows = self.order[i * batch_size : (i + 1) * batch_size]
            return x[rows], y[rows]

        def on_epoch_end(self):
            self.epochs_ended += 1
            if shuffle:
                self.rng.shuffle(self.order)

    return Rows()


def fit(x, y, xv, yv, *, ours: bool, seed=3, loss="mse", units=1, spe=1, recurrent=False):
    import keras

    keras.utils.set_random_seed(seed)
    layers = [keras.layers.GRU(8)] if recurrent else [keras.layers.Dense(16, activation="relu")]
    model = keras.Sequential(
        [keras.Input(x.shape[1:]), keras.layers.Dropout(0.25), *layers, keras.layers.Dense(units)]
    )
    model.compile("rmsprop", loss, steps_per_execution=spe)
    train = shuffled_dataset(x, y, 7, shuffle=True, seed=seed)
    val = shuffled_dataset(xv, yv, 7, shuffle=False)
    if ours:
        train, val = py_dataset_batches(train, shuffle=True), py_dataset_batches(val, shuffle=False)
    # our batches are already in fit's order: shuffle=False (Keras warns otherwise)
    history = model.fit(train, validation_data=val, epochs=5, verbose=0, shuffle=not ours)
    predictions = model.predict(
        py_dataset_batches(shuffled_dataset(xv, yv, 7, shuffle=False), shuffle=False)
        if ours
        else shuffled_dataset(xv, yv, 7, shuffle=False),
        verbose=0,
    )
    return model.get_weights(), history.history, predictions


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(p, q) for p, q in zip(a, b))


@pytest.mark.train
@pytest.mark.parametrize("spe", [1, 3])
def test_same_weights_history_and_predictions_as_fit_on_the_py_dataset(spe):
    """Windows of a series through a GRU (float32, 45 rows in batches of 7: a last batch
    of 3) and class labels through a dense head (int64 labels): our batches equal
    ``fit(py_dataset)`` bit for bit (weights, losses, validation losses, predictions);
    a control with another seed differs."""
    rng = np.random.default_rng(0)
    x, xv = (
        rng.normal(size=(45, 6, 3)).astype("float32"),
        rng.normal(size=(12, 6, 3)).astype("float32"),
    )
    y, yv = x[:, -1, :1] * 2, xv[:, -1, :1] * 2
    w_ours, h_ours, p_ours = fit(x, y, xv, yv, ours=True, spe=spe, recurrent=True)
    w_keras, h_keras, p_keras = fit(x, y, xv, yv, ours=False, spe=spe, recurrent=True)
    assert same(w_ours, w_keras) and np.array_equal(p_ours, p_keras)
    assert h_ours == h_keras and len(h_ours["loss"]) == 5
    w_other, _, _ = fit(x, y, xv, yv, ours=True, seed=4, spe=spe, recurrent=True)
    assert not same(w_ours, w_other)
    flat, flat_v = x.reshape(45, -1), xv.reshape(12, -1)
    labels, val_labels = (flat[:, 0] > 0).astype("int64"), (flat_v[:, 0] > 0).astype("int64")
    args = dict(loss="sparse_categorical_crossentropy", units=2, spe=spe)
    w_ours, h_ours, p_ours = fit(flat, labels, flat_v, val_labels, ours=True, **args)
    w_keras, h_keras, p_keras = fit(flat, labels, flat_v, val_labels, ours=False, **args)
    assert same(w_ours, w_keras) and h_ours == h_keras and np.array_equal(p_ours, p_keras)


def test_epochs_serve_every_batch_once_in_keras_order():
    """Each pass serves every batch once: in index order unshuffled; shuffled, in the
    order Python's ``random`` draws after the seed (what Keras' adapter draws), with the
    dataset's ``on_epoch_end`` run before every pass (as Keras runs it before the first
    epoch and after each)."""
    import random

    x = np.arange(23, dtype="float32")[:, None]
    ds = shuffled_dataset(x, x, 5, shuffle=False)
    batches = py_dataset_batches(ds, shuffle=False)
    assert int(batches.cardinality()) == 5
    for _ in range(2):
        assert [b[0].numpy()[:, 0].tolist() for b in batches] == [
            x[i : i + 5, 0].tolist() for i in range(0, 23, 5)
        ]
    assert ds.epochs_ended == 2
    random.seed(7)
    shuffled = py_dataset_batches(
        shuffle_ds := shuffled_dataset(x, x, 5, shuffle=False), shuffle=True
    )
    served = [b[0].numpy()[0, 0] // 5 for b in shuffled]
    random.seed(7)
    expected = list(range(5))
    random.shuffle(expected)
    assert served == expected and sorted(served) == list(range(5))
    assert shuffle_ds.epochs_ended == 1


def test_empty_dataset_is_refused():
    empty = shuffled_dataset(
        np.zeros((0, 2), "float32"), np.zeros((0, 1), "float32"), 4, shuffle=False
    )
    with pytest.raises(ValueError, match="length 0"):
        py_dataset_batches(empty, shuffle=False)
