"""Issue 15, ``dlpipe predict`` at scale. Images: each file is decoded once (the
screening that needs no decoding, then the model's input pipeline), with the same model
inputs, the same predictions and the same bad-file reasons as the full validation
followed by the training input pipeline (a second decode). Tables: a Parquet table is
cut into shards that name its rows (no copy), encoded as the whole table."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image

from image_files import cut, encode, jpeg, pixels, write


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


@pytest.mark.train
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


@pytest.mark.train
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


def table_state(columns, categories):
    from dlpipe.tasks.tabular.data import TabularDataSpec
    from dlpipe.tasks.tabular.predict import predict_state

    spec = TabularDataSpec(
        path="t.parquet",
        target="y",
        features=tuple(columns),
        categorical=tuple(categories),
        missing="mean",
    )
    meta = {
        "key": "t",
        "task": "regression",
        "target": "y",
        "class_names": [],
        "features": list(columns),
        "input_columns": [c for c in columns if c not in categories]
        + [f"{c}={v}" for c, vs in categories.items() for v in vs],
        "mean": {c: 1.5 for c in columns if c not in categories},
        "std": {c: 2.0 for c in columns if c not in categories},
        "categories": categories,
    }
    return predict_state(spec, meta)


def test_parquet_shards_name_rows_and_encode_as_the_whole_table(tmp_path):
    """Shards of a Parquet table (row groups of 7 rows) are JSON files naming rows, along
    the row groups; encoded with their offsets they give the whole table's encoding, and
    an error names the table and the file's row."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dlpipe.tasks.tabular.predict import encode_table, write_table_shards

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=30).round(3),
            "b": rng.integers(0, 9, 30).astype(float),
            "c": rng.choice(["x", "y", "z"], 30),
        }
    )
    frame.loc[4, "a"] = np.nan  # filled with the training mean
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "t.parquet", row_group_size=7)
    state = table_state(["a", "b", "c"], {"c": ["x", "y"]})  # "z": unseen
    whole, ids, unseen = encode_table(state, tmp_path / "t.parquet")
    for size, offsets in ((8, [0, 7, 14, 21, 28]), (3, [0, 4, 7, 11, 14, 18, 21, 25, 28])):
        # row groups of 7 rows (and 2): whole groups, or each group cut in two pieces
        shards = write_table_shards(tmp_path / "t.parquet", tmp_path / f"s{size}", size)
        assert [s["offset"] for s in shards] == offsets
        assert all(s["path"].endswith(".rows.json") for s in shards)
        parts = [encode_table(state, s["path"]) for s in shards]
        assert np.array_equal(np.concatenate([x for x, _, _ in parts]), whole)
        rows = np.concatenate([i["row"] + s["offset"] for (_, i, _), s in zip(parts, shards)])
        assert rows.tolist() == ids["row"].tolist() == list(range(30))
        assert sum(u.get("c", 0) for _, _, u in parts) == unseen["c"] == (frame["c"] == "z").sum()
    # by hand: row 4's `a` is missing (0 after scaling), `b` (b - 1.5) / 2, `c` one-hot
    expected = [0.0, (frame["b"][4] - 1.5) / 2, frame["c"][4] == "x", frame["c"][4] == "y"]
    assert np.allclose(whole[4], np.asarray(expected, np.float64))
    text = frame.astype({"b": str})
    text.loc[13, "b"] = "seven"
    pq.write_table(pa.Table.from_pandas(text), tmp_path / "t.parquet", row_group_size=7)
    with pytest.raises(ValueError, match=r"t\.parquet: row 13: column `b`"):
        encode_table(state, shards[3]["path"])  # rows 11-13 of the file


def test_text_documents_of_parquet_shards_are_the_tables_rows(tmp_path):
    import pandas as pd

    from dlpipe.tasks.tabular.predict import write_table_shards
    from dlpipe.tasks.text.predict import read_documents

    texts = [f"document number {i}" for i in range(20)]
    pd.DataFrame({"text": texts, "n": range(20)}).to_parquet(tmp_path / "t.parquet")
    state = {"data": {"text_column": "text"}}
    shards = write_table_shards(tmp_path / "t.parquet", tmp_path / "s", 6)  # one group of 20
    assert [s["offset"] for s in shards] == [0, 7, 13]  # round(20 / 6) = 3 pieces
    read = [read_documents(state, s["path"]) for s in shards]
    assert sum((t for t, _ in read), []) == texts
    assert [ids["row"].tolist() for _, ids in read] == [list(range(n)) for n in (7, 6, 7)]
