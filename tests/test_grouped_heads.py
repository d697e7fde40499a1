"""Heads on cached features that are not step-bound (issue 17): one compiled call per
epoch, several heads in one training task, each run as it is alone."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from dlpipe.pipelines.jobs import job_groups, resources_column
from dlpipe.pipelines.sections import ModelSpec, ResourcesSpec
from dlpipe.tasks.images.prepare import ImageSpec
from dlpipe.tasks.training.fit import TrainingSpec
from dlpipe.tasks.training.records import RunError

FEATURE_SHAPE = (2, 2, 6)


def feature_data(n_train=37, n_val=11, n_test=9, classes=3, seed=0):
    """Cached features whose class is a linear function of them (a learnable task)."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    x = rng.normal(size=(n, *FEATURE_SHAPE)).astype(np.float32)
    labels = (x.reshape(n, -1) @ rng.normal(size=(x[0].size, classes))).argmax(1)
    split = np.repeat([0, 1, 2], [n_train, n_val, n_test])
    data = {"features": x, "labels": labels, "split": split, "paths": np.array([""] * n)}
    meta = {"num_classes": classes, "feature_shape": list(FEATURE_SHAPE), "weights_used": "t"}
    return data, meta


def head_kwargs(run_id, seed=0, **hp):
    return {
        "family": "features_head",
        "hp": {"units": 8, "dropout": 0.5, "learning_rate": 1e-2, **hp},
        "inputs": ImageSpec(size=(32, 32), weights="none"),
        "training": TrainingSpec(epochs=4, batch_size=5),
        "seed": seed,
        "run_id": run_id,
    }


def losses(result):
    return np.array([r["loss"] for r in result.history] + [r["val_loss"] for r in result.history])


# ---------------------------------------------------------------- which jobs share a task


def job(family, data, run_id, training=None):
    return SimpleNamespace(
        model=ModelSpec(family=family),
        data=SimpleNamespace(data=data),
        inputs=ImageSpec(),
        training=training or TrainingSpec(),
        run_id=run_id,
    )


def test_job_groups_share_data_inputs_and_training_and_fill_the_slots():
    kind = SimpleNamespace(grouped_families=("features_head",))
    a, b = object(), object()  # two datasets (e.g. two folds)
    jobs = [
        job("features_head", a, "h1"),
        job("small_convnet", a, "c1"),
        job("features_head", a, "h2"),
        job("features_head", b, "h3"),  # other data
        job("features_head", a, "h4", TrainingSpec(batch_size=20)),  # other training
        job("features_head", a, "h5"),
        job("features_head", a, "h6"),
    ]
    ids = lambda groups: [[j.run_id for j in g] for g in groups]  # noqa: E731
    # 4 heads share (a, defaults): dealt round-robin into 2 slots, at the first's place
    assert ids(job_groups(kind, jobs, True, 2)) == [
        ["h1", "h5"],
        ["h2", "h6"],
        ["c1"],
        ["h3"],
        ["h4"],
    ]
    assert ids(job_groups(kind, jobs, True, 1)) == [
        ["h1", "h2", "h5", "h6"],
        ["c1"],
        ["h3"],
        ["h4"],
    ]
    # more slots than heads: one head per task, as without grouping
    assert ids(job_groups(kind, jobs, True, 8)) == [[j] for j in "h1 h2 h5 h6 c1 h3 h4".split()]
    assert ids(job_groups(kind, jobs, False, 1)) == [[j.run_id] for j in jobs]
    # a kind that groups nothing
    assert ids(job_groups(SimpleNamespace(grouped_families=()), jobs, True, 1)) == [
        [j.run_id] for j in jobs
    ]


