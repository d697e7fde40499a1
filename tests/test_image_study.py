"""The image-folder study (issue 5): preparation with the feature cache (no Ray), one
training run with fine-tuning, config errors, and the whole study in smoke mode through
local Ray. Tiny images, conv bases with `weights: none` (no download)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlpipe.pipelines.config import ConfigError, ImageStudyConfig, parse_study
from dlpipe.tasks.features.study import cache_features
from dlpipe.tasks.images.prepare import SPLIT_CODES, ImageDataSpec, ImageSpec, prepare_images
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.fit import TrainingSpec

from browser import check_report
from image_files import cut, encode, jpeg, pixels, write

BIN = Path(sys.executable).parent
SMALL = ImageSpec(
    size=(32, 32), weights="none", preprocessing="base", validation_shards=2, feature_batch_size=4
)


def flat_folder(root: Path, per_class: int = 8, size: int = 48, bad: bool = True) -> Path:
    """`cat.<i>.jpg` (dark) and `dog.<i>.png` (bright) images; with `bad`, `cat.3.jpg`
    is a JPEG cut in half (case C01: a download cut short)."""
    for i in range(per_class):
        dark = (pixels(size, size, seed=i) * 0.3).astype(np.uint8)
        bright = (255 - pixels(size, size, seed=100 + i) * 0.3).astype(np.uint8)
        write(root / f"cat.{i}.jpg", encode(dark, "JPEG"))
        write(root / f"dog.{i}.png", encode(bright, "PNG"))
    if bad:
        write(root / "cat.3.jpg", cut(jpeg(size, size, seed=3)))
    return root


@pytest.mark.train
def test_resplit_study_reuses_all_features_and_skips_bad_files(tmp_path):
    src = flat_folder(tmp_path / "flat")
    data = ImageDataSpec(path=str(src), counts={"train": 4, "validation": 2, "test": 2})
    arrays, meta = prepare_images(
        data, SMALL, tmp_path / "run", features=True, seed=1, features_fn=cache_features
    )
    bad = meta["bad_files"]
    assert len(bad) == 1 and bad[0]["path"].endswith("cat.3.jpg")
    assert bad[0]["size_bytes"] > 0 and bad[0]["reason"]
    assert not any(p.endswith("cat.3.jpg") for p in arrays["paths"])  # never trained on
    assert meta["split_counts"] == {"train": 7, "validation": 4, "test": 4}
    assert arrays["features"].shape == (15, 1, 1, 512)
    first = meta["feature_cache"]
    assert first["forward_images"] == 15 and first["hits"] == 0
    assert meta["weights_used"].startswith("none (random initialization, model-sha256:")
    # a re-split (shuffled, other counts) of the same files: every feature is reused
    resplit = ImageDataSpec(
        path=str(src), counts={"train": 3, "validation": 3, "test": 2}, mode="shuffle", seed=7
    )
    again, meta2 = prepare_images(
        resplit, SMALL, tmp_path / "run", features=True, seed=1, features_fn=cache_features
    )
    assert meta2["key"] != meta["key"] and meta2["split"]["root"] != meta["split"]["root"]
    cache = meta2["feature_cache"]
    assert cache["forward_images"] == 0 and cache["misses"] == 0
    assert cache["hits"] == len(again["paths"])
    assert {s: v["forward_images"] for s, v in cache["splits"].items()} == {
        "train": 0,
        "validation": 0,
        "test": 0,
    }
    # same image content -> same feature, whatever its split
    by_name = {Path(p).name: f for p, f in zip(arrays["paths"], arrays["features"])}
    for p, f in zip(again["paths"], again["features"]):
        np.testing.assert_array_equal(f, by_name[Path(p).name])


def test_already_split_folder_is_used_as_it_is(tmp_path):
    for split in ("train", "validation", "test"):
        for cls, value in (("a", 40), ("b", 200)):
            for i in range(2):
                write(
                    tmp_path / "base" / split / cls / f"{cls}.{i}.png",
                    encode(np.full((40, 40, 3), value + i, np.uint8), "PNG"),
                )
    arrays, meta = prepare_images(
        ImageDataSpec(path=str(tmp_path / "base")), SMALL, tmp_path / "run"
    )
    assert meta["split"]["already_split"] and meta["class_names"] == ["a", "b"]
    assert meta["split_counts"] == {"train": 4, "validation": 4, "test": 4}
    assert "features" not in arrays and not (tmp_path / "run" / "artifacts" / "split").exists()


@pytest.mark.train
def test_features_head_and_frozen_base_fine_tune_step(tmp_path):
    from dlpipe.ensembles.metrics import log_loss
    from dlpipe.tasks.images.train import train_image_model

    src = flat_folder(tmp_path / "flat", per_class=6, bad=False)
    data = ImageDataSpec(path=str(src), counts={"train": 2, "validation": 2, "test": 2})
    images = ImageSpec(
        size=(32, 32), weights="none", preprocessing="base", fine_tune=True, validation_shards=1
    )
    arrays, meta = prepare_images(
        data, images, tmp_path / "run", features=True, seed=1, features_fn=cache_features
    )
    training = TrainingSpec(epochs=1, batch_size=4)
    head = train_image_model(
        data=arrays,
        meta=meta,
        family="features_head",
        hp={"units": 8},
        inputs=images,
        training=training,
        seed=0,
        run_id="h",
    )
    run = head.run
    assert run["status"] == "ok" and run["metric"] == "accuracy"
    assert run["hyperparameters"]["num_classes"] == 1  # 2 classes: one sigmoid unit
    assert run["inputs"]["input"] == "cached_features"
    assert run["inputs"]["weights_used"] == meta["weights_used"]
    val = [r for r in head.predictions if r["split"] == "validation"]
    y = np.array([r["target"] for r in val])
    p = np.array([r["prediction"] for r in val])
    assert run["val_loss"] == pytest.approx(log_loss(y, p))
    assert {r["sample_index"] for r in val} == set(
        np.flatnonzero(arrays["split"] == SPLIT_CODES["validation"]).tolist()
    )

    path = tmp_path / "fb.keras"
    tuned = train_image_model(
        data=arrays,
        meta=meta,
        family="frozen_base",
        hp={"units": 8, "augment": False},
        inputs=images,
        training=training,
        seed=0,
        run_id="f",
        model_path=str(path),
    )
    run = tuned.run
    assert run["status"] == "ok" and run["epochs_run"] == 2
    assert [r["epoch"] for r in tuned.history] == [1, 2]  # head step, then fine-tuning
    assert run["inputs"]["fine_tune_step"]["head_epochs"] == 1
    assert run["inputs"]["fine_tune_step"]["fine_tune_epochs"] == 1
    # TensorBoard: the fine-tuning step's event files beside the head's (issue 16)
    steps = {name.split("/events")[0] for name in tuned.tensorboard}
    assert steps == {"train", "validation", "fine_tune/train", "fine_tune/validation"}
    assert run["hyperparameters"]["weights"] == "none"
    # the fine-tune step ran: the saved model's base trains exactly block5_conv1..3
    import keras

    base = keras.saving.load_model(path).get_layer("vgg16")
    trainable = [layer.name for layer in base.layers if layer.trainable and layer.weights]
    assert trainable == ["block5_conv1", "block5_conv2", "block5_conv3"]
    # the sweep's test scoring of a saved model gives the run's own test scores
    from dlpipe.tasks.images.train import evaluate_saved_image_model

    scored = evaluate_saved_image_model(
        data=arrays,
        meta=meta,
        model_path=str(path),
        inputs=images,
        run_id="f",
        split="test",
        batch_size=4,
        family="frozen_base",
    )
    assert scored["loss"] == pytest.approx(run["test_loss"], rel=1e-4)
    assert scored["metric"] == pytest.approx(run["test_metric"])


def _study_yaml(root: Path, models: str) -> Path:
    path = root / "study.yaml"
    path.write_text(
        textwrap.dedent("""
        study: images-e2e
        pipeline: images
        output_dir: out
        data: {path: flat, counts: {train: 4, validation: 2, test: 2}}
        images: {size: [48, 48], weights: none, validation_shards: 2, feature_shards: 2,
                  feature_batch_size: 8}
        training: {epochs: 2, batch_size: 4}
        models:
    """)
        + textwrap.indent(textwrap.dedent(models), "  ")
    )
    return path


def test_config_errors_name_the_field(tmp_path):
    import yaml

    flat_folder(tmp_path / "flat", per_class=2, bad=False)
    raw = yaml.safe_load(_study_yaml(tmp_path, "- {family: features_head}").read_text())
    cfg = parse_study(raw, source="s.yaml", base_dir=tmp_path)
    assert isinstance(cfg, ImageStudyConfig) and cfg.images.size == (48, 48)
    assert cfg.images.max_pixels == 89_478_485  # issue 12: Pillow's MAX_IMAGE_PIXELS
    limited = parse_study(
        dict(raw, images={**raw["images"], "max_pixels": 1_000_000}),
        source="s.yaml",
        base_dir=tmp_path,
    )
    assert limited.images.max_pixels == 1_000_000
    with pytest.raises(ConfigError, match=r"`images`: `max_pixels` must be >= 1"):
        parse_study(
            dict(raw, images={**raw["images"], "max_pixels": 0}), source="s.yaml", base_dir=tmp_path
        )
    assert cfg.data.path == str((tmp_path / "flat").resolve())
    demo = parse_study(dict(raw, data={"path": "demo:digits"}), source="s.yaml", base_dir=tmp_path)
    assert demo.data.path == "demo:digits"
    with pytest.raises(ConfigError, match="`data.path`: image folder not found"):
        parse_study(dict(raw, data={"path": "missing"}), source="s.yaml", base_dir=tmp_path)
    with pytest.raises(ConfigError, match="`data.path`: demo source must be one of"):
        parse_study(dict(raw, data={"path": "demo:cifar"}), source="s.yaml", base_dir=tmp_path)
    with pytest.raises(ConfigError, match="`images.weights`: weights file not found"):
        parse_study(dict(raw, images={"weights": "w.h5"}), source="s.yaml", base_dir=tmp_path)
    with pytest.raises(ConfigError, match="family `small_convnet` needs `images.size` >= 46"):
        parse_study(
            dict(raw, images={"size": [32, 32]}, models=[{"family": "small_convnet"}]),
            source="s.yaml",
            base_dir=tmp_path,
        )
    with pytest.raises(ConfigError, match="`images`: `preprocessing` must be"):
        parse_study(
            dict(raw, images={"preprocessing": "imagenet"}), source="s.yaml", base_dir=tmp_path
        )
    with pytest.raises(ConfigError, match="`data`: `counts` must map"):
        parse_study(
            dict(raw, data={"path": "flat", "counts": {"train": 1}}),
            source="s.yaml",
            base_dir=tmp_path,
        )


@pytest.mark.slow
@pytest.mark.ray
def test_image_study_end_to_end_smoke_through_local_ray(tmp_path):
    flat_folder(tmp_path / "flat")
    study = _study_yaml(
        tmp_path,
        """
        - {family: small_convnet, hp: {filters: 4, units: 8}}
        - {family: features_head, hp: {units: 8}}
    """,
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [str(BIN / "dlpipe"), "run", str(study), "--smoke-test", "--num-cpus", "2"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 bad file(s) skipped" in proc.stdout and "cat.3.jpg" in proc.stdout
    assert "cache: 0 hits, 15 misses, 15 conv-base forward passes" in proc.stdout
    run_dir = tmp_path / "out" / "images-e2e-smoke"
    runs = reports.read_table(run_dir, "runs")
    assert sorted(runs["family"]) == ["baseline", "features_head", "small_convnet"]
    assert (runs["status"] == "ok").all() and (runs["metric"] == "accuracy").all()
    inputs = {
        r.family: json.loads(r.inputs) for r in runs.itertuples() if isinstance(r.inputs, str)
    }
    assert inputs["features_head"]["weights_used"].startswith("none (random initialization")
    assert inputs["small_convnet"]["weights_used"] == "none (trained from scratch)"
    history = reports.read_table(run_dir, "history")
    assert history.groupby("run_id").size().max() <= 2  # smoke: at most 2 epochs
    datasets = reports.read_table(run_dir, "datasets")
    quality = json.loads(datasets["quality"].iloc[0])
    (bad,) = quality["bad_files"]
    assert bad["path"].endswith("cat.3.jpg") and bad["reason"] and bad["size_bytes"] > 0
    assert quality["class_counts"]["train"] == [3, 4]  # cat.3 (train block) skipped
    assert quality["counts"] == {"bad_files": 1, "rotated": 0, "format_mismatch": 0}
    assert quality["max_pixels"] == 89_478_485
    assert json.loads(datasets["columns"].iloc[0]) == ["cat", "dog"]
    # two shard tasks computed the 15 features; the gather task read them all back
    assert quality["feature_cache"]["shards"] == 2
    assert quality["feature_cache"]["forward_images"] == 15
    assert (run_dir / "plots" / "val_metric.png").is_file()
    assert (run_dir / "plots" / "loss_curves.png").is_file()
    predictions = reports.read_table(run_dir, "predictions")
    assert predictions["sample_index"].max() < 15  # rows of the 15 valid images only
    check_report(run_dir, runs, "images.png")  # the HTML report in Chromium (issue 16)
    # a rerun: every feature from the cache, nothing trained again
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "cache: 15 hits, 0 misses, 0 conv-base forward passes" in proc.stdout
    assert "resuming: 2 finished run(s)" in proc.stdout
    assert len(reports.read_table(run_dir, "runs")) == 3


def test_packaged_image_configs_are_valid(tmp_path, monkeypatch):
    import yaml

    from dlpipe.pipelines.cli import demo_config_path
    from dlpipe.pipelines.config import load_study, parse_study

    demo = load_study(demo_config_path("images"))
    assert demo.pipeline == "images" and demo.data.path == "demo:digits"
    raw = yaml.safe_load((demo_config_path().parent / "dogs_vs_cats.yaml").read_text())
    monkeypatch.setenv("HOME", str(tmp_path))  # the shipped config reads ~/data/...
    (tmp_path / "data" / "dogs-vs-cats" / "train").mkdir(parents=True)  # the Kaggle folder
    (tmp_path / "configs").mkdir()
    cfg = parse_study(raw, source="dogs_vs_cats.yaml", base_dir=tmp_path / "configs")
    assert dict(cfg.data.counts) == {"train": 1000, "validation": 500, "test": 500}
    assert cfg.images.size == (150, 150) and cfg.images.fine_tune
    assert {m.family for m in cfg.models} == {
        "small_convnet",
        "small_convnet_dropout",
        "features_head",
        "frozen_base",
    }


@pytest.mark.slow
@pytest.mark.ray
def test_run_exits_3_naming_the_failed_model(tmp_path):
    flat_folder(tmp_path / "flat", bad=False)
    (tmp_path / "broken.h5").write_bytes(b"not an HDF5 weights file")
    study = _study_yaml(
        tmp_path,
        """
        - {family: small_convnet, hp: {filters: 4, units: 8}}
        - {family: frozen_base, hp: {units: 8, augment: false}}
    """,
    )
    # the weights file exists (checked at validation) but cannot be loaded: the
    # frozen_base run fails in its training task, the other model finishes
    study.write_text(study.read_text().replace("weights: none", "weights: broken.h5"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [str(BIN / "dlpipe"), "run", str(study), "--smoke-test", "--num-cpus", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 of 2 model run(s) failed" in proc.stderr and "frozen_base-" in proc.stderr
    runs = reports.read_table(tmp_path / "out" / "images-e2e-smoke", "runs")
    assert set(runs.loc[runs["status"] == "ok", "family"]) == {"baseline", "small_convnet"}
    assert (runs.loc[runs["family"] == "frozen_base", "status"] == "failed").all()


def test_single_class_flat_folder_names_the_source_before_copying(tmp_path):
    folder = flat_folder(tmp_path / "flat", bad=False)
    for path in folder.glob("dog.*"):
        path.unlink()
    with pytest.raises(
        ValueError,
        match=r"flat: image studies need at least 2 classes. "
        r"Found only `cat`",
    ):
        prepare_images(
            ImageDataSpec(path=str(folder), counts={"train": 4, "validation": 2, "test": 2}),
            ImageSpec(size=(48, 48), weights="none"),
            tmp_path / "run",
        )
    assert not (tmp_path / "run" / "artifacts" / "split").exists()
