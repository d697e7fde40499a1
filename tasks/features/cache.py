"""Conv-base feature cache (issue 5; book 5.3.1, fast feature extraction).

The conv base is the expensive part of the image study (VGG16 at 150x150: ~13 GFLOP
per image); its output for one image never changes while the image bytes and the base
stay the same. So each feature array is stored once, under a key made of:

* the **image key**: sha256 of the file's bytes (:func:`image_key`), not its path, so
  re-splitting the folder, renaming or copying files, or adding images reuses every
  feature already computed;
* the **base key** (:func:`base_key`): conv base architecture, weights identity
  (``"imagenet"``, ``"none"``, or the sha256 of a local weights file, see
  :func:`weights_id`), input size, preprocessing, Keras version, and the version of the
  image decoder (``dlpipe.tasks.images.decode.DECODER_VERSION``: features of a decoder that did not
  apply the EXIF orientation are never reused, case C21).

Layout under a cache root::

    <root>/<base_key>/base.json                            what the base key stands for
    <root>/<base_key>/<image_key[:2]>/<image_key>.npy      one feature array per image

Each file is written to a temporary name in its final folder and renamed into place
(``os.replace``): a reader never sees a torn file, and concurrent writers of the same
key (two Ray tasks that met the same image) both succeed, leaving one valid file.

Filesystems: every function takes ``filesystem=None``: ``None`` means local paths
(``os``); otherwise an fsspec filesystem object (``fsspec.filesystem("s3")``,
``gcsfs``, ..., or a ``pyarrow.fs.FileSystem`` wrapped with
``fsspec.implementations.arrow.ArrowFSWrapper``), with ``root`` a path inside it, so
cluster nodes can share one cache. All I/O goes through :class:`_LocalFS` /
:class:`_FsspecFS`; on object stores a single PUT is already atomic, and the temporary
name + move is kept for shared POSIX mounts.

Plain functions, no Ray; NumPy only at import (TensorFlow is imported by
:func:`extract_features` when it runs).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

FORMAT_VERSION = "feature-cache-v1"
BASE_DESCRIPTION = "base.json"
_KEY = re.compile(r"^[0-9a-f]{64}$")
_BASE_KEY = re.compile(r"^[0-9a-f]{32}$")
_SUFFIX = ".npy"
_TMP_SUFFIX = ".tmp"


# ---------------------------------------------------------------------------- keys


def image_key(path, *, filesystem=None) -> str:
    """Content key of an image file: sha256 of its bytes, 64 hex characters.

    Args:
        path: File path (in ``filesystem`` if given).
        filesystem: None (local) or an fsspec filesystem.

    Raises:
        FileNotFoundError: No such file.
    """
    return hashlib.sha256(_fs(filesystem).read_bytes(os.fspath(path))).hexdigest()


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


_compute_base_key = base_key  # `extract_features` has a parameter of the same name


def entry_path(root, base_key: str, image_key: str) -> str:
    """``<root>/<base_key>/<image_key[:2]>/<image_key>.npy``.

    Raises:
        ValueError: A key is not lowercase hex of the right length (keys become
            path components, so nothing else is accepted).
    """
    _check_base_key(base_key)
    if not isinstance(image_key, str) or not _KEY.match(image_key):
        raise ValueError(
            f"`image_key` must be 64 lowercase hex characters (sha256). "
            f"Received: image_key={image_key!r}"
        )
    return f"{_root(root)}/{base_key}/{image_key[:2]}/{image_key}{_SUFFIX}"


# ---------------------------------------------------------------------------- entries


def lookup(root, base_key: str, image_keys, *, filesystem=None):
    """Read the cached features of some images.

    Args:
        root: Cache root.
        base_key: From :func:`base_key`.
        image_keys: Image keys (duplicates are looked up once).
        filesystem: None (local) or an fsspec filesystem.

    Returns:
        ``(found, missing)``: ``{image_key: array}`` of the entries present and
        readable, and the list of the other keys in input order (an unreadable entry,
        e.g. one copied half by hand, counts as missing and is rewritten by the next
        :func:`store` with ``overwrite=True``).

    Raises:
        ValueError: A malformed key.
    """
    fs = _fs(filesystem)
    found: dict[str, np.ndarray] = {}
    missing: list[str] = []
    for key in dict.fromkeys(image_keys):
        path = entry_path(root, base_key, key)
        try:
            found[key] = np.load(io.BytesIO(fs.read_bytes(path)), allow_pickle=False)
        except FileNotFoundError:
            missing.append(key)
        except (OSError, ValueError, EOFError):
            missing.append(key)  # torn or foreign file: recompute it
    return found, missing


def store(
    root,
    base_key: str,
    features: Mapping[str, np.ndarray],
    *,
    description=None,
    overwrite=False,
    filesystem=None,
) -> int:
    """Write feature arrays, one atomic file per image.

    Args:
        root: Cache root.
        base_key: From :func:`base_key`.
        features: ``{image_key: array}`` (any numeric dtype; float32 from
            :func:`extract_features`).
        description: The :func:`base_description` to record as ``base.json`` (written
            once per base key).
        overwrite: Rewrite entries that exist (default: leave them; the content of a
            key never changes).
        filesystem: None (local) or an fsspec filesystem.

    Returns:
        Number of files written.

    Raises:
        ValueError: A malformed key or a non-numeric array.
    """
    fs = _fs(filesystem)
    _check_base_key(base_key)
    if description is not None:
        desc_path = f"{_root(root)}/{base_key}/{BASE_DESCRIPTION}"
        if not fs.exists(desc_path):
            fs.write_atomic(desc_path, json.dumps(description, indent=1, sort_keys=True).encode())
    written = 0
    for key, value in features.items():
        path = entry_path(root, base_key, key)
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"Feature arrays must be numeric. Received: dtype={array.dtype} for "
                f"image_key={key!r}"
            )
        if not overwrite and fs.exists(path):
            continue
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        fs.write_atomic(path, buf.getvalue())
        written += 1
    return written


def list_entries(root, *, filesystem=None) -> list[dict]:
    """Every cache entry under ``root``.

    Returns:
        ``[{"base_key", "image_key", "path", "size_bytes", "mtime"}]`` sorted by base
        key then image key; ``mtime`` in seconds since the epoch (write time).
        Temporary files and ``base.json`` are not entries.
    """
    out = []
    for info in _fs(filesystem).walk_files(_root(root)):
        parts = _entry_parts(root, info["path"])
        if parts is not None:
            out.append({"base_key": parts[0], "image_key": parts[1], **info})
    return sorted(out, key=lambda e: (e["base_key"], e["image_key"]))


def list_bases(root, *, filesystem=None) -> dict[str, dict]:
    """Summary per base key: ``{base_key: {"description", "entries", "size_bytes",
    "mtime"}}`` (``description`` = the stored ``base.json``, or None if absent;
    ``mtime`` = write time of the newest entry, seconds since the epoch)."""
    fs = _fs(filesystem)
    out: dict[str, dict] = {}
    for entry in list_entries(root, filesystem=filesystem):
        base = out.setdefault(
            entry["base_key"], {"entries": 0, "size_bytes": 0, "mtime": entry["mtime"]}
        )
        base["entries"] += 1
        base["size_bytes"] += entry["size_bytes"]
        base["mtime"] = max(base["mtime"], entry["mtime"])
    for key, base in out.items():
        try:
            base["description"] = json.loads(
                fs.read_bytes(f"{_root(root)}/{key}/{BASE_DESCRIPTION}")
            )
        except (FileNotFoundError, ValueError):
            base["description"] = None
    return out


def prune(
    root, base_key=None, older_than_s=None, *, now=None, dry_run=False, filesystem=None
) -> dict:
    """Delete cache entries.

    With no filter every entry goes; ``base_key`` keeps the deletion to one base;
    ``older_than_s`` to entries written more than that many seconds before ``now``.
    Leftover temporary files (of writers that crashed) older than the same limit go
    too. A base folder left without entries loses its ``base.json`` and folders.
    Files that are not cache entries are never touched.

    Args:
        root: Cache root.
        base_key: Only this base (None = all bases).
        older_than_s: Only entries older than this, in seconds (None = any age).
        now: Reference time (default ``time.time()``).
        dry_run: Only report what would be deleted; delete nothing.
        filesystem: None (local) or an fsspec filesystem.

    Returns:
        ``{"removed": files deleted, "size_bytes": bytes freed, "bases": {base_key:
        {"removed", "size_bytes"}}}`` (with ``dry_run``: what would be deleted).

    Raises:
        ValueError: Malformed ``base_key`` or negative ``older_than_s``.
    """
    if base_key is not None:
        _check_base_key(base_key)
    if older_than_s is not None and not older_than_s >= 0:
        raise ValueError(f"`older_than_s` must be >= 0. Received: {older_than_s!r}")
    fs = _fs(filesystem)
    cutoff = None if older_than_s is None else (time.time() if now is None else now) - older_than_s
    removed = freed = 0
    touched_bases = set()
    per_base: dict[str, dict] = {}
    for info in fs.walk_files(_root(root)):
        rel = _relative(root, info["path"])
        if rel is None or not _BASE_KEY.match(rel[0]):
            continue
        is_entry = _entry_parts(root, info["path"]) is not None
        is_tmp = rel[-1].startswith(".") and rel[-1].endswith(_TMP_SUFFIX)
        if not (is_entry or is_tmp):
            continue
        if base_key is not None and rel[0] != base_key:
            continue
        if cutoff is not None and info["mtime"] >= cutoff:
            continue
        if not dry_run:
            fs.remove(info["path"])
        removed += 1
        freed += info["size_bytes"]
        touched_bases.add(rel[0])
        stats = per_base.setdefault(rel[0], {"removed": 0, "size_bytes": 0})
        stats["removed"] += 1
        stats["size_bytes"] += info["size_bytes"]
    if not dry_run:
        remaining = {e["base_key"] for e in list_entries(root, filesystem=filesystem)}
        for key in touched_bases - remaining:
            fs.remove_tree(f"{_root(root)}/{key}")
    return {"removed": removed, "size_bytes": freed, "bases": per_base}


# ---------------------------------------------------------------------------- extraction


@dataclass
class FeatureExtraction:
    """Result of :func:`extract_features`; row ``i`` of every field is one image.

    Attributes:
        features: float32 ``(n, *feature_shape)``, e.g. ``(n, 4, 4, 512)``.
        labels: int32 ``(n,)``.
        paths: The image path of each row (str).
        image_keys: The content key of each row.
        order: int64 ``(n,)``: row ``i`` is input position ``order[i]`` (identity
            unless ``shuffle``).
        hits: Rows whose feature came from the cache.
        misses: Rows whose feature was computed in this call.
        forward_images: Images passed through the conv base (duplicates of the same
            bytes are computed once).
        forward_batches: Conv base calls.
        base_key: The base key used (None without a cache).
    """

    features: np.ndarray
    labels: np.ndarray
    paths: list[str]
    image_keys: list[str]
    order: np.ndarray
    hits: int
    misses: int
    forward_images: int
    forward_batches: int
    base_key: str | None


def extract_features(
    paths,
    conv_base,
    *,
    size,
    preprocessing,
    batch_size=32,
    labels=None,
    shuffle=False,
    seed=0,
    cache_root=None,
    base_key=None,
    description=None,
    filesystem=None,
) -> FeatureExtraction:
    """Conv-base features of images, aligned with their labels and paths, through the
    cache (book listing 5.17, ``extract_features``, made keyed and reusable).

    Every image is identified by its content key. Cached features are read; the
    others are computed by the conv base in batches of ``batch_size`` through a
    ``tf.data`` pipeline whose elements carry each image together with its row
    index, so a feature is always stored next to its own path and label, whatever
    the batch size, a partial last batch, or the order. The new features are written
    to the cache. With ``shuffle``, the rows come out in a seeded random order (the
    same permutation for features, labels and paths).

    Args:
        paths: Image files (validated beforehand).
        conv_base: A Keras model mapping ``(batch, height, width, 3)`` preprocessed
            images to features (e.g. ``conv_base("vgg16", ...)``), called with
            ``training=False``.
        size: ``(height, width)`` the images are resized to.
        preprocessing: ``1/255``, a conv base name (its ``preprocess_input``) or None.
        batch_size: Images per conv base call.
        labels: Integer label per path; default: the index of each file's parent
            folder name among the sorted folder names (the split layout's labels).
        shuffle: Return the rows in a random order drawn from ``seed``.
        seed: Seed of the order.
        cache_root: Cache root; None = no cache (everything is computed).
        base_key: Key of ``conv_base`` (:func:`base_key`). Default when a cache is
            used: computed from ``conv_base.name``, :func:`model_fingerprint`,
            ``size`` and ``preprocessing`` (always correct, costs one pass over the
            weights).
        description: The :func:`base_description` behind ``base_key``, recorded in the
            cache as ``base.json`` (computed along with a computed ``base_key``).
        filesystem: None (local) or an fsspec filesystem for the cache.

    Returns:
        A :class:`FeatureExtraction`.

    Raises:
        ValueError: Empty ``paths``, ``labels`` of another length, bad ``size``,
            ``batch_size`` or ``preprocessing``.
        tensorflow.errors.InvalidArgumentError: An image does not decode.
    """
    import tensorflow as tf

    from dlpipe.tasks.images.decode import check_size, decode_resize
    from dlpipe.tasks.images.preprocess import preprocessing_fn
    from dlpipe.tasks.images.sniff import read_image_header

    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("`paths` must not be empty")
    if labels is None:
        labels = _folder_labels(paths)
    labels = np.asarray(labels, dtype=np.int32).reshape(-1)
    if len(labels) != len(paths):
        raise ValueError(
            f"`labels` must have one label per path. Received: {len(labels)} labels for "
            f"{len(paths)} paths"
        )
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    size = check_size(size)
    preprocess = preprocessing_fn(preprocessing)
    n = len(paths)
    order = (np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)).astype(
        np.int64
    )
    keys = [image_key(p) for p in paths]  # local image files

    if cache_root is not None and base_key is None:
        fields = (conv_base.name, model_fingerprint(conv_base), size, preprocessing)
        base_key = _compute_base_key(*fields)
        description = base_description(*fields)
    cached: dict[str, np.ndarray] = {}
    if cache_root is not None:
        cached, _ = lookup(cache_root, base_key, keys, filesystem=filesystem)

    # One input row per image still to compute (first row of each new content key),
    # visited in output order; the row index travels with the image.
    todo, seen = [], set()
    for row in order:
        key = keys[row]
        if key not in cached and key not in seen:
            seen.add(key)
            todo.append(int(row))
    computed: dict[str, np.ndarray] = {}
    batches = 0
    if todo:
        orientations = np.asarray([read_image_header(paths[i]).orientation for i in todo], np.int32)
        ds = tf.data.Dataset.from_tensor_slices(
            ([paths[i] for i in todo], np.asarray(todo, dtype=np.int64), orientations)
        )
        ds = ds.map(
            lambda p, i, o: (decode_resize(tf.io.read_file(p), size, o), i),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        ds = ds.batch(batch_size).map(
            lambda x, i: (preprocess(x), i), num_parallel_calls=tf.data.AUTOTUNE
        )
        ds = ds.prefetch(tf.data.AUTOTUNE)
        for images, rows in ds:
            out = np.asarray(conv_base(images, training=False), dtype=np.float32)
            for row, feature in zip(rows.numpy(), out):  # same element, same image
                computed[keys[int(row)]] = feature
            batches += 1
        if cache_root is not None:
            store(
                cache_root,
                base_key,
                computed,
                description=description,
                overwrite=True,
                filesystem=filesystem,
            )
    features = np.stack(
        [cached[keys[r]] if keys[r] in cached else computed[keys[r]] for r in order]
    ).astype(np.float32, copy=False)
    hits = sum(1 for r in order if keys[r] in cached)
    return FeatureExtraction(
        features=features,
        labels=labels[order],
        paths=[paths[r] for r in order],
        image_keys=[keys[r] for r in order],
        order=order,
        hits=hits,
        misses=n - hits,
        forward_images=len(todo),
        forward_batches=batches,
        base_key=base_key,
    )


# ---------------------------------------------------------------------------- helpers


def _folder_labels(paths) -> np.ndarray:
    """Label = index of the parent folder name among the sorted parent names."""
    parents = [Path(p).parent.name for p in paths]
    names = sorted(set(parents))
    index = {name: i for i, name in enumerate(names)}
    return np.asarray([index[p] for p in parents], dtype=np.int32)


def _check_base_key(key) -> None:
    if not isinstance(key, str) or not _BASE_KEY.match(key):
        raise ValueError(
            f"`base_key` must be 32 lowercase hex characters (from base_key()). "
            f"Received: base_key={key!r}"
        )


def _root(root) -> str:
    return os.fspath(root).rstrip("/") or "/"


def _relative(root, path: str):
    prefix = _root(root) + "/"
    path = str(path)
    if not path.startswith(prefix):
        return None
    return path[len(prefix) :].split("/")


def _entry_parts(root, path: str):
    """``(base_key, image_key)`` if ``path`` is an entry file under ``root``."""
    rel = _relative(root, path)
    if rel is None or len(rel) != 3:
        return None
    base, shard, name = rel
    key = name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else ""
    if _BASE_KEY.match(base) and _KEY.match(key) and shard == key[:2]:
        return base, key
    return None


class _LocalFS:
    """Local files through ``os``; writes via a temporary file and ``os.replace``."""

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def write_atomic(self, path: str, payload: bytes) -> None:
        # temporary ".<name>.<random>.tmp" in the same folder, then os.replace
        from dlpipe.tasks.reports.tables import atomic_write_bytes

        atomic_write_bytes(path, payload)

    def walk_files(self, root: str):
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue  # removed meanwhile
                yield {"path": path, "size_bytes": int(st.st_size), "mtime": st.st_mtime}

    def remove(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)

    def remove_tree(self, path: str) -> None:
        """Remove ``base.json`` and the now empty folders of one base (nothing else)."""
        Path(path, BASE_DESCRIPTION).unlink(missing_ok=True)
        for folder, _, _ in sorted(os.walk(path), reverse=True):
            try:
                os.rmdir(folder)
            except OSError:
                pass  # not empty: something else lives there


class _FsspecFS:
    """The same operations on an fsspec filesystem (S3, GCS, HDFS via ArrowFSWrapper...)."""

    def __init__(self, fs):
        self.fs = fs

    def read_bytes(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def write_atomic(self, path: str, payload: bytes) -> None:
        folder = path.rsplit("/", 1)[0]
        self.fs.makedirs(folder, exist_ok=True)
        tmp = f"{folder}/.{path.rsplit('/', 1)[1]}.{os.getpid()}.{time.time_ns()}{_TMP_SUFFIX}"
        self.fs.pipe_file(tmp, payload)
        self.fs.mv(tmp, path)

    def walk_files(self, root: str):
        if not self.fs.exists(root):
            return
        for path, info in self.fs.find(root, detail=True).items():
            mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
            if mtime is None:
                mtime = self.fs.modified(path)
            if hasattr(mtime, "timestamp"):
                mtime = mtime.timestamp()
            yield {"path": path, "size_bytes": int(info.get("size") or 0), "mtime": float(mtime)}

    def remove(self, path: str) -> None:
        if self.fs.exists(path):
            self.fs.rm_file(path)

    def remove_tree(self, path: str) -> None:
        if self.fs.exists(f"{path}/{BASE_DESCRIPTION}"):
            self.fs.rm_file(f"{path}/{BASE_DESCRIPTION}")
        if not self.fs.find(path):
            try:
                self.fs.rm(path, recursive=True)
            except (FileNotFoundError, OSError):
                pass


def _fs(filesystem):
    return _LocalFS() if filesystem is None else _FsspecFS(filesystem)
