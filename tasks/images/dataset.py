"""``tf.data`` pipelines of decoded, resized, preprocessed image batches (book 5.2.4,
``flow_from_directory`` replaced by tf.data).

TensorFlow is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlpipe.tasks.images.augment import augmentation_layers
from dlpipe.tasks.images.decode import check_size, decode_resize
from dlpipe.tasks.images.folders import SPLITS, list_image_folder
from dlpipe.tasks.images.preprocess import preprocessing_fn, preprocessing_id
from dlpipe.tasks.images.sniff import read_image_header


def image_dataset(
    paths,
    labels,
    *,
    size=(150, 150),
    batch_size=32,
    shuffle=False,
    seed=0,
    augment=False,
    preprocessing=1 / 255,
    with_paths=False,
):
    """A ``tf.data`` pipeline of decoded, resized, preprocessed image batches
    (book 5.2.4, ``flow_from_directory`` replaced by tf.data).

    Order of operations: (each file's EXIF orientation read from its header, once)
    -> (shuffle the paths) -> read + decode
    (:func:`~dlpipe.tasks.images.decode.decode_image`) + resize in parallel
    (``num_parallel_calls=AUTOTUNE``, order kept) -> batch -> (augment, training only)
    -> preprocessing -> prefetch. Augmentation runs on the [0, 255] images
    before preprocessing. Models built with ``augment=True`` augment inside the
    model already (see :mod:`dlpipe.models.images`): use ``augment=True`` here only
    for models that do not, and never for validation or test data.

    Args:
        paths: Image file paths (validated beforehand: a bad file fails the epoch).
        labels: Integer labels, one per path.
        size: ``(height, width)`` in pixels (book: 150x150).
        batch_size: Images per batch (the last batch may be smaller).
        shuffle: Shuffle the whole list each epoch (training split).
        seed: Seed of the shuffle and of the augmentation.
        augment: Apply :func:`~dlpipe.tasks.images.augment.augmentation_layers` with
            ``training=True``.
        preprocessing: ``1/255`` (book), a conv base name for its
            ``preprocess_input``, or None.
        with_paths: Also yield the path of each image (for aligned bookkeeping).

    Returns:
        A ``tf.data.Dataset`` of ``(images, labels)`` (or ``(images, labels, paths)``):
        images float32 ``(batch, height, width, 3)``, labels int32 ``(batch,)``,
        paths string ``(batch,)``.

    Raises:
        ValueError: ``paths`` is empty, ``labels`` has another length, bad ``size``,
            ``batch_size`` or ``preprocessing``.
        OSError: A file cannot be read.
    """
    import tensorflow as tf

    paths = [os.fspath(p) for p in paths]
    labels = np.asarray(labels, dtype=np.int32).reshape(-1)
    if not paths:
        raise ValueError("`paths` must not be empty")
    if len(labels) != len(paths):
        raise ValueError(
            "`labels` must have one label per path. "
            f"Received: {len(labels)} labels for {len(paths)} paths"
        )
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    size = check_size(size)
    preprocess = preprocessing_fn(preprocessing)
    autotune = tf.data.AUTOTUNE

    orientations = np.asarray([read_image_header(p).orientation for p in paths], np.int32)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels, orientations))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    # Paths travel with the images only when asked for, and no stage runs for nothing
    # (no identity preprocessing map, no map dropping the paths): every extra stage
    # costs per-batch overhead (bench_images.py, ingest vs image_dataset_from_directory).
    if with_paths:
        ds = ds.map(
            lambda p, y, o: (decode_resize(tf.io.read_file(p), size, o), y, p),
            num_parallel_calls=autotune,
            deterministic=True,
        )
    else:
        ds = ds.map(
            lambda p, y, o: (decode_resize(tf.io.read_file(p), size, o), y),
            num_parallel_calls=autotune,
            deterministic=True,
        )
    ds = ds.batch(batch_size)
    if augment:
        augmentation = augmentation_layers(seed)
        ds = ds.map(
            lambda x, *rest: (augmentation(x, training=True), *rest),
            num_parallel_calls=autotune,
            deterministic=True,
        )
    if preprocessing_id(preprocessing) != "none":
        ds = ds.map(
            lambda x, *rest: (preprocess(x), *rest), num_parallel_calls=autotune, deterministic=True
        )
    return ds.prefetch(autotune)


@dataclass
class FolderSplit:
    """One split of :func:`folder_datasets`: its dataset and what it was made from."""

    dataset: object
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]


def folder_datasets(
    root,
    *,
    size=(150, 150),
    batch_size=32,
    preprocessing=1 / 255,
    augment=False,
    seed=0,
    splits=SPLITS,
) -> dict[str, FolderSplit]:
    """Datasets of a split base folder (``root/<split>/<class>/``).

    Only ``train`` is shuffled and, with ``augment=True``, augmented; validation and
    test keep file order and are never augmented.

    Args:
        root: The base folder written by :func:`~dlpipe.tasks.images.split.split_flat_folder`.
        size, batch_size, preprocessing, seed: As :func:`image_dataset`.
        augment: Augment the training split in the data pipeline.
        splits: Split folder names to read.

    Returns:
        ``{split: FolderSplit}``.

    Raises:
        FileNotFoundError: A split folder is missing.
        ValueError: The splits do not have the same class folders.
    """
    out: dict[str, FolderSplit] = {}
    for split in splits:
        folder = list_image_folder(Path(root) / split)
        first = next(iter(out.values()), None)
        if first is not None and folder.class_names != first.class_names:
            raise ValueError(
                f"Split `{split}` has class folders {folder.class_names}, other splits "
                f"have {first.class_names} (under {root})"
            )
        training = split == "train"
        dataset = image_dataset(
            folder.paths,
            folder.labels,
            size=size,
            batch_size=batch_size,
            shuffle=training,
            seed=seed,
            augment=augment and training,
            preprocessing=preprocessing,
        )
        out[split] = FolderSplit(dataset, folder.paths, folder.labels, folder.class_names)
    return out
