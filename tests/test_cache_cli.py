"""`dlpipe cache list|prune` (issue 5), run in-process through the console entry point."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from dlpipe.pipelines.cli import main
from dlpipe.tasks.features.keys import base_description, base_key
from dlpipe.tasks.features.store import BASE_DESCRIPTION, entry_path, list_entries, lookup, store

VGG = base_key("vgg16", "none", (150, 150), "vgg16", keras_version="3.0")
RESNET = base_key("resnet50", "imagenet", (96, 96), 1 / 255, keras_version="3.0")


def _key(i: int) -> str:
    return hashlib.sha256(f"image-{i}".encode()).hexdigest()


@pytest.fixture
def cache(tmp_path):
    """A cache with 3 VGG16 entries (4x4x8 float32) and 2 ResNet50 entries (2x2x16)."""
    root = tmp_path / "cache"
    rng = np.random.default_rng(0)
    vgg = {_key(i): rng.random((4, 4, 8), dtype=np.float32) for i in range(3)}
    resnet = {_key(i): rng.random((2, 2, 16), dtype=np.float32) for i in range(10, 12)}
    store(
        root,
        VGG,
        vgg,
        description=base_description("vgg16", "none", (150, 150), "vgg16", keras_version="3.0"),
    )
    store(
        root,
        RESNET,
        resnet,
        description=base_description(
            "resnet50", "imagenet", (96, 96), 1 / 255, keras_version="3.0"
        ),
    )
    (root / "notes.txt").write_text("not an entry")
    sizes = {
        VGG: sum(os.path.getsize(entry_path(root, VGG, k)) for k in vgg),
        RESNET: sum(os.path.getsize(entry_path(root, RESNET, k)) for k in resnet),
    }
    return root, {VGG: vgg, RESNET: resnet}, sizes


def _row(out: str, key: str) -> list[str]:
    line = next(line for line in out.splitlines() if key in line)
    return [cell.strip() for cell in line.split("│")[1:-1]]


def test_list_counts_and_sizes(cache, capsys):
    root, stored, sizes = cache
    assert main(["cache", "list", str(root)]) == 0
    out = capsys.readouterr().out
    vgg, resnet = _row(out, VGG), _row(out, RESNET)
    assert vgg[1:5] == ["vgg16", "none", "150x150", "vgg16"]
    assert resnet[1:5] == ["resnet50", "imagenet", "96x96", "rescale 1/255"]
    assert int(vgg[5]) == 3 and int(resnet[5]) == 2
    assert float(vgg[6]) == pytest.approx(sizes[VGG] / 2**20, rel=1e-3)
    assert float(resnet[6]) == pytest.approx(sizes[RESNET] / 2**20, rel=1e-3)
    assert "2 conv base(s), 5 entries" in out


def test_prune_one_base_keeps_the_other(cache, capsys):
    root, stored, sizes = cache
    assert main(["cache", "prune", str(root), "--base", VGG[:8]]) == 0
    out = capsys.readouterr().out
    assert f"removed 3 file(s), {sizes[VGG] / 2**20:.2f} MiB" in out
    assert not (root / VGG).exists()
    assert [e["base_key"] for e in list_entries(root)] == [RESNET, RESNET]
    found, missing = lookup(root, RESNET, list(stored[RESNET]))
    assert missing == [] and all(np.array_equal(found[k], v) for k, v in stored[RESNET].items())
    assert (root / "notes.txt").read_text() == "not an entry"


def test_dry_run_removes_nothing(cache, capsys):
    root, _, _ = cache
    before = sorted((e["path"], e["size_bytes"]) for e in list_entries(root))
    assert main(["cache", "prune", str(root), "--all", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove 5 file(s)" in out and "nothing deleted" in out
    assert sorted((e["path"], e["size_bytes"]) for e in list_entries(root)) == before
    assert (root / VGG / BASE_DESCRIPTION).is_file()


def test_older_than(cache, capsys):
    root, stored, _ = cache
    old = entry_path(root, RESNET, next(iter(stored[RESNET])))
    os.utime(old, (1_000_000, 1_000_000))  # 1970
    assert main(["cache", "prune", str(root), "--older-than", "1"]) == 0
    assert "removed 1 file(s)" in capsys.readouterr().out
    assert not os.path.exists(old) and len(list_entries(root)) == 4


def test_errors(cache, tmp_path, capsys):
    root, _, _ = cache
    missing = tmp_path / "no-such-cache"
    for argv in (["cache", "list", str(missing)], ["cache", "prune", str(missing), "--all"]):
        assert main(argv) == 2
        assert f"cache root not found: {missing}" in capsys.readouterr().err
    assert main(["cache", "list", str(root / "notes.txt")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["cache", "prune", str(root)]) == 2  # no filter, no --all
    assert "--all" in capsys.readouterr().err
    assert main(["cache", "prune", str(root), "--base", "ffffffff"]) == 2
    assert "no conv base 'ffffffff'" in capsys.readouterr().err
    assert len(list_entries(root)) == 5


def test_empty_root(tmp_path, capsys):
    assert main(["cache", "list", str(tmp_path)]) == 0
    assert "no cache entries" in capsys.readouterr().out
