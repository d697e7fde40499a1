"""The pipeline's one image decoder (issue 12), used by validation, training and the
feature cache.

``tf.io.decode_image(bytes, channels=3, expand_animations=False)`` (format told by
content: JPEG, PNG, GIF first frame, BMP, WebP; grayscale, CMYK and RGBA all become 3
channels), then the EXIF Orientation tag applied as ``PIL.ImageOps.exif_transpose``
does (case C21). The decoder's version (:data:`DECODER_VERSION`) is part of the
feature cache's base key (:func:`dlpipe.tasks.features.keys.base_description`).

TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

import os
import re

import numpy as np

from dlpipe.tasks.images.sniff import image_header

#: Version of the pipeline's decoder (:func:`decode_image`). It is part of the feature
#: cache's base key, so features computed by an older decoder are never reused.
#: 1: ``tf.io.decode_image`` as is; 2: EXIF Orientation applied (case C21).
DECODER_VERSION = 2


def decode_image(data, orientation=1):
    """The pipeline's one decoder (validation, training, feature cache): bytes ->
    uint8 ``(height, width, 3)``, upright.

    ``tf.io.decode_image(data, channels=3, expand_animations=False)`` (format told by
    content: JPEG, PNG, GIF first frame, BMP, WebP; grayscale, CMYK, RGBA -> RGB),
    then the EXIF orientation applied as ``PIL.ImageOps.exif_transpose`` does (case
    C21: Orientation 6, as phones write, is turned 90 degrees clockwise, so a
    64 x 32 photo comes out 32 wide and 64 high). Works eagerly and inside
    ``tf.data`` maps (``orientation`` a Python int or an int tensor). Its version is
    :data:`DECODER_VERSION`.

    Args:
        data: The file's bytes (str/bytes or a string tensor).
        orientation: EXIF Orientation 1-8
            (:func:`~dlpipe.tasks.images.sniff.read_image_header`); 1 = as stored.

    Returns:
        A uint8 tensor ``(height, width, 3)``.

    Raises:
        tensorflow.errors.InvalidArgumentError: The bytes do not decode.
    """
    import tensorflow as tf

    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    transforms = _orientation_transforms()
    if isinstance(orientation, (int, np.integer)):
        return transforms.get(int(orientation), transforms[1])(image)
    index = tf.cast(orientation, tf.int32) - 1
    return tf.switch_case(
        index, [lambda f=transforms[k]: f(image) for k in range(1, 9)], default=lambda: image
    )


def decode_resize(data, size, orientation=1):
    """The pipeline's decoder, :func:`decode_image`, then a bilinear resize.

    Used by :func:`load_image`, the ``tf.data`` pipelines
    (:mod:`dlpipe.tasks.images.dataset`) and feature extraction
    (:mod:`dlpipe.tasks.features.extract`); works eagerly and inside ``tf.data`` maps.

    Args:
        data: The file's bytes (a string tensor).
        size: ``(height, width)``, already checked (:func:`check_size`).
        orientation: EXIF Orientation 1-8 (a Python int or an int tensor).

    Returns:
        A float32 tensor ``(height, width, 3)`` with values in [0, 255].
    """
    import tensorflow as tf

    image = decode_image(data, orientation)  # uint8 (h, w, 3), upright
    image = tf.image.resize(image, size)  # bilinear, float32
    image.set_shape((size[0], size[1], 3))
    return image


def load_image(path, size=(150, 150)) -> np.ndarray:
    """Decode and resize one image as the pipeline does (book 5.2.4).

    Args:
        path: Image file (format told by content; EXIF orientation applied).
        size: ``(height, width)`` in pixels.

    Returns:
        float32 ``(height, width, 3)`` with values in [0, 255] (bilinear resize).

    Raises:
        ValueError: The file does not decode (the message names it; run
            :func:`~dlpipe.tasks.images.validate.validate_images` first).
    """
    import tensorflow as tf

    with open(os.fspath(path), "rb") as f:
        data = f.read()
    try:
        return decode_resize(
            tf.constant(data), check_size(size), image_header(data).orientation
        ).numpy()
    except tf.errors.OpError as exc:
        raise ValueError(
            f"{os.fspath(path)}: image does not decode: {op_error_text(exc)}"
        ) from None


def _orientation_transforms() -> dict:
    """EXIF Orientation -> function of an ``(h, w, c)`` tensor giving the upright image,
    the transposes ``PIL.ImageOps.exif_transpose`` applies
    (:data:`~dlpipe.tasks.images.sniff.ORIENTATIONS`)."""
    import tensorflow as tf

    def transpose(x):
        return tf.transpose(x, [1, 0, 2])

    return {
        1: lambda x: x,
        2: lambda x: x[:, ::-1],  # FLIP_LEFT_RIGHT
        3: lambda x: x[::-1, ::-1],  # ROTATE_180
        4: lambda x: x[::-1],  # FLIP_TOP_BOTTOM
        5: transpose,  # TRANSPOSE (main diagonal)
        6: lambda x: tf.image.rot90(x, k=3),  # ROTATE_270: 90 degrees clockwise
        7: lambda x: transpose(x)[::-1, ::-1],  # TRANSVERSE (anti-diagonal)
        8: lambda x: tf.image.rot90(x, k=1),
    }  # ROTATE_90: 90 degrees counterclockwise


def check_size(size) -> tuple[int, int]:
    """Check a resize target: the ``size`` argument of the loaders, the validator and
    the feature cache's base key.

    Args:
        size: ``(height, width)``: a tuple or list of two positive integers (Python or
            NumPy ints, not bools).

    Returns:
        ``(height, width)`` as a tuple of Python ints.

    Raises:
        ValueError: Anything else (the message shows ``size``).
    """
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in size
        )
    ):
        raise ValueError(
            f"`size` must be (height, width), two positive integers. Received: size={size!r}"
        )
    return int(size[0]), int(size[1])


def op_error_text(exc) -> str:
    """TF's error text without the ``{{function_node ...}}`` and ``[Op:...]`` noise.

    Args:
        exc: A ``tf.errors.OpError`` (or any exception: its ``str``).

    Returns:
        The message as users read it in a bad file's reason.
    """
    text = getattr(exc, "message", str(exc))
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\]", "", text).strip()
