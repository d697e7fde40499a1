"""Image folders (book ch. 5.2): split a flat Kaggle folder, validate, load, augment.

Plain functions, no Ray (:mod:`dlpipe.tasks.remote` wraps them). TensorFlow and Keras
are imported inside the functions that need them, so splitting and listing folders
stay cheap in a driver process that must run no TF op (shared case C13).

Layout written by :func:`split_flat_folder` (the book's listing 5.9, generalized)::

    dst/train/<class>/<class>.<id>.<ext>
    dst/validation/<class>/...
    dst/test/<class>/...
    dst/split.json               the SplitReport as JSON (written atomically)

The class folder is named after the class prefix **as is** (``cat/``, ``dog/``), not
pluralized as in the book (``cats/``, ``dogs/``); pass ``class_dirs={"cat": "cats",
"dog": "dogs"}`` for the book's names. Labels are the positions of the class folders
in sorted order (``cat`` = 0, ``dog`` = 1 either way), as in
``keras.utils.image_dataset_from_directory``.

Decoding policy (cases C01, C02): the format is told by content, never by extension;
the decoder is the pipeline's own, ``tf.io.decode_image(bytes, channels=3,
expand_animations=False)`` (JPEG, PNG, GIF first frame, BMP, WebP; grayscale, CMYK
and RGBA all become 3 channels). TensorFlow 2.21 rejects every truncated JPEG the
tests try, but decoders differ between builds and options (libjpeg can pad a cut
image with grey and only warn), so :func:`validate_images` also walks the JPEG
markers up to the end-of-image marker ``FF D9`` and the PNG chunks up to ``IEND``.
Bytes between the last scan and ``FF D9`` (C01's 50 zero bytes) are allowed: the image
decodes. Source files are only ever opened for reading.

Rules of issue 12 (one decoder, :func:`decode_image`, used by validation, training and
the feature cache):

* **Orientation (C21).** The EXIF Orientation tag (JPEG APP1, PNG ``eXIf``, WebP
  ``EXIF``) is applied after decoding, as ``PIL.ImageOps.exif_transpose`` does; the
  files it turned are listed (:class:`ImageCheck`'s ``rotated``). The decoder's
  version (:data:`DECODER_VERSION`) is part of the feature cache's base key.
* **Decoding cost bounded.** Width and height are read from the header
  (:func:`image_header`) before decoding; a file declaring more than ``max_pixels``
  pixels (default Pillow's ``Image.MAX_IMAGE_PIXELS``, 89,478,485) is a bad file with
  that reason and is never decoded.
* **Content vs extension.** A file whose bytes are another format than its extension
  names (PNG/BMP/GIF bytes named ``.jpg``) is decoded by content and listed as a format
  mismatch (:class:`ImageCheck`'s ``format_mismatch``).
"""

from __future__ import annotations

import filecmp
import hashlib
import io
import json
import numbers
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "validation", "test")
#: The book's split: per class, ids 0-999 train, 1000-1499 validation, 1500-1999 test.
BOOK_COUNTS = {"train": 1000, "validation": 500, "test": 500}
SPLIT_MANIFEST = "split.json"
#: `<class>.<id>.<ext>`: class = no dot or space; id = decimal digits.
_FLAT_NAME = re.compile(r"^(?P<cls>[^.\s]+)\.(?P<id>\d+)\.(?P<ext>jpe?g|png)$", re.IGNORECASE)
_SPLIT_MODES = ("contiguous", "shuffle")
_TMP_SUFFIX = ".tmp"


