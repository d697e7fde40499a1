"""Image folders (book ch. 5.2): cases C01 (corrupt/empty files), C02 (validation by
decoding, not header sniffing), C03 (splitting the flat Kaggle folder); loading,
label order, augmentation on the training split only, demo images."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from dlpipe.tasks.images.augment import augmentation_layers
from dlpipe.tasks.images.dataset import folder_datasets, image_dataset
from dlpipe.tasks.images.decode import load_image
from dlpipe.tasks.images.demo import write_demo_images, write_flat_folder
from dlpipe.tasks.images.folders import list_image_folder
from dlpipe.tasks.images.preprocess import preprocessing_fn, preprocessing_id
from dlpipe.tasks.images.sniff import image_bytes_problem
from dlpipe.tasks.images.split import SPLIT_MANIFEST, split_flat_folder
from dlpipe.tasks.images.validate import validate_images

from image_files import (
    cmyk_jpeg,
    cut,
    exif_only_jpeg,
    grayscale_jpeg,
    image_tree,
    jpeg,
    junk_before_eoi,
    pixels,
    rgba_png,
    snapshot,
    write,
)

SIZE = (32, 32)


# ---------------------------------------------------------------------------- C01


@pytest.fixture
def c01_folder(tmp_path):
    """train/<class>/ with a valid 60x40 JPEG, a 0-byte .jpg, a JPEG cut in half and a
    valid JPEG with 50 zero bytes before its final FF D9, for two classes."""
    root = tmp_path / "train"
    for c, cls in enumerate(("cat", "dog")):
        good = jpeg(60, 40, seed=c)
        write(root / cls / f"{cls}.0.jpg", good)
        write(root / cls / f"{cls}.1.jpg", b"")
        write(root / cls / f"{cls}.2.jpg", cut(jpeg(60, 40, seed=10 + c)))
        write(root / cls / f"{cls}.3.jpg", junk_before_eoi(jpeg(60, 40, seed=20 + c)))
    return root


def test_c01_bad_files_listed_with_reason_and_size_and_skipped(c01_folder):
    before = snapshot(c01_folder)
    folder = list_image_folder(c01_folder)
    assert len(folder.paths) == 8  # stock listing: every file, bad ones included
    ok, bad = validate_images(folder.paths, size=SIZE)

    assert [p.rsplit("/", 1)[1] for p in ok] == ["cat.0.jpg", "cat.3.jpg", "dog.0.jpg", "dog.3.jpg"]
    assert len(bad) == 4
    by_name = {b["path"].rsplit("/", 1)[1]: b for b in bad}
    assert set(by_name) == {"cat.1.jpg", "cat.2.jpg", "dog.1.jpg", "dog.2.jpg"}
    for name, entry in by_name.items():
        assert set(entry) == {"path", "reason", "size_bytes"}
        assert entry["path"].startswith(str(c01_folder))
        assert entry["size_bytes"] == (c01_folder / name.split(".")[0] / name).stat().st_size
    assert by_name["cat.1.jpg"]["reason"] == "empty file (0 bytes)"
    assert by_name["cat.1.jpg"]["size_bytes"] == 0
    assert "truncated JPEG" in by_name["cat.2.jpg"]["reason"]
    assert snapshot(c01_folder) == before  # nothing deleted or modified


def test_c01_junk_bytes_jpeg_still_loads(c01_folder):
    image = load_image(c01_folder / "cat" / "cat.3.jpg", (40, 60))
    reference = load_image(c01_folder / "cat" / "cat.0.jpg", (40, 60))
    assert image.shape == reference.shape == (40, 60, 3) and image.dtype == np.float32
    assert image_bytes_problem((c01_folder / "cat" / "cat.3.jpg").read_bytes()) is None


def test_c01_training_never_meets_a_bad_file(c01_folder):
    folder = list_image_folder(c01_folder)
    with pytest.raises(tf.errors.InvalidArgumentError):  # what stock loading does
        for _ in image_dataset(folder.paths, folder.labels, size=SIZE, batch_size=8):
            pass
    ok, _ = validate_images(folder.paths)
    labels = [folder.labels[folder.paths.index(p)] for p in ok]
    seen = 0
    for _images, y in image_dataset(ok, labels, size=SIZE, batch_size=3, shuffle=True):
        seen += len(y)
    assert seen == 4


# ---------------------------------------------------------------------------- C02


@pytest.fixture
def c02_files(tmp_path):
    files = {
        "exif.jpg": exif_only_jpeg(),
        "cmyk.jpg": cmyk_jpeg(),
        "gray.jpg": grayscale_jpeg(),
        "rgba.png": rgba_png(),
        "truncated.jpg": cut(jpeg(60, 40, seed=7), 0.6),
    }
    return {name: write(tmp_path / "images" / name, data) for name, data in files.items()}


def test_c02_header_sniffing_would_be_wrong(c02_files):
    # the popular cleanup keeps a file iff b"JFIF" is in its first 10 bytes
    keeps = {name: b"JFIF" in path.read_bytes()[:10] for name, path in c02_files.items()}
    assert keeps == {
        "exif.jpg": False,
        "cmyk.jpg": False,
        "gray.jpg": False,
        "rgba.png": False,
        "truncated.jpg": True,
    }


def test_c02_validity_is_decided_by_decoding(c02_files):
    before = snapshot(next(iter(c02_files.values())).parent)
    ok, bad = validate_images(list(c02_files.values()), size=SIZE)
    assert sorted(p.rsplit("/", 1)[1] for p in ok) == [
        "cmyk.jpg",
        "exif.jpg",
        "gray.jpg",
        "rgba.png",
    ]
    assert [b["path"] for b in bad] == [str(c02_files["truncated.jpg"])]
    assert "truncated JPEG" in bad[0]["reason"]
    assert bad[0]["size_bytes"] == c02_files["truncated.jpg"].stat().st_size
    for name in ("exif.jpg", "cmyk.jpg", "gray.jpg", "rgba.png"):
        image = load_image(c02_files[name], SIZE)
        assert image.shape == (32, 32, 3) and image.dtype == np.float32
        assert 0 <= image.min() and image.max() <= 255
    gray = load_image(c02_files["gray.jpg"], SIZE)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])  # channels forced to 3
    assert snapshot(next(iter(c02_files.values())).parent) == before


def test_format_is_told_by_content_not_extension(tmp_path):
    png_named_jpg = write(tmp_path / "a.jpg", rgba_png())
    text_named_jpg = write(tmp_path / "b.jpg", b"<html>404 not found</html>")
    ok, bad = validate_images([png_named_jpg, text_named_jpg, tmp_path / "missing.jpg"])
    assert ok == [str(png_named_jpg)]
    reasons = {b["path"].rsplit("/", 1)[1]: b for b in bad}
    assert reasons["b.jpg"]["reason"].startswith("not an image: unknown format")
    assert reasons["missing.jpg"]["reason"].startswith("unreadable")
    assert reasons["missing.jpg"]["size_bytes"] == -1
    truncated_png = rgba_png()[:-12]  # IEND chunk cut off
    assert "truncated PNG" in image_bytes_problem(truncated_png)


def test_truncated_progressive_jpeg_is_reported(tmp_path):
    from image_files import encode

    data = encode(pixels(seed=5), "JPEG", progressive=True)
    last_scan = data.rfind(b"\xff\xda")
    assert "truncated JPEG" in image_bytes_problem(data[:last_scan])
    assert image_bytes_problem(data) is None


# ---------------------------------------------------------------------------- C03


def _flat_folder(root, per_class=12, classes=("cat", "dog")):
    for cls in classes:
        for i in range(per_class):
            write(root / f"{cls}.{i}.jpg", f"{cls} image {i}".encode())
    write(root / "12.jpg", b"no class")
    write(root / "cat.5.jpg.part", b"partial download")
    write(root / "Thumbs.db", b"windows thumbnails")
    return root


COUNTS = {"train": 4, "validation": 2, "test": 2}


def test_c03_contiguous_blocks_in_numeric_order(tmp_path):
    src = _flat_folder(tmp_path / "flat")
    before = snapshot(src)
    report = split_flat_folder(src, tmp_path / "split", COUNTS)
    for cls in ("cat", "dog"):
        assert report.files["train"][cls] == [f"{cls}.{i}.jpg" for i in range(4)]
        assert report.files["validation"][cls] == [f"{cls}.4.jpg", f"{cls}.5.jpg"]
        assert report.files["test"][cls] == [f"{cls}.6.jpg", f"{cls}.7.jpg"]
        for split, names in (("train", range(4)), ("validation", (4, 5)), ("test", (6, 7))):
            on_disk = sorted(p.name for p in (tmp_path / "split" / split / cls).iterdir())
            assert on_disk == sorted(f"{cls}.{i}.jpg" for i in names)
    # cat.10 sorts before cat.2 as a string: it must not be in train
    assert "cat.10.jpg" not in report.files["train"]["cat"]
    assert report.found == {"cat": 12, "dog": 12} and report.unused == {"cat": 4, "dog": 4}
    assert report.classes == ["cat", "dog"] and report.copied == 16
    assert snapshot(src) == before  # sources untouched


def test_c03_strays_reported_not_copied(tmp_path):
    report = split_flat_folder(_flat_folder(tmp_path / "flat"), tmp_path / "split", COUNTS)
    strays = {s["name"]: s["reason"] for s in report.strays}
    assert set(strays) == {"12.jpg", "cat.5.jpg.part", "Thumbs.db"}
    assert "extension '.part'" in strays["cat.5.jpg.part"]
    assert "extension '.db'" in strays["Thumbs.db"]
    assert "<class>.<id>.<ext>" in strays["12.jpg"]
    copied = {p.name for p in (tmp_path / "split").rglob("*") if p.is_file()}
    assert not copied & set(strays)


def test_c03_splits_disjoint_and_identical_on_every_run(tmp_path):
    src = _flat_folder(tmp_path / "flat")
    for mode in ("contiguous", "shuffle"):
        first = split_flat_folder(src, tmp_path / f"{mode}_a", COUNTS, mode=mode, seed=3)
        again = split_flat_folder(src, tmp_path / f"{mode}_a", COUNTS, mode=mode, seed=3)
        elsewhere = split_flat_folder(src, tmp_path / f"{mode}_b", COUNTS, mode=mode, seed=3)
        assert first.files == again.files == elsewhere.files
        assert again.copied == 0 and again.reused == 16  # idempotent: dst reused
        for cls in ("cat", "dog"):
            blocks = [set(first.files[s][cls]) for s in COUNTS]
            assert sum(map(len, blocks)) == len(set().union(*blocks)) == 8
    shuffled = split_flat_folder(src, tmp_path / "s7", COUNTS, mode="shuffle", seed=7)
    assert shuffled.files != first.files  # another seed, another draw
    manifest = json.loads((tmp_path / "s7" / SPLIT_MANIFEST).read_text())
    assert manifest["files"] == shuffled.files and manifest["seed"] == 7


def test_c03_too_few_files_names_class_found_and_needed(tmp_path):
    src = tmp_path / "flat"
    for i in range(12):
        write(src / f"cat.{i}.jpg", b"c")
    for i in range(6):
        write(src / f"dog.{i}.jpg", b"d")
    with pytest.raises(ValueError, match=r"Class `dog` has 6 files .* needs 8") as info:
        split_flat_folder(src, tmp_path / "split", COUNTS)
    assert "`cat`" not in str(info.value)
    with pytest.raises(ValueError, match=r"Class `cat` has 12 files .* needs 13"):
        split_flat_folder(src, tmp_path / "split", {"train": 8, "validation": 3, "test": 2})
    assert not (tmp_path / "split").exists()


def test_split_refuses_to_mix_with_a_different_existing_split(tmp_path):
    src = _flat_folder(tmp_path / "flat")
    split_flat_folder(src, tmp_path / "split", COUNTS)
    write(tmp_path / "split" / "train" / "cat" / "cat.9.jpg", b"cat image 9")
    with pytest.raises(ValueError, match=r"cat\.9\.jpg: not part of split `train`"):
        split_flat_folder(src, tmp_path / "split", COUNTS)
    (tmp_path / "split" / "train" / "cat" / "cat.9.jpg").unlink()
    write(tmp_path / "split" / "test" / "dog" / "dog.6.jpg", b"something else")
    with pytest.raises(ValueError, match=r"dog\.6\.jpg: differs from"):
        split_flat_folder(src, tmp_path / "split", COUNTS)


def test_split_resumes_and_book_class_dirs(tmp_path):
    src = _flat_folder(tmp_path / "flat")
    dirs = {"cat": "cats", "dog": "dogs"}
    split_flat_folder(src, tmp_path / "split", COUNTS, class_dirs=dirs)
    (tmp_path / "split" / "validation" / "dogs" / "dog.5.jpg").unlink()  # interrupted
    report = split_flat_folder(src, tmp_path / "split", COUNTS, class_dirs=dirs)
    assert (report.copied, report.reused) == (1, 15)
    folder = list_image_folder(report.split_dir("train"))
    assert folder.class_names == ["cats", "dogs"]
    assert folder.labels.tolist() == [0] * 4 + [1] * 4


@pytest.mark.parametrize(
    "counts, message",
    [
        ({"train": -1}, r"`counts\['train'\]` must be an integer >= 0"),
        ({"train": 2.5}, r"must be an integer"),
        ({"../x": 1}, r"plain folder names"),
        ({}, r"non-empty mapping"),
    ],
)
def test_split_bad_counts(tmp_path, counts, message):
    with pytest.raises(ValueError, match=message):
        split_flat_folder(_flat_folder(tmp_path / "flat"), tmp_path / "s", counts)


def test_split_bad_mode_and_missing_src(tmp_path):
    with pytest.raises(ValueError, match=r"`mode` must be one of .*Received: mode='random'"):
        split_flat_folder(_flat_folder(tmp_path / "flat"), tmp_path / "s", COUNTS, mode="random")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        split_flat_folder(tmp_path / "nowhere", tmp_path / "s", COUNTS)


# ---------------------------------------------------------------------------- loading


def test_dataset_shapes_dtypes_and_label_order(tmp_path):
    # folders created in non-sorted order: labels still follow sorted class names
    image_tree(tmp_path / "train", ["dog", "cat", "bird"], per_class=3)
    image_tree(tmp_path / "validation", ["dog", "cat", "bird"], per_class=2, seed=50)
    image_tree(tmp_path / "test", ["dog", "cat", "bird"], per_class=2, seed=80)
    splits = folder_datasets(tmp_path, size=(24, 20), batch_size=4)
    assert splits["train"].class_names == ["bird", "cat", "dog"]
    assert splits["train"].labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    batches = list(splits["validation"].dataset)
    assert [tuple(x.shape) for x, _ in batches] == [(4, 24, 20, 3), (2, 24, 20, 3)]
    x, y = batches[0]
    assert x.dtype == tf.float32 and y.dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0  # 1/255
    assert np.concatenate([y.numpy() for _, y in batches]).tolist() == [0, 0, 1, 1, 2, 2]
    expected = load_image(splits["validation"].paths[0], (24, 20)) / 255.0
    np.testing.assert_allclose(x[0].numpy(), expected, rtol=1e-6)


def test_augmentation_only_on_training_split(tmp_path):
    for split, seed in (("train", 0), ("validation", 50), ("test", 80)):
        image_tree(tmp_path / split, ["cat", "dog"], per_class=4, size=(32, 32), seed=seed)
    splits = folder_datasets(tmp_path, size=(32, 32), batch_size=3, augment=True, seed=1)

    def plain(paths):
        return np.stack([load_image(p, (32, 32)) / 255.0 for p in paths])

    for split in ("validation", "test"):  # never augmented, file order kept
        for _ in range(2):
            got = np.concatenate([x.numpy() for x, _ in splits[split].dataset])
            np.testing.assert_allclose(got, plain(splits[split].paths), rtol=1e-6)
    train = np.concatenate([x.numpy() for x, _ in splits["train"].dataset])
    reference = plain(splits["train"].paths)
    # shuffled and augmented: no training image equals any plain training image
    for image in train:
        assert min(np.abs(image - r).mean() for r in reference) > 1e-3


def test_image_dataset_with_paths_keeps_alignment_when_shuffled(tmp_path):
    paths = image_tree(tmp_path, ["a", "b"], per_class=5)
    labels = [0] * 5 + [1] * 5
    ds = image_dataset(
        paths,
        labels,
        size=(16, 16),
        batch_size=4,
        shuffle=True,
        seed=2,
        with_paths=True,
        preprocessing=None,
    )
    seen = []
    for x, y, p in ds:
        for image, label, path in zip(x.numpy(), y.numpy(), p.numpy()):
            path = path.decode()
            assert label == labels[paths.index(path)]
            np.testing.assert_allclose(image, load_image(path, (16, 16)), rtol=1e-6)
            seen.append(path)
    assert sorted(seen) == sorted(paths) and seen != paths


def test_augmentation_layers_book_settings_and_inference_pass_through():
    block = augmentation_layers(seed=0)
    names = [layer.__class__.__name__ for layer in block.layers]
    assert names == ["RandomRotation", "RandomTranslation", "RandomZoom", "RandomFlip"]
    rotation = block.get_layer("random_rotation")
    assert rotation.factor == (-40 / 360, 40 / 360) and rotation.fill_mode == "nearest"
    assert block.get_layer("random_translation").fill_mode == "nearest"
    assert block.get_layer("random_zoom").fill_mode == "nearest"
    x = pixels(32, 32, seed=9)[None].astype("float32")
    same = keras.ops.convert_to_numpy(block(x, training=False))
    np.testing.assert_array_equal(same, x)
    changed = keras.ops.convert_to_numpy(block(x, training=True))
    assert changed.shape == x.shape and np.abs(changed - x).mean() > 1.0
    assert "RandomShear" in [type(la).__name__ for la in augmentation_layers(shear=0.2).layers]


def test_preprocessing_ids_and_functions():
    assert preprocessing_id(1 / 255) == "rescale:0.00392156862745098"
    assert preprocessing_id(np.float32(0.5)) == "rescale:0.5"
    assert preprocessing_id("VGG16") == "vgg16" and preprocessing_id(None) == "none"
    with pytest.raises(ValueError, match=r"Received: preprocessing=-1"):
        preprocessing_id(-1)
    with pytest.raises(ValueError, match=r"`base` must be one of"):
        preprocessing_id("alexnet")
    x = np.full((1, 2, 2, 3), 100.0, dtype="float32")
    vgg = keras.ops.convert_to_numpy(preprocessing_fn("vgg16")(x))
    np.testing.assert_allclose(
        vgg[0, 0, 0], [100 - 103.939, 100 - 116.779, 100 - 123.68], rtol=1e-5
    )  # caffe mode: BGR, ImageNet means
    mobilenet = keras.ops.convert_to_numpy(preprocessing_fn("mobilenet_v2")(x))
    np.testing.assert_allclose(mobilenet, 100 / 127.5 - 1, rtol=1e-6)


def test_image_dataset_vgg16_preprocessing_in_pipeline(tmp_path):
    paths = image_tree(tmp_path, ["a"], per_class=2)
    ((x, _),) = list(image_dataset(paths, [0, 0], size=(16, 16), preprocessing="vgg16"))
    raw = np.stack([load_image(p, (16, 16)) for p in paths])
    expected = keras.ops.convert_to_numpy(keras.applications.vgg16.preprocess_input(raw))
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"labels": [0]}, r"one label per path\. Received: 1 labels for 2 paths"),
        ({"size": (0, 5)}, r"`size` must be \(height, width\)"),
        ({"batch_size": 0}, r"`batch_size` must be a positive integer"),
    ],
)
def test_image_dataset_bad_arguments(tmp_path, kwargs, message):
    args = {"paths": ["a.jpg", "b.jpg"], "labels": [0, 1], **kwargs}
    with pytest.raises(ValueError, match=message):
        image_dataset(args.pop("paths"), args.pop("labels"), **args)


# ---------------------------------------------------------------------------- demo images


def test_write_flat_folder_feeds_the_split(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 8, 8), dtype=np.uint8)
    labels = np.array([0, 1] * 6)
    written = write_flat_folder(tmp_path / "flat", images, labels, ["face", "nonface"])
    assert written[:3] == [
        str(tmp_path / "flat" / n) for n in ("face.0.png", "nonface.0.png", "face.1.png")
    ]
    report = split_flat_folder(
        tmp_path / "flat", tmp_path / "split", {"train": 4, "validation": 1, "test": 1}
    )
    ok, bad = validate_images(list_image_folder(report.split_dir("train")).paths)
    assert len(ok) == 8 and not bad
    np.testing.assert_array_equal(load_image(written[0], (8, 8))[..., 0], images[0])
    with pytest.raises(ValueError, match="must be uint8"):
        write_flat_folder(tmp_path / "x", images.astype("float32"), labels, ["a", "b"])


@pytest.mark.parametrize(
    "source, package, counts",
    [
        ("digits", "sklearn", {"digit3": 183, "digit8": 174}),
        ("lfw_subset", "skimage", {"face": 100, "nonface": 100}),
    ],
)
def test_write_demo_images(tmp_path, source, package, counts):
    pytest.importorskip(package)
    info = write_demo_images(tmp_path / "flat", source, classes=list(counts))
    assert info["counts"] == counts
    files = sorted(p.name for p in (tmp_path / "flat").iterdir())
    assert len(files) == sum(counts.values())
    assert all(f.endswith(".png") for f in files)


def test_write_demo_images_unknown_source(tmp_path):
    with pytest.raises(ValueError, match=r"`source` must be one of"):
        write_demo_images(tmp_path, "mnist")


def test_preprocessing_never_changes_its_input_c14():
    x = np.full((1, 2, 2, 3), 100.0, dtype="float32")
    x.setflags(write=False)  # as arrays coming back from Ray
    for name in ("vgg16", "resnet50", "xception"):
        preprocessing_fn(name)(x)
    np.testing.assert_array_equal(x, 100.0)
