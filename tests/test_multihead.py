"""Heads trained jointly in one compiled step (issue 17): each head as it would train
alone on the same batches, its own learning rate, callbacks, rows and kept model."""

from __future__ import annotations

import numpy as np
import pytest

from dlpipe.tasks.training.fit import (
    EarlyStoppingSpec,
    ReduceLROnPlateauSpec,
    TensorBoardSpec,
    TrainingSpec,
)
from dlpipe.tasks.training.records import RunError, RunResult

pytestmark = pytest.mark.train

SHAPE = (2, 2, 6)


def features(n=37, classes=3, seed=0):
    """Features whose class is a linear function of them (a learnable task)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *SHAPE)).astype(np.float32)
    y = (x.reshape(n, -1) @ rng.normal(size=(x[0].size, classes))).argmax(1)
    return x, y


def head(seed, units=8, dropout=0.5, lr=1e-2, classes=3):
    import keras

    from dlpipe.models.images import build_features_head

    keras.utils.set_random_seed(seed)
    return build_features_head(
        SHAPE, units=units, dropout=dropout, num_classes=classes, learning_rate=lr
    )


def plain(epochs=3, batch_size=5, **kw):
    """Training settings without callbacks that change the run (no early stopping,
    no learning-rate schedule, no event files)."""
    return TrainingSpec(
        epochs=epochs,
        batch_size=batch_size,
        early_stopping=EarlyStoppingSpec(enabled=False),
        reduce_lr_on_plateau=ReduceLROnPlateauSpec(enabled=False),
        tensorboard=TensorBoardSpec(enabled=False),
        **kw,
    )


def test_epoch_order_is_a_seeded_permutation():
    from dlpipe.tasks.training.multihead import epoch_order

    a = epoch_order(0, 1, 37)
    assert sorted(a) == list(range(37)) and a.dtype == np.int32
    assert np.array_equal(a, epoch_order(0, 1, 37))
    assert not np.array_equal(a, epoch_order(0, 2, 37))  # a new order every epoch
    assert not np.array_equal(a, epoch_order(1, 1, 37))


def test_one_head_jointly_equals_keras_fit_on_the_same_batches():
    """A second method: Keras ``fit`` (its RMSprop, its train step) on the batches the
    joint trainer draws, one epoch at a time without shuffling."""
    from dlpipe.tasks.training.multihead import epoch_order, fit_heads, uses_fused_rmsprop

    x, y = features()
    training = plain(epochs=3)
    joint = head(seed=4)
    assert uses_fused_rmsprop(joint.optimizer)  # the fused kernel is what is compared
    (rec,) = fit_heads([joint], x, y, (x[:9], y[:9]), training=training, run_ids=["a"])
    ref = head(seed=4)
    ref_loss = []
    for epoch in range(3):
        order = epoch_order(0, epoch, len(x))
        h = ref.fit(x[order], y[order], batch_size=5, epochs=1, shuffle=False, verbose=0)
        ref_loss.append(h.history["loss"][0])
    for a, b in zip(joint.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose([r["loss"] for r in rec.rows], ref_loss, rtol=1e-4)
    val_loss, val_acc = ref.evaluate(x[:9], y[:9], batch_size=5, verbose=0)
    assert rec.rows[-1]["val_loss"] == pytest.approx(val_loss, rel=1e-4)
    assert rec.rows[-1]["val_metric"] == pytest.approx(val_acc)
    assert [r["epoch"] for r in rec.rows] == [1, 2, 3]
    assert int(joint.optimizer.iterations.numpy()) == 3 * 8  # ceil(37 / 5) updates an epoch
    # the comparison can fail: another seed's head differs
    other = head(seed=5)
    fit_heads([other], x, y, None, training=training, run_ids=["b"])
    assert not np.allclose(other.get_weights()[0], joint.get_weights()[0])


def test_heads_together_train_as_each_alone_with_their_own_learning_rates():
    from dlpipe.tasks.training.multihead import fit_heads

    x, y = features()
    training = plain(epochs=4)
    frozen = head(seed=1, lr=0.0)  # lr 0: keeps its initial weights
    fast = head(seed=2, units=4, dropout=0.2, lr=3e-2)
    slow = head(seed=3, lr=1e-3)
    start = frozen.get_weights()
    recs = fit_heads([frozen, fast, slow], x, y, (x, y), training=training, run_ids=list("fas"))
    for a, b in zip(frozen.get_weights(), start):
        np.testing.assert_array_equal(a, b)
    assert len({r["loss"] for r in recs[0].rows}) > 1  # dropout: its loss still varies
    # each head's loss decreases; the faster learning rate learns faster
    for rec in recs[1:]:
        assert rec.rows[-1]["loss"] < rec.rows[0]["loss"]
    assert recs[1].rows[-1]["loss"] < recs[2].rows[-1]["loss"]
    assert [r["lr"] for r in recs[1].rows] == pytest.approx([3e-2] * 4)
    # a head's gradients are its own loss's: trained alone on the same batches, the
    # same weights
    fast_alone = head(seed=2, units=4, dropout=0.2, lr=3e-2)
    (alone,) = fit_heads([fast_alone], x, y, (x, y), training=training, run_ids=["a"])
    for a, b in zip(fast.get_weights(), fast_alone.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert [r["val_loss"] for r in recs[1].rows] == pytest.approx(
        [r["val_loss"] for r in alone.rows], rel=1e-5
    )


def test_each_head_stops_on_its_own_and_keeps_its_best_epoch():
    from dlpipe.tasks.training.multihead import fit_heads

    x, y = features()
    training = TrainingSpec(
        epochs=5,
        batch_size=5,
        early_stopping=EarlyStoppingSpec(patience=1),
        reduce_lr_on_plateau=ReduceLROnPlateauSpec(patience=1, factor=0.5),
    )
    frozen = head(seed=1, lr=0.0, dropout=0.0)  # val_loss never improves after epoch 1
    learner = head(seed=2, lr=1e-2)
    epochs = []
    recs = fit_heads(
        [frozen, learner],
        x,
        y,
        (x, y),
        training=training,
        run_ids=["f", "l"],
        epoch_hooks=[lambda e, logs: epochs.append(("f", e)), None],
    )
    assert [r["epoch"] for r in recs[0].rows] == [1, 2]  # patience 1: stops after epoch 2
    assert epochs == [("f", 1), ("f", 2)]
    assert recs[0].best_epoch == 1
    assert len(recs[1].rows) > 2  # the other head went on
    assert recs[1].rows[-1]["loss"] < recs[1].rows[0]["loss"]
    # ReduceLROnPlateau acted on the frozen head only: its lr halved after epoch 2
    assert float(frozen.optimizer.learning_rate.numpy()) == 0.0
    assert recs[0].tensorboard and recs[1].tensorboard  # each its own event files
    # the learner holds its best epoch's weights (restore_best_weights)
    best = recs[1].best_epoch
    assert recs[1].rows[best - 1]["val_loss"] == min(r["val_loss"] for r in recs[1].rows)


# ------------------------------------------------------------- the images trainer


def image_data(n_train=37, n_val=11, n_test=9):
    x, y = features(n_train + n_val + n_test)
    split = np.repeat([0, 1, 2], [n_train, n_val, n_test])
    data = {"features": x, "labels": y, "split": split, "paths": np.array([""] * len(y))}
    meta = {"num_classes": 3, "feature_shape": list(SHAPE), "weights_used": "t"}
    return data, meta


def run_kwargs(run_id, seed, joint=True, **hp):
    from dlpipe.tasks.images.prepare import ImageSpec

    return {
        "family": "features_head",
        "hp": {"units": 8, "dropout": 0.5, "learning_rate": 1e-2, **hp},
        "inputs": ImageSpec(size=(32, 32), weights="none"),
        "training": TrainingSpec(epochs=3, batch_size=5, joint_heads=joint),
        "seed": seed,
        "run_id": run_id,
    }


def test_grouped_heads_train_jointly_each_with_its_rows_and_kept_model(tmp_path):
    import keras

    from dlpipe.tasks.images.heads import train_heads_jointly
    from dlpipe.tasks.images.train import train_image_model
    from dlpipe.tasks.training.grouped import train_group

    data, meta = image_data()
    shared = {"data": data, "meta": meta}
    runs = [
        {**run_kwargs("a", 1), "keep_model": True},
        {**run_kwargs("bad", 2, dropout=1.5), "keep_model": True},
        {**run_kwargs("b", 3, units=4, learning_rate=3e-2), "keep_model": True},
        {**run_kwargs("seq", 4, joint=False), "keep_model": False},  # not joint
    ]
    seen = {}

    def hook_of(run_id):
        return lambda epoch, logs: seen.setdefault(run_id, []).append(epoch)

    out = train_group(train_image_model, shared, runs, hook_of, train_heads_jointly)
    a, bad, b, seq = out
    assert isinstance(bad, RunError) and bad.error.startswith("ValueError: ")
    assert all(isinstance(r, RunResult) for r in (a, b, seq))
    assert a.run["inputs"]["joint_heads"] == {"heads": 2, "shuffle_seed": 0}
    assert "joint_heads" not in seq.run["inputs"]  # trained alone, one after another
    assert seen == {"a": [1, 2, 3], "b": [1, 2, 3], "seq": [1, 2, 3]}
    assert set(a.run) == set(seq.run)  # the same runs columns
    assert set(a.history[0]) == set(seq.history[0])
    assert a.run["epochs_run"] == 3 and a.run["status"] == "ok"
    assert a.tensorboard  # the study default: event files
    # the kept model is a plain features_head that predicts the scored values
    path = tmp_path / "b.keras"
    path.write_bytes(b.model)
    loaded = keras.saving.load_model(path)
    assert loaded.count_params() == b.run["params"] and seq.model is None
    test = np.flatnonzero(data["split"] == 2)
    prob = loaded.predict(data["features"][test], verbose=0)
    scored = [r["probabilities"] for r in b.predictions if r["split"] == "test"]
    np.testing.assert_allclose(prob, scored, rtol=1e-5, atol=1e-6)
    from dlpipe.ensembles.metrics import accuracy

    assert b.run["test_metric"] == pytest.approx(accuracy(data["labels"][test], prob))
    # a lone run with joint_heads trains through the joint trainer: the same results
    # as in its group (its result does not depend on its group-mates)
    alone = train_image_model(
        data=data, meta=meta, **run_kwargs("b", 3, units=4, learning_rate=3e-2)
    )
    assert alone.run["val_loss"] == pytest.approx(b.run["val_loss"], rel=1e-5)
    assert alone.run["inputs"]["joint_heads"]["heads"] == 1
    with pytest.raises(ValueError, match="dropout"):
        train_image_model(data=data, meta=meta, **run_kwargs("bad", 2, dropout=1.5))


def test_joint_heads_is_in_the_run_key_only_when_on():
    from dlpipe.tasks.training.records import run_key

    base = run_key("d", "features_head", {}, None, TrainingSpec(), 0)
    assert base == run_key("d", "features_head", {}, None, TrainingSpec(joint_heads=False), 0)
    assert base != run_key("d", "features_head", {}, None, TrainingSpec(joint_heads=True), 0)
    with pytest.raises(ValueError, match="joint_heads"):
        TrainingSpec(joint_heads="yes")


@pytest.mark.slow
@pytest.mark.ray
def test_a_study_trains_its_heads_jointly_through_ray(tmp_path):
    """``dlpipe run`` with ``training.joint_heads``: the heads of one task train in one
    joint step (their ``inputs`` say so), each with its row, kept model and history."""
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
    study = tmp_path / "study.yaml"
    study.write_text(
        textwrap.dedent("""
        study: heads
        pipeline: images
        output_dir: out
        data: {path: flat, counts: {train: 3, validation: 2, test: 1}}
        images: {size: [32, 32], weights: none, preprocessing: base, validation_shards: 1}
        training: {epochs: 2, batch_size: 2, joint_heads: true}
        models:
          - {family: features_head, hp: {units: 8}}
          - {family: features_head, hp: {units: 4, dropout: 0.2}}
          - {family: features_head, hp: {units: 8}, seed: 5}
        """)
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [str(Path(sys.executable).parent / "dlpipe"), "run", str(study), "--num-cpus", "1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3 runs share 1 training task(s)" in proc.stdout
    run_dir = tmp_path / "out" / "heads"
    table = reports.read_table(run_dir, "runs")
    table = table[table["family"] == "features_head"]
    assert (table["status"] == "ok").all() and len(table) == 3
    for inputs in table["inputs"]:
        assert json.loads(inputs)["joint_heads"] == {"heads": 3, "shuffle_seed": 0}
    history = reports.read_table(run_dir, "history")
    for run_id in table["run_id"]:
        assert (run_dir / "models" / f"{run_id}.keras").is_file()
        assert list(history[history["run_id"] == run_id]["epoch"]) == [1, 2]


def test_an_optimizer_other_than_plain_rmsprop_applies_itself():
    """Adam (and RMSprop with momentum) are not the fused kernel's: each applies its own
    update inside the joint step, as in ``fit`` on the same batches."""
    import keras

    from dlpipe.tasks.training.multihead import epoch_order, fit_heads, uses_fused_rmsprop

    x, y = features()

    def adam_head():
        model = head(seed=7, dropout=0.0)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=model.loss)
        return model

    joint, ref = adam_head(), adam_head()
    assert not uses_fused_rmsprop(joint.optimizer)
    assert not uses_fused_rmsprop(keras.optimizers.RMSprop(momentum=0.9))
    fit_heads([joint, head(seed=8)], x, y, None, training=plain(epochs=2), run_ids=["j", "r"])
    for epoch in range(2):
        order = epoch_order(0, epoch, len(x))
        ref.fit(x[order], y[order], batch_size=5, epochs=1, shuffle=False, verbose=0)
    assert int(joint.optimizer.iterations.numpy()) == 16
    for a, b in zip(joint.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
