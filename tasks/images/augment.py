"""The book's data augmentation (book 5.2.5) for the training split of the data
pipeline."""

from __future__ import annotations


def augmentation_layers(seed=None, **factors):
    """The book's augmentation as Keras preprocessing layers (book 5.2.5).

    Same block as :func:`dlpipe.models.images.augmentation_block` (rotation 40 deg,
    shifts 0.2, zoom 0.2, horizontal flip, fill mode nearest; shear left out by
    default, see there). For the training split only:
    :func:`~dlpipe.tasks.images.dataset.image_dataset` applies it when ``augment=True``,
    :func:`~dlpipe.tasks.images.dataset.folder_datasets` only to ``train``.

    Args:
        seed: Integer seed or None.
        **factors: Overrides of ``augmentation_block``'s factors.

    Returns:
        A ``keras.Sequential``; call it with ``training=True`` to transform.
    """
    from dlpipe.models.images import augmentation_block

    return augmentation_block(seed=seed, **factors)
