"""Validate image files by decoding them with the pipeline's decoder (cases C01, C02,
C21; issue 12).

A file is good when it is readable, non-empty, complete
(:func:`~dlpipe.tasks.images.sniff.image_bytes_problem`), declares at most
``max_pixels`` pixels in its header (checked before any pixel is decoded: a file over
the limit, default Pillow's ``Image.MAX_IMAGE_PIXELS``, 89,478,485, is a bad file with
that reason and is never decoded), and
:func:`~dlpipe.tasks.images.decode.decode_image` returns a non-empty image. The files
the decoder turned upright (EXIF Orientation 2-8) and those whose bytes are another
format than their extension names are listed, never refused. Source files are only
ever opened for reading.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dlpipe.tasks.images.decode import check_size, decode_image, op_error_text
from dlpipe.tasks.images.sniff import format_mismatch, image_bytes_problem, image_header

#: Default pixel limit (width x height) of a file the pipeline decodes: Pillow's
#: ``Image.MAX_IMAGE_PIXELS`` (1024 * 1024 * 1024 // 4 // 3 = 89,478,485, about 0.25 GiB
#: of 24-bit pixels); study files set ``images.max_pixels``.
DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3


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
    :func:`~dlpipe.tasks.images.decode.decode_image` returns a non-empty
    ``(height, width, 3)`` image; with ``size``, resizing it to ``(size[0], size[1], 3)``
    must work too. The format comes
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
        data, header, bad = screen_file(path, max_pixels)
        reason = None if bad is None else bad["reason"]
        if reason is None:
            try:
                image = decode_image(data, header.orientation)
                if min(image.shape[:2]) == 0:
                    reason = f"decoded to an empty image {tuple(image.shape)}"
                elif size is not None:
                    tf.image.resize(image, check_size(size))
            except tf.errors.OpError as exc:
                reason = f"decode error: {op_error_text(exc)}"
            if reason is not None:
                bad = {"path": path, "reason": reason, "size_bytes": len(data)}
        if bad is not None:
            out.bad.append(bad)
            continue
        out.ok.append(path)
        if header.orientation != 1:
            out.rotated.append({"path": path, "orientation": header.orientation})
        mismatch = format_mismatch(path, header.format)
        if mismatch is not None:
            out.format_mismatch.append(mismatch)
    return out


def screen_file(path: str, max_pixels=DEFAULT_MAX_PIXELS):
    """The checks of :func:`check_images` that need no decoding: the file is readable,
    non-empty and complete (:func:`~dlpipe.tasks.images.sniff.image_bytes_problem`),
    and its header declares at most ``max_pixels`` pixels.

    Returns:
        ``(data, header, bad)``: the file's bytes (None when unreadable), its
        :class:`~dlpipe.tasks.images.sniff.ImageHeader` (None when the bytes fail),
        and None, or the bad-file dict of :func:`check_images` (the same reason text).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        reason = f"unreadable: {exc.strerror or exc}"
        return None, None, {"path": path, "reason": reason, "size_bytes": -1}
    reason = image_bytes_problem(data)
    header = image_header(data) if reason is None else None
    if reason is None and max_pixels is not None and (header.pixels or 0) > max_pixels:
        reason = (
            f"header declares {header.width} x {header.height} = "
            f"{header.pixels:,} pixels, above the limit of {max_pixels:,} "
            "(images.max_pixels); not decoded"
        )
    if reason is not None:
        return data, None, {"path": path, "reason": reason, "size_bytes": len(data)}
    return data, header, None


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
