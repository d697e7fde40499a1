"""Issue 15, images: ``dlpipe predict`` decodes each file once (the screening that needs
no decoding, then the model's input pipeline), with the same model inputs, the same
predictions and the same bad-file reasons as the full validation followed by the
training input pipeline (a second decode)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from image_files import cut, encode, jpeg, pixels, write
from PIL import Image

pytestmark = pytest.mark.train


def rotated_jpeg(seed: int) -> bytes:
    """A 40 x 56 JPEG whose EXIF Orientation is 6 (decoded turned 90 degrees)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(pixels(40, 56, seed=seed), "JPEG", exif=exif.tobytes())


def image_run(root, size=48):
    """A run directory holding one untrained small ``small_convnet`` and its state."""
    from dlpipe.models.registry import build_model, resolved_hparams
    from dlpipe.tasks.images.predict import predict_state
    from dlpipe.tasks.images.prepare import ImageSpec
    from dlpipe.tasks.training.saved import save_run_state

    images = ImageSpec(size=(size, size), weights="none")
    meta = {"key": "t-images", "class_names": ["a", "b", "c"], "feature_shape": None}
    state = predict_state(images, meta, 0, str(root / "feature_cache"))
    info = {"kind": "images", "family": "small_convnet", "inputs": asdict(images)}
    path = save_run_state(root, "r1", state, {**info, "dataset_key": "t-images"})
    hp = resolved_hparams("small_convnet", {"num_classes": 3, "filters": 4, "units": 8}, "images")
    build_model("small_convnet", (size, size, 3), hp, "images").save(path)
    return root, info


def good_and_bad_files(folder):
    """Five good files (one rotated, one PNG, sizes other than the model's) and two bad:
    one the screening catches (cut JPEG), one only a decode catches (GIF header)."""
    write(folder / "a0.jpg", jpeg(60, 40, seed=1))
    write(folder / "a1.jpg", rotated_jpeg(2))
    write(folder / "a2.png", encode(pixels(30, 70, seed=3), "PNG"))
    write(folder / "a3.jpg", jpeg(48, 48, seed=4))
    write(folder / "a4.jpg", jpeg(100, 20, seed=5))
    write(folder / "b_cut.jpg", cut(jpeg(60, 40, seed=6)))
    write(folder / "b_gif.jpg", b"GIF89a" + b"\x00" * 20)


def test_screened_inputs_are_the_training_pipelines_inputs(tmp_path):
    from dlpipe.tasks.images.predict import image_inputs, list_images, screened_inputs
    from dlpipe.tasks.images.validate import check_images

    _, info = image_run(tmp_path / "run")
    good_and_bad_files(tmp_path / "in")
    (tmp_path / "in" / "b_gif.jpg").unlink()  # screened good files that all decode
    files = list_images(tmp_path / "in")
    x, good, bad = screened_inputs(files, "small_convnet", info["inputs"], 2)
    check = check_images(files, size=(48, 48))
    assert good == check.ok and bad == check.bad  # same files, same reasons
    assert [b["path"].rsplit("/", 1)[1] for b in bad] == ["b_cut.jpg"]
    ours = np.concatenate([b.numpy() for b in x])
    theirs = np.concatenate(
        [b.numpy() for b, _ in image_inputs(good, "small_convnet", info["inputs"], 3)]
    )
    assert ours.shape == (5, 48, 48, 3) and np.array_equal(ours, theirs)  # bit for bit


def test_a_file_only_a_decode_catches_gets_the_validations_reason(tmp_path):
    import keras

    from dlpipe.pipelines.predict import Predictor, Selection
    from dlpipe.tasks.images.predict import image_inputs, list_images, screened_inputs
    from dlpipe.tasks.images.validate import check_images

    run_dir, info = image_run(tmp_path / "run")
    good_and_bad_files(tmp_path / "in")
    files = list_images(tmp_path / "in")
    _, screened, _ = screened_inputs(files, "small_convnet", info["inputs"])
    assert len(screened) == 6  # the GIF header passes the screening...
    frame = Predictor(run_dir, Selection("r1", ("r1",))).predict(tmp_path / "in", batch_size=2)
    check = check_images(files, size=(48, 48))  # ...and the full validation names it
    bad = frame[frame["status"] == "bad"]
    assert bad["path"].tolist() == [b["path"] for b in check.bad]
    assert bad["reason"].tolist() == [b["reason"] for b in check.bad]
    assert bad["reason"].iloc[1].startswith("decode error: ")
    ok = frame[frame["status"] == "ok"]
    assert ok["path"].tolist() == check.ok
    model = keras.models.load_model(run_dir / "models" / "r1.keras")
    expected = model.predict(image_inputs(check.ok, "small_convnet", info["inputs"], 4), verbose=0)
    got = ok[["prob_a", "prob_b", "prob_c"]].to_numpy()
    assert np.abs(got - expected).max() <= 1e-6
