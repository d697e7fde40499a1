"""One notion of "better": the metric table and every place that compares scores
(shared cases C16, C17; the `n/a` ratio of C22)."""

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlpipe.metrics import METRICS, canonical_name, check_monitor, get_metric
from dlpipe.pipelines.config import ConfigError, load_study

from conftest import jena_like, write_jena

BIN = Path(sys.executable).parent
C16_VAL_ACCURACY = [0.542, 0.492, 0.567, 0.583, 0.575, 0.592]


def test_table_directions_match_keras_metric_directions():
    # Keras 3's callbacks in mode="auto" take the direction from the compiled metric
    # object (`_direction` "up"/"down"; "loss" is minimized): the table must agree
    import keras

    checked = 0
    for name, metric in METRICS.items():
        try:
            keras_metric = keras.metrics.get(name)
        except ValueError:  # not a Keras metric name (loss, log_loss, ...)
            continue
        if isinstance(keras_metric, type):
            keras_metric = keras_metric()
        direction = getattr(keras_metric, "_direction", None)
        if direction is None:
            continue
        assert (direction == "up") == metric.higher_is_better, name
        checked += 1
    assert checked >= 6
    assert not METRICS["loss"].higher_is_better


def test_metric_helpers_hand_worked():
    acc, mae = get_metric("val_accuracy"), get_metric("val_mae")
    assert (acc.mode, acc.sign, mae.mode, mae.sign) == ("max", -1.0, "min", 1.0)
    values = [0.5, float("nan"), 0.7, 0.7, 0.2]
    assert acc.best_index(values) == 2  # first best on ties, NaN skipped
    assert mae.best_index(values) == 4
    assert acc.best_index([float("nan")]) is None
    assert list(acc.order(values)) == [2, 3, 0, 4, 1]
    assert list(mae.order(values)) == [4, 0, 2, 3, 1]
    assert acc.is_better(0.6, 0.5) and not acc.is_better(0.5, 0.5)
    assert mae.is_better(0.4, float("nan")) and not mae.is_better(float("nan"), 0.4)
    assert acc.change_vs(0.75, 0.5) == pytest.approx(50.0)
    assert mae.change_vs(2.63, 2.994) == pytest.approx(100 * (2.63 / 2.994 - 1))
    frame = pd.DataFrame({"v": values, "trial": [5, 4, 3, 2, 1]})
    assert acc.sort(frame, "v", then=["trial"])["trial"].tolist() == [2, 3, 5, 1, 4]


def test_c22_ratio_against_a_zero_baseline_is_not_a_number():
    acc = get_metric("accuracy")
    assert math.isnan(acc.change_vs(1.0, 0.0))
    assert math.isnan(acc.change_vs(1.0, float("nan")))
    from dlpipe.pipelines.console import number as _number

    assert _number(acc.change_vs(1.0, 0.0)) == "n/a"
    assert _number(12.3456) == "12.35"


def test_c17_aliases_and_unknown_names():
    assert canonical_name("val_acc") == "val_accuracy"
    assert canonical_name("acc") == "accuracy" and canonical_name("val_loss") == "val_loss"
    assert get_metric("val_acc") is METRICS["accuracy"]
    with pytest.raises(ValueError, match="unknown metric 'val_f1'"):
        get_metric("val_f1")
    assert check_monitor("val_acc", ("loss", "accuracy"), "f") == "val_accuracy"
    with pytest.raises(
        ValueError,
        match=r"`training.early_stopping.monitor` must be one of "
        r"\['val_loss', 'loss'\].*Received: 'val_auc'",
    ):
        check_monitor("val_auc", ("loss",), "training.early_stopping.monitor")


class _Scripted:
    """Overwrites ``val_accuracy`` in the epoch logs with the C16 values and keeps a copy
    of the weights after every epoch (runs first, so every later callback sees them)."""

    def __new__(cls, values):
        import keras

        class Scripted(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.weights = []

            def on_epoch_end(self, epoch, logs=None):
                logs["val_accuracy"] = values[epoch]
                self.weights.append([w.copy() for w in self.model.get_weights()])

        return Scripted()


def _tiny_classifier():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.1),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


