"""K-fold for the timeseries, text and image kinds (issue 14): forward-chaining folds of a
time series (never trained on the future, expanding windows, per-fold normalization,
windows inside their blocks), per-fold text vocabularies (no leakage), image folds on
cached features (no conv-base forward pass), config checks, and one small end-to-end
study per kind through local Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlpipe.pipelines.config import ConfigError, parse_study
from dlpipe.pipelines.sections import EvaluationSpec
from dlpipe.tasks.training.folds import forward_chaining_folds

from conftest import jena_like, write_jena

BIN = Path(sys.executable).parent


# -- forward chaining: folds ------------------------------------------------------------
def test_forward_chaining_never_trains_on_the_future_and_windows_expand():
    folds = forward_chaining_folds(103, 4)
    assert [(f.repeat, f.fold) for f in folds] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    # 5 blocks of 103 rows: edges round(linspace(0, 103, 6)) = 0, 21, 41, 62, 82, 103
    assert [(int(f.train[-1]) + 1, len(f.validation)) for f in folds] == [
        (21, 20),
        (41, 21),
        (62, 20),
        (82, 21),
    ]
    for f in folds:
        assert f.train.max() < f.validation.min()  # every training row before validation
        assert f.train.tolist() == list(range(len(f.train)))  # from the first row on
        assert f.validation.tolist() == list(range(f.validation[0], f.validation[-1] + 1))
    for a, b in zip(folds, folds[1:]):
        assert set(a.train) < set(b.train)  # expanding
        assert set(a.validation) <= set(b.train)  # a block validated, then trained on
    assert folds[-1].validation[-1] == 102  # the last block reaches the last row
    with pytest.raises(ValueError, match="at least folds \\+ 1 rows"):
        forward_chaining_folds(3, 3)


def _weather_setup(tmp_path, rows=600):
    from dlpipe.tasks.weather.prepare import SplitSpec
    from dlpipe.tasks.weather.read import DataSpec

    path = write_jena(tmp_path / "jena.csv", jena_like(rows, seed=3))
    return path, DataSpec(format="jena", path=str(path)), SplitSpec(0.6, 0.2)


def test_forward_chaining_folds_normalize_with_their_training_rows_and_keep_windows_inside(
    tmp_path,
):
    from dlpipe.tasks.weather.folds import fold_arrays
    from dlpipe.tasks.weather.windows import WindowSpec, split_window_rows

    path, spec, split = _weather_setup(tmp_path)
    windows = WindowSpec(lookback=12, step=2, delay=6, batch_size=16)
    entries = fold_arrays(spec, split, [windows], 3)
    assert len(entries) == 4  # 3 folds + the final model
    raw = np.genfromtxt(path, delimiter=",", skip_header=1)[:, 1:]  # the file as written
    # non-test rows: the first 480 (60% + 20% of 600); 4 blocks of 120
    expected = [(120, (120, 240)), (240, (240, 360)), (360, (360, 480)), (480, None)]
    for (data, info), (train_stop, val) in zip(entries, expected):
        assert info["blocks"]["train"] == [[0, train_stop]]
        assert info["blocks"]["validation"] == ([list(val)] if val else [])
        assert info["blocks"]["test"] == [[480, 600]]  # the hold-out test rows
        mean, std = raw[:train_stop].mean(axis=0), raw[:train_stop].std(axis=0)
        np.testing.assert_allclose(info["mean"], mean, rtol=1e-9)
        np.testing.assert_allclose(info["std"], std, rtol=1e-9)
        np.testing.assert_allclose(data, (raw - mean) / std, rtol=1e-4, atol=1e-4)
        train_t = split_window_rows(windows, info["splits"]["train"])
        assert train_t.max() + windows.delay < train_stop  # no training target in validation
        if val:
            val_t = split_window_rows(windows, info["splits"]["validation"])
            assert (val_t + windows.offsets[0]).min() >= val[0]  # inputs inside the block
            assert (val_t + windows.delay).max() < val[1]
    assert entries[0][1]["fold"] == 0 and entries[-1][1]["fold"] is None
    # the study window's count per split: 120 rows - (12 - 2 + 6) = 104
    assert entries[0][1]["windows"] == {"train": 104, "validation": 104, "test": 104}


def test_forward_chaining_refuses_blocked_splits_and_names_a_short_fold(tmp_path):
    from dataclasses import replace

    from dlpipe.tasks.weather.folds import fold_arrays
    from dlpipe.tasks.weather.windows import SplitTooShortError, WindowSpec

    _, spec, split = _weather_setup(tmp_path)
    with pytest.raises(ValueError, match="`split.blocks` must be 1"):
        fold_arrays(spec, replace(split, blocks=2), [WindowSpec(12, 2, 6)], 3)
    # 8 folds: 9 blocks of ~53 rows, one window needs 61
    with pytest.raises(SplitTooShortError, match="forward-chaining fold 0: split `train`"):
        fold_arrays(spec, split, [WindowSpec(48, 1, 12)], 8)


def _timeseries_raw(tmp_path, **extra) -> dict:
    path, _, _ = _weather_setup(tmp_path)
    return {
        "study": "w",
        "pipeline": "timeseries",
        "data": {"format": "jena", "path": str(path)},
        "split": {"train_fraction": 0.6, "validation_fraction": 0.2},
        "windows": {"lookback": 12, "step": 2, "delay": 6},
        "models": [{"family": "dense"}],
        **extra,
    }


def test_forward_chaining_section_is_validated_at_load(tmp_path):
    raw = _timeseries_raw(tmp_path)
    cfg = parse_study({**raw, "evaluation": {"forward_chaining": {"folds": 4}}})
    assert (cfg.evaluation.mode, cfg.evaluation.k) == ("forward_chaining", 4)
    assert cfg.evaluation.key_payload() == {"mode": "forward_chaining", "folds": 4}
    for value, message in (
        ({"forward_chaining": {"folds": 1}}, r"`evaluation.forward_chaining.folds` must be an"),
        ({"forward_chaining": {"k": 3}}, r"unknown key `evaluation.forward_chaining.k` \(known"),
        ({"forward_chaining": {}}, r"missing required key `evaluation.forward_chaining.folds`"),
        ({"kfold": {"k": 3}}, r"kfold is not available for timeseries studies: .*leakage"),
        ({"iterated_kfold": {"k": 3, "repeats": 2}}, r"use forward chaining"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_study({**raw, "evaluation": value})
    blocked = {**raw, "split": {**raw["split"], "blocks": 2}}
    with pytest.raises(ConfigError, match=r"`split.blocks`: forward chaining"):
        parse_study({**blocked, "evaluation": {"forward_chaining": {"folds": 3}}})
    parse_study(blocked)  # hold-out keeps blocked splits
    table = tmp_path / "t.csv"
    table.write_text("a,y\n" + "".join(f"{i},{2 * i}\n" for i in range(20)))
    tabular = {
        "study": "t",
        "pipeline": "tabular",
        "data": {"path": str(table), "target": "y"},
        "models": [{"family": "dense"}],
        "evaluation": {"forward_chaining": {"folds": 3}},
    }
    with pytest.raises(ConfigError, match=r"forward_chaining is not available for tabular .*"):
        parse_study(tabular)


def test_forward_chaining_example_study_file_loads():
    from dlpipe.pipelines.cli import demo_config_path
    from dlpipe.pipelines.config import load_study
    from dlpipe.tasks.weather.folds import fold_blocks

    cfg = load_study(demo_config_path().parent / "demo_weather_forward_chaining.yaml")
    assert cfg.evaluation.key_payload() == {"mode": "forward_chaining", "folds": 4}
    assert cfg.split.blocks == 1 and not cfg.ensemble.enabled
    # TMY3: 8,760 hourly rows, 7,008 non-test; 5 blocks of ~1,402, one window needs 144
    blocks = fold_blocks(cfg.split, 8760, 4)
    assert [b["validation"] for b in blocks[:-1]] == [
        [(1402, 2803)],
        [(2803, 4205)],
        [(4205, 5606)],
        [(5606, 7008)],
    ]
    assert blocks[-1]["train"] == [(0, 7008)] and blocks[-1]["test"] == [(7008, 8760)]


def test_forward_chaining_keys_differ_from_holdout_and_kfold_keys():
    from dlpipe.tasks.training.fit import TrainingSpec
    from dlpipe.tasks.training.records import run_key

    training = TrainingSpec(epochs=2)
    holdout = run_key("d", "gru", {}, None, training, 1)
    fc = EvaluationSpec("forward_chaining", 3).key_payload()
    kf = EvaluationSpec("kfold", 3).key_payload()
    keys = {run_key("d", "gru", {}, None, training, 1, {**p, "fold": 0}) for p in (fc, kf)}
    assert len(keys) == 2 and holdout not in keys
    with pytest.raises(ValueError, match="takes `folds` only"):
        EvaluationSpec("forward_chaining", 3, stratified=True)


# -- text: per-fold vocabularies ---------------------------------------------------------
def test_text_fold_vocabulary_comes_from_the_fold_training_texts_only(tmp_path):
    from dlpipe.tasks.text.folds import fold_arrays
    from dlpipe.tasks.text.prepare import TextDataSpec, TextSpec, TextSplitSpec, prepare_text
    from dlpipe.tasks.text.tokenize import tokenize
    from dlpipe.tasks.training.classifier import SPLIT_CODES

    # every document has one word of its own ("onlyN"): it is in the vocabulary of a fold
    # exactly when the document trains that fold
    rows = ["text,label"] + [
        f"{'fine good' if i % 2 else 'poor bad'} common only{i},{'pos' if i % 2 else 'neg'}"
        for i in range(30)
    ]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    data = TextDataSpec(format="table", path=str(tmp_path / "t.csv"))
    split, text = TextSplitSpec(0.2, 0.2, seed=1), TextSpec(max_words=100, num_shards=2)
    arrays, meta = prepare_text(data, split, text)
    entries = fold_arrays(data, split, text, EvaluationSpec("kfold", 3), seed=5)
    assert len(entries) == 4
    tr, va, te = (SPLIT_CODES[s] for s in ("train", "validation", "test"))
    for fold_arrays_, info, vocab in entries:
        codes = fold_arrays_["split"]
        assert np.array_equal(fold_arrays_["labels"], arrays["labels"])  # same rows
        assert np.array_equal(codes == te, arrays["split"] == te)  # same test documents
        texts = [rows[1 + int(str(p).rsplit("#", 1)[-1])] for p in fold_arrays_["paths"]]
        texts = [t.rsplit(",", 1)[0] for t in texts]
        train_words = {w for t, c in zip(texts, codes) if c == tr for w in tokenize(t)}
        assert set(vocab.words) == train_words  # built from the training texts only
        assert info["distinct_train_words"] == len(train_words)
        ids, offsets = fold_arrays_["ids"], fold_arrays_["offsets"]
        for i, (t, c) in enumerate(zip(texts, codes)):
            own = vocab.lookup(tokenize(t)[-1])  # its "onlyN" word
            encoded = ids[offsets[i] : offsets[i + 1]]
            assert encoded[-1] == own
            assert (own == 1) == (c != tr)  # OOV in every validation and test document
        if info["fold"] is None:
            assert not (codes == va).any() and info["split_counts"]["train"] == sum(
                meta["split_counts"][s] for s in ("train", "validation")
            )
    validation = np.concatenate([np.flatnonzero(e[0]["split"] == va) for e in entries[:3]])
    assert sorted(validation) == sorted(np.flatnonzero(arrays["split"] != te))


# -- images: folds on the cached features ----------------------------------------------
@pytest.mark.train
def test_image_folds_on_cached_features_run_no_conv_base_forward_pass(monkeypatch):
    import dlpipe.models.images as image_models
    import dlpipe.tasks.features.extract as extract
    from dlpipe.pipelines.kfold import final_training
    from dlpipe.tasks.images.prepare import ImageSpec
    from dlpipe.tasks.images.train import train_image_model
    from dlpipe.tasks.training.fit import TrainingSpec
    from dlpipe.tasks.training.folds import split_code_folds

    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a conv-base forward pass under K-fold")

    monkeypatch.setattr(image_models, "conv_base", forbidden)
    monkeypatch.setattr(extract, "extract_features", forbidden)
    monkeypatch.setattr(extract, "_forward_features", forbidden)
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 12)
    features = (rng.normal(0, 1, (24, 1, 1, 8)) + labels[:, None, None, None]).astype(np.float32)
    split = np.array(([0] * 6 + [1] * 3 + [2] * 3) * 2, np.int8)
    arrays = {
        "paths": np.asarray([f"/nowhere/{i}.jpg" for i in range(24)]),
        "labels": labels,
        "split": split,
        "features": features,
    }
    meta = {"num_classes": 2, "class_names": ["a", "b"], "feature_shape": [1, 1, 8]}
    folds = split_code_folds(split, labels, EvaluationSpec("kfold", 3), 7, ["a", "b"])
    assert len(folds) == 4
    training = TrainingSpec(epochs=1, batch_size=4)
    for _, fold, codes in folds:
        result = train_image_model(
            data={**arrays, "split": codes},
            meta={**meta, "fold": fold},
            family="features_head",
            hp={"units": 4},
            inputs=ImageSpec(size=(48, 48), weights="none"),
            training=training if fold is not None else final_training(training, 1),
            seed=0,
            run_id=f"f{fold}",
        )
        assert result.run["status"] == "ok", result.run["error"]
        assert np.isfinite(result.run["test_metric"])
        assert np.isfinite(result.run["val_metric"]) == (fold is not None)
    assert calls == []


# -- end to end ------------------------------------------------------------------------
def _run_study(tmp_path, study: Path, *args):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [str(BIN / "dlpipe"), "run", str(study), "--num-cpus", "2", *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _check_fold_rows(run_dir: Path, family: str, k: int):
    from dlpipe.tasks.reports import tables as reports

    runs = reports.read_table(run_dir, "runs")
    rows = runs[runs["family"] == family]
    assert sorted(rows["evaluation"]) == ["final"] + ["fold"] * k + ["mean"]
    folds = rows[rows["evaluation"] == "fold"]
    assert sorted(folds["fold"].tolist()) == list(range(k)) and (folds["status"] == "ok").all()
    mean = rows[rows["evaluation"] == "mean"].iloc[0]
    assert mean["val_metric"] == pytest.approx(folds["val_metric"].mean())
    final = rows[rows["evaluation"] == "final"].iloc[0]
    assert final["status"] == "ok" and np.isfinite(final["test_metric"])
    assert pd.isna(final["val_metric"])
    history = reports.read_table(run_dir, "history")
    fold_history = history[history["run_id"].isin(folds["run_id"])]
    assert fold_history["val_metric"].notna().all()  # the curve the folds average
    return folds, final


@pytest.mark.slow
@pytest.mark.ray
def test_forward_chaining_study_end_to_end(tmp_path):
    path, _, _ = _weather_setup(tmp_path)
    study = tmp_path / "study.yaml"
    study.write_text(
        textwrap.dedent(
            f"""
            study: fc
            pipeline: timeseries
            output_dir: out
            data: {{format: jena, path: {path}}}
            split: {{train_fraction: 0.6, validation_fraction: 0.2}}
            windows: {{lookback: 12, step: 2, delay: 6, batch_size: 32}}
            evaluation: {{forward_chaining: {{folds: 3}}}}
            training: {{epochs: 2}}
            models:
              - {{family: dense, hp: {{units: 4}}}}
            """
        )
    )
    proc = _run_study(tmp_path, study)
    assert "over 3 folds (spread" in proc.stdout
    folds, final = _check_fold_rows(tmp_path / "out" / "fc", "dense", 3)
    # each fold's MAE is in the target's units: its normalized MAE x its own train std
    raw = np.genfromtxt(path, delimiter=",", skip_header=1)[:, 2]  # T (degC)
    for row in folds.itertuples():
        std = raw[: 120 * (row.fold + 1)].std()
        assert row.val_metric == pytest.approx(row.val_mae * std, rel=1e-5)
    assert final["val_mae"] != final["val_mae"]  # NaN: no validation rows


@pytest.mark.slow
@pytest.mark.ray
def test_text_kfold_study_end_to_end(tmp_path):
    rows = ["text,label"] + [
        f"{'fine good great' if i % 2 else 'poor bad awful'} word{i % 7} doc{i},"
        f"{'pos' if i % 2 else 'neg'}"
        for i in range(60)
    ]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    study = tmp_path / "study.yaml"
    study.write_text(
        textwrap.dedent(
            """
            study: tk
            pipeline: text
            output_dir: out
            data: {format: table, path: t.csv}
            text: {max_words: 50, maxlen: 8, num_shards: 1}
            evaluation: {kfold: {k: 3}}
            training: {epochs: 2, batch_size: 8}
            models:
              - {family: multihot_dense, hp: {units: 4}}
            """
        )
    )
    proc = _run_study(tmp_path, study)
    assert "K-fold: 3 fold vocabularies" in proc.stdout
    _check_fold_rows(tmp_path / "out" / "tk", "multihot_dense", 3)
    (vocabulary,) = (tmp_path / "out" / "tk" / "artifacts").glob("*.final.vocabulary.json")
    assert "word6" in vocabulary.read_text()


@pytest.mark.slow
@pytest.mark.ray
def test_images_kfold_study_on_cached_features_end_to_end(tmp_path):
    from dlpipe.tasks.features.store import list_entries
    from dlpipe.tasks.reports import tables as reports

    from image_files import encode, pixels, write

    for i in range(8):  # dark cats, bright dogs (a flat Kaggle-named folder)
        write(tmp_path / "flat" / f"cat.{i}.jpg", encode(pixels(48, 48, seed=i) // 3, "JPEG"))
        bright = 255 - pixels(48, 48, seed=100 + i) // 3
        write(tmp_path / "flat" / f"dog.{i}.png", encode(bright, "PNG"))
    study = tmp_path / "study.yaml"
    study.write_text(
        textwrap.dedent(
            """
            study: ik
            pipeline: images
            output_dir: out
            data: {path: flat, counts: {train: 4, validation: 2, test: 2}}
            images: {size: [48, 48], weights: none, preprocessing: base,
                     feature_batch_size: 8, cache_root: cache, validation_shards: 1,
                     feature_shards: 1}
            evaluation: {kfold: {k: 2}}
            training: {epochs: 2, batch_size: 4}
            models:
              - {family: features_head, hp: {units: 8}}
            """
        )
    )
    proc = _run_study(tmp_path, study)
    assert "0 conv-base forward passes (folds are index subsets)" in proc.stdout
    run_dir = tmp_path / "out" / "ik"
    _check_fold_rows(run_dir, "features_head", 2)
    dataset = reports.read_table(run_dir, "datasets").iloc[0]
    cache = json.loads(dataset["quality"])["feature_cache"]
    images = sum(json.loads(dataset["splits"]).values())
    # every image went through the conv base once, in the prepare stage; the fold runs
    # and the final model added no entry and no forward pass
    assert cache["forward_images"] == images
    assert len(list(list_entries(str(tmp_path / "cache")))) == images
