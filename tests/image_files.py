"""Tiny image files for the image tests, written by the tests themselves (Pillow +
byte surgery): valid JPEG/PNG variants and the corrupt files of cases C01 and C02."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image


def pixels(width=60, height=40, seed=0, channels=3) -> np.ndarray:
    """A smooth gradient plus noise: uint8 (height, width, channels), not symmetric,
    so flips, rotations and zooms change it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [xx * 255 / max(width - 1, 1), yy * 255 / max(height - 1, 1), (xx + 2 * yy) % 256][
            :channels
        ],
        axis=-1,
    )
    noisy = base + rng.normal(0, 12, base.shape) + rng.integers(0, 60)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def encode(array: np.ndarray, fmt="JPEG", mode=None, **save_kw) -> bytes:
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save_kw)
    return buf.getvalue()


def jpeg(width=60, height=40, seed=0, **save_kw) -> bytes:
    """A valid baseline RGB JPEG with a JFIF (APP0) header."""
    return encode(pixels(width, height, seed), "JPEG", **save_kw)


def strip_app0(data: bytes) -> bytes:
    """Remove the JFIF APP0 segment that follows SOI (JFIF is optional in JPEG)."""
    assert data[2:4] == b"\xff\xe0", "no APP0 segment right after SOI"
    length = int.from_bytes(data[4:6], "big")
    return data[:2] + data[4 + length :]


def exif_only_jpeg(seed=1) -> bytes:
    """A valid JPEG whose only header is EXIF (APP1), as cameras write."""
    exif = Image.Exif()
    exif[0x010E] = "camera image"  # ImageDescription
    return strip_app0(encode(pixels(seed=seed), "JPEG", exif=exif.tobytes()))


def cmyk_jpeg(seed=2) -> bytes:
    """An Adobe CMYK JPEG (APP14 "Adobe" header, 4 components)."""
    data = encode(pixels(seed=seed), "JPEG", mode="CMYK")
    assert data[2:4] == b"\xff\xee" and b"Adobe" in data[:16]
    return data


def grayscale_jpeg(seed=3) -> bytes:
    """A valid 1-channel JPEG without JFIF header."""
    return strip_app0(encode(pixels(seed=seed), "JPEG", mode="L"))


def rgba_png(seed=4) -> bytes:
    """A valid RGBA PNG."""
    rgba = np.concatenate([pixels(seed=seed), np.full((40, 60, 1), 200, np.uint8)], axis=-1)
    return encode(rgba, "PNG")


def cut(data: bytes, fraction=0.5) -> bytes:
    """The first `fraction` of the bytes (a download cut short)."""
    return data[: int(len(data) * fraction)]


def junk_before_eoi(data: bytes, n=50) -> bytes:
    """`n` zero bytes inserted before the final FF D9 (the image still decodes)."""
    assert data[-2:] == b"\xff\xd9"
    return data[:-2] + b"\x00" * n + data[-2:]


def write(path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def snapshot(folder) -> dict:
    """{relative path: (bytes, mtime_ns)} of every file under `folder`."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def image_tree(root, classes, per_class=3, size=(20, 28), fmt="JPEG", seed=0) -> list[str]:
    """root/<class>/<class>.<i>.jpg (or .png): distinct small images; returns paths."""
    paths = []
    ext = "jpg" if fmt == "JPEG" else "png"
    for c, cls in enumerate(classes):
        for i in range(per_class):
            data = encode(pixels(size[1], size[0], seed=seed + 100 * c + i), fmt)
            paths.append(os.fspath(write(Path(root) / cls / f"{cls}.{i}.{ext}", data)))
    return paths
