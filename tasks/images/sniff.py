"""What an image file's bytes say before any pixel is decoded: format (by magic
bytes, never by extension), declared size, EXIF orientation, and whether a JPEG/PNG
is complete.

* **Header (issue 12).** :func:`image_header` reads width and height from the header
  (JPEG SOF, PNG ``IHDR``, GIF screen, BMP info header, WebP ``VP8``/``VP8L``/``VP8X``)
  and the EXIF Orientation tag (JPEG APP1, PNG ``eXIf``, WebP ``EXIF``, parsed by
  Pillow), so the pixel limit is checked and the orientation known before decoding.
* **Completeness (cases C01, C02).** TensorFlow 2.21 rejects every truncated JPEG the
  tests try, but decoders differ between builds and options (libjpeg can pad a cut
  image with grey and only warn), so :func:`image_bytes_problem` walks the JPEG markers
  up to the end-of-image marker ``FF D9`` and the PNG chunks up to ``IEND``. Bytes
  between the last scan and ``FF D9`` (C01's 50 zero bytes) are allowed: the image
  decodes.
* **Content vs extension.** :func:`format_mismatch` names a file whose bytes are
  another format than its extension says (PNG/BMP/GIF bytes named ``.jpg``).

Plain functions on bytes; Pillow is imported only to parse an EXIF block.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