#: Version of the pipeline's decoder (:func:`decode_image`). It is part of the feature
#: cache's base key, so features computed by an older decoder are never reused.
#: 1: ``tf.io.decode_image`` as is; 2: EXIF Orientation applied (case C21).
DECODER_VERSION = 2
#: Default pixel limit (width x height) of a file the pipeline decodes: Pillow's
#: ``Image.MAX_IMAGE_PIXELS`` (1024 * 1024 * 1024 // 4 // 3 = 89,478,485, about 0.25 GiB
#: of 24-bit pixels); study files set ``images.max_pixels``.
DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3
#: The format each listed extension promises (a mismatch is reported, never refused).
EXTENSION_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}
#: Bytes :func:`read_image_header` reads first (EXIF APP1 segments are < 64 KiB each).
_HEADER_PROBE = 256 * 1024
#: EXIF Orientation -> the transform that displays the image upright, as
#: ``PIL.ImageOps.exif_transpose`` names it.
ORIENTATIONS = {
    1: "none",
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


@dataclass
class SplitReport:
    """What :func:`split_flat_folder` did.

    Attributes:
        src: The flat source folder.
        dst: The base folder of the splits.
        mode: ``"contiguous"`` or ``"shuffle"``.
        seed: Shuffle seed (recorded for both modes).
        counts: Images per class in each split, in split order.
        classes: Class names (file prefixes), sorted; label = position.
        class_dirs: Class name -> folder name under each split.
        files: ``{split: {class: [file names]}}`` in id order (contiguous) or drawn
            order (shuffle).
        found: Valid-looking files per class in ``src``.
        unused: Files per class left out (found - sum of counts).
        strays: ``[{"name", "reason"}]``: names that are not ``<class>.<id>.<ext>``
            with ext jpg/jpeg/png, sub-folders, and duplicate ids; never copied.
        copied: Files copied by this call.
        reused: Files already in ``dst`` with the same content, left as they were.
    """

    src: str
    dst: str
    mode: str
    seed: int
    counts: dict[str, int]
    classes: list[str]
    class_dirs: dict[str, str]
    files: dict[str, dict[str, list[str]]]
    found: dict[str, int]
    unused: dict[str, int]
    strays: list[dict] = field(default_factory=list)
    copied: int = 0
    reused: int = 0

    def split_dir(self, split: str) -> Path:
        """``dst/<split>``, the folder :func:`list_image_folder` reads."""
        return Path(self.dst) / split

    def to_dict(self) -> dict:
        """JSON-able copy (the content of ``dst/split.json``)."""
        return asdict(self)


@dataclass
class FlatFolder:
    """Result of :func:`scan_flat_folder`.

    Attributes:
        by_class: ``{class: [(id, file name), ...]}`` sorted by numeric id.
        strays: ``[{"name", "reason"}]`` for every other entry of the folder.
    """

    by_class: dict[str, list[tuple[int, str]]]
    strays: list[dict]


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


def scan_flat_folder(src) -> FlatFolder:
    """List a flat folder of ``<class>.<id>.<ext>`` files (Kaggle dogs-vs-cats layout).

    Names are matched case-insensitively on the extension (``jpg``, ``jpeg``,
    ``png``); the id is compared as a number (``cat.2`` before ``cat.10``). Two files
    of one class with the same numeric id (``cat.1.jpg``, ``cat.01.png``) keep the
    first name in sorted order and report the others as duplicates.

    Args:
        src: Folder path.

    Returns:
        A :class:`FlatFolder`.

    Raises:
        FileNotFoundError: ``src`` is not a folder (the message names it).
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"image folder not found: {src}")
    by_class: dict[str, dict[int, str]] = {}
    strays: list[dict] = []
    for name in sorted(os.listdir(src)):
        if not (src / name).is_file():
            strays.append({"name": name, "reason": "not a regular file"})
            continue
        match = _FLAT_NAME.match(name)
        if match is None:
            strays.append({"name": name, "reason": _stray_reason(name)})
            continue
        cls, ident = match["cls"], int(match["id"])
        ids = by_class.setdefault(cls, {})
        if ident in ids:
            strays.append(
                {
                    "name": name,
                    "reason": f"duplicate id {ident} of class `{cls}` (kept {ids[ident]})",
                }
            )
            continue
        ids[ident] = name
    return FlatFolder({cls: sorted(ids.items()) for cls, ids in sorted(by_class.items())}, strays)


def split_flat_folder(
    src, dst, counts=None, *, mode="contiguous", seed=0, class_dirs=None
) -> SplitReport:
    """Copy a flat ``<class>.<id>.<ext>`` folder into train/validation/test class
    folders (book listing 5.9 generalized; case C03).

    For each class, the files are ordered by numeric id (``contiguous``) or by a
    seeded shuffle of that order (``shuffle``; the permutation of each class depends
    only on ``seed`` and the class name), and cut into consecutive blocks: the first
    ``counts[split_1]`` files go to the first split, the next ones to the second, and
    so on; the rest are unused. With the book's counts (1000/500/500) that is ids
    0-999, 1000-1499, 1500-1999. Splits are disjoint and identical on every run.

    Source files are only read (copied with :func:`shutil.copy2` into a temporary
    name, then renamed). Running again with the same arguments reuses what is
    already in ``dst``: files with the same content are left alone (counted in
    ``reused``), missing ones are copied (an interrupted split resumes).

    Args:
        src: The flat source folder.
        dst: The base folder to write; must not be ``src``.
        counts: ``{split: images per class}``, in split order. Default
            :data:`BOOK_COUNTS` (``train`` 1000, ``validation`` 500, ``test`` 500).
        mode: ``"contiguous"`` (book) or ``"shuffle"``.
        seed: Seed of the shuffle.
        class_dirs: Optional ``{class: folder name}``, e.g. ``{"cat": "cats"}`` for the
            book's plural names; default: the class name.

    Returns:
        A :class:`SplitReport` (also written to ``dst/split.json``).

    Raises:
        FileNotFoundError: ``src`` does not exist.
        ValueError: Bad ``counts``/``mode``/``class_dirs``; ``dst`` is ``src``; no file
            matches ``<class>.<id>.<ext>``; a class has fewer files than the split
            needs (the message names each such class, the count found and the count
            needed); or ``dst`` already holds class folders whose files differ from
            this split (different content, extra images, unknown class folders), so
            reusing them would mix splits.
    """
    counts = _check_counts(BOOK_COUNTS if counts is None else counts)
    if mode not in _SPLIT_MODES:
        raise ValueError(f"`mode` must be one of {list(_SPLIT_MODES)}. Received: mode={mode!r}")
    src, dst = Path(src), Path(dst)
    scan = scan_flat_folder(src)
    if dst.resolve() == src.resolve():
        raise ValueError(f"`dst` must differ from `src`. Received: dst={str(dst)!r}")
    if not scan.by_class:
        raise ValueError(
            f"No file in {src} is named <class>.<id>.<ext> with ext jpg, jpeg or png "
            f"({len(scan.strays)} other names, e.g. {[s['name'] for s in scan.strays[:3]]})"
        )
    classes = list(scan.by_class)
    needed = sum(counts.values())
    short = {cls: len(files) for cls, files in scan.by_class.items() if len(files) < needed}
    if short:
        wanted = ", ".join(f"{k}={v}" for k, v in counts.items())
        raise ValueError(
            "; ".join(
                f"Class `{cls}` has {found} files in {src}, the split needs {needed} ({wanted})"
                for cls, found in short.items()
            )
        )
    dirs = _check_class_dirs(class_dirs, classes)

    files: dict[str, dict[str, list[str]]] = {split: {} for split in counts}
    for cls, entries in scan.by_class.items():
        names = [name for _, name in entries]
        if mode == "shuffle":
            digest = hashlib.sha256(cls.encode()).digest()
            rng = np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])
            names = [names[i] for i in rng.permutation(len(names))]
        start = 0
        for split, n in counts.items():
            files[split][cls] = names[start : start + n]
            start += n

    plan = [
        (src / name, dst / split / dirs[cls] / name)
        for split, per_class in files.items()
        for cls, names in per_class.items()
        for name in names
    ]
    _check_existing_dst(dst, files, dirs, src)
    copied = reused = 0
    for source, target in plan:
        if target.is_file():
            reused += 1  # same content: checked by _check_existing_dst
            continue
        _atomic_copy(source, target)
        copied += 1
    report = SplitReport(
        src=str(src),
        dst=str(dst),
        mode=mode,
        seed=int(seed),
        counts=counts,
        classes=classes,
        class_dirs=dirs,
        files=files,
        found={cls: len(v) for cls, v in scan.by_class.items()},
        unused={cls: len(v) - needed for cls, v in scan.by_class.items()},
        strays=scan.strays,
        copied=copied,
        reused=reused,
    )
    manifest = {k: v for k, v in report.to_dict().items() if k not in ("copied", "reused")}
    _atomic_write(dst / SPLIT_MANIFEST, json.dumps(manifest, indent=1).encode())
    return report


def list_image_folder(split_dir) -> ImageFolder:
    """List one split folder: ``split_dir/<class>/<image files>``.

    Class names are the sub-folder names in sorted order (label = position, as in
    ``keras.utils.image_dataset_from_directory``). Files are those with extension
    jpg/jpeg/png (case-insensitive), not hidden, ordered by numeric id when named
    ``<class>.<id>.<ext>``, else by name; other files are ignored. Content is not
    checked here: see :func:`validate_images`.

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


@dataclass
class ImageCheck:
    """Result of :func:`check_images`.

    Attributes:
        ok: Paths of the good files (str), in input order.
        bad: One dict per bad file: ``{"path", "reason", "size_bytes"}``
            (``size_bytes`` -1 when the file cannot even be read).
        rotated: ``[{"path", "orientation"}]``: good files whose EXIF Orientation (2-8)
            the decoder applied (case C21).
        format_mismatch: ``[{"path", "extension", "format"}]``: good files whose bytes
            are another format than their extension names (PNG bytes named ``.jpg``).
    """

    ok: list[str]
    bad: list[dict]
    rotated: list[dict] = field(default_factory=list)
    format_mismatch: list[dict] = field(default_factory=list)


def check_images(paths, *, size=None, max_pixels=DEFAULT_MAX_PIXELS) -> ImageCheck:
    """Decode every file with the pipeline's decoder; keep the good, list the bad
    (cases C01, C02), the rotated (C21) and the misnamed.

    A file is good when it is readable, non-empty, complete (JPEG: the marker walk
    reaches ``FF D9``; PNG: the chunk walk reaches ``IEND``), its header declares at
    most ``max_pixels`` pixels (checked before any pixel is decoded), and
    :func:`decode_image` returns a non-empty ``(height, width, 3)`` image; with
    ``size``, resizing it to ``(size[0], size[1], 3)`` must work too. The format comes
    from the bytes: a PNG named ``.jpg`` is good (and listed in ``format_mismatch``),
    a text file named ``.jpg`` is not. Files are opened read-only and never changed.

    Args:
        paths: File paths.
        size: Optional ``(height, width)`` the pipeline will resize to.
        max_pixels: Largest ``width * height`` a header may declare (default Pillow's
            ``Image.MAX_IMAGE_PIXELS``, 89,478,485); None = no limit.

    Returns:
        An :class:`ImageCheck`.
    """
    import tensorflow as tf

    out = ImageCheck([], [])
    for p in paths:
        path = os.fspath(p)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            out.bad.append(
                {"path": path, "reason": f"unreadable: {exc.strerror or exc}", "size_bytes": -1}
            )
            continue
        reason = image_bytes_problem(data)
        header = image_header(data) if reason is None else None
        if reason is None and max_pixels is not None and (header.pixels or 0) > max_pixels:
            reason = (
                f"header declares {header.width} x {header.height} = "
                f"{header.pixels:,} pixels, above the limit of {max_pixels:,} "
                "(images.max_pixels); not decoded"
            )
        if reason is None:
            try:
                image = decode_image(data, header.orientation)
                if min(image.shape[:2]) == 0:
                    reason = f"decoded to an empty image {tuple(image.shape)}"
                elif size is not None:
                    tf.image.resize(image, _check_size(size))
            except tf.errors.OpError as exc:
                reason = f"decode error: {_op_error_text(exc)}"
        if reason is not None:
            out.bad.append({"path": path, "reason": reason, "size_bytes": len(data)})
            continue
        out.ok.append(path)
        if header.orientation != 1:
            out.rotated.append({"path": path, "orientation": header.orientation})
        mismatch = format_mismatch(path, header.format)
        if mismatch is not None:
            out.format_mismatch.append(mismatch)
    return out


def validate_images(
    paths, *, size=None, max_pixels=DEFAULT_MAX_PIXELS
) -> tuple[list[str], list[dict]]:
    """:func:`check_images`' good paths and bad files (cases C01, C02).

    Args:
        paths, size, max_pixels: As :func:`check_images`.

    Returns:
        ``(ok_paths, bad)``: the good paths as str, in input order; and one dict per
        bad file: ``{"path": str, "reason": str, "size_bytes": int}`` (``-1`` when the
        file cannot even be read).
    """
    check = check_images(paths, size=size, max_pixels=max_pixels)
    return check.ok, check.bad


def image_bytes_problem(data: bytes) -> str | None:
    """Structural checks done before decoding: empty, unknown or truncated files.

    Args:
        data: The file's bytes.

    Returns:
        ``None`` if nothing is wrong, else the reason (str). Formats other than JPEG
        and PNG (GIF, BMP, WebP) are left to the decoder.
    """
    if not data:
        return "empty file (0 bytes)"
    kind = sniff_format(data)
    if kind == "jpeg":
        return _jpeg_problem(data)
    if kind == "png":
        return _png_problem(data)
    if kind is None:
        return f"not an image: unknown format (first bytes {data[:8].hex(' ')})"
    return None


def sniff_format(data: bytes) -> str | None:
    """Image format from the leading bytes: ``"jpeg"``, ``"png"``, ``"gif"``,
    ``"bmp"``, ``"webp"`` or ``None``."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header declares, read without decoding any pixel.

    Attributes:
        format: ``"jpeg"``, ``"png"``, ``"gif"``, ``"bmp"``, ``"webp"`` or None
            (unknown bytes).
        width, height: Declared size in pixels as stored (before orientation); None
            when the header does not say (cut short, unknown format).
        orientation: EXIF Orientation tag, 1-8 (1 = upright, also when there is no
            EXIF block or the tag is out of range); JPEG APP1 ``Exif``, PNG ``eXIf``
            and WebP ``EXIF`` blocks are read.
    """

    format: str | None
    width: int | None = None
    height: int | None = None
    orientation: int = 1

    @property
    def pixels(self) -> int | None:
        """``width * height`` (None when unknown)."""
        return None if self.width is None or self.height is None else self.width * self.height


def image_header(data: bytes) -> ImageHeader:
    """Format, declared size and EXIF orientation of an image from its leading bytes.

    Dimensions come from the JPEG frame header (the first SOF segment), the PNG
    ``IHDR`` chunk, the GIF logical screen, the BMP info header or the WebP
    ``VP8``/``VP8L``/``VP8X`` chunk. The EXIF block found (JPEG: the first APP1
    segment starting ``Exif``, before the first scan; PNG: an ``eXIf`` chunk before
    ``IDAT``; WebP: an ``EXIF`` chunk) is parsed with Pillow's ``PIL.Image.Exif``
    (tag 0x0112, Orientation). No pixel is decoded: a file declaring 20000 x 20000
    pixels costs nothing here.

    Args:
        data: The file's bytes, or a prefix of them holding the header.

    Returns:
        An :class:`ImageHeader`.
    """
    return _parse_header(data)[0]


def read_image_header(path) -> ImageHeader:
    """:func:`image_header` of a file, reading its first 256 KiB, or the whole file
    when the header (and any EXIF block) runs further.

    Raises:
        OSError: The file cannot be read.
    """
    with open(os.fspath(path), "rb") as f:
        data = f.read(_HEADER_PROBE)
        header, complete = _parse_header(data)
        if not complete and len(data) == _HEADER_PROBE:
            header = image_header(data + f.read())
    return header


def format_mismatch(path, kind: str | None) -> dict | None:
    """``{"path", "extension", "format"}`` when the bytes' format (``kind``, from
    :func:`sniff_format`) is not the one the file's extension names, else None."""
    suffix = Path(os.fspath(path)).suffix.lower()
    expected = EXTENSION_FORMATS.get(suffix)
    if kind is None or expected is None or kind == expected:
        return None
    return {"path": os.fspath(path), "extension": suffix, "format": kind}


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
        orientation: EXIF Orientation 1-8 (:func:`read_image_header`); 1 = as stored.

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


def load_image(path, size=(150, 150)) -> np.ndarray:
    """Decode and resize one image as the pipeline does (book 5.2.4).

    Args:
        path: Image file (format told by content; EXIF orientation applied).
        size: ``(height, width)`` in pixels.

    Returns:
        float32 ``(height, width, 3)`` with values in [0, 255] (bilinear resize).

    Raises:
        ValueError: The file does not decode (the message names it; run
            :func:`validate_images` first).
    """
    import tensorflow as tf

    with open(os.fspath(path), "rb") as f:
        data = f.read()
    try:
        return _decode_resize(
            tf.constant(data), _check_size(size), image_header(data).orientation
        ).numpy()
    except tf.errors.OpError as exc:
        raise ValueError(
            f"{os.fspath(path)}: image does not decode: {_op_error_text(exc)}"
        ) from None


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
        from dlpipe.models.images import _base_name

        return _base_name(preprocessing)
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


def augmentation_layers(seed=None, **factors):
    """The book's augmentation as Keras preprocessing layers (book 5.2.5).

    Same block as :func:`dlpipe.models.images.augmentation_block` (rotation 40 deg,
    shifts 0.2, zoom 0.2, horizontal flip, fill mode nearest; shear left out by
    default, see there). For the training split only: :func:`image_dataset` applies it
    when ``augment=True``, :func:`folder_datasets` only to ``train``.

    Args:
        seed: Integer seed or None.
        **factors: Overrides of ``augmentation_block``'s factors.

    Returns:
        A ``keras.Sequential``; call it with ``training=True`` to transform.
    """
    from dlpipe.models.images import augmentation_block

    return augmentation_block(seed=seed, **factors)


def image_dataset(
    paths,
    labels,
    *,
    size=(150, 150),
    batch_size=32,
    shuffle=False,
    seed=0,
    augment=False,
    preprocessing=1 / 255,
    with_paths=False,
):
    """A ``tf.data`` pipeline of decoded, resized, preprocessed image batches
    (book 5.2.4, ``flow_from_directory`` replaced by tf.data).

    Order of operations: (each file's EXIF orientation read from its header, once)
    -> (shuffle the paths) -> read + decode (:func:`decode_image`) + resize in parallel
    (``num_parallel_calls=AUTOTUNE``, order kept) -> batch -> (augment, training
    only) -> preprocessing -> prefetch. Augmentation runs on the [0, 255] images
    before preprocessing. Models built with ``augment=True`` augment inside the
    model already (see :mod:`dlpipe.models.images`): use ``augment=True`` here only
    for models that do not, and never for validation or test data.

    Args:
        paths: Image file paths (validated beforehand: a bad file fails the epoch).
        labels: Integer labels, one per path.
        size: ``(height, width)`` in pixels (book: 150x150).
        batch_size: Images per batch (the last batch may be smaller).
        shuffle: Shuffle the whole list each epoch (training split).
        seed: Seed of the shuffle and of the augmentation.
        augment: Apply :func:`augmentation_layers` with ``training=True``.
        preprocessing: ``1/255`` (book), a conv base name for its
            ``preprocess_input``, or None.
        with_paths: Also yield the path of each image (for aligned bookkeeping).

    Returns:
        A ``tf.data.Dataset`` of ``(images, labels)`` (or ``(images, labels, paths)``):
        images float32 ``(batch, height, width, 3)``, labels int32 ``(batch,)``,
        paths string ``(batch,)``.

    Raises:
        ValueError: ``paths`` is empty, ``labels`` has another length, bad ``size``,
            ``batch_size`` or ``preprocessing``.
        OSError: A file cannot be read.
    """
    import tensorflow as tf

    paths = [os.fspath(p) for p in paths]
    labels = np.asarray(labels, dtype=np.int32).reshape(-1)
    if not paths:
        raise ValueError("`paths` must not be empty")
    if len(labels) != len(paths):
        raise ValueError(
            "`labels` must have one label per path. "
            f"Received: {len(labels)} labels for {len(paths)} paths"
        )
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    size = _check_size(size)
    preprocess = preprocessing_fn(preprocessing)
    autotune = tf.data.AUTOTUNE

    orientations = np.asarray([read_image_header(p).orientation for p in paths], np.int32)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels, orientations))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    # Paths travel with the images only when asked for, and no stage runs for nothing
    # (no identity preprocessing map, no map dropping the paths): every extra stage
    # costs per-batch overhead (bench_images.py, ingest vs image_dataset_from_directory).
    if with_paths:
        ds = ds.map(
            lambda p, y, o: (_decode_resize(tf.io.read_file(p), size, o), y, p),
            num_parallel_calls=autotune,
            deterministic=True,
        )
    else:
        ds = ds.map(
            lambda p, y, o: (_decode_resize(tf.io.read_file(p), size, o), y),
            num_parallel_calls=autotune,
            deterministic=True,
        )
    ds = ds.batch(batch_size)
    if augment:
        augmentation = augmentation_layers(seed)
        ds = ds.map(
            lambda x, *rest: (augmentation(x, training=True), *rest),
            num_parallel_calls=autotune,
            deterministic=True,
        )
    if preprocessing_id(preprocessing) != "none":
        ds = ds.map(
            lambda x, *rest: (preprocess(x), *rest), num_parallel_calls=autotune, deterministic=True
        )
    return ds.prefetch(autotune)