def test_group_heads_switch_is_on_by_default_and_off_the_failed_row_and_fingerprint():
    from dlpipe.pipelines.config import parse_study
    from dlpipe.pipelines.sweeps.stamp import settings

    assert ResourcesSpec().group_heads is True
    assert resources_column(ResourcesSpec(group_heads=False)) == {
        "num_cpus": 1,
        "num_gpus": 0,
        "max_retries": 1,
    }
    raw = {
        "study": "s",
        "pipeline": "images",
        "data": {"path": "demo:digits"},
        "models": [{"family": "features_head"}],
        "images": {"size": [32, 32], "weights": "none"},
    }
    on = parse_study(raw)
    off = parse_study({**raw, "resources": {"group_heads": False}})
    assert on.resources.group_heads and not off.resources.group_heads
    assert settings(on) == settings(off)  # how runs share tasks changes no result
    assert "group_heads" not in settings(on)["resources"]


# ---------------------------------------------------------------- training (TensorFlow)


@pytest.mark.train
def test_head_fit_in_one_call_per_epoch_keeps_the_updates(monkeypatch):
    from dlpipe.tasks.images import train as image_train

    data, meta = feature_data()
    assert image_train.head_steps_per_execution(TrainingSpec(batch_size=5), 37) == 8
    assert image_train.head_steps_per_execution(TrainingSpec(steps_per_execution=3), 37) == 3

    seen = []
    fit = image_train.fit_model

    def spy(model, *args, **kwargs):
        seen.append(model.steps_per_execution)
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(image_train, "fit_model", spy)
    fast = image_train.train_image_model(data=data, meta=meta, **head_kwargs("r"))
    monkeypatch.setattr(image_train, "head_steps_per_execution", lambda training, n: 1)
    slow = image_train.train_image_model(data=data, meta=meta, **head_kwargs("r"))
    assert seen == [8, 1]  # 37 samples at batch 5: 8 steps, one call per epoch
    assert fast.run["epochs_run"] == slow.run["epochs_run"] == 4
    assert [r["epoch"] for r in fast.history] == [1, 2, 3, 4]
    # the same updates (seeded shuffles, dropout masks): the same per-epoch losses
    np.testing.assert_allclose(losses(fast), losses(slow), rtol=1e-5, atol=1e-6)
    assert fast.run["val_loss"] == pytest.approx(slow.run["val_loss"], rel=1e-5)
    assert fast.run["best_epoch"] == slow.run["best_epoch"]
    p_fast = [r["probabilities"] for r in fast.predictions]
    p_slow = [r["probabilities"] for r in slow.predictions]
    np.testing.assert_allclose(p_fast, p_slow, rtol=1e-4, atol=1e-6)


@pytest.mark.train
def test_heads_in_one_task_match_alone_and_a_failure_stays_its_own(tmp_path):
    import keras

    from dlpipe.tasks.images.train import train_image_model
    from dlpipe.tasks.training.grouped import train_group

    data, meta = feature_data()
    shared = {"data": data, "meta": meta}
    first = {**head_kwargs("a", seed=1), "keep_model": True}
    second = {**head_kwargs("b", seed=2, units=4, learning_rate=3e-2), "keep_model": False}
    bad = {**head_kwargs("c", dropout=1.5), "keep_model": True}
    epochs = {}

    def hook_of(run_id):
        return lambda epoch, logs: epochs.setdefault(run_id, []).append(epoch)

    grouped = train_group(train_image_model, shared, [first, bad, second], hook_of)
    assert isinstance(grouped[1], RunError)
    assert grouped[1].error.startswith("ValueError: ") and "dropout" in grouped[1].error
    a, b = grouped[0], grouped[2]
    assert a.run["run_id"] == "a" and b.run["run_id"] == "b"
    assert a.run["status"] == b.run["status"] == "ok"
    assert epochs == {"a": [1, 2, 3, 4], "b": [1, 2, 3, 4]}  # each run's own epoch reports
    assert a.model is not None and b.model is None  # each its own kept model (or none)
    path = tmp_path / "a.keras"
    path.write_bytes(a.model)
    assert keras.saving.load_model(path).count_params() == a.run["params"]
    # "b" trained after "a" and a failed run, and "b" alone: the same run
    (alone,) = train_group(train_image_model, shared, [second])
    np.testing.assert_allclose(losses(b), losses(alone), rtol=1e-6, atol=1e-7)
    assert b.run["val_loss"] == pytest.approx(alone.run["val_loss"], rel=1e-6)
    assert [r["prediction"] for r in b.predictions] == [r["prediction"] for r in alone.predictions]
    # and a run differs from another seed's (the comparison can fail)
    (other,) = train_group(train_image_model, shared, [{**second, "seed": 3}])
    assert not np.allclose(losses(other), losses(alone))


