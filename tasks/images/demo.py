"""Demo image folders: real images shipped inside PyPI packages (scikit-learn's
digits, scikit-image's LFW subset) written as a flat Kaggle-style folder, so the demo
runs the same split/validate/load path as users' photos.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np


def write_flat_folder(dst, images, labels, class_names) -> list[str]:
    """Write images as a flat Kaggle-style folder of PNGs: ``<class>.<id>.png``.

    Ids count from 0 per class, in input order. Files are written atomically.

    Args:
        dst: Folder (created if needed).
        images: uint8 ``(n, height, width)`` grayscale or ``(n, height, width, 3)`` RGB.
        labels: int ``(n,)`` indices into ``class_names``.
        class_names: Class name per label (no dot or space).

    Returns:
        The written paths, in input order.

    Raises:
        ValueError: Wrong dtype/shape, labels out of range or a bad class name.
    """
    from PIL import Image  # Pillow ships with matplotlib, a dependency of dlpipe

    from dlpipe.tasks.reports.tables import atomic_write_bytes  # local: keeps this module light

    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1)
    if (
        images.dtype != np.uint8
        or images.ndim not in (3, 4)
        or (images.ndim == 4 and images.shape[-1] != 3)
    ):
        raise ValueError(
            "`images` must be uint8 (n, height, width) or (n, height, width, 3). "
            f"Received: dtype={images.dtype}, shape={images.shape}"
        )
    if len(labels) != len(images) or (
        len(labels) and not (0 <= labels.min() and labels.max() < len(class_names))
    ):
        raise ValueError(
            f"`labels` must hold one index in [0, {len(class_names)}) per image. "
            f"Received: {len(labels)} labels for {len(images)} images"
        )
    for name in class_names:
        if not re.fullmatch(r"[^.\s/\\]+", str(name)):
            raise ValueError(f"Class names must have no dot, space or slash. Received: {name!r}")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    next_id = [0] * len(class_names)
    written = []
    for image, label in zip(images, labels):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        path = dst / f"{class_names[label]}.{next_id[label]}.png"
        next_id[label] += 1
        atomic_write_bytes(path, buf.getvalue())
        written.append(str(path))
    return written


#: Embedded demo sources: name -> (package to install, what it holds).
DEMO_SOURCES = {
    "digits": ("scikit-learn", "1,797 8x8 grayscale handwritten digits, classes digit0..digit9"),
    "lfw_subset": ("scikit-image", "200 25x25 grayscale crops: 100 faces, 100 non-faces"),
}


def write_demo_images(dst, source="digits", *, classes=None) -> dict:
    """Write real images shipped inside a PyPI package as a flat Kaggle-style folder,
    so the demo runs the same split/validate/load path as users' photos.

    Sources (read from files inside the installed wheel, no download):

    * ``"digits"``: scikit-learn's ``load_digits`` (1,797 images, 8x8, values 0-16,
      scaled to 0-255), classes ``digit0`` ... ``digit9`` (about 180 each);
    * ``"lfw_subset"``: scikit-image's ``data.lfw_subset`` (200 images, 25x25, values
      0-1, scaled to 0-255), classes ``face`` (the first 100) and ``nonface``.

    Args:
        dst: Folder to write ``<class>.<id>.png`` files into.
        source: ``"digits"`` or ``"lfw_subset"``.
        classes: Optional subset of class names to write (e.g. ``["digit3",
            "digit8"]`` for a binary demo).

    Returns:
        ``{"source", "package", "dst", "classes", "counts": {class: n}, "size": (h, w)}``.

    Raises:
        ValueError: Unknown ``source`` or class.
        ImportError: The package holding the images is not installed (the message
            says which one to install).
    """
    if source not in DEMO_SOURCES:
        raise ValueError(
            f"`source` must be one of {sorted(DEMO_SOURCES)}. Received: source={source!r}"
        )
    package = DEMO_SOURCES[source][0]
    try:
        images, labels, names = _load_demo_source(source)
    except ImportError as exc:
        raise ImportError(
            f"write_demo_images(source={source!r}) needs the `{package}` package, which "
            f"ships these images inside its wheel: pip install {package}"
        ) from exc
    if classes is not None:
        images, labels, names = _keep_classes(images, labels, names, classes, source)
    write_flat_folder(dst, images, labels, names)
    return {
        "source": source,
        "package": package,
        "dst": str(dst),
        "classes": names,
        "counts": {n: int(np.sum(labels == i)) for i, n in enumerate(names)},
        "size": tuple(int(d) for d in images.shape[1:3]),
    }


def _load_demo_source(source: str):
    """``(images uint8 (n, h, w), labels (n,), class names)`` of one demo source.

    Raises:
        ImportError: The package holding the images is not installed.
    """
    if source == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        raw, labels = bunch.images, bunch.target
        images = np.round(raw * (255.0 / 16.0)).astype(np.uint8)
        return images, labels, [f"digit{k}" for k in range(10)]
    from skimage.data import lfw_subset

    raw = np.asarray(lfw_subset())
    images = (np.round(raw * 255.0) if raw.dtype.kind == "f" else raw).astype(np.uint8)
    labels = np.repeat([0, 1], [100, len(raw) - 100])
    return images, labels, ["face", "nonface"]


def _keep_classes(images, labels, names, classes, source):
    """The images of ``classes`` only, relabelled 0.. in the source's class order.

    Raises:
        ValueError: A class the source does not have.
    """
    unknown = sorted(set(classes) - set(names))
    if unknown:
        raise ValueError(f"Unknown class(es) {unknown} for source {source!r}; classes are {names}")
    keep_labels = sorted(names.index(c) for c in classes)
    keep = np.isin(labels, keep_labels)
    remap = {old: new for new, old in enumerate(keep_labels)}
    labels = np.array([remap[int(v)] for v in labels[keep]], dtype=np.int64)
    return images[keep], labels, [names[i] for i in keep_labels]
