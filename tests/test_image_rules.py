"""Issue 12, images: EXIF orientation in the one decoder (C21), header pixel limit,
content vs extension, a class with no usable image in a split (C22), data that cannot
teach. Every test writes its own tiny files (Pillow + byte surgery)."""

import io
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from dlpipe.tasks.images import decode as image_decode
from dlpipe.tasks.images import validate as image_validate
from dlpipe.tasks.images.dataset import image_dataset
from dlpipe.tasks.images.decode import DECODER_VERSION, decode_image, load_image
from dlpipe.tasks.images.prepare import ImageDataSpec, ImageSpec, check_classes, prepare_images
from dlpipe.tasks.images.sniff import image_header, read_image_header
from dlpipe.tasks.images.validate import DEFAULT_MAX_PIXELS, check_images

from image_files import encode, pixels, write

RED, BLUE = (255, 0, 0), (0, 0, 255)
SMALL = ImageSpec(size=(32, 32), weights="none", preprocessing="base", validation_shards=1)


def halves_jpeg(orientation: int | None = 6) -> bytes:
    """C21: 64 wide x 32 high, left half red, right half blue, EXIF Orientation."""
    array = np.zeros((32, 64, 3), np.uint8)
    array[:, :32], array[:, 32:] = RED, BLUE
    kw = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    return encode(array, "JPEG", quality=95, **kw)


def assert_red_on_top(image):
    """(64, 32, 3) with the top half red and the bottom half blue (viewers' picture)."""
    image = np.asarray(image, dtype=np.float64)
    assert image.shape == (64, 32, 3)
    # centres of the halves, away from the JPEG ringing at the colour edge
    np.testing.assert_allclose(image[4:28, 4:28].mean(axis=(0, 1)), RED, atol=8)
    np.testing.assert_allclose(image[36:60, 4:28].mean(axis=(0, 1)), BLUE, atol=8)


