"""Conv-base feature extraction through the cache (issue 5; book 5.3.1, fast feature
extraction, listing 5.17).

The conv base is the expensive part of the image study (VGG16 at 150x150: ~13 GFLOP
per image); its output for one image never changes while the image bytes and the base
stay the same. :func:`extract_features` reads each image's feature from the store
(:mod:`dlpipe.tasks.features.store`) when its keys (:mod:`dlpipe.tasks.features.keys`)
are there, and computes and stores the others.

Plain functions, no Ray; NumPy only at import (TensorFlow is imported by
:func:`extract_features` when it runs).
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlpipe.tasks.features import keys as cache_keys
from dlpipe.tasks.features.store import lookup, store


@dataclass
class FeatureExtraction:
    """Result of :func:`extract_features`; row ``i`` of every field is one image.

    Attributes:
        features: float32 ``(n, *feature_shape)``, e.g. ``(n, 4, 4, 512)``.
        labels: int32 ``(n,)``.
        paths: The image path of each row (str).
        image_keys: The content key of each row.
        order: int64 ``(n,)``: row ``i`` is input position ``order[i]`` (identity
            unless ``shuffle``).
        hits: Rows whose feature came from the cache.
        misses: Rows whose feature was computed in this call.
        forward_images: Images passed through the conv base (duplicates of the same
            bytes are computed once).
        forward_batches: Conv base calls.
        base_key: The base key used (None without a cache).
    """

    features: np.ndarray
    labels: np.ndarray
    paths: list[str]
    image_keys: list[str]
    order: np.ndarray
    hits: int
    misses: int
    forward_images: int
    forward_batches: int
    base_key: str | None


def extract_features(
    paths,
    conv_base,
    *,
    size,
    preprocessing,
    batch_size=32,
    labels=None,
    shuffle=False,
    seed=0,
    cache_root=None,
    base_key=None,
    description=None,
    filesystem=None,
) -> FeatureExtraction:
    """Conv-base features of images, aligned with their labels and paths, through the
    cache (book listing 5.17, ``extract_features``, made keyed and reusable).

    Every image is identified by its content key. Cached features are read; the
    others are computed by the conv base in batches of ``batch_size`` through a
    ``tf.data`` pipeline whose elements carry each image together with its row
    index, so a feature is always stored next to its own path and label, whatever
    the batch size, a partial last batch, or the order. The new features are written
    to the cache. With ``shuffle``, the rows come out in a seeded random order (the
    same permutation for features, labels and paths).

    Args:
        paths: Image files (validated beforehand).
        conv_base: A Keras model mapping ``(batch, height, width, 3)`` preprocessed
            images to features (e.g. ``conv_base("vgg16", ...)``), called with
            ``training=False``.
        size: ``(height, width)`` the images are resized to.
        preprocessing: ``1/255``, a conv base name (its ``preprocess_input``) or None.
        batch_size: Images per conv base call.
        labels: Integer label per path; default: the index of each file's parent
            folder name among the sorted folder names (the split layout's labels).
        shuffle: Return the rows in a random order drawn from ``seed``.
        seed: Seed of the order.
        cache_root: Cache root; None = no cache (everything is computed).
        base_key: Key of ``conv_base`` (:func:`~dlpipe.tasks.features.keys.base_key`).
            Default when a cache is used: computed from ``conv_base.name``,
            :func:`~dlpipe.tasks.features.keys.model_fingerprint`,
            ``size`` and ``preprocessing`` (always correct, costs one pass over the
            weights).
        description: The :func:`base_description` behind ``base_key``, recorded in the
            cache as ``base.json`` (computed along with a computed ``base_key``).
        filesystem: None (local) or an fsspec filesystem for the cache.

    Returns:
        A :class:`FeatureExtraction`.

    Raises:
        ValueError: Empty ``paths``, ``labels`` of another length, bad ``size``,
            ``batch_size`` or ``preprocessing``.
        tensorflow.errors.InvalidArgumentError: An image does not decode.
    """
    from dlpipe.tasks.images.decode import check_size
    from dlpipe.tasks.images.preprocess import preprocessing_fn

    paths = [os.fspath(p) for p in paths]
    labels = _check_rows(paths, labels, batch_size)
    size = check_size(size)
    preprocess = preprocessing_fn(preprocessing)
    n = len(paths)
    order = (np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)).astype(
        np.int64
    )
    keys = [cache_keys.image_key(p) for p in paths]  # local image files

    if cache_root is not None and base_key is None:
        base_key, description = _model_base_key(conv_base, size, preprocessing)
    cached: dict[str, np.ndarray] = {}
    if cache_root is not None:
        cached, _ = lookup(cache_root, base_key, keys, filesystem=filesystem)

    todo = _rows_to_compute(order, keys, cached)
    computed: dict[str, np.ndarray] = {}
    batches = 0
    if todo:
        rows, batches = _forward_features(conv_base, paths, todo, size, preprocess, batch_size)
        computed = {keys[row]: feature for row, feature in rows.items()}
        if cache_root is not None:
            store(
                cache_root,
                base_key,
                computed,
                description=description,
                overwrite=True,
                filesystem=filesystem,
            )
    hits = sum(1 for r in order if keys[r] in cached)
    return FeatureExtraction(
        features=_stack_rows(order, keys, cached, computed),
        labels=labels[order],
        paths=[paths[r] for r in order],
        image_keys=[keys[r] for r in order],
        order=order,
        hits=hits,
        misses=n - hits,
        forward_images=len(todo),
        forward_batches=batches,
        base_key=base_key,
    )


def _check_rows(paths: list[str], labels, batch_size) -> np.ndarray:
    """The int32 labels, one per path (default: :func:`_folder_labels`).

    Raises:
        ValueError: Empty ``paths``, ``labels`` of another length, bad ``batch_size``.
    """
    if not paths:
        raise ValueError("`paths` must not be empty")
    if labels is None:
        labels = _folder_labels(paths)
    labels = np.asarray(labels, dtype=np.int32).reshape(-1)
    if len(labels) != len(paths):
        raise ValueError(
            f"`labels` must have one label per path. Received: {len(labels)} labels for "
            f"{len(paths)} paths"
        )
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    return labels


def _model_base_key(conv_base, size, preprocessing) -> tuple[str, dict]:
    """``(base key, base description)`` of a model from its name and
    :func:`~dlpipe.tasks.features.keys.model_fingerprint` (one pass over the weights)."""
    fields = (conv_base.name, cache_keys.model_fingerprint(conv_base), size, preprocessing)
    return cache_keys.base_key(*fields), cache_keys.base_description(*fields)


def _stack_rows(order, keys: list[str], cached, computed) -> np.ndarray:
    """float32 ``(n, *feature_shape)``: the feature of each row in ``order``, read from
    ``cached`` or ``computed`` by the row's image key."""
    return np.stack(
        [cached[keys[r]] if keys[r] in cached else computed[keys[r]] for r in order]
    ).astype(np.float32, copy=False)


def _rows_to_compute(order, keys: list[str], cached) -> list[int]:
    """One input row per image still to compute (the first row of each new content
    key), visited in output order."""
    todo, seen = [], set()
    for row in order:
        key = keys[row]
        if key not in cached and key not in seen:
            seen.add(key)
            todo.append(int(row))
    return todo


def _forward_features(conv_base, paths, todo, size, preprocess, batch_size):
    """Run the conv base over the images of rows ``todo`` in batches of ``batch_size``.

    A ``tf.data`` pipeline reads, decodes and resizes
    (:func:`dlpipe.tasks.images.decode.decode_resize`, EXIF orientation from each
    header), then preprocesses the images; the row index
    travels with each image, so a feature is always stored next to its own path,
    whatever the batch size, a partial last batch, or the order.

    Returns:
        ``({input row: float32 feature}, conv base calls)``.
    """
    import tensorflow as tf

    from dlpipe.tasks.images.decode import decode_resize
    from dlpipe.tasks.images.sniff import read_image_header

    orientations = np.asarray([read_image_header(paths[i]).orientation for i in todo], np.int32)
    ds = tf.data.Dataset.from_tensor_slices(
        ([paths[i] for i in todo], np.asarray(todo, dtype=np.int64), orientations)
    )
    ds = ds.map(
        lambda p, i, o: (decode_resize(tf.io.read_file(p), size, o), i),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    ds = ds.batch(batch_size).map(
        lambda x, i: (preprocess(x), i), num_parallel_calls=tf.data.AUTOTUNE
    )
    ds = ds.prefetch(tf.data.AUTOTUNE)
    forward = compiled_forward(conv_base)
    out: dict[int, np.ndarray] = {}
    batches = 0
    for images, rows in ds:
        batch = np.asarray(forward(images), dtype=np.float32)
        for row, feature in zip(rows.numpy(), batch):  # same element, same image
            out[int(row)] = feature
        batches += 1
    return out, batches


#: compiled forward pass of each Keras conv base seen in this process
_COMPILED = weakref.WeakKeyDictionary()


def compiled_forward(conv_base):
    """The conv base's inference call as one compiled graph (issue 17).

    A Keras model called eagerly runs its layers op by op; compiled with
    ``tf.function``, TensorFlow can fuse each convolution with its bias and ReLU (oneDNN
    on CPUs). ``benchmarks/bench_images.py`` part 3, 2-core CPU under load: VGG16 at
    150x150, 1 thread, 0.67x -> 1.08x the best float32 matmul's GFLOP/s (wall); at
    96x96 per CPU-second 0.66x -> 0.76x (1 thread), 0.84x -> 1.05x (2). Traced once per
    model and process (``reduce_retracing``: a partial last batch does not trace it
    again per batch size). The output is cast to float32 (a bfloat16 or float16 base's
    features are stored float32).

    Args:
        conv_base: A Keras model, or any callable ``f(images, training=False)`` (used
            as it is: e.g. a wrapper counting calls).

    Returns:
        A callable mapping float32 ``(batch, height, width, 3)`` images to float32
        features ``(batch, *feature_shape)``.
    """
    import keras
    import tensorflow as tf

    if not isinstance(conv_base, keras.Model):
        return lambda images: conv_base(images, training=False)
    if conv_base not in _COMPILED:
        model = weakref.ref(conv_base)  # the cache entry must not keep the model alive
        _COMPILED[conv_base] = tf.function(
            lambda images: tf.cast(model()(images, training=False), tf.float32),
            reduce_retracing=True,
        )
    return _COMPILED[conv_base]


def _folder_labels(paths) -> np.ndarray:
    """Label = index of the parent folder name among the sorted parent names."""
    parents = [Path(p).parent.name for p in paths]
    names = sorted(set(parents))
    index = {name: i for i, name in enumerate(names)}
    return np.asarray([index[p] for p in parents], dtype=np.int32)
