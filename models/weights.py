"""Where pretrained conv-base weights come from, checked without importing Keras (the
driver checks a study before anything starts, book 5.3.1)."""

from __future__ import annotations

import os

WEIGHTS_HOST = "storage.googleapis.com"
"""Where `keras.applications` downloads ImageNet weights from."""


def keras_weights_dir() -> str:
    """Folder where Keras keeps downloaded weights: `$KERAS_HOME/models`, by default
    `~/.keras/models` (`keras.utils.get_file`'s `cache_subdir="models"`)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def imagenet_weights_available(name: str, weights: str, *, resolve=None) -> str | None:
    """Why ImageNet weights of conv base `name` cannot be had here, or None when they
    can (checked without building anything, so a study is refused before it starts).

    They can when `weights` is not `"imagenet"`, when Keras's cache already holds a
    no-top weights file of that base (`keras_weights_dir()`), or when the download host
    resolves (the network is there).

    Args:
        name: conv base name (`vgg16`, ...).
        weights: the study's `images.weights`.
        resolve: host name -> raises OSError when it does not resolve (tests);
            default `socket.getaddrinfo`.
    """
    if str(weights).lower() != "imagenet":
        return None
    folder = keras_weights_dir()
    stem = name.lower().replace("_", "")
    try:
        cached = [
            f
            for f in os.listdir(folder)
            if f.lower().replace("_", "").startswith(stem) and "notop" in f.lower().replace("_", "")
        ]
    except OSError:
        cached = []
    if cached:
        return None
    import socket

    try:
        (resolve or (lambda host: socket.getaddrinfo(host, 443)))(WEIGHTS_HOST)
    except OSError:
        return (
            f"the ImageNet weights of `{name}` are not in {folder} and cannot be "
            f"downloaded here ({WEIGHTS_HOST} does not resolve: no network). Copy the "
            "no-top weights file there, give `images.weights` the path of a local "
            ".h5/.keras weights file, or use `weights: none` (random initialization)"
        )
    return None