def test_c21_exif_orientation_6_decoded_upright_everywhere(tmp_path):
    """C21: Orientation 6 -> 32 wide x 64 high, red on top, in the validation decoder,
    load_image, the tf.data training pipeline and the feature-extraction pipeline."""
    import keras

    from dlpipe.tasks.features.extract import extract_features

    data = halves_jpeg(6)
    header = image_header(data)
    assert (header.format, header.width, header.height, header.orientation) == ("jpeg", 64, 32, 6)
    # Pillow's viewer-side answer, the reference
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert upright.size == (32, 64)  # PIL: (width, height)
    assert_red_on_top(np.asarray(upright))
    # without the tag, TF's decoder alone returns it as stored (what C21 saw)
    raw = decode_image(data, 1).numpy()
    assert raw.shape == (32, 64, 3) and raw[16, 8, 0] > 200 and raw[16, 56, 2] > 200

    path = write(tmp_path / "cls" / "photo.jpg", data)
    assert_red_on_top(decode_image(data, header.orientation).numpy())
    assert_red_on_top(load_image(path, (64, 32)))
    check = check_images([path], size=(64, 32))
    assert check.ok == [str(path)] and check.bad == []
    assert check.rotated == [{"path": str(path), "orientation": 6}]
    ((batch, labels),) = list(
        image_dataset([path], [0], size=(64, 32), batch_size=1, preprocessing=None)
    )
    assert_red_on_top(batch.numpy()[0])
    identity = keras.Sequential([keras.Input((64, 32, 3)), keras.layers.Identity()])
    result = extract_features([path], identity, size=(64, 32), preprocessing=None, labels=[0])
    assert_red_on_top(result.features[0])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    """All 8 EXIF orientations against PIL.ImageOps.exif_transpose, on a lossless PNG
    (eXIf chunk) so the comparison is exact, in eager mode and inside tf.data."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(pixels(30, 20, seed=orientation), "PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert read_image_header(write(tmp_path / "x.png", data)).orientation == orientation
    np.testing.assert_array_equal(decode_image(data, orientation).numpy(), expected)
    h, w = expected.shape[:2]
    ((batch, _),) = list(image_dataset([tmp_path / "x.png"], [0], size=(h, w), preprocessing=None))
    np.testing.assert_array_equal(batch.numpy()[0], expected.astype(np.float32))


def test_c21_feature_cache_key_changes_with_the_decoder(monkeypatch):
    from dlpipe.tasks.features import keys as cache_keys

    args = ("vgg16", "imagenet", (150, 150), 1 / 255, "3.0.0")
    assert DECODER_VERSION == 2
    assert cache_keys.base_description(*args)["decoder"] == 2
    new_key = cache_keys.base_key(*args)
    monkeypatch.setattr(image_decode, "DECODER_VERSION", 1)  # the decoder before C21
    assert cache_keys.base_description(*args)["decoder"] == 1
    assert cache_keys.base_key(*args) != new_key


def huge_png(width=20000, height=20000) -> bytes:
    """A valid 1-bit grayscale PNG declaring width x height pixels, all black: about
    50 MB of rows that zlib squeezes to a few tens of KB."""

    def chunk(kind, body):
        return (
            len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
        )

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte 0 + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_header_pixel_limit_refuses_before_decoding(tmp_path, monkeypatch):
    data = huge_png()
    assert len(data) < 200_000
    # Pillow reads the same size from the header and calls it a decompression bomb
    with pytest.raises(Image.DecompressionBombError, match=r"\(400000000 pixels\)"):
        Image.open(io.BytesIO(data))
    assert DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS == 89_478_485
    bomb = write(tmp_path / "c" / "bomb.png", data)
    small = write(tmp_path / "c" / "small.png", encode(pixels(60, 40), "PNG"))
    decoded = []
    real = image_decode.decode_image
    monkeypatch.setattr(  # check_images' decoder, as validate.py imported it
        image_validate, "decode_image", lambda d, o=1: decoded.append(len(d)) or real(d, o)
    )
    start = time.perf_counter()
    check = check_images([bomb, small])
    assert time.perf_counter() - start < 5
    assert check.ok == [str(small)] and decoded == [len(small.read_bytes())]
    (bad,) = check.bad
    assert bad["path"] == str(bomb) and bad["size_bytes"] == len(data)
    assert bad["reason"] == (
        "header declares 20000 x 20000 = 400,000,000 pixels, above "
        "the limit of 89,478,485 (images.max_pixels); not decoded"
    )
    # a configured limit: 60 x 40 = 2,400 pixels
    assert (
        check_images([small], max_pixels=2399)
        .bad[0]["reason"]
        .startswith("header declares 60 x 40 = 2,400 pixels, above the limit of 2,399")
    )
    assert check_images([small], max_pixels=2400).ok == [str(small)]
    with pytest.raises(ValueError, match="`max_pixels` must be >= 1"):
        ImageSpec(max_pixels=0)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP"])
def test_header_size_agrees_with_pillow(fmt):
    data = encode(pixels(37, 23, seed=5), fmt)
    header = image_header(data)
    with Image.open(io.BytesIO(data)) as im:
        assert (header.width, header.height) == im.size == (37, 23)
    assert (
        header.format
        == {"JPEG": "jpeg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp"}[fmt]
    )
    assert header.orientation == 1


def test_content_vs_extension_loads_and_is_listed(tmp_path):
    array = pixels(24, 16, seed=9)
    files = {
        name: write(tmp_path / "c" / name, encode(array, fmt))
        for name, fmt in (
            ("png.jpg", "PNG"),
            ("bmp.jpg", "BMP"),
            ("gif.jpeg", "GIF"),
            ("jpeg.png", "JPEG"),
            ("true.jpg", "JPEG"),
            ("true.png", "PNG"),
        )
    }
    check = check_images(list(files.values()))
    assert check.bad == [] and len(check.ok) == 6
    assert check.format_mismatch == [
        {"path": str(files["png.jpg"]), "extension": ".jpg", "format": "png"},
        {"path": str(files["bmp.jpg"]), "extension": ".jpg", "format": "bmp"},
        {"path": str(files["gif.jpeg"]), "extension": ".jpeg", "format": "gif"},
        {"path": str(files["jpeg.png"]), "extension": ".png", "format": "jpeg"},
    ]
    # and they load as what their bytes are (PNG and BMP are lossless)
    np.testing.assert_array_equal(load_image(files["png.jpg"], (16, 24)), array)
    np.testing.assert_array_equal(load_image(files["bmp.jpg"], (16, 24)), array)


def split_tree(root: Path, empty=None, all_bad=None, per_class=2):
    """root/{train,validation,test}/{cat,dog}/*.png; `empty`/`all_bad` = (split, class)
    whose folder is left empty / filled with files that are not images."""
    for split in ("train", "validation", "test"):
        for c, cls in enumerate(("cat", "dog")):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            if (split, cls) == empty:
                continue
            for i in range(per_class):
                name = folder / f"{cls}.{i}.png"
                if (split, cls) == all_bad:
                    write(name.with_suffix(".jpg"), b"<html>404 Not Found</html>")
                else:
                    write(name, encode(np.full((40, 40, 3), 60 + 120 * c + i, np.uint8), "PNG"))
    return root


def test_c22_empty_class_folder_in_a_split_is_an_error_before_validation(tmp_path):
    """C22: validation/cat/ exists but is empty -> error naming split, class, reason;
    raised before any file is decoded."""
    root = split_tree(tmp_path / "base", empty=("validation", "cat"))

    def no_validation(*_):
        raise AssertionError("validation must not run")

    with pytest.raises(ValueError) as info:
        prepare_images(ImageDataSpec(path=str(root)), SMALL, tmp_path / "run", map_fn=no_validation)
    assert str(info.value) == (
        f"{root}/validation/cat: split `validation`, class `cat` "
        "has no usable image: empty folder (no jpg, jpeg or png file)"
    )


def test_c22_class_folder_whose_every_file_is_bad_is_an_error(tmp_path):
    """C22: validation/cat/ holds only undecodable files -> error naming split, class and
    "all 2 files bad" with the first file's reason."""
    root = split_tree(tmp_path / "base", all_bad=("validation", "cat"))
    with pytest.raises(ValueError) as info:
        prepare_images(ImageDataSpec(path=str(root)), SMALL, tmp_path / "run")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"{root}/validation/cat: split `validation`, class `cat` has "
        "no usable image: all 2 files bad (first: cat.0.jpg: not an "
        "image: unknown format"
    )


def test_training_split_with_one_image_per_class_cannot_teach(tmp_path):
    root = split_tree(tmp_path / "base", per_class=1)
    with pytest.raises(
        ValueError,
        match=r"base/train: the training split has as many "
        r"classes as images \(2: every class seen once\)",
    ):
        prepare_images(ImageDataSpec(path=str(root)), SMALL, tmp_path / "run")
    # the rule itself: 2 classes, 3 training images is fine
    rows = [
        ("train", "a", 0),
        ("train", "b", 0),
        ("train", "c", 1),
        ("validation", "d", 0),
        ("validation", "e", 1),
        ("test", "f", 0),
        ("test", "g", 1),
    ]
    check_classes(["x", "y"], rows)


def test_prepare_counts_rotated_and_mismatched_files_and_prints_them(tmp_path, capsys):
    from dlpipe.pipelines.kinds.images import print_dataset

    root = split_tree(tmp_path / "base")
    rotated = write(root / "train" / "cat" / "cat.9.jpg", halves_jpeg(6))
    misnamed = write(
        root / "train" / "dog" / "dog.9.jpg", encode(np.full((40, 40, 3), 200, np.uint8), "PNG")
    )
    arrays, meta = prepare_images(ImageDataSpec(path=str(root)), SMALL, tmp_path / "run")
    assert meta["rotated"] == [{"path": str(rotated), "orientation": 6}]
    assert meta["format_mismatch"] == [
        {"path": str(misnamed), "extension": ".jpg", "format": "png"}
    ]
    assert meta["max_pixels"] == DEFAULT_MAX_PIXELS and meta["bad_files"] == []
    assert meta["split_counts"] == {"train": 6, "validation": 4, "test": 4}
    print_dataset(meta)
    out = capsys.readouterr().out
    assert (
        f"1 file(s) turned upright by their EXIF orientation (e.g. {rotated}: orientation 6)"
    ) in out
    assert f"{misnamed}: PNG bytes named .jpg" in out