@dataclass
class FolderSplit:
    """One split of :func:`folder_datasets`: its dataset and what it was made from."""

    dataset: object
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]


def folder_datasets(
    root,
    *,
    size=(150, 150),
    batch_size=32,
    preprocessing=1 / 255,
    augment=False,
    seed=0,
    splits=SPLITS,
) -> dict[str, FolderSplit]:
    """Datasets of a split base folder (``root/<split>/<class>/``).

    Only ``train`` is shuffled and, with ``augment=True``, augmented; validation and
    test keep file order and are never augmented.

    Args:
        root: The base folder written by :func:`split_flat_folder`.
        size, batch_size, preprocessing, seed: As :func:`image_dataset`.
        augment: Augment the training split in the data pipeline.
        splits: Split folder names to read.

    Returns:
        ``{split: FolderSplit}``.

    Raises:
        FileNotFoundError: A split folder is missing.
        ValueError: The splits do not have the same class folders.
    """
    out: dict[str, FolderSplit] = {}
    for split in splits:
        folder = list_image_folder(Path(root) / split)
        first = next(iter(out.values()), None)
        if first is not None and folder.class_names != first.class_names:
            raise ValueError(
                f"Split `{split}` has class folders {folder.class_names}, other splits "
                f"have {first.class_names} (under {root})"
            )
        training = split == "train"
        dataset = image_dataset(
            folder.paths,
            folder.labels,
            size=size,
            batch_size=batch_size,
            shuffle=training,
            seed=seed,
            augment=augment and training,
            preprocessing=preprocessing,
        )
        out[split] = FolderSplit(dataset, folder.paths, folder.labels, folder.class_names)
    return out


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
        _atomic_write(path, buf.getvalue())
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
        if source == "digits":
            from sklearn.datasets import load_digits

            bunch = load_digits()
            raw, labels = bunch.images, bunch.target
            images = np.round(raw * (255.0 / 16.0)).astype(np.uint8)
            names = [f"digit{k}" for k in range(10)]
        else:
            from skimage.data import lfw_subset

            raw = np.asarray(lfw_subset())
            images = (np.round(raw * 255.0) if raw.dtype.kind == "f" else raw).astype(np.uint8)
            labels = np.repeat([0, 1], [100, len(raw) - 100])
            names = ["face", "nonface"]
    except ImportError as exc:
        raise ImportError(
            f"write_demo_images(source={source!r}) needs the `{package}` package, which "
            f"ships these images inside its wheel: pip install {package}"
        ) from exc
    if classes is not None:
        unknown = sorted(set(classes) - set(names))
        if unknown:
            raise ValueError(
                f"Unknown class(es) {unknown} for source {source!r}; classes are {names}"
            )
        keep_labels = sorted(names.index(c) for c in classes)
        keep = np.isin(labels, keep_labels)
        remap = {old: new for new, old in enumerate(keep_labels)}
        images = images[keep]
        labels = np.array([remap[int(v)] for v in labels[keep]], dtype=np.int64)
        names = [names[i] for i in keep_labels]
    write_flat_folder(dst, images, labels, names)
    return {
        "source": source,
        "package": package,
        "dst": str(dst),
        "classes": names,
        "counts": {n: int(np.sum(labels == i)) for i, n in enumerate(names)},
        "size": tuple(int(d) for d in images.shape[1:3]),
    }


