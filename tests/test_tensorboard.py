"""TensorBoard event files (issue 16): every run's per-epoch scalars, read back with
TensorBoard's own reader, equal the ``history`` report; weight histograms on request;
run keys and sweep fingerprints ignore the setting."""

import pytest

from dlpipe.tasks.training.fit import (
    ReduceLROnPlateauSpec,
    TensorBoardSpec,
    TrainingSpec,
)
from dlpipe.tasks.training.records import record_run, run_key

from event_files import assert_events_match_history, tensors


def test_tensorboard_setting_is_no_part_of_the_run_key():
    plain = TrainingSpec(epochs=2)
    other = TrainingSpec(epochs=2, tensorboard=TensorBoardSpec(enabled=False, histogram_freq=3))
    assert run_key("k", "gru", {}, None, plain, 1) == run_key("k", "gru", {}, None, other, 1)
    with pytest.raises(ValueError, match="histogram_freq"):
        TensorBoardSpec(histogram_freq=-1)


@pytest.mark.train
def test_event_files_hold_the_history_values(tmp_path):
    from dlpipe.tasks.weather.train import train_model
    from dlpipe.tasks.weather.windows import WindowSpec
    from tests.test_train import tiny_dataset

    data, meta = tiny_dataset()
    # patience 0: the learning rate halves after any epoch that does not improve, so
    # the logged rates must follow the recorder's (the rate of the epoch that ran)
    training = TrainingSpec(
        epochs=3,
        reduce_lr_on_plateau=ReduceLROnPlateauSpec(patience=0, factor=0.5),
        tensorboard=TensorBoardSpec(histogram_freq=1),
    )
    out = train_model(
        data=data,
        meta=meta,
        family="gru",
        hp={"units": 4},
        inputs=WindowSpec(lookback=24, step=2, delay=6, batch_size=16),
        training=training,
        seed=1,
        run_id="r1",
        num_cpus=1,
        num_gpus=0,
    )
    assert set(out.tensorboard) and all(
        n.startswith(("train/", "validation/")) for n in out.tensorboard
    )
    record_run(tmp_path, out, pipeline="timeseries", study="s", dataset_key="tiny")
    assert assert_events_match_history(tmp_path) == 1
    train = tensors(tmp_path / "tensorboard" / "r1" / "train")
    # histogram_freq=1: a weight histogram per epoch, of the GRU kernel among others
    hist_tags = [t for t in train if t.endswith("/histogram")]
    assert any("gru" in t and "kernel" in t for t in hist_tags)
    assert all(sorted(train[t]) == [0, 1, 2] for t in hist_tags)


def test_rerun_replaces_a_runs_event_files(tmp_path):
    from dlpipe.tasks.training.records import write_event_files

    write_event_files(tmp_path, "r", {"train/events.a": b"1"})
    write_event_files(tmp_path, "r", {"train/events.b": b"2"})
    assert [p.name for p in (tmp_path / "tensorboard" / "r" / "train").iterdir()] == ["events.b"]
    with pytest.raises(ValueError, match="outside"):
        write_event_files(tmp_path, "r", {"../x": b"3"})


@pytest.mark.train
def test_dlpipe_tensorboard_serves_the_runs_on_localhost(tmp_path, capsys):
    import json
    import urllib.request

    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from dlpipe.pipelines.cli import main
    from dlpipe.pipelines.tensorboard import launch

    assert main(["tensorboard", str(tmp_path)]) == 2
    assert "no TensorBoard event files" in capsys.readouterr().err
    writer = EventFileWriter(str(tmp_path / "tensorboard" / "gru-abc" / "train"))
    writer.close()  # an event file holding only its version record
    url = launch(tmp_path, port=0)
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url + "data/runs", timeout=30) as reply:
        assert json.loads(reply.read()) == ["gru-abc/train"]


def test_hparams_list_every_trial_with_its_scores(tmp_path):
    import json

    import pandas as pd
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    from dlpipe.tasks.reports.hparams import write_hparams

    trials = pd.DataFrame(
        {
            "trial": [1, 2, 3],
            "run_id": ["gru-a", "lstm-b", None],
            "family": ["gru", "lstm", "gru"],
            "hyperparameters": [
                json.dumps({"units": 16, "dropout": 0.1}),
                json.dumps({"units": 32, "layers": [8, 4]}),
                json.dumps({"units": 64}),
            ],
            "val_loss": [0.31, 0.25, float("nan")],
            "val_metric": [1.2, 1.0, float("nan")],
            "status": ["ok", "ok", "failed"],
        }
    )
    root = write_hparams(tmp_path, trials)
    write_hparams(tmp_path, trials)  # a resumed sweep rewrites the same sessions

    def read(folder):
        acc = event_accumulator.EventAccumulator(str(folder))
        acc.Reload()
        return acc

    experiment = read(root).PluginTagToContent(metadata.PLUGIN_NAME)
    info = metadata.parse_experiment_plugin_data(experiment[metadata.EXPERIMENT_TAG])
    assert {h.name for h in info.hparam_infos} == {
        "family",
        "run_id",
        "status",
        "hp.units",
        "hp.dropout",
        "hp.layers",
    }
    assert [m.name.tag for m in info.metric_infos] == ["val_loss", "val_metric"]
    sessions = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert sessions == ["trial-0001", "trial-0002", "trial-0003"]
    acc = read(root / "trial-0002")
    start = metadata.parse_session_start_info_plugin_data(
        acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    )
    assert start.hparams["hp.units"].number_value == 32
    assert start.hparams["hp.layers"].string_value == "[8, 4]"
    assert start.hparams["family"].string_value == "lstm"
    loss = acc.Tensors("val_loss")
    assert len(loss) == 1 and float(
        tensor_util.make_ndarray(loss[0].tensor_proto)
    ) == pytest.approx(0.25)
    assert "val_loss" not in read(root / "trial-0003").Tags()["tensors"]  # failed: no score
