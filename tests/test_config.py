"""Study files: strict validation with errors that name the file and the field."""

import textwrap

import pytest

from dlpipe.pipelines.cli import demo_config_path
from dlpipe.pipelines.config import ConfigError, load_study, smoke_test

BASE = """
study: s1
data: {format: jena, path: DATA}
split: {train_fraction: 0.5, validation_fraction: 0.25}
windows: {lookback: 60, step: 6, delay: 12, batch_size: 32}
models:
  - {family: gru, hp: {units: 16}}
  - {family: conv_gru, step: 3}
"""


def write(tmp_path, text, data="jena.csv"):
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(text).replace("DATA", data))
    return path


def test_valid_study_loads_typed(tmp_path, jena_csv):
    cfg = load_study(write(tmp_path, BASE, jena_csv.name))
    assert cfg.windows.lookback == 60 and cfg.split.train_fraction == 0.5
    assert cfg.models[0].hp == {"units": 16} and cfg.training.epochs == 20
    assert cfg.model_windows(cfg.models[1]).step == 3  # own step, rest inherited
    assert cfg.model_windows(cfg.models[1]).lookback == 60
    assert cfg.data.path == str(jena_csv.resolve())  # relative to the study file
    smoke = smoke_test(cfg)
    assert smoke.training.epochs == 2 and smoke.training.max_batches_per_epoch == 3
    assert smoke.study == "s1-smoke"


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            ("windows: {lookback: 60,", "windows: {lookbak: 60,"),
            r"study.yaml: unknown key `windows.lookbak` \(known keys: lookback",
        ),
        (
            ("lookback: 60", "lookback: '10 days'"),
            r"`windows.lookback` must be an integer. Received: '10 days'",
        ),
        (
            ("step: 6, delay", "step: 7, delay"),
            r"`windows`: `lookback` must be a multiple of `step`",
        ),
        (("units: 16", "units: 16.5"), r"`models\[0\]`: .*`units`.*16.5"),
        (("family: gru,", "family: transformer,"), r"`models\[0\].family` must be one of dense"),
        (("study: s1\n", ""), r"missing required key `study`"),
        (("{format: jena, path:", "{format: jena, paht:"), r"unknown key `data.paht`"),
        (("{format: jena,", "{format: jenna,"), r"`data`: `format` must be one of jena, tmy3, csv"),
        (
            ("validation_fraction: 0.25", "validation_fraction: true"),
            r"`split.validation_fraction` must be a number",
        ),
    ],
)
def test_bad_study_names_the_field(tmp_path, jena_csv, edit, message):
    text = textwrap.dedent(BASE)
    assert edit[0] in text
    path = write(tmp_path, text.replace(*edit), jena_csv.name)
    with pytest.raises(ConfigError, match=message):
        load_study(path)


def test_missing_data_file_names_path(tmp_path):
    with pytest.raises(ConfigError, match=r"`data.path`: data file not found: .*nowhere.csv"):
        load_study(write(tmp_path, BASE, "nowhere.csv"))


def test_missing_study_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="study file not found"):
        load_study(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_study(bad)


def test_packaged_configs_are_valid():
    cfg = load_study(demo_config_path())
    assert cfg.data.format == "tmy3" and len(cfg.models) >= 6
    assert len({m.family for m in cfg.models}) >= 6


def test_packaged_jena_config_is_valid(tmp_path, jena_csv):
    import yaml

    from dlpipe.pipelines.cli import demo_config_path
    from dlpipe.pipelines.config import parse_study

    raw = yaml.safe_load((demo_config_path().parent / "jena.yaml").read_text())
    raw["data"]["path"] = str(jena_csv)  # the real file is not shipped
    cfg = parse_study(raw, source="jena.yaml")
    assert (cfg.windows.lookback, cfg.windows.step, cfg.windows.delay) == (1440, 6, 144)
    assert cfg.split.bounds(420_551)["train"] == [(0, 200_000)]
    assert cfg.model_windows(cfg.models[7]).step == 3  # convnet + GRU


def test_empty_study_file_says_what_it_expects(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="the study file must be a mapping of sections"):
        load_study(empty)


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".hidden", "", "a\\b"])
def test_study_name_cannot_leave_output_dir(tmp_path, jena_csv, name):
    import yaml

    from dlpipe.pipelines.config import parse_study

    raw = yaml.safe_load(textwrap.dedent(BASE).replace("DATA", str(jena_csv)))
    raw["study"] = name
    with pytest.raises(ConfigError, match="`study` must be a plain name"):
        parse_study(raw, source="s.yaml")


def test_conv_stack_input_length_checked_before_training(tmp_path, jena_csv):
    import yaml

    from dlpipe.models.registry import min_input_length, resolved_hparams
    from dlpipe.pipelines.config import parse_study

    raw = yaml.safe_load(textwrap.dedent(BASE).replace("DATA", str(jena_csv)))
    # conv1d stages conv,pool,conv,pool,conv with k=5, p=3: walked back from 1:
    # 1 +4 = 5, x3 = 15, +4 = 19, x3 = 57, +4 = 61 timesteps
    assert min_input_length("conv1d", resolved_hparams("conv1d", {})) == 61
    raw["windows"] = {"lookback": 120, "step": 2, "delay": 12}  # 60 timesteps
    raw["models"] = [{"family": "conv1d"}]
    with pytest.raises(
        ConfigError,
        match=r"`models\[0\]`: family `conv1d` needs window "
        r"timesteps .* >= 61 .*Received: 60",
    ):
        parse_study(raw, source="s.yaml")
    raw["windows"]["lookback"] = 122  # 61 timesteps: accepted
    assert parse_study(raw, source="s.yaml").models[0].family == "conv1d"
