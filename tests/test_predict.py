"""Using what a study trained (issue 15): `dlpipe predict`, bundles, the replayed
preprocessing.

Unit tests (no training): forecast windows and their target timestamps on row-index
data, the tabular encoding replayed against the prepared arrays, stored ensemble weights
applied, bundle hash checks. End to end (marked slow/ray/train): one tiny study per
kind through `dlpipe run`; `dlpipe predict` on the study's own test inputs reproduces
the stored `predictions` report for the best model and the chosen ensemble (max
absolute difference <= 1e-5), through the run directory and through exported bundles
loaded in a fresh process (no Ray started there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlpipe.tasks.reports import tables as reports

BIN = Path(sys.executable).parent
TOLERANCE = 1e-5


# -- unit tests ------------------------------------------------------------------------


def row_index_csv(path: Path, rows: int, *, start="2020-01-01 00:00", freq="h") -> Path:
    """A CSV whose value columns equal the row index (the windows convention's data)."""
    times = pd.date_range(start, periods=rows, freq=freq)
    frame = pd.DataFrame(
        {"time": times.strftime("%Y-%m-%d %H:%M"), "a": np.arange(rows), "b": np.arange(rows)}
    )
    frame.to_csv(path, index=False)
    return path


def weather_state(mean=(0.0, 0.0), std=(1.0, 1.0), period_s=3600.0) -> dict:
    from dataclasses import asdict

    from dlpipe.tasks.weather.read import DataSpec

    spec = DataSpec(
        format="csv", time_column="time", time_format="%Y-%m-%d %H:%M", columns=("a", "b"),
        target="b",
    )  # fmt: skip
    return {
        "kind": "timeseries",
        "dataset_key": "k",
        "data": asdict(spec),
        "columns": ["a", "b"],
        "target": "b",
        "target_column": 1,
        "mean": list(mean),
        "std": list(std),
        "period_s": period_s,
    }


def test_forecast_windows_follow_the_target_convention_on_row_index_data(tmp_path):
    from dlpipe.tasks.weather.predict import forecast_inputs
    from dlpipe.tasks.weather.windows import WindowSpec

    path = row_index_csv(tmp_path / "x.csv", 30)
    spec = WindowSpec(lookback=6, step=2, delay=4)
    found = forecast_inputs(weather_state(), path, spec)
    # a window ends at every row t whose inputs t-4, t-2, t are in the file (4..29)
    assert found.ids["window_end"].tolist() == list(range(4, 30))
    assert found.x.shape == (26, 3, 2)
    assert found.x[0, :, 0].tolist() == [0.0, 2.0, 4.0]  # rows t-4, t-2, t (values = rows)
    assert found.ids["target_row"].tolist() == list(range(8, 34))
    # the newest window: the target is delay rows (hours) after the file's last row
    last = forecast_inputs(weather_state(), path, spec, last=True)
    assert last.x[0, :, 1].tolist() == [25.0, 27.0, 29.0]
    assert last.ids["target_time"][0] == np.datetime64("2020-01-02 09:00")  # row 29 + 4 h
    # the stored statistics scale the new rows: (value - mean) / std
    scaled = forecast_inputs(weather_state(mean=(1.0, 2.0), std=(2.0, 4.0)), path, spec, last=True)
    assert scaled.x[0, :, 0].tolist() == [12.0, 13.0, 14.0]  # (25, 27, 29 - 1) / 2


def test_forecast_refuses_other_columns_and_too_few_rows(tmp_path):
    from dlpipe.tasks.weather.predict import forecast_inputs
    from dlpipe.tasks.weather.read import DataFormatError
    from dlpipe.tasks.weather.windows import WindowSpec

    path = row_index_csv(tmp_path / "x.csv", 5)
    with pytest.raises(DataFormatError, match=r"x.csv: field `rows`: one window needs 7 .* has 5"):
        forecast_inputs(weather_state(), path, WindowSpec(lookback=8, step=2, delay=1))
    frame = pd.read_csv(path)[["time", "b", "a"]]
    frame.to_csv(tmp_path / "swapped.csv", index=False)
    state = weather_state()
    state["data"]["columns"] = ["b", "a"]
    with pytest.raises(DataFormatError, match=r"swapped.csv: field `columns`: .*\['a', 'b'\]"):
        forecast_inputs(state, tmp_path / "swapped.csv", WindowSpec(lookback=2, step=1, delay=1))


def test_tabular_rows_are_encoded_as_the_prepared_arrays(tmp_path):
    from dlpipe.tasks.tabular.data import TabularDataSpec, TabularSplitSpec, prepare_tabular
    from dlpipe.tasks.tabular.predict import encode_table, predict_state

    rng = np.random.default_rng(0)
    n = 40
    frame = pd.DataFrame(
        {
            "x1": rng.normal(5, 2, n).round(3),
            "color": rng.choice(["red", "green", "blue"], n),
            "x2": rng.normal(-1, 3, n).round(3),
            "y": rng.normal(0, 1, n).round(3),
        }
    )
    frame.loc[3, "x2"] = np.nan
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    spec = TabularDataSpec(path=str(path), target="y", categorical=("color",), missing="mean")
    arrays, meta = prepare_tabular(spec, TabularSplitSpec(), "regression")
    x, ids, unseen = encode_table(predict_state(spec, meta), path)
    assert np.array_equal(x[arrays["rows"]], arrays["x"])  # bit for bit, every split
    assert ids["row"].tolist() == list(range(n)) and unseen == {}
    new = frame.drop(columns=["y"]).iloc[:2][["x2", "color", "x1"]]  # any column order
    new.loc[0, "color"] = "purple"
    new.to_csv(tmp_path / "new.csv", index=False)
    x_new, _, unseen = encode_table(predict_state(spec, meta), tmp_path / "new.csv")
    assert unseen == {"color": 1}
    assert x_new[0, 1:4].tolist() == [0.0, 0.0, 0.0]  # unseen category: all-zero one-hot
    assert np.allclose(x_new[1], arrays["x"][np.flatnonzero(arrays["rows"] == 1)[0]])
    frame.drop(columns=["x1"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: field\(s\) \['x1'\]"):
        encode_table(predict_state(spec, meta), tmp_path / "bad.csv")


def test_stored_weights_combine_members_as_a_fitted_ensemble():
    from dlpipe.ensembles import WeightedAverage, combine

    rng = np.random.default_rng(1)
    predictions, y = rng.normal(size=(3, 50)), rng.normal(size=50)
    fitted = WeightedAverage(loss="mae").fit(predictions, y)
    assert np.allclose(combine(fitted.weights_, predictions), fitted.predict(predictions))
    probs = rng.dirichlet(np.ones(3), size=(2, 10))  # (members, samples, classes)
    assert np.allclose(combine([0.25, 0.75], probs), 0.25 * probs[0] + 0.75 * probs[1])
    with pytest.raises(ValueError, match="one weight per member"):
        combine([1.0], predictions)


def test_class_columns_binary_and_multiclass():
    from dlpipe.tasks.training.classifier import class_columns

    binary = class_columns(["cat", "dog"], np.array([[0.2], [0.9]]))
    assert binary["class_name"] == ["cat", "dog"]
    assert binary["prob_dog"].tolist() == [0.2, 0.9] and binary["prediction"].tolist() == [0.2, 0.9]
    multi = class_columns(["a", "b", "c"], np.array([[0.1, 0.7, 0.2]]))
    assert multi["class_name"] == ["b"] and multi["prediction"].tolist() == [1.0]


# -- end to end: one tiny study per kind -------------------------------------------------


def dlpipe(*args, cwd) -> str:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [str(BIN / "dlpipe"), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def stored_outputs(run_dir: Path, selection, split: str | None = None) -> pd.DataFrame:
    """The stored predictions of a selection by ``sample_index`` (of ``split``, or
    every split): one member's ``prediction``/``probabilities``, or the ensemble's
    weighted sum of its members'."""
    table = reports.read_table(run_dir, "predictions")
    if split is not None:
        table = table[table["split"] == split]
    weights = selection.weights or (1.0,)
    out = None
    for run_id, w in zip(selection.run_ids, weights):
        rows = table[table["run_id"] == run_id].set_index("sample_index").sort_index()
        multi = "probabilities" in rows and rows["probabilities"].notna().all()
        values = np.stack(rows["probabilities"].to_numpy()) if multi else rows["prediction"]
        part = pd.DataFrame(np.asarray(values, np.float64).reshape(len(rows), -1), rows.index)
        out = part * w if out is None else out.add(part * w).dropna()
    return out


def check_reproduces(frame: pd.DataFrame, stored: pd.DataFrame, id_of) -> int:
    """Max |predicted - stored| <= 1e-5 over every stored sample; returns the count."""
    frame = frame[frame["status"] == "ok"]
    by_id = frame.set_index(frame.apply(id_of, axis=1))
    prob = [c for c in frame.columns if c.startswith("prob_")]
    columns = prob if stored.shape[1] > 1 else ["prediction"]
    got = by_id.loc[stored.index, columns].to_numpy(np.float64)
    assert np.abs(got - stored.to_numpy()).max() <= TOLERANCE
    return len(stored)


def check_study(run_dir: Path, input_path, id_of, tmp_path: Path, split=None, **kw) -> None:
    """best + ensemble through the run directory (in-process) and exported bundles
    (loaded in a fresh process, which starts no Ray)."""
    from dlpipe.pipelines.predict import select_models
    from dlpipe.pipelines.predict_command import run_predict

    selections = {m: select_models(run_dir, m) for m in ("best", "ensemble")}
    for model, selection in selections.items():
        frame, out = run_predict(
            run_dir, input_path, model=model, output=tmp_path / f"{model}.csv", **kw
        )
        assert (
            out.is_file()
            and (frame["run_id"].str.startswith("ensemble:") == (model != "best")).all()
        )
        assert frame["dataset_key"].nunique() == 1 and frame["model_sha256"].str.len().eq(64).all()
        assert check_reproduces(frame, stored_outputs(run_dir, selection, split), id_of) > 0
        dlpipe("export", run_dir, tmp_path / f"bundle-{model}", "--model", model, cwd=tmp_path)
    script = textwrap.dedent(f"""
        import sys
        import dlpipe
        for model in ("best", "ensemble"):
            bundle = dlpipe.load_bundle({str(tmp_path)!r} + "/bundle-" + model)
            frame = bundle.predict({str(input_path)!r})
            frame.to_parquet({str(tmp_path)!r} + "/fresh-" + model + ".parquet")
        print("ray loaded:", "ray" in sys.modules)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd="/", capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ray loaded: False" in proc.stdout
    shutil.rmtree(run_dir / "models")  # the bundles need nothing of the run directory
    for model, selection in selections.items():
        fresh = pd.read_parquet(tmp_path / f"fresh-{model}.parquet")
        check_reproduces(fresh, stored_outputs(run_dir, selection, split), id_of)


def check_ray_data(run_dir: Path, table: Path, tmp_path: Path, monkeypatch) -> None:
    """Ray Data with 2 actors over shards of 50 rows gives the in-process output, row
    ids included, with one model load per actor."""
    import ray

    from dlpipe.pipelines import predict_ray
    from dlpipe.pipelines.predict import LOAD_LOG_ENV
    from dlpipe.pipelines.predict_command import run_predict

    monkeypatch.setattr(predict_ray, "SHARD_SIZE", 50)
    monkeypatch.setenv(LOAD_LOG_ENV, str(tmp_path / "loads.txt"))
    try:
        _, out = run_predict(run_dir, table, output=tmp_path / "ray.parquet", workers=2)
    finally:
        ray.shutdown()
    streamed = pd.read_parquet(out).sort_values("row", ignore_index=True)
    local, _ = run_predict(run_dir, table, output=tmp_path / "local.parquet")
    assert streamed["row"].tolist() == local["row"].tolist() == list(range(len(local)))
    assert np.abs(streamed["prediction"] - local["prediction"]).max() <= TOLERANCE
    loads = (tmp_path / "loads.txt").read_text().split()[::2]  # "<pid> <run_id>" lines
    ray_loads = [pid for pid in loads if pid != str(os.getpid())]
    assert len(ray_loads) == len(set(ray_loads)) <= 2  # one per actor, never per shard


def study_file(root: Path, body: str) -> Path:
    path = root / "study.yaml"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.train
def test_weather_predict_reproduces_stored_predictions(tmp_path):
    from conftest import jena_like, write_jena

    write_jena(tmp_path / "jena.csv", jena_like(900, seed=3))
    study = study_file(
        tmp_path,
        """
        study: w
        output_dir: out
        data: {format: jena, path: jena.csv}
        split: {train_fraction: 0.5, validation_fraction: 0.25}
        windows: {lookback: 24, step: 2, delay: 6, batch_size: 32}
        training: {epochs: 1}
        ensemble: {enabled: true, loss: mae, n_folds: 3}
        models:
          - {family: dense, hp: {units: 4}}
          - {family: gru, hp: {units: 4}}
        """,
    )
    dlpipe("run", study, "--num-cpus", "2", cwd=tmp_path)
    check_study(tmp_path / "out" / "w", tmp_path / "jena.csv", lambda r: r["target_row"], tmp_path)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.train
def test_tabular_predict_reproduces_stored_predictions(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    n = 120
    x = rng.normal(size=(n, 3))
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": rng.choice(["u", "v"], n)})
    frame["y"] = 3 * x[:, 0] - x[:, 1] + (frame["c"] == "u") + rng.normal(0, 0.1, n)
    frame.round(4).to_csv(tmp_path / "t.csv", index=False)
    study = study_file(
        tmp_path,
        """
        study: t
        pipeline: tabular
        output_dir: out
        data: {path: t.csv, target: y, categorical: [c]}
        task: regression
        training: {epochs: 2, batch_size: 16}
        ensemble: {enabled: true, loss: mae, n_folds: 3}
        models:
          - {family: dense, hp: {units: 8}}
          - {family: dense_dropout, hp: {units: 8}}
        """,
    )
    dlpipe("run", study, "--num-cpus", "2", cwd=tmp_path)
    run_dir = tmp_path / "out" / "t"
    check_ray_data(run_dir, tmp_path / "t.csv", tmp_path, monkeypatch)
    check_study(run_dir, tmp_path / "t.csv", lambda r: r["row"], tmp_path)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.train
def test_text_predict_reproduces_stored_predictions(tmp_path):
    words = {
        "pos": ["great", "fine", "lovely", "superb"],
        "neg": ["awful", "bad", "poor", "dull"],
        "mid": ["okay", "plain", "average", "so"],
    }
    for label, pool in words.items():
        (tmp_path / "corpus" / label).mkdir(parents=True)
        for i in range(20):
            text = f"{pool[i % 4]} film, {pool[(i + 1) % 4]} plot {i}"
            (tmp_path / "corpus" / label / f"{i}.txt").write_text(text)
    study = study_file(
        tmp_path,
        """
        study: x
        pipeline: text
        output_dir: out
        data: {format: folders, path: corpus}
        split: {validation_fraction: 0.25, test_fraction: 0.25}
        text: {max_words: 40, maxlen: 8, num_shards: 2}
        training: {epochs: 2, batch_size: 8}
        ensemble: {enabled: true, loss: log_loss, n_folds: 2}
        models:
          - {family: multihot_dense, hp: {units: 8}}
          - {family: lstm, hp: {units: 4, embedding_dim: 4}}
        """,
    )
    dlpipe("run", study, "--num-cpus", "2", cwd=tmp_path)
    run_dir = tmp_path / "out" / "x"
    key = reports.read_table(run_dir, "datasets")["dataset_key"].iloc[0]
    with np.load(run_dir / "artifacts" / f"{key}.npz") as npz:
        paths, split = npz["paths"], npz["split"]
    inputs = tmp_path / "new"  # the test documents, one file each, named by sample index
    inputs.mkdir()
    for i in np.flatnonzero(split == 2):
        shutil.copyfile(paths[i], inputs / f"{i:06d}.txt")
    check_study(run_dir, inputs, lambda r: int(Path(r["path"]).stem), tmp_path, split="test")


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.train
def test_images_predict_reproduces_stored_predictions(tmp_path):
    from image_files import cut, encode, jpeg, pixels, write

    for i in range(8):
        dark = (pixels(48, 48, seed=i) * 0.3).astype(np.uint8)
        bright = (255 - pixels(48, 48, seed=100 + i) * 0.3).astype(np.uint8)
        write(tmp_path / "flat" / f"cat.{i}.jpg", encode(dark, "JPEG"))
        write(tmp_path / "flat" / f"dog.{i}.png", encode(bright, "PNG"))
    study = study_file(
        tmp_path,
        """
        study: i
        pipeline: images
        output_dir: out
        data: {path: flat, counts: {train: 4, validation: 2, test: 2}}
        images: {size: [48, 48], weights: none, validation_shards: 1, feature_batch_size: 8}
        training: {epochs: 2, batch_size: 4}
        ensemble: {enabled: true, loss: log_loss, n_folds: 2}
        models:
          - {family: small_convnet, hp: {filters: 4, units: 8}}
          - {family: features_head, hp: {units: 8}}
        """,
    )
    dlpipe("run", study, "--num-cpus", "2", cwd=tmp_path)
    run_dir = tmp_path / "out" / "i"
    from dlpipe.tasks.images.prepare import list_splits

    quality = json.loads(reports.read_table(run_dir, "datasets")["quality"].iloc[0])
    _, rows = list_splits(tmp_path / quality["split"]["root"])  # no bad file: all rows kept
    listing = tmp_path / "test_files.txt"
    index = {p: i for i, (s, p, _) in enumerate(rows)}
    listing.write_text("\n".join(p for s, p, _ in rows if s == "test") + "\n")
    write(tmp_path / "broken.jpg", cut(jpeg(48, 48, seed=3)))
    listing.write_text(listing.read_text() + str(tmp_path / "broken.jpg") + "\n")
    check_study(run_dir, listing, lambda r: index[r["path"]], tmp_path, split="test")
    frame = pd.read_parquet(tmp_path / "fresh-best.parquet")
    bad = frame[frame["status"] == "bad"]
    assert bad["path"].tolist() == [str(tmp_path / "broken.jpg")] and bad["reason"].iloc[0]


@pytest.mark.train
def test_bundle_refuses_changed_missing_or_unlisted_files(tmp_path):
    import keras

    from dlpipe.pipelines.bundle import BundleError, export_bundle, load_bundle
    from dlpipe.tasks.tabular.data import TabularDataSpec
    from dlpipe.tasks.tabular.predict import predict_state
    from dlpipe.tasks.training.saved import save_run_state

    table = tmp_path / "t.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 2.0]}).to_csv(table, index=False)
    meta = {
        "key": "k",
        "task": "regression",
        "target": "y",
        "class_names": [],
        "features": ["a"],
        "input_columns": ["a"],
        "mean": {"a": 2.0},
        "std": {"a": 0.5},
        "categories": {},
    }
    state = predict_state(TabularDataSpec(path=str(table), target="y"), meta)
    info = {"kind": "tabular", "family": "dense", "inputs": {"task": None}, "dataset_key": "k"}
    path = save_run_state(tmp_path / "run", "dense-0", state, info)
    dense = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")
    keras.Sequential([keras.Input((1,)), dense]).save(path)
    bundle = export_bundle(tmp_path / "run", tmp_path / "b", model="dense-0")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["files"]) == {
        "models/dense-0.keras",
        "models/dense-0.json",
        f"models/state-{json.loads((bundle / 'models/dense-0.json').read_text())['state']}.json",
    }
    assert manifest["versions"]["keras"] == keras.__version__
    frame = load_bundle(bundle).predict(table)
    assert frame["prediction"].tolist() == [-2.0, 0.0, 2.0]  # (a - 2) / 0.5 x 1 + 0
    assert frame["row"].tolist() == [0, 1, 2] and (frame["run_id"] == "dense-0").all()
    with pytest.raises(FileExistsError, match="not empty"):
        export_bundle(tmp_path / "run", bundle, model="dense-0")
    (bundle / "models" / "extra.keras").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"extra.keras: not listed in the manifest"):
        load_bundle(bundle)
    (bundle / "models" / "extra.keras").unlink()
    state_file = next((bundle / "models").glob("state-*.json"))
    state_file.write_text(state_file.read_text().replace('"std": {"a": 0.5}', '"std": {"a": 5}'))
    with pytest.raises(BundleError, match=r"state-.*sha256 differs .*bundle refused"):
        load_bundle(bundle)
    state_file.unlink()
    with pytest.raises(BundleError, match=r"missing; bundle refused"):
        load_bundle(bundle)


def test_best_is_the_best_validation_run_with_a_model_and_kfold_takes_the_final(tmp_path):
    from dlpipe.pipelines.predict import best_run, select_models
    from dlpipe.tasks.training.saved import model_path, save_run_state

    def run(run_id, family, val, **extra):
        row = {"run_id": run_id, "family": family, "status": "ok", "metric": "mae"}
        row.update(val_metric=val, hyperparameters="{}", seed=1, **extra)
        reports.write_part(tmp_path, "runs", run_id, [row], kind="tabular")

    def keep(run_id):
        save_run_state(tmp_path, run_id, {"kind": "tabular"}, {"kind": "tabular"})
        model_path(tmp_path, run_id).write_bytes(b"model")

    run("baseline-k", "baseline", 0.1)
    run("dense-a", "dense", 2.0)
    run("gru-b", "gru", 1.0)
    keep("dense-a")
    assert best_run(tmp_path) == "dense-a"  # gru-b is better but kept no model
    keep("gru-b")
    assert best_run(tmp_path) == "gru-b"  # MAE: lower is better
    assert select_models(tmp_path, "dense-a").run_ids == ("dense-a",)
    with pytest.raises(FileNotFoundError, match="run nope has no saved model"):
        select_models(tmp_path, "nope")
    # K-fold: the fold means choose, the chosen model's final model predicts
    for name in ("dense-a", "gru-b"):
        (tmp_path / "reports" / "runs" / f"part-{name}.parquet").unlink()
    run("dense-mean", "dense", 0.5, evaluation="mean")
    run("dense-final", "dense", float("nan"), evaluation="final")
    run("gru-mean", "gru", 0.7, evaluation="mean")
    run("gru-final", "gru", float("nan"), evaluation="final")
    for name in ("dense-final", "gru-final"):
        keep(name)
    assert best_run(tmp_path) == "dense-final"


def test_cli_predict_and_export_say_what_is_missing(tmp_path, capsys):
    from dlpipe.pipelines.cli import main

    assert main(["predict", str(tmp_path), "--input", "new.csv"]) == 2
    assert "no finished model run in reports/runs" in capsys.readouterr().err
    assert main(["export", str(tmp_path), str(tmp_path / "b"), "--model", "ensemble"]) == 2
    assert "no ensembles report: run `dlpipe ensemble" in capsys.readouterr().err


def test_every_kind_replays_its_own_preprocessing():
    from dlpipe.pipelines.kinds import KINDS, StudyKind

    for kind in KINDS.values():
        for method in ("predict_state", "predict_inputs"):
            assert getattr(type(kind), method) is not getattr(StudyKind, method), (kind, method)
