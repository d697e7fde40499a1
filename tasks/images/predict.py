"""Class probabilities for new image files (issue 15): every file is checked with the
study's validation (:func:`dlpipe.tasks.images.validate.check_images`: the decoder,
the size and pixel rules; bad files listed with their reason, never decoded into the
model), then fed as training fed it: through
:func:`dlpipe.tasks.images.train.model_inputs` (decode, resize, 1/255 or the conv
base's preprocessing); ``features_head`` models get conv-base features from
:func:`dlpipe.tasks.features.study.features_of` (the study's feature cache).

Image-fed models decode each file once (:func:`screened_inputs`): the checks that need
no decoding run first (:func:`dlpipe.tasks.images.validate.screen_file`), and the
model's input pipeline decodes, checks the decoded size and resizes; a file that fails
there fails the pipeline, and the caller then runs the full validation on the screened
files (:func:`check_files`), so a bad file's reason is always the validation's.

No Ray; TensorFlow is loaded only when inputs are built.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlpipe.tasks.images.prepare import ImageSpec
from dlpipe.tasks.training.records import spec_dict

#: file name endings listed from a folder (others are left out, as hidden files)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")


def predict_state(images: ImageSpec, meta: dict, seed: int, cache_root: str) -> dict:
    """The preprocessing state of a prepared image dataset (JSON-able): the ``images``
    section (size, preprocessing, conv base and weights), the class names, the feature
    cache root and base key, and the seed of a randomly initialized conv base."""
    report = meta.get("feature_cache") or {}
    return {
        "kind": "images",
        "dataset_key": meta["key"],
        "images": spec_dict(images),
        "class_names": list(meta["class_names"]),
        "feature_shape": meta.get("feature_shape"),
        "cache_root": cache_root,
        "base_key": report.get("base_key"),
        "seed": int(seed),
    }


def image_spec(inputs: dict) -> ImageSpec:
    """The :class:`ImageSpec` of stored ``images`` settings (JSON lists as tuples)."""
    fields = {k: v for k, v in inputs.items() if k in ImageSpec.__dataclass_fields__}
    fields["size"] = tuple(fields["size"])
    fields["fine_tune_layers"] = tuple(fields.get("fine_tune_layers", ()))
    return ImageSpec(**fields)


def list_images(path: str | Path) -> list[str]:
    """The image files of ``path``: a folder (every image file under it, sorted), one
    image file, or a text file listing one path per line (relative to its folder).

    Raises:
        FileNotFoundError: no such file or folder.
        ValueError: no image file found, naming the path.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(
            str(p)
            for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        files = [str(path)]
    elif path.is_file():
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        files = [str(p if Path(p).is_absolute() else path.parent / p) for p in lines]
    else:
        raise FileNotFoundError(f"no such file or folder: {path}")
    if not files:
        raise ValueError(f"{path}: field `files`: no image file ({', '.join(IMAGE_SUFFIXES)})")
    return files


def check_files(state: dict, files: list[str], inputs: dict) -> tuple[list[str], list[dict]]:
    """``(good paths, bad)``: the study's validation of every file (decoder, size and
    pixel rules); ``bad`` holds ``{"path", "reason", "size_bytes"}`` per bad file."""
    from dlpipe.tasks.images.validate import check_images

    spec = image_spec(inputs)
    check = check_images(files, size=tuple(spec.size), max_pixels=spec.max_pixels)
    return check.ok, check.bad


def image_inputs(paths: list[str], family: str, inputs: dict, batch_size: int = 32):
    """The model inputs of the good files ``paths`` for an image-fed family (not
    ``features_head``: :func:`dlpipe.tasks.features.study.features_of`), as training
    built them: a ``tf.data.Dataset`` of decoded, resized, preprocessed batches."""
    from dlpipe.tasks.images.train import model_inputs

    data = {"paths": np.asarray(paths, dtype=str), "labels": np.zeros(len(paths), np.int64)}
    return model_inputs(
        data, np.arange(len(paths)), family, image_spec(inputs), batch_size, False, 0
    )


def screened_inputs(files: list[str], family: str, inputs: dict, batch_size: int = 32):
    """``(x, good, bad)`` of an image-fed family (not ``features_head``), each file
    decoded once: :func:`~dlpipe.tasks.images.validate.screen_file` on every file
    (readable, complete, pixel limit: no decoding), then ``x``, a ``tf.data.Dataset`` of
    the good files' model inputs built as :func:`image_inputs` builds them (the same
    decode, resize and preprocessing ops, so the same values), whose decode step also
    fails on an image that decodes empty.

    Iterating ``x`` raises ``tensorflow.errors.OpError`` when a screened file does not
    decode (or decodes empty, or does not resize): call :func:`check_files` on ``good``
    for the reasons, as the validation gives them.

    Returns:
        ``x``; ``good``, the screened paths; ``bad``, ``{"path", "reason",
        "size_bytes"}`` per file that failed the screening.
    """
    import tensorflow as tf

    from dlpipe.tasks.images.decode import check_size, decode_image
    from dlpipe.tasks.images.inputs import BASE_FAMILIES
    from dlpipe.tasks.images.prepare import base_preprocessing
    from dlpipe.tasks.images.preprocess import preprocessing_fn, preprocessing_id
    from dlpipe.tasks.images.validate import screen_file

    spec = image_spec(inputs)
    good, bad, orientations = [], [], []
    for path in files:
        _, header, problem = screen_file(path, spec.max_pixels)
        if problem is not None:
            bad.append(problem)
            continue
        good.append(path)
        orientations.append(header.orientation)
    if not good:
        return None, good, bad
    size = check_size(tuple(spec.size))
    pre = base_preprocessing(spec) if family in BASE_FAMILIES else 1 / 255

    def decode(path, orientation):  # decode_resize, and the validation's empty check
        image = decode_image(tf.io.read_file(path), orientation)
        shape = tf.shape(image)
        nonempty = tf.debugging.Assert(tf.reduce_min(shape[:2]) > 0, ["empty image", path])
        with tf.control_dependencies([nonempty]):
            image = tf.image.resize(image, size)
        image.set_shape((size[0], size[1], 3))
        return image

    ds = tf.data.Dataset.from_tensor_slices((good, np.asarray(orientations, np.int32)))
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size)
    if preprocessing_id(pre) != "none":
        preprocess = preprocessing_fn(pre)
        ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE), good, bad


def write_list_shards(files: list[str], folder: Path, size: int) -> list[dict]:
    """``files`` written as list files of ``size`` paths under ``folder`` (read back by
    :func:`list_images`) -> ``[{"path", "offset": 0}]``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(0, len(files), size):
        shard = folder / f"shard-{i:09d}.txt"
        shard.write_text("\n".join(files[i : i + size]) + "\n")
        out.append({"path": str(shard), "offset": 0})
    return out
