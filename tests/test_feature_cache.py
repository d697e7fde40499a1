"""Conv-base feature cache (issue 5): keys, alignment of features/labels/paths, reuse
across re-splits (0 conv-base passes), atomic concurrent writes, listing and pruning."""

import concurrent.futures
import multiprocessing
import os
import shutil
import threading

import keras
import numpy as np
import pytest

from dlpipe.tasks.features.extract import extract_features
from dlpipe.tasks.features.keys import base_key, image_key, model_fingerprint, weights_id
from dlpipe.tasks.features.store import entry_path, list_bases, list_entries, lookup, prune, store
from dlpipe.tasks.images.decode import load_image
from dlpipe.tasks.images.preprocess import preprocessing_fn
from dlpipe.tasks.images.split import split_flat_folder

from image_files import image_tree, jpeg, write

SIZE = (16, 16)


@pytest.fixture(scope="module")
def tiny_base():
    """A small conv base: (batch, h, w, 3) -> (batch, h // 4, w // 4, 4)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.MaxPooling2D(4, name="pool")(x)
    return keras.Model(inputs, x, name="tiny_base")


def _expected(base, path, preprocessing=1 / 255):
    x = preprocessing_fn(preprocessing)(load_image(path, SIZE)[None])
    return keras.ops.convert_to_numpy(base(x, training=False))[0]


def _key(i):
    return f"{i:064x}"


BASE = base_key("vgg16", "imagenet", (150, 150), "vgg16")


# ---------------------------------------------------------------------------- alignment


def test_features_labels_paths_aligned_batch_4_shuffled(tmp_path, tiny_base):
    paths = image_tree(tmp_path / "train", ["cat", "dog"], per_class=5, size=SIZE)
    out = extract_features(
        paths,
        tiny_base,
        size=SIZE,
        preprocessing=1 / 255,
        batch_size=4,
        shuffle=True,
        seed=5,
        cache_root=tmp_path / "cache",
    )
    assert out.features.shape == (10, 4, 4, 4) and out.features.dtype == np.float32
    assert out.labels.dtype == np.int32
    assert sorted(out.order.tolist()) == list(range(10))
    assert out.order.tolist() != list(range(10))  # really shuffled
    assert out.paths == [paths[i] for i in out.order]
    assert (out.forward_images, out.forward_batches) == (10, 3)  # 4 + 4 + partial 2
    assert (out.hits, out.misses) == (0, 10)
    for feature, label, path in zip(out.features, out.labels, out.paths):
        assert label == (0 if "/cat/" in path else 1)  # sorted folder names
        np.testing.assert_allclose(feature, _expected(tiny_base, path), rtol=1e-5, atol=1e-6)
    # the same call again comes entirely from the cache, same order and values
    again = extract_features(
        paths,
        tiny_base,
        size=SIZE,
        preprocessing=1 / 255,
        batch_size=4,
        shuffle=True,
        seed=5,
        cache_root=tmp_path / "cache",
    )
    assert (again.hits, again.forward_images, again.forward_batches) == (10, 0, 0)
    assert again.paths == out.paths
    np.testing.assert_array_equal(again.features, out.features)
    np.testing.assert_array_equal(again.labels, out.labels)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 7, 64])
def test_alignment_any_batch_size_with_duplicates_and_partial_cache(
    tmp_path, tiny_base, batch_size
):
    paths = image_tree(tmp_path / "d", ["a", "b"], per_class=5, size=SIZE)
    dup = write(tmp_path / "d" / "b" / "copy_of_a0.jpg", open(paths[0], "rb").read())
    paths.append(str(dup))
    labels = list(range(len(paths)))  # a distinct label per row
    cache = tmp_path / "cache"
    extract_features(
        paths[:3], tiny_base, size=SIZE, preprocessing=1 / 255, cache_root=cache
    )  # part of it cached beforehand
    out = extract_features(
        paths,
        tiny_base,
        size=SIZE,
        preprocessing=1 / 255,
        labels=labels,
        batch_size=batch_size,
        shuffle=True,
        seed=1,
        cache_root=cache,
    )
    assert out.hits == 4  # 3 cached + the byte-identical copy of paths[0]
    assert out.forward_images == 7  # 11 rows - 4 already known
    for feature, label, path in zip(out.features, out.labels, out.paths):
        assert labels[paths.index(path)] == label
        np.testing.assert_allclose(feature, _expected(tiny_base, path), rtol=1e-5, atol=1e-6)


def test_extract_without_cache_and_bad_labels(tmp_path, tiny_base):
    paths = image_tree(tmp_path, ["a"], per_class=3, size=SIZE)
    out = extract_features(paths, tiny_base, size=SIZE, preprocessing=None, batch_size=2)
    assert out.base_key is None and out.paths == paths and out.forward_batches == 2
    with pytest.raises(ValueError, match=r"one label per path\. Received: 2 labels for 3"):
        extract_features(paths, tiny_base, size=SIZE, preprocessing=None, labels=[0, 1])
    with pytest.raises(ValueError, match=r"`paths` must not be empty"):
        extract_features([], tiny_base, size=SIZE, preprocessing=None)


# ---------------------------------------------------------------------------- keys


def test_image_key_is_content_only(tmp_path):
    a = write(tmp_path / "a.jpg", jpeg(seed=1))
    copy = tmp_path / "elsewhere" / "renamed.jpg"
    copy.parent.mkdir()
    shutil.copyfile(a, copy)
    os.utime(copy, (1, 1))
    assert image_key(a) == image_key(copy)  # path and time do not matter
    changed = bytearray(a.read_bytes())
    changed[len(changed) // 2] ^= 1  # one bit
    b = write(tmp_path / "b.jpg", bytes(changed))
    assert image_key(b) != image_key(a)
    assert len(image_key(a)) == 64


def test_base_key_changes_when_and_only_when_a_field_changes(tmp_path):
    fields = dict(
        architecture="vgg16",
        weights_id="imagenet",
        input_size=(150, 150),
        preprocessing="vgg16",
        keras_version="3.15.1",
    )
    key = base_key(**fields)
    assert base_key(**fields) == key and len(key) == 32
    assert base_key(**{**fields, "architecture": "VGG16"}) == key  # same base
    assert base_key(**{**fields, "input_size": [150, 150]}) == key
    assert base_key(**{**fields, "preprocessing": "VGG16"}) == key
    changes = {
        "architecture": "vgg19",
        "weights_id": "none",
        "input_size": (160, 160),
        "preprocessing": 1 / 255,
        "keras_version": "3.16.0",
    }
    keys = {name: base_key(**{**fields, name: value}) for name, value in changes.items()}
    assert len(set(keys.values()) | {key}) == len(changes) + 1
    assert base_key(**fields, extra={"layer": "block4_pool"}) != key
    assert base_key(**{**fields, "keras_version": None}) == base_key(
        **{**fields, "keras_version": keras.__version__}
    )
    assert base_key("b", "none", (8, 8), 1 / 255) == base_key(
        "b", "none", (8, 8), "rescale:0.00392156862745098"
    )


def test_weights_id_hashes_local_files(tmp_path):
    w1 = write(tmp_path / "w1.h5", b"weights one")
    w2 = write(tmp_path / "copy" / "w.h5", b"weights one")
    w3 = write(tmp_path / "w3.h5", b"weights two")
    assert weights_id(w1) == weights_id(w2) != weights_id(w3)
    assert weights_id(w1).startswith("sha256:")
    assert weights_id("imagenet") == "imagenet"
    assert weights_id(None) == weights_id("none") == "none"
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        weights_id(tmp_path / "missing.h5")


def test_model_fingerprint_follows_weights(tiny_base):
    first = model_fingerprint(tiny_base)
    assert model_fingerprint(tiny_base) == first
    clone = keras.models.clone_model(tiny_base)  # same architecture, new random weights
    assert model_fingerprint(clone) != first
    clone.set_weights(tiny_base.get_weights())
    assert model_fingerprint(clone) == first


# ---------------------------------------------------------------------------- reuse


def test_resplit_reuses_every_feature(tmp_path, tiny_base):
    flat = tmp_path / "flat"
    for c, cls in enumerate(("cat", "dog")):
        for i in range(6):
            write(flat / f"{cls}.{i}.jpg", jpeg(16, 16, seed=10 * c + i))
    counts = {"train": 3, "validation": 2, "test": 1}
    cache = tmp_path / "cache"
    first = split_flat_folder(flat, tmp_path / "split_a", counts)
    paths_a = [str(p) for p in sorted((tmp_path / "split_a").rglob("*.jpg"))]
    run1 = extract_features(
        paths_a, tiny_base, size=SIZE, preprocessing=1 / 255, batch_size=4, cache_root=cache
    )
    assert run1.forward_images == 12 and run1.hits == 0
    # another split (shuffled) into another folder: the same images, other paths
    second = split_flat_folder(flat, tmp_path / "split_b", counts, mode="shuffle", seed=9)
    assert second.files != first.files
    paths_b = [str(p) for p in sorted((tmp_path / "split_b").rglob("*.jpg"))]
    run2 = extract_features(
        paths_b, tiny_base, size=SIZE, preprocessing=1 / 255, batch_size=4, cache_root=cache
    )
    assert (run2.forward_images, run2.forward_batches) == (0, 0)  # 0 conv-base passes
    assert (run2.hits, run2.misses) == (12, 0)
    by_key = dict(zip(run1.image_keys, run1.features))
    for key, feature in zip(run2.image_keys, run2.features):
        np.testing.assert_array_equal(feature, by_key[key])
    # another input size is another base: nothing reused
    other = extract_features(
        paths_b[:2], tiny_base, size=(20, 20), preprocessing=1 / 255, cache_root=cache
    )
    assert other.hits == 0 and other.base_key != run2.base_key
    assert len(list_bases(cache)) == 2


# ---------------------------------------------------------------------------- store


def test_store_lookup_roundtrip_and_torn_entry(tmp_path):
    feats = {_key(i): np.full((2, 2, 3), i, np.float32) for i in range(3)}
    assert store(tmp_path, BASE, feats, description={"architecture": "vgg16"}) == 3
    assert store(tmp_path, BASE, feats) == 0  # present: not rewritten
    found, missing = lookup(tmp_path, BASE, [_key(0), _key(5), _key(2), _key(0)])
    assert sorted(found) == [_key(0), _key(2)] and missing == [_key(5)]
    np.testing.assert_array_equal(found[_key(2)], feats[_key(2)])
    assert found[_key(2)].dtype == np.float32
    torn = entry_path(tmp_path, BASE, _key(1))
    with open(torn, "r+b") as f:
        f.truncate(20)
    assert lookup(tmp_path, BASE, [_key(1)]) == ({}, [_key(1)])
    assert store(tmp_path, BASE, {_key(1): feats[_key(1)]}, overwrite=True) == 1
    np.testing.assert_array_equal(lookup(tmp_path, BASE, [_key(1)])[0][_key(1)], feats[_key(1)])
    assert entry_path(tmp_path, BASE, _key(1)).endswith(f"/{BASE}/00/{_key(1)}.npy")


@pytest.mark.parametrize("key", ["../../etc/passwd", "ABC", "0" * 63, 5])
def test_malformed_keys_are_rejected(tmp_path, key):
    with pytest.raises(ValueError, match=r"`image_key` must be 64 lowercase hex"):
        store(tmp_path, BASE, {key: np.zeros(1)})
    with pytest.raises(ValueError, match=r"`base_key` must be 32 lowercase hex"):
        lookup(tmp_path, "../x", [_key(1)])


def test_concurrent_writers_of_one_key_threads(tmp_path):
    value = np.arange(4096, dtype=np.float32).reshape(8, 8, 64)
    barrier = threading.Barrier(8)

    def writer():
        barrier.wait()
        for _ in range(20):
            store(tmp_path, BASE, {_key(7): value}, overwrite=True)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = [p for p in (tmp_path / BASE).rglob("*") if p.is_file()]
    assert [p.name for p in files] == [f"{_key(7)}.npy"]  # one file, no temporaries
    np.testing.assert_array_equal(lookup(tmp_path, BASE, [_key(7)])[0][_key(7)], value)


def test_concurrent_writers_of_one_key_processes(tmp_path):
    value = np.arange(4096, dtype=np.float32).reshape(8, 8, 64)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        jobs = [
            pool.submit(store, str(tmp_path), BASE, {_key(7): value}, overwrite=True)
            for _ in range(6)
        ]
        assert [job.result() for job in jobs] == [1] * 6
    files = [p for p in (tmp_path / BASE).rglob("*") if p.is_file()]
    assert [p.name for p in files] == [f"{_key(7)}.npy"]
    np.testing.assert_array_equal(lookup(tmp_path, BASE, [_key(7)])[0][_key(7)], value)


# ---------------------------------------------------------------------------- list, prune


def test_list_and_prune(tmp_path):
    other = base_key("resnet50", "imagenet", (150, 150), "resnet50")
    store(
        tmp_path,
        BASE,
        {_key(i): np.zeros(4, np.float32) for i in range(3)},
        description={"architecture": "vgg16"},
    )
    store(tmp_path, other, {_key(i): np.ones(4, np.float32) for i in range(2)})
    write(tmp_path / "README.txt", b"not an entry")
    old = entry_path(tmp_path, BASE, _key(0))
    os.utime(old, (1000, 1000))
    stray_tmp = write(tmp_path / BASE / "00" / f".{_key(9)}.npy.abc.tmp", b"crashed writer")
    os.utime(stray_tmp, (1000, 1000))

    entries = list_entries(tmp_path)
    assert [(e["base_key"], e["image_key"]) for e in entries] == sorted(
        [(BASE, _key(i)) for i in range(3)] + [(other, _key(i)) for i in range(2)]
    )
    assert all(e["size_bytes"] > 0 for e in entries)
    bases = list_bases(tmp_path)
    assert bases[BASE]["entries"] == 3 and bases[BASE]["description"] == {"architecture": "vgg16"}
    assert bases[other]["description"] is None

    assert prune(tmp_path, older_than_s=3600, now=10_000)["removed"] == 2  # entry + tmp
    assert lookup(tmp_path, BASE, [_key(0), _key(1)])[1] == [_key(0)]
    assert prune(tmp_path, base_key=other)["removed"] == 2
    assert not (tmp_path / other).exists()
    assert {e["base_key"] for e in list_entries(tmp_path)} == {BASE}
    assert prune(tmp_path)["removed"] == 2
    assert list_entries(tmp_path) == [] and not (tmp_path / BASE).exists()
    assert (tmp_path / "README.txt").read_bytes() == b"not an entry"  # never touched
    with pytest.raises(ValueError, match=r"`older_than_s` must be >= 0"):
        prune(tmp_path, older_than_s=-1)


def test_fsspec_filesystem_roundtrip(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("file")
    root = str(tmp_path / "remote")
    feats = {_key(i): np.full(3, i, np.float32) for i in range(2)}
    assert store(root, BASE, feats, description={"a": 1}, filesystem=fs) == 2
    found, missing = lookup(root, BASE, [_key(0), _key(1), _key(2)], filesystem=fs)
    assert sorted(found) == [_key(0), _key(1)] and missing == [_key(2)]
    assert len(list_entries(root, filesystem=fs)) == 2
    assert list_bases(root, filesystem=fs)[BASE]["description"] == {"a": 1}
    assert prune(root, filesystem=fs)["removed"] == 2
    assert list_entries(root, filesystem=fs) == []