# ---------------------------------------------------------------------------- helpers


def _decode_resize(data, size, orientation=1):
    """bytes tensor -> float32 (height, width, 3) in [0, 255] (the pipeline's decoder,
    :func:`decode_image`, then a bilinear resize)."""
    import tensorflow as tf

    image = decode_image(data, orientation)  # uint8 (h, w, 3), upright
    image = tf.image.resize(image, size)  # bilinear, float32
    image.set_shape((size[0], size[1], 3))
    return image


def _orientation_transforms() -> dict:
    """EXIF Orientation -> function of an ``(h, w, c)`` tensor giving the upright image,
    the transposes ``PIL.ImageOps.exif_transpose`` applies (:data:`ORIENTATIONS`)."""
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


def _parse_header(data: bytes) -> tuple[ImageHeader, bool]:
    """``(header, complete)``: complete = the walk reached the image data (JPEG SOS,
    PNG IDAT) or the end of a RIFF/GIF/BMP header, so more bytes cannot change it."""
    kind = sniff_format(data)
    width = height = exif = None
    complete = True
    if kind == "jpeg":
        width, height, exif, complete = _jpeg_header(data)
    elif kind == "png":
        if len(data) >= 24 and data[12:16] == b"IHDR":
            width, height = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
        exif, complete = _png_exif(data)
    elif kind == "gif" and len(data) >= 10:
        width, height = (int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little"))
    elif kind == "bmp" and len(data) >= 26:
        if int.from_bytes(data[14:18], "little") == 12:  # BITMAPCOREHEADER
            width, height = (
                int.from_bytes(data[18:20], "little"),
                int.from_bytes(data[20:22], "little"),
            )
        else:  # BITMAPINFOHEADER and later: signed, a negative height = top-down
            width = abs(int.from_bytes(data[18:22], "little", signed=True))
            height = abs(int.from_bytes(data[22:26], "little", signed=True))
    elif kind == "webp":
        width, height, exif, complete = _webp_header(data)
    return ImageHeader(kind, width, height, _exif_orientation(exif)), complete


def _jpeg_header(data: bytes):
    """``(width, height, exif bytes, complete)`` from the segments before the first
    scan: the first SOF0-SOF15 frame header (not DHT C4, JPG C8, DAC CC) and the first
    APP1 ``Exif`` segment."""
    n, i = len(data), 2
    width = height = exif = None
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1  # stray byte between segments (libjpeg skips them too)
            continue
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0xDA or marker == 0xD9:
            return width, height, exif, True
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        body = data[i + 4 : i + 2 + length]
        if i + 2 + length > n:
            break
        if (
            0xC0 <= marker <= 0xCF
            and marker not in (0xC4, 0xC8, 0xCC)
            and width is None
            and len(body) >= 5
        ):
            height, width = (int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"))
        elif marker == 0xE1 and exif is None and body.startswith(b"Exif\x00\x00"):
            exif = body
        i += 2 + length
    return width, height, exif, False


def _png_exif(data: bytes):
    """``(eXIf chunk data or None, complete)``: the chunks before the first IDAT."""
    n, i = len(data), 8
    while i + 8 <= n:
        length = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        if kind in (b"IDAT", b"IEND"):
            return None, True
        if i + 8 + length > n:
            break
        if kind == b"eXIf":
            return data[i + 8 : i + 8 + length], True
        i += 12 + length
    return None, False


def _webp_header(data: bytes):
    """``(width, height, EXIF chunk data or None, complete)`` of a RIFF WebP file."""
    width = height = exif = None
    n, i = len(data), 12
    while i + 8 <= n:
        kind, length = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
        body = data[i + 8 : i + 8 + length]
        if width is None and kind == b"VP8X" and len(body) >= 10:
            width = int.from_bytes(body[4:7], "little") + 1
            height = int.from_bytes(body[7:10], "little") + 1
        elif width is None and kind == b"VP8 " and len(body) >= 10:
            width = int.from_bytes(body[6:8], "little") & 0x3FFF
            height = int.from_bytes(body[8:10], "little") & 0x3FFF
        elif width is None and kind == b"VP8L" and len(body) >= 5:
            bits = int.from_bytes(body[1:5], "little")
            width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        elif kind == b"EXIF" and exif is None and len(body) == length:
            exif = body
        i += 8 + length + (length & 1)  # chunks are padded to an even size
    return width, height, exif, False  # an EXIF chunk may follow the image data


def _exif_orientation(exif: bytes | None) -> int:
    """EXIF Orientation (tag 0x0112) of an EXIF block, parsed by ``PIL.Image.Exif``;
    1 when absent, unreadable or outside 1-8."""
    if not exif:
        return 1
    from PIL import Image  # Pillow: a dependency of dlpipe (and of matplotlib)

    try:
        parsed = Image.Exif()
        parsed.load(exif)
        value = int(parsed.get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block leaves the image upright
        return 1
    return value if value in ORIENTATIONS else 1


def _check_size(size) -> tuple[int, int]:
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


def _check_counts(counts) -> dict[str, int]:
    if not isinstance(counts, dict) or not counts:
        raise ValueError(
            "`counts` must be a non-empty mapping {split: images per class}, e.g. "
            f"{BOOK_COUNTS}. Received: counts={counts!r}"
        )
    out = {}
    for split, n in counts.items():
        if not isinstance(split, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", split):
            raise ValueError(f"Split names must be plain folder names. Received: {split!r}")
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(f"`counts[{split!r}]` must be an integer >= 0. Received: {n!r}")
        out[split] = int(n)
    if not sum(out.values()):
        raise ValueError(f"`counts` must ask for at least one image. Received: {counts!r}")
    return out


def _check_class_dirs(class_dirs, classes) -> dict[str, str]:
    dirs = {cls: cls for cls in classes}
    if class_dirs:
        unknown = sorted(set(class_dirs) - set(classes))
        if unknown:
            raise ValueError(
                f"`class_dirs` names unknown class(es) {unknown}; classes found: {classes}"
            )
        dirs.update(class_dirs)
    values = list(dirs.values())
    bad = [v for v in values if not re.fullmatch(r"[^./\\][^/\\]*", str(v))]
    if bad or len(set(values)) != len(values):
        raise ValueError(
            f"`class_dirs` must map classes to distinct plain folder names. Received: {dirs}"
        )
    return dirs


def _check_existing_dst(dst: Path, files, dirs, src: Path) -> None:
    """Raise ValueError if ``dst`` holds class folders that differ from this split."""
    problems = []
    for split, per_class in files.items():
        split_dir = dst / split
        if not split_dir.is_dir():
            continue
        known = {dirs[cls] for cls in per_class}
        for entry in sorted(split_dir.iterdir()):
            if entry.is_dir() and not entry.name.startswith(".") and entry.name not in known:
                problems.append(f"{entry}: class folder not in this split")
        for cls, names in per_class.items():
            folder = split_dir / dirs[cls]
            if not folder.is_dir():
                continue
            planned = set(names)
            for entry in sorted(folder.iterdir()):
                name = entry.name
                if name.startswith(".") or entry.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                if name not in planned:
                    problems.append(f"{entry}: not part of split `{split}`")
                elif not _same_file(src / name, entry):
                    problems.append(f"{entry}: differs from {src / name}")
    if problems:
        shown = "; ".join(problems[:5])
        raise ValueError(
            f"`dst` {dst} already holds class folders that differ from this split "
            f"({len(problems)} problem(s): {shown}). Use an empty `dst`, or remove them."
        )


def _same_file(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    if sa.st_size != sb.st_size:
        return False
    return sa.st_mtime_ns == sb.st_mtime_ns or filecmp.cmp(a, b, shallow=False)


def _atomic_copy(source: Path, target: Path) -> None:
    """Copy ``source`` (content and times) to ``target`` via a temporary name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_TMP_SUFFIX, dir=target.parent)
    os.close(fd)
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write(path: Path, payload: bytes) -> None:
    from dlpipe.tasks.reports.tables import atomic_write_bytes  # local: keeps this module light

    atomic_write_bytes(path, payload)


def _stray_reason(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        return f"extension {suffix or '(none)'!r} is not one of jpg, jpeg, png"
    return "name is not <class>.<id>.<ext> (class prefix and numeric id)"


def _id_order(name: str):
    match = _FLAT_NAME.match(name)
    return (0, match["cls"], int(match["id"]), name) if match else (1, "", 0, name)


def _op_error_text(exc) -> str:
    """TF's error text without the ``{{function_node ...}}`` and ``[Op:...]`` noise."""
    text = getattr(exc, "message", str(exc))
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\]", "", text).strip()


def _jpeg_problem(data: bytes) -> str | None:
    """Walk the JPEG marker segments from SOI to EOI.

    Segments with a length field are skipped by it (so an EXIF thumbnail inside APP1
    is not mistaken for the end); after each SOS the entropy-coded data runs to the
    next marker that is not a stuffed ``FF 00``, a restart ``FF D0-D7`` or fill
    ``FF FF``. Bytes that are not a marker where one is expected are skipped, as
    libjpeg does (it warns about "extraneous bytes" and decodes).
    """
    n, i = len(data), 2
    while i < n:
        if data[i] != 0xFF:
            i = data.find(b"\xff", i)
            if i < 0:
                break
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker == 0xD9:
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue  # standalone markers: no length field
        if i + 2 > n:
            break
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2:
            return f"corrupt JPEG: segment FF {marker:02X} at byte {i - 2} has length {length}"
        i += length
        if i > n:
            break
        if marker == 0xDA:  # start of scan: skip the entropy-coded data
            while True:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= n:
                    i = n
                    break
                following = data[j + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    i = j + 2
                elif following == 0xFF:
                    i = j + 1
                else:
                    i = j
                    break
    return f"truncated JPEG: the data ends at byte {n} before the end-of-image marker (FF D9)"


def _png_problem(data: bytes) -> str | None:
    """Walk the PNG chunks (length, type, data, CRC) up to ``IEND``."""
    n, i = len(data), 8
    while i + 8 <= n:
        length = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        i += 12 + length
        if i > n:
            break
        if kind == b"IEND":
            return None
    return f"truncated PNG: the data ends at byte {n} before the IEND chunk"
