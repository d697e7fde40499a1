"""What an image model is fed, by family (book ch. 5.2-5.3): its hyperparameters fixed
by the data, one sample's shape, its Keras inputs (cached features or a ``tf.data``
pipeline of images) and the "weights used" of its report. Shared by the image trainers
(:mod:`dlpipe.tasks.images.train`, :mod:`dlpipe.tasks.images.heads`) and prediction."""

from __future__ import annotations

import numpy as np

from dlpipe.tasks.images.prepare import ImageSpec, base_preprocessing, describe_weights
from dlpipe.tasks.training.classifier import head_classes

FEATURE_FAMILIES = ("features_head",)
BASE_FAMILIES = ("features_head", "frozen_base")

__all__ = [
    "FEATURE_FAMILIES",
    "BASE_FAMILIES",
    "data_hparams",
    "input_shape",
    "model_inputs",
    "weights_used",
]


def data_hparams(family: str, hp: dict, meta: dict, images: ImageSpec) -> dict:
    """``hp`` with what the data and the ``images`` section fix: ``num_classes``, and
    for ``frozen_base`` the conv base and its weights."""
    fixed = {"num_classes": head_classes(meta["num_classes"])}
    if family == "frozen_base":
        fixed.update(base=images.conv_base.lower(), weights=images.weights)
    return {**hp, **fixed}


def input_shape(family: str, meta: dict, images: ImageSpec) -> tuple[int, ...]:
    """One sample's shape: the cached feature shape, or ``(height, width, 3)``.

    Raises:
        ValueError: ``features_head`` without features in the prepared data.
    """
    if family in FEATURE_FAMILIES:
        if not meta.get("feature_shape"):
            raise ValueError(
                "family `features_head` needs the feature stage: the prepared "
                "data holds no conv-base features"
            )
        return tuple(int(d) for d in meta["feature_shape"])
    return (*images.size, 3)


def model_inputs(
    data: dict,
    index: np.ndarray,
    family: str,
    images: ImageSpec,
    batch_size: int,
    shuffle: bool,
    seed: int,
):
    """Keras inputs of rows ``index``: float32 features ``(len, *feature_shape)`` for
    ``features_head`` (batched by ``fit``/``predict``), else a ``tf.data.Dataset`` of
    ``(images float32 (b, h, w, 3), labels int32 (b,))``."""
    if family in FEATURE_FAMILIES:
        return np.asarray(data["features"])[index]
    from dlpipe.tasks.images.dataset import image_dataset

    pre = base_preprocessing(images) if family in BASE_FAMILIES else 1 / 255
    return image_dataset(
        np.asarray(data["paths"])[index].tolist(),
        np.asarray(data["labels"])[index],
        size=tuple(images.size),
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        preprocessing=pre,
    )


def weights_used(family: str, meta: dict, images: ImageSpec) -> str:
    """The "weights used" of a run, for the ``inputs`` report column."""
    if family in FEATURE_FAMILIES:
        return meta.get("weights_used") or describe_weights(images)
    if family == "frozen_base":
        return describe_weights(images)
    return "none (trained from scratch)"
