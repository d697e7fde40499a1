"""Keys of the conv-base feature cache (issue 5): what identifies one cached feature.

A feature array is stored under two keys:

* the **image key**: sha256 of the file's bytes (:func:`image_key`), not its path, so
  re-splitting the folder, renaming or copying files, or adding images reuses every
  feature already computed;
* the **base key** (:func:`base_key`): conv base architecture, weights identity
  (``"imagenet"``, ``"none"``, the sha256 of a local weights file, see
  :func:`weights_id`, or :func:`model_fingerprint`), input size, preprocessing, Keras
  version, and the version of the image decoder
  (:data:`dlpipe.tasks.images.decode.DECODER_VERSION`: features of a decoder that did
  not apply the EXIF orientation are never reused, case C21).

Where entries live under a cache root: :mod:`dlpipe.tasks.features.store`. NumPy only
at import.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata

import numpy as np

from dlpipe.tasks.features.filesystems import cache_filesystem

FORMAT_VERSION = "feature-cache-v1"


def image_key(path, *, filesystem=None) -> str:
    """Content key of an image file: sha256 of its bytes, 64 hex characters.

    Args:
        path: File path (in ``filesystem`` if given).
        filesystem: None (local) or an fsspec filesystem.

    Raises:
        FileNotFoundError: No such file.
    """
    return hashlib.sha256(cache_filesystem(filesystem).read_bytes(os.fspath(path))).hexdigest()


def weights_id(weights) -> str:
    """Identity of conv base weights for :func:`base_key`.

    Args:
        weights: ``"imagenet"`` (Keras' published weights, pinned by the Keras
            version in the base key), ``None`` / ``"none"`` (random initialization:
            the features depend on the initializer's seed; prefer
            :func:`model_fingerprint` to cache them), or the path of a local weights
            file.

    Returns:
        ``"imagenet"``, ``"none"`` or ``"sha256:<hex of the file bytes>"``.

    Raises:
        FileNotFoundError: ``weights`` is a path that does not exist (message names it).
    """
    if weights is None or weights == "none":
        return "none"
    if weights == "imagenet":
        return "imagenet"
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def model_fingerprint(model) -> str:
    """Identity of any Keras model's computation: sha256 of its layers (class and
    config, without the names Keras numbers automatically, e.g. ``input_layer_3``)
    and all its weight values.

    Use it as the weights identity of a base whose weights are neither ``imagenet``
    nor a file (a randomly initialized base in tests, a base fine-tuned in memory).
    Two builds of the same architecture with the same weights get the same
    fingerprint, in any process.

    Returns:
        ``"model-sha256:<hex>"``.
    """
    h = hashlib.sha256()
    _hash_layers(h, model)
    for weight in model.weights:
        value = np.ascontiguousarray(np.asarray(weight.numpy()))
        h.update(f"{value.dtype}:{value.shape}".encode())
        h.update(value.tobytes())
    return f"model-sha256:{h.hexdigest()}"


def _hash_layers(h, model) -> None:
    for layer in model.layers:
        h.update(type(layer).__name__.encode())
        if hasattr(layer, "layers"):  # nested model: its layers, not its config
            _hash_layers(h, layer)
            continue
        config = dict(layer.get_config())
        config.pop("name", None)
        h.update(json.dumps(config, sort_keys=True, default=str).encode())


def base_description(
    architecture, weights_id, input_size, preprocessing, keras_version=None, *, extra=None
) -> dict:
    """The canonical fields a base key is computed from (stored as ``base.json``).

    Args:
        architecture: Conv base name, e.g. ``"vgg16"`` (lower-cased).
        weights_id: From :func:`weights_id` or :func:`model_fingerprint`.
        input_size: ``(height, width)`` the images are resized to.
        preprocessing: As :func:`dlpipe.tasks.images.preprocess.preprocessing_id`
            (``1/255``, a base name, None) or its text.
        keras_version: Default: the installed Keras version.
        extra: Optional mapping of further settings (e.g. an output layer name).

    Returns:
        A JSON-able dict.

    Raises:
        ValueError: ``input_size`` is not two positive ints, or bad ``preprocessing``.
    """
    from dlpipe.tasks.images import decode  # DECODER_VERSION read at call time
    from dlpipe.tasks.images.preprocess import preprocessing_id

    pre = (
        preprocessing
        if isinstance(preprocessing, str)
        and (preprocessing == "none" or preprocessing.startswith("rescale:"))
        else preprocessing_id(preprocessing)
    )
    return {
        "format": FORMAT_VERSION,
        "decoder": decode.DECODER_VERSION,
        "architecture": str(architecture).lower(),
        "weights": str(weights_id),
        "input_size": list(decode.check_size(tuple(input_size))),
        "preprocessing": pre,
        "keras_version": keras_version or metadata.version("keras"),
        "extra": dict(extra or {}),
    }


def base_key(
    architecture, weights_id, input_size, preprocessing, keras_version=None, *, extra=None
) -> str:
    """Key of a conv base configuration: 32 hex characters (sha256 prefix) of
    :func:`base_description`'s canonical JSON.

    Any change of architecture, weights identity, input size, preprocessing, Keras
    version, ``extra`` or the image decoder
    (:data:`dlpipe.tasks.images.decode.DECODER_VERSION`: 2 applies the EXIF orientation,
    case C21) gives another key (and another cache folder).
    """
    description = base_description(
        architecture, weights_id, input_size, preprocessing, keras_version, extra=extra
    )
    text = json.dumps(description, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