def test_a_grouped_run_that_raised_is_reported_like_a_lone_one(monkeypatch):
    import ray

    from dlpipe.pipelines.config import parse_study
    from dlpipe.pipelines.jobs import TrainingJob, job_result

    cfg = parse_study(
        {
            "study": "s",
            "pipeline": "images",
            "data": {"path": "demo:digits"},
            "models": [{"family": "features_head"}],
            "images": {"size": [32, 32], "weights": "none"},
        }
    )
    one = TrainingJob("features_head-x", cfg.models[0], 7, cfg.images, None, cfg.training)
    text = "ValueError: `dropout` must be in [0, 1). Received: dropout=1.5"
    monkeypatch.setattr(ray, "get", lambda ref: RunError(text))
    grouped = job_result(cfg, object(), one)

    def raise_it(ref):
        raise ValueError("`dropout` must be in [0, 1). Received: dropout=1.5")

    monkeypatch.setattr(ray, "get", raise_it)
    alone = job_result(cfg, object(), one)
    assert grouped.run == alone.run
    assert grouped.run["status"] == "failed" and grouped.run["error"] == text
    assert grouped.run["resources"] == {"num_cpus": 1, "num_gpus": 0, "max_retries": 1}


@pytest.mark.slow
@pytest.mark.ray
def test_study_heads_grouped_or_alone_give_the_same_runs(tmp_path):
    import json
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    from dlpipe.tasks.reports import tables as reports

    sys.path.insert(0, str(Path(__file__).parent))
    from test_image_study import flat_folder

    flat_folder(tmp_path / "flat", per_class=6, bad=False)
    runs = {}
    for group in (True, False):
        study = tmp_path / f"study-{group}.yaml"
        study.write_text(
            textwrap.dedent(f"""
            study: heads
            pipeline: images
            output_dir: out-{group}
            data: {{path: flat, counts: {{train: 3, validation: 2, test: 1}}}}
            images: {{size: [32, 32], weights: none, preprocessing: base,
                      validation_shards: 1}}
            training: {{epochs: 2, batch_size: 2}}
            resources: {{group_heads: {str(group).lower()}}}
            models:
              - {{family: features_head, hp: {{units: 8}}}}
              - {{family: features_head, hp: {{units: 4, dropout: 0.2}}}}
              - {{family: features_head, hp: {{units: 8}}, seed: 5}}
            """)
        )
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        cmd = [str(Path(sys.executable).parent / "dlpipe"), "run", str(study), "--num-cpus", "1"]
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        run_dir = tmp_path / f"out-{group}" / "heads"
        table = reports.read_table(run_dir, "runs").sort_values("run_id")
        table = table[table["family"] == "features_head"]
        assert (table["status"] == "ok").all() and len(table) == 3
        for run_id in table["run_id"]:
            assert (run_dir / "models" / f"{run_id}.keras").is_file()
        runs[group] = table
        shared = "3 runs share 1 training task(s)" in proc.stdout  # --num-cpus 1: 1 slot
        assert shared == group, proc.stdout[-3000:]
    grouped, alone = runs[True], runs[False]
    assert list(grouped["run_id"]) == list(alone["run_id"])  # the same run keys
    np.testing.assert_allclose(grouped["val_loss"], alone["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(grouped["test_loss"], alone["test_loss"], rtol=1e-5)
    assert list(grouped["epochs_run"]) == list(alone["epochs_run"])
    hp = [json.loads(h) for h in grouped["hyperparameters"]]
    assert sorted(h["units"] for h in hp) == [4, 8, 8]
