"""Split folder layout: file naming and listing of ``<split>/<class>/<image>`` folders.

A split folder holds one sub-folder per class (``cat/``, ``dog/``); labels are the
positions of the class folders in sorted order (``cat`` = 0, ``dog`` = 1), as in
``keras.utils.image_dataset_from_directory``. Files named ``<class>.<id>.<ext>``
(:data:`FLAT_NAME`, the Kaggle dogs-vs-cats naming) are ordered by numeric id.
Content is not read here (see :mod:`dlpipe.tasks.images.validate`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Extensions of the image files listed (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: Split folder names, in split order.
SPLITS = ("train", "validation", "test")
#: `<class>.<id>.<ext>`: class = no dot or space; id = decimal digits. The naming of a
#: flat Kaggle folder (:func:`dlpipe.tasks.images.split.scan_flat_folder`) and the
#: order of files in a split folder (by class, then numeric id).
FLAT_NAME = re.compile(r"^(?P<cls>[^.\s]+)\.(?P<id>\d+)\.(?P<ext>jpe?g|png)$", re.IGNORECASE)


@dataclass
class ImageFolder:
    """Files of one split folder, as listed by :func:`list_image_folder`.

    Attributes:
        paths: File paths (str), grouped by class in label order, then by id.
        labels: int32 (n,), the class index of each path.
        class_names: Folder names, sorted; label i = ``class_names[i]``.
    """

    paths: list[str]
    labels: np.ndarray
    class_names: list[str]


def list_image_folder(split_dir) -> ImageFolder:
    """List one split folder: ``split_dir/<class>/<image files>``.

    Class names are the sub-folder names in sorted order (label = position, as in
    ``keras.utils.image_dataset_from_directory``). Files are those with extension
    jpg/jpeg/png (case-insensitive), not hidden, ordered by numeric id when named
    ``<class>.<id>.<ext>``, else by name; other files are ignored. Content is not
    checked here: see :func:`~dlpipe.tasks.images.validate.validate_images`.

    Args:
        split_dir: e.g. ``dst/train``.

    Returns:
        An :class:`ImageFolder`.

    Raises:
        FileNotFoundError: ``split_dir`` is not a folder.
        ValueError: It has no class sub-folder, or no image file at all.
    """
    root = Path(split_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"split folder not found: {root}")
    class_names = sorted(
        d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
    )
    if not class_names:
        raise ValueError(f"No class sub-folder in {root}")
    paths, labels = [], []
    for label, cls in enumerate(class_names):
        names = [
            p.name
            for p in (root / cls).iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        ]
        for name in sorted(names, key=_id_order):
            paths.append(str(root / cls / name))
            labels.append(label)
    if not paths:
        raise ValueError(f"No image file (jpg, jpeg, png) in the class folders of {root}")
    return ImageFolder(paths, np.asarray(labels, dtype=np.int32), class_names)


def _id_order(name: str):
    match = FLAT_NAME.match(name)
    return (0, match["cls"], int(match["id"]), name) if match else (1, "", 0, name)