@pytest.mark.train
def test_c16_val_accuracy_restores_the_highest_epoch():
    from dlpipe.tasks.training.fit import (
        EarlyStoppingSpec,
        ReduceLROnPlateauSpec,
        TrainingSpec,
        callbacks,
        epoch_recorder,
    )

    training = TrainingSpec(
        epochs=6,
        early_stopping=EarlyStoppingSpec(monitor="val_accuracy", patience=10),
        reduce_lr_on_plateau=ReduceLROnPlateauSpec(
            monitor="val_accuracy", patience=1, factor=0.5, min_lr=1e-6
        ),
    )
    model = _tiny_classifier()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)).astype("float32"), (rng.random(32) > 0.5).astype("float32")
    scripted = _Scripted(C16_VAL_ACCURACY)
    recorder = epoch_recorder("c16", training.early_stopping)
    model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=6,
        batch_size=8,
        verbose=0,
        callbacks=[scripted, *callbacks(training, recorder)],
    )
    recorder.restore_best(model)

    assert len(recorder.rows) == 6  # patience 10 > 6 epochs: never stopped
    assert recorder.best_epoch == 6 and recorder.best == pytest.approx(0.592)
    for restored, kept in zip(model.get_weights(), scripted.weights[5]):
        np.testing.assert_array_equal(restored, kept)
    # ReduceLROnPlateau in "max" mode (patience 1): no improvement after epochs 2
    # (0.492 < 0.542) and 5 (0.575 < 0.583) -> the rate halves twice. The recorder
    # runs before it, so each row shows the rate that epoch trained with.
    lrs = [row["lr"] for row in recorder.rows]
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.05, 0.05, 0.05, 0.025], rtol=1e-6)


def test_c16_val_loss_keeps_the_lowest_epoch():
    from dlpipe.tasks.training.fit import EarlyStoppingSpec, epoch_recorder

    recorder = epoch_recorder("c16", EarlyStoppingSpec(monitor="val_loss"))
    recorder.set_model(_tiny_classifier())
    for epoch, value in enumerate([0.9, 0.7, 0.8, 0.7, 0.75]):
        recorder.on_epoch_begin(epoch)
        recorder.on_epoch_end(epoch, {"loss": 1.0, "val_loss": value})
    assert recorder.best_epoch == 2 and recorder.best == pytest.approx(0.7)


def _weather_study(tmp_path, training: str) -> Path:
    write_jena(tmp_path / "jena.csv", jena_like(600, seed=1))
    path = tmp_path / "study.yaml"
    path.write_text(
        textwrap.dedent(f"""
        study: c17
        output_dir: out
        data: {{format: jena, path: jena.csv}}
        split: {{train_fraction: 0.5, validation_fraction: 0.25}}
        windows: {{lookback: 12, step: 6, delay: 6, batch_size: 16}}
        training: {training}
        models:
          - {{family: dense, hp: {{units: 4}}}}
    """)
    )
    return path


@pytest.mark.parametrize(
    "training, field",
    [
        ("{early_stopping: {monitor: val_auc}}", "training.early_stopping.monitor"),
        ("{reduce_lr_on_plateau: {monitor: val_acc}}", "training.reduce_lr_on_plateau.monitor"),
    ],
)
def test_c17_unknown_monitor_is_refused_at_load(tmp_path, training, field):
    path = _weather_study(tmp_path, training)
    with pytest.raises(
        ConfigError,
        match=rf"study.yaml: `{field}` must be one of "
        r"\['val_loss', 'loss'\]",
    ):
        load_study(path)


def test_c17_val_acc_is_an_alias_in_a_text_study(tmp_path):
    from test_text_study import write_aclimdb

    write_aclimdb(tmp_path / "aclImdb", per_class=2)
    path = tmp_path / "text.yaml"
    path.write_text(
        textwrap.dedent("""
        study: c17-text
        pipeline: text
        data: {format: aclimdb, path: aclImdb}
        training: {early_stopping: {monitor: val_acc}}
        models:
          - {family: multihot_dense, hp: {units: 8}}
    """)
    )
    cfg = load_study(path)
    assert cfg.training.early_stopping.monitor == "val_accuracy"
    assert cfg.training.reduce_lr_on_plateau.monitor == "val_loss"


def test_c17_cli_exits_2_before_ray_starts(tmp_path):
    path = _weather_study(tmp_path, "{early_stopping: {monitor: val_auc}}")
    proc = subprocess.run(
        [str(BIN / "dlpipe"), "run", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "`training.early_stopping.monitor` must be one of ['val_loss', 'loss']" in lines[0]
    assert "Received: 'val_auc'" in lines[0]
    assert "ray" not in (proc.stdout + proc.stderr).lower()  # Ray never started
    assert not (tmp_path / "out").exists()
