"""Pixel preprocessing after resizing: its stable id (cache keys, reports) and the
function applied to float images in [0, 255] (``x * factor``, a conv base's
``preprocess_input``, or the identity).
"""

from __future__ import annotations

import numbers

import numpy as np


def preprocessing_id(preprocessing) -> str:
    """Stable text for a preprocessing setting, used in cache keys and reports.

    ``1/255`` -> ``"rescale:0.00392156862745098"``; ``"VGG16"`` -> ``"vgg16"``
    (that base's ``preprocess_input``); ``None`` -> ``"none"`` (raw [0, 255]).

    Raises:
        ValueError: Not a positive number, a conv base name or None.
    """
    if preprocessing is None:
        return "none"
    if isinstance(preprocessing, numbers.Real) and not isinstance(preprocessing, bool):
        if preprocessing > 0:
            return f"rescale:{float(preprocessing)!r}"
    elif isinstance(preprocessing, str):
        from dlpipe.models.images import conv_base_name

        return conv_base_name(preprocessing)
    raise ValueError(
        "`preprocessing` must be a positive rescale factor (e.g. 1/255), a conv base "
        f"name (e.g. 'vgg16') or None. Received: preprocessing={preprocessing!r}"
    )


def preprocessing_fn(preprocessing):
    """The function applied to float images in [0, 255] after resizing.

    Args:
        preprocessing: As :func:`preprocessing_id`.

    Returns:
        A callable mapping float32 ``(..., height, width, 3)`` (tensor or NumPy
        array, never changed in place) to the same shape: ``x * factor``, the base's
        ``keras.applications`` ``preprocess_input``, or the identity.
    """
    pid = preprocessing_id(preprocessing)
    if pid == "none":
        return lambda images: images
    if pid.startswith("rescale:"):
        factor = float(preprocessing)
        return lambda images: images * factor
    from dlpipe.models.images import preprocess_input_fn

    preprocess = preprocess_input_fn(pid)

    def apply(images):
        # Keras' preprocess_input changes NumPy float arrays in place (and fails on
        # read-only ones, e.g. arrays from Ray, case C14): give it a copy.
        if isinstance(images, np.ndarray):
            images = np.array(images, dtype=np.float32, copy=True)
        return preprocess(images)

    return apply
