"""In-memory arrays and Keras PyDatasets as batches fed in the training thread (issues 14,
17).

``model.fit(x, y, batch_size=..., shuffle=True)`` on NumPy arrays makes Keras 3 build
its array pipeline (``ArrayDataAdapter.get_tf_dataset``, keras/src/trainers/
data_adapters/array_data_adapter.py): one shuffled permutation of the row indices per
epoch, cut into batches, each batch gathered from the arrays by a parallel ``map``,
behind two ``prefetch`` buffers. For a small model those background threads cost more
than they hide: every step hands work to them and waits to be woken, ~3 wake-ups per
step. Alone on a 2-core machine the woken thread finds the idle second core; with two
training processes on 2 cores it waits for a time slice, and a 40-epoch fold run of the
tabular demo took 1.4-1.5x as long with the same CPU time (measured: a plain process
fitting the book's 64-64 head on 331 rows, 3.3 s alone, 4.7-5.2 s paired; CPU 3.2 s in
both; pinned to one core alone, 5.4 s).

:func:`array_batches` builds the same pipeline (the same ops, so the same random
permutation for the same seed, and the same batches, updates and results, bit for bit:
tests/test_array_batches.py) without the prefetch buffers and with a sequential
``map``, so each batch is gathered in the thread that trains on it.

:func:`py_dataset_batches` does the same for a ``keras.utils.PyDataset`` (the weather
kind's windows, the text kind's documents): Keras reads it through a generator behind a
``prefetch`` buffer; these are the same batches in the same order, read when the step
asks for them (tests/test_py_dataset_batches.py).
"""

from __future__ import annotations

import numpy as np

__all__ = ["array_batches", "py_dataset_batches"]


def floatx(a: np.ndarray) -> np.ndarray:
    """``a`` with a float dtype other than Keras' ``floatx`` cast to it (as Keras casts
    float arrays it is given); any other dtype as it is."""
    import keras

    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.floating) and a.dtype != np.dtype(keras.config.floatx()):
        return a.astype(keras.config.floatx())
    return a


def array_batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool):
    """A ``tf.data.Dataset`` of ``(x, y)`` batches, what ``model.fit(x, y,
    batch_size=batch_size, shuffle=shuffle)`` trains on, fed synchronously (module
    docstring).

    Args:
        x: inputs, shape ``(n, ...)``.
        y: targets, shape ``(n, ...)``; same ``n``.
        batch_size: rows per batch (the last batch holds ``n % batch_size`` if not 0).
        shuffle: a new random order of the rows every epoch (drawn from TensorFlow's
            global seed, as Keras draws it: set it with ``keras.utils.set_random_seed``).

    Returns:
        A dataset of ``ceil(n / batch_size)`` batches (its cardinality is known, so Keras
        counts the steps of an epoch), iterated again each epoch.

    Raises:
        ValueError: ``x`` and ``y`` differ in length, or ``batch_size`` < 1.
    """
    import tensorflow as tf

    n = len(x)
    if len(y) != n:
        raise ValueError(f"x has {n} rows and y {len(y)}: they must match")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: {batch_size}")
    full, partial = n // batch_size, n % batch_size

    def permutation(_):  # as Keras: a new index tensor, shuffled (same ops, same seed)
        indices = tf.range(n, dtype=tf.int64)
        if shuffle:
            indices = tf.random.shuffle(indices)
        return indices

    def slice_batch_indices(indices):
        head = tf.reshape(tf.slice(indices, [0], [full * batch_size]), [full, batch_size])
        flat = tf.data.Dataset.from_tensor_slices(head)
        if partial:
            tail = tf.slice(indices, [full * batch_size], [partial])
            flat = flat.concatenate(tf.data.Dataset.from_tensors(tail))
        return flat

    indices = tf.data.Dataset.range(1).map(permutation).flat_map(slice_batch_indices)
    x, y = floatx(x), floatx(y)
    arrays = tf.data.Dataset.from_tensors((tf.constant(x), tf.constant(y))).repeat()
    ds = tf.data.Dataset.zip((indices, arrays)).map(
        lambda i, data: (tf.gather(data[0], i, axis=0), tf.gather(data[1], i, axis=0))
    )
    ds = ds.apply(tf.data.experimental.assert_cardinality(full + bool(partial)))
    return ds.with_options(_sync_options(stateful=shuffle))


def _sync_options(*, stateful: bool):
    """tf.data options that start no background work: no default optimizations (which
    may inject a ``prefetch``), no autotuned buffers."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = False
    if stateful:
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return options


def py_dataset_batches(py_dataset, *, shuffle: bool):
    """A ``tf.data.Dataset`` of the batches ``model.fit(py_dataset, shuffle=shuffle)``
    (or ``evaluate``/``predict``, which pass ``shuffle=False``) takes from a
    ``keras.utils.PyDataset``, fed synchronously (module docstring).

    Keras' ``PyDatasetAdapter`` (keras/src/trainers/data_adapters/py_dataset_adapter.py,
    one worker, no multiprocessing) wraps the dataset's Python generator in
    ``tf.data.Dataset.from_generator`` behind a ``prefetch(AUTOTUNE)`` buffer. This
    serves the same batches in the same order without the buffer: each epoch, the batch
    indices ``0..len-1``, shuffled with Python's ``random.shuffle`` when ``shuffle`` (as
    Keras does, from the state ``keras.utils.set_random_seed`` seeds), after the
    dataset's ``on_epoch_end``: Keras calls it once before the first epoch
    (``fit``/``predict`` reset their epoch iterator) and after every epoch, so every
    epoch reads the dataset after one more call of it.

    Args:
        py_dataset: a finite ``keras.utils.PyDataset`` whose ``__getitem__`` returns an
            ``(x, y)`` tuple of NumPy arrays (batch axis first) and has no side effects
            (its order changes only in ``on_epoch_end``).
        shuffle: shuffle the order of the batches every epoch, as ``fit`` does by default.

    Returns:
        A dataset of ``len(py_dataset)`` batches (cardinality known, so Keras counts the
        steps of an epoch and never reads past the last batch), iterated again each epoch.

    Raises:
        ValueError: the dataset holds no batch.
    """
    import random

    import tensorflow as tf

    n = len(py_dataset)
    if n < 1:
        raise ValueError("The PyDataset has length 0")
    signature = tuple(
        tf.TensorSpec((None, *np.shape(a)[1:]), tf.as_dtype(np.asarray(a).dtype))
        for a in py_dataset[0]
    )

    def epoch():
        py_dataset.on_epoch_end()
        order = list(range(n))
        if shuffle:
            random.shuffle(order)
        for i in order:
            yield tuple(py_dataset[i])

    ds = tf.data.Dataset.from_generator(epoch, output_signature=signature)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    return ds.with_options(_sync_options(stateful=False))
