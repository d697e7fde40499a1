"""Prepare an image-folder study's dataset (book ch. 5.2-5.3, issue 5): split, validate,
list, and compute the conv base's features through the content-keyed cache.

Plain functions; the Ray pipeline (:mod:`dlpipe.pipelines.images`) runs the validation
as one task per shard of files (``map_fn``) and the feature stage as one task
(``features_fn``); tests use the builtin ``itertools.starmap`` and a direct call. The
steps:

1. Source: a folder, or ``demo:<source>`` (``demo:digits``): the real images embedded
   in a registry package (:func:`dlpipe.tasks.images.demo.write_demo_images`), written
   once as a flat Kaggle-named folder under ``<run_dir>/artifacts/demo_source``, so the
   demo takes the same code path as users' photos.
2. Split (case C03, book listing 5.9 generalized): a flat ``<class>.<id>.<ext>`` folder
   is copied into ``<run_dir>/artifacts/split/<settings key>/{train,validation,test}/
   <class>/`` (one folder per split setting: a re-split never meets the files of an
   earlier split). A folder that already has ``train/`` is used as it is ("class
   folders that already exist are used as they are").
3. Validation (cases C01, C02): every file decoded with the pipeline's own decoder,
   sharded; bad files are listed (path, reason, size) and left out, so training never
   meets one; so are files declaring more than ``images.max_pixels`` pixels (not
   decoded). Files turned upright by their EXIF orientation (C21) and files whose bytes
   are another format than their extension are listed. A class with no usable image
   in a split (an empty folder, or all its files bad: C22) is an error naming the
   split, the class and why, as is a training split with one image per class.
4. Features (only when a model is ``features_head``): the conv base's output for every
   kept image, read from or written to the feature cache (:mod:`dlpipe.tasks.features.store`),
   with hits, misses and conv-base forward passes per split.

Prepared arrays (rows grouped by split, then class, then id)::

    paths     str (n,)           validated image files
    labels    int64 (n,)         class index (sorted class folder names)
    split     int8 (n,)          SPLIT_CODES: 0 train, 1 validation, 2 test
    features  float32 (n, *fs)   only with the feature stage, e.g. (n, 4, 4, 512)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import starmap
from pathlib import Path

import numpy as np

from dlpipe.tasks.images.folders import SPLITS
from dlpipe.tasks.images.precision import check_precision
from dlpipe.tasks.images.split import BOOK_COUNTS
from dlpipe.tasks.images.validate import DEFAULT_MAX_PIXELS
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.classifier import SPLIT_CODES
from dlpipe.tasks.training.records import OMIT_AT_DEFAULT, spec_dict

PREPARE_VERSION = 2  # 2: EXIF orientation applied, rotated/mismatched files listed
DEMO_PREFIX = "demo:"
PREPROCESSING = ("rescale", "base")
#: conv base names accepted by :func:`dlpipe.models.images.conv_base` (no Keras import here)
CONV_BASE_NAMES = (
    "vgg16",
    "vgg19",
    "resnet50",
    "inception_v3",
    "inceptionv3",
    "xception",
    "mobilenet_v2",
    "mobilenetv2",
)
#: the VGG16 layers the book unfreezes (book 5.3.2), = models.images.BOOK_FINE_TUNE_LAYERS
BOOK_FINE_TUNE_LAYERS = ("block5_conv1", "block5_conv2", "block5_conv3")


@dataclass(frozen=True)
class ImageDataSpec:
    """Where the labelled images come from and how they are split.

    Attributes:
        path: a flat folder of ``<class>.<id>.<ext>`` files (Kaggle dogs-vs-cats
            ``train/``), a base folder already split into ``train/``, ``validation/``,
            ``test/`` class sub-folders (used as it is), or ``demo:digits`` /
            ``demo:lfw_subset`` (images embedded in scikit-learn / scikit-image).
        counts: images per class per split, in split order (book: 1000/500/500).
        mode: ``contiguous`` (id blocks in numeric order, the book's) or ``shuffle``.
        seed: seed of the ``shuffle`` mode.
        class_dirs: ``{class: folder name}``, e.g. ``{cat: cats}`` for the book's names.
    """

    path: str = ""
    counts: dict = field(default_factory=lambda: dict(BOOK_COUNTS))
    mode: str = "contiguous"
    seed: int = 0
    class_dirs: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.path:
            raise ValueError("`path` must name an image folder or `demo:digits`")
        if self.mode not in ("contiguous", "shuffle"):
            raise ValueError(f"`mode` must be 'contiguous' or 'shuffle'. Received: {self.mode!r}")
        if list(self.counts) != list(SPLITS) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in self.counts.values()
        ):
            raise ValueError(
                "`counts` must map train, validation, test (in that order) to "
                f"integers >= 1. Received: {self.counts!r}"
            )


@dataclass(frozen=True)
class ImageSpec:
    """What the models see and how the conv base is used.

    Attributes:
        size: ``(height, width)`` every image is resized to (book: 150x150; the small
            convnets need >= 46, VGG16 >= 32).
        preprocessing: for the conv base families: ``rescale`` (x / 255, the book's) or
            ``base`` (the base's own ``preprocess_input``). The from-scratch convnets
            always get x / 255.
        conv_base: ``keras.applications`` base of ``features_head`` and ``frozen_base``.
        weights: ``imagenet`` (downloaded when the network allows), ``none`` (random
            initialization, seeded by the study's seed) or a local ``.h5``/``.keras``
            weights file.
        cache_root: feature cache root, a local folder or an fsspec URI (``s3://...``);
            ``""`` = ``<run_dir>/feature_cache``.
        fine_tune: after the head of each ``frozen_base`` model is trained, unfreeze
            ``fine_tune_layers`` and train again (book 5.3.2: two scheduled steps, the
            second with the ``training`` section's epochs).
        fine_tune_layers: layer names made trainable (book: ``block5_conv1..3``).
        fine_tune_learning_rate: RMSprop step size of the second step (book: 1e-5).
        validation_shards: Ray tasks that validate the files.
        feature_shards: Ray tasks that compute the missing conv-base features (one
            shard each, on its own GPU when the study asks for one; they write to the
            shared cache, then one task gathers every feature from it).
        feature_batch_size: images per conv-base call in the feature stage.
        max_pixels: largest ``width * height`` an image header may declare; larger
            files are bad files, never decoded (default Pillow's
            ``Image.MAX_IMAGE_PIXELS``, 89,478,485).
        precision: dtype policy of the conv base in feature extraction and
            ``frozen_base`` training: ``float32`` (default), ``bfloat16``, ``float16``
            or ``auto`` (:mod:`dlpipe.tasks.images.precision`). At its default it is
            left out of run keys, dataset keys and reports
            (:func:`~dlpipe.tasks.training.records.spec_dict`), so those of studies
            stored before the setting existed stay valid.
    """

    size: tuple[int, ...] = (150, 150)
    preprocessing: str = "rescale"
    conv_base: str = "vgg16"
    weights: str = "imagenet"
    cache_root: str = ""
    fine_tune: bool = False
    fine_tune_layers: tuple[str, ...] = BOOK_FINE_TUNE_LAYERS
    fine_tune_learning_rate: float = 1e-5
    validation_shards: int = 4
    feature_shards: int = 1
    feature_batch_size: int = 32
    max_pixels: int = DEFAULT_MAX_PIXELS
    precision: str = field(default="float32", metadata={OMIT_AT_DEFAULT: True})

    def __post_init__(self):
        if len(self.size) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 32 for v in self.size
        ):
            raise ValueError(
                f"`size` must be [height, width], integers >= 32. Received: {list(self.size)}"
            )
        object.__setattr__(self, "size", tuple(self.size))
        if self.preprocessing not in PREPROCESSING:
            raise ValueError(
                f"`preprocessing` must be 'rescale' or 'base'. Received: {self.preprocessing!r}"
            )
        if self.conv_base.lower() not in CONV_BASE_NAMES:
            raise ValueError(
                f"`conv_base` must be one of {', '.join(CONV_BASE_NAMES)}. "
                f"Received: {self.conv_base!r}"
            )
        if not self.weights:
            raise ValueError("`weights` must be 'imagenet', 'none' or a weights file path")
        if not self.fine_tune_layers:
            raise ValueError("`fine_tune_layers` must name at least one layer")
        if not self.fine_tune_learning_rate > 0:
            raise ValueError(
                f"`fine_tune_learning_rate` must be > 0. Received: {self.fine_tune_learning_rate}"
            )
        for name in ("validation_shards", "feature_shards", "feature_batch_size", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {getattr(self, name)}")
        check_precision(self.precision)


def base_preprocessing(images: ImageSpec):
    """The conv base families' preprocessing as :mod:`dlpipe.tasks.images.preprocess` takes it:
    ``1/255`` or the base's name (its ``preprocess_input``)."""
    return 1 / 255 if images.preprocessing == "rescale" else images.conv_base.lower()


def describe_weights(images: ImageSpec, identity: str | None = None) -> str:
    """Human-readable "weights used" for reports, e.g. ``imagenet``, ``none (random
    initialization, model-sha256:...)``, ``/w.h5 (sha256:...)``."""
    if images.weights == "none":
        return "none (random initialization" + (f", {identity})" if identity else ")")
    if images.weights == "imagenet":
        return "imagenet"
    return f"{images.weights}" + (f" ({identity})" if identity else "")


def resolve_source(data: ImageDataSpec, run_dir: str | Path) -> tuple[Path, dict]:
    """The image folder of ``data.path``; ``demo:<source>`` written on first use.

    Returns:
        ``(folder, demo)``: demo = what :func:`write_demo_images` wrote (``{}`` else).

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError, ImportError: unknown demo source / its package is not installed.
    """
    if data.path.startswith(DEMO_PREFIX):
        from dlpipe.tasks.images.demo import write_demo_images

        source = data.path[len(DEMO_PREFIX) :]
        folder = Path(run_dir) / "artifacts" / "demo_source" / source
        marker = folder / "demo.json"
        if marker.is_file():
            import json

            return folder, json.loads(marker.read_text())
        demo = write_demo_images(folder, source)
        reports.atomic_write_bytes(marker, reports.dumps(demo).encode())
        return folder, demo
    folder = Path(data.path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {data.path}")
    return folder, {}


def split_key(data: ImageDataSpec) -> str:
    """Key of a split setting (counts, mode, seed, class folder names): 12 hex chars."""
    payload = {k: v for k, v in asdict(data).items() if k != "path"}
    return hashlib.sha256(reports.dumps(payload).encode()).hexdigest()[:12]


def split_step(data: ImageDataSpec, source: Path, run_dir: str | Path) -> tuple[Path, dict]:
    """Split a flat folder (case C03) or take an already split one as it is.

    Returns:
        ``(base folder with train/validation/test, report)``; report = the
        :class:`~dlpipe.tasks.images.split.SplitReport` without its file lists (``found``,
        ``unused``, ``strays``, ``copied``, ``reused``), or ``{"already_split": True}``.

    Raises:
        ValueError: no ``<class>.<id>.<ext>`` file, a class with too few files, ...
            (:func:`~dlpipe.tasks.images.split.split_flat_folder`).
    """
    if (source / "train").is_dir():
        return source, {"already_split": True, "dst": str(source)}
    from dlpipe.tasks.images.split import scan_flat_folder, split_flat_folder

    classes = sorted(scan_flat_folder(source).by_class)
    if len(classes) == 1:  # before anything is copied, naming the user's folder
        raise ValueError(
            f"{source}: image studies need at least 2 classes. Found only "
            f"`{classes[0]}` (files named <class>.<id>.<ext>)"
        )
    dst = Path(run_dir) / "artifacts" / "split" / split_key(data)
    report = split_flat_folder(
        source,
        dst,
        dict(data.counts),
        mode=data.mode,
        seed=data.seed,
        class_dirs=dict(data.class_dirs) or None,
    )
    out = {k: v for k, v in report.to_dict().items() if k != "files"}
    return dst, {"already_split": False, **out}


def list_splits(root: Path) -> tuple[list[str], list[tuple[str, str, int]]]:
    """Class names and ``(split, path, label)`` of every listed file of ``root``.

    Raises:
        FileNotFoundError: a split folder is missing.
        ValueError: the splits have different class folders, or fewer than 2 classes.
    """
    from dlpipe.tasks.images.folders import list_image_folder

    names, rows = None, []
    for split in SPLITS:
        folder = list_image_folder(root / split)
        if names is not None and folder.class_names != names:
            raise ValueError(
                f"split `{split}` has class folders {folder.class_names}, "
                f"`train` has {names} (under {root})"
            )
        names = folder.class_names
        rows += [(split, p, int(y)) for p, y in zip(folder.paths, folder.labels)]
    if len(names) < 2:
        raise ValueError(f"{root}: image studies need at least 2 classes. Found: {names}")
    return names, rows


def shards(items: list, num_shards: int) -> list[list]:
    """``items`` cut into at most ``num_shards`` contiguous, nearly equal shards."""
    bounds = np.linspace(0, len(items), min(num_shards, max(1, len(items))) + 1).astype(int)
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def validate_shard(
    paths: list[str], size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[list[str], list[dict], dict]:
    """One validation shard: :func:`dlpipe.tasks.images.validate.check_images` after the
    process's TensorFlow set-up (C13).

    Returns:
        ``(ok_paths, bad, notes)``; notes = ``{"rotated": [{"path", "orientation"}],
        "format_mismatch": [{"path", "extension", "format"}]}`` of the good files.
    """
    from dlpipe.tasks.images.validate import check_images
    from dlpipe.tasks.training.tf_setup import setup_tensorflow

    setup_tensorflow(1, 0)
    check = check_images(paths, size=size, max_pixels=max_pixels)
    return check.ok, check.bad, {"rotated": check.rotated, "format_mismatch": check.format_mismatch}


def check_classes(
    class_names: list[str],
    rows: list[tuple[str, str, int]],
    bad: list[dict] | None = None,
    root: Path | None = None,
) -> None:
    """Refuse a class with no usable image in a split (case C22) and a training split
    with as many classes as images (every class seen once: nothing to learn from).

    Args:
        class_names: Class folder names (label = position).
        rows: ``(split, path, label)`` of the images kept (all listed images when
            called before validation, so only empty folders are found then).
        bad: The files left out as bad (their reasons name why a class is empty).
        root: The split base folder, for the messages.

    Raises:
        ValueError: One line naming, for each such split and class, its folder and why
            (``empty folder`` or ``all N files bad (first: <reason>)``).
    """
    kept: dict[tuple[str, int], int] = {}
    for split, _, label in rows:
        kept[split, label] = kept.get((split, label), 0) + 1
    bad_by: dict[tuple[str, str], list[dict]] = {}
    for b in bad or []:
        parent = Path(b["path"]).parent
        bad_by.setdefault((parent.parent.name, parent.name), []).append(b)
    problems = []
    for split in SPLITS:
        for label, cls in enumerate(class_names):
            if kept.get((split, label), 0):
                continue
            files = bad_by.get((split, cls), [])
            why = (
                f"all {len(files)} files bad (first: {Path(files[0]['path']).name}: "
                f"{files[0]['reason']})"
                if files
                else "empty folder (no jpg, jpeg or png file)"
            )
            folder = Path(root) / split / cls if root is not None else Path(split) / cls
            problems.append(f"{folder}: split `{split}`, class `{cls}` has no usable image: {why}")
    if problems:
        raise ValueError("; ".join(problems))
    train = sum(n for (split, _), n in kept.items() if split == "train")
    if train and train == len(class_names):
        raise ValueError(
            f"{Path(root) / 'train' if root is not None else 'train'}: the "
            f"training split has as many classes as images ({train}: every "
            "class seen once), a model cannot learn from it"
        )


def dataset_key(data: ImageDataSpec, images: ImageSpec, root: Path, paths: list[str]) -> str:
    """Key of a prepared image dataset: split settings, image settings, and the kept
    files (path under the split folder, size, mtime)."""
    stamp = [
        (os.path.relpath(p, root), os.stat(p).st_size, int(os.stat(p).st_mtime)) for p in paths
    ]
    payload = {
        "v": PREPARE_VERSION,
        "data": asdict(data),
        "images": spec_dict(images),
        "files": stamp,
    }
    return "images-" + hashlib.sha256(reports.dumps(payload).encode()).hexdigest()[:12]


def prepare_images(
    data: ImageDataSpec,
    images: ImageSpec,
    run_dir: str | Path,
    *,
    features: bool = False,
    seed: int = 42,
    map_fn: Callable = starmap,
    features_fn: Callable | None = None,
) -> tuple[dict, dict]:
    """Split, validate (sharded) and, with ``features``, extract features.

    Args:
        data, images: the study's sections.
        run_dir: the study folder (``artifacts/``, default feature cache root).
        features: run the feature stage (some model is ``features_head``).
        seed: seed of a randomly initialized conv base (``weights: none``).
        map_fn: ``map_fn(function, list_of_args_tuples)`` -> results in order (the Ray
            pipeline runs each validation shard as a task).
        features_fn: required with ``features``; called like
            :func:`dlpipe.tasks.features.study.cache_features` (that function itself in
            this process; the Ray pipeline runs it as tasks).

    Returns:
        ``(arrays, meta)``: arrays as in the module docstring; meta = ``{"key",
        "source", "images", "class_names", "num_classes", "split_counts",
        "class_counts", "bad_files", "rotated" (files the decoder turned upright,
        C21), "format_mismatch" (bytes of another format than the extension),
        "max_pixels", "split", "demo", "feature_cache", "feature_shape",
        "weights_used"}``.

    Raises:
        FileNotFoundError, ValueError: bad source or split; a class with no usable
        image in a split (C22: empty folder, or all its files bad), a training split
        with as many classes as images (:func:`check_classes`).
    """
    run_dir = Path(run_dir)
    source, demo = resolve_source(data, run_dir)
    root, split_report = split_step(data, source, run_dir)
    class_names, rows = list_splits(root)
    check_classes(class_names, rows, root=root)  # empty class folders: before validation
    parts = list(
        map_fn(
            validate_shard,
            [
                (s, tuple(images.size), images.max_pixels)
                for s in shards([p for _, p, _ in rows], images.validation_shards)
            ],
        )
    )
    ok = {p for part in parts for p in part[0]}
    bad = [b for part in parts for b in part[1]]
    rotated = [r for part in parts for r in part[2]["rotated"]]
    mismatch = [m for part in parts for m in part[2]["format_mismatch"]]
    kept = [(s, p, y) for s, p, y in rows if p in ok]
    check_classes(class_names, kept, bad, root)  # C22: every file of a class bad
    arrays = {
        "paths": np.asarray([p for _, p, _ in kept], dtype=str),
        "labels": np.asarray([y for _, _, y in kept], np.int64),
        "split": np.asarray([SPLIT_CODES[s] for s, _, _ in kept], np.int8),
    }
    counts = {s: int((arrays["split"] == c).sum()) for s, c in SPLIT_CODES.items()}
    meta = {
        "key": dataset_key(data, images, root, [p for _, p, _ in kept]),
        "source": str(source) if not demo else f"{data.path} ({demo['package']})",
        "images": int(len(kept)),
        "class_names": class_names,
        "num_classes": len(class_names),
        "split_counts": counts,
        "class_counts": {
            s: np.bincount(
                arrays["labels"][arrays["split"] == c], minlength=len(class_names)
            ).tolist()
            for s, c in SPLIT_CODES.items()
        },
        "bad_files": bad,
        "rotated": rotated,
        "format_mismatch": mismatch,
        "max_pixels": images.max_pixels,
        "split": {**split_report, "root": str(root)},
        "demo": demo,
        "feature_cache": None,
        "feature_shape": None,
        "weights_used": None,
    }
    if features:
        paths = {s: arrays["paths"][arrays["split"] == c].tolist() for s, c in SPLIT_CODES.items()}
        labels = {s: arrays["labels"][arrays["split"] == c] for s, c in SPLIT_CODES.items()}
        if features_fn is None:
            raise ValueError(
                "features=True needs a `features_fn` (in-process: "
                "dlpipe.tasks.features.study.cache_features)"
            )
        feats, report = features_fn(paths, labels, images, cache_root(images, run_dir), seed)
        arrays["features"] = feats
        meta.update(
            feature_cache=report,
            feature_shape=list(feats.shape[1:]),
            weights_used=report["weights_used"],
        )
    return arrays, meta


def cache_root(images: ImageSpec, run_dir: str | Path) -> str:
    """The feature cache root: ``images.cache_root`` or ``<run_dir>/feature_cache``."""
    return images.cache_root or str(Path(run_dir).resolve() / "feature_cache")
