"""Study files: YAML validated into typed, frozen config objects.

A study file maps onto its kind's config class (``pipeline:`` picks the kind in
:data:`dlpipe.pipelines.kinds.KINDS`); every section is a dataclass of the task
that uses it (:class:`~dlpipe.tasks.weather.read.DataSpec`,
:class:`~dlpipe.tasks.weather.prepare.SplitSpec`, :class:`~dlpipe.tasks.weather.windows.WindowSpec`,
:class:`~dlpipe.tasks.weather.train.TrainingSpec`). Validation is strict: an unknown key, a
wrong type, a bad value or a missing data file is a :class:`ConfigError` whose message
names the file and the dotted field (``demo.yaml: `windows.lookback` must be an
integer. Received: '10 days'``).

Relative data paths are resolved against the study file's folder.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import replace
from pathlib import Path

import yaml

from dlpipe.pipelines.kinds import KINDS, get_kind
from dlpipe.pipelines.kinds.images import ImageStudyConfig
from dlpipe.pipelines.kinds.text import TextStudyConfig
from dlpipe.pipelines.kinds.timeseries import TimeseriesStudyConfig
from dlpipe.pipelines.sections import (
    ConfigError,
    EarlyStoppingSpec,
    EnsembleSpec,
    ModelSpec,
    ReduceLROnPlateauSpec,
    ResourcesSpec,
    SchedulerSpec,
    StudyCommon,
    SweepSpec,
    TrainingSpec,
)

SMOKE_EPOCHS = 2
SMOKE_BATCHES = 3


#: fields set by the loader, never by a study file
_INTERNAL_FIELDS = ("source_file",)

_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "a boolean",
    dict: "a mapping",
}


def _convert(tp, value, where: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if hasattr(tp, "from_study"):  # a section with its own study-file syntax
        return tp.from_study(value, where)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"`{where}` must be a list. Received: {value!r}")
        (item,) = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"`{where}` must be a mapping. Received: {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in _TYPE_NAMES:
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise ConfigError(f"`{where}` must be {_TYPE_NAMES[tp]}. Received: {value!r}")
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        if not where:
            raise ConfigError(
                "the study file must be a mapping of sections (study, data, "
                f"split, windows, models, ...). Received: {data!r}"
            )
        raise ConfigError(f"`{where}` must be a mapping. Received: {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _INTERNAL_FIELDS}
    prefix = f"{where}." if where else ""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key `{prefix}{unknown[0]}` (known keys: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{prefix}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key `{prefix}{name}`")
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"`{where or 'study'}`: {exc}") from exc


def parse_study(raw: dict, *, source: str = "<study>", base_dir: Path | None = None) -> StudyCommon:
    """Validate a study mapping (parsed YAML) into its kind's config class.

    Args:
        raw: the mapping.
        source: file name used in error messages.
        base_dir: folder that relative ``data.path`` values are resolved against.

    Raises:
        ConfigError: unknown key, wrong type, bad value, unknown model family or
            hyperparameter, or missing data file; the message names ``source`` and the
            dotted field.
    """
    try:
        pipeline = raw.get("pipeline", "timeseries") if isinstance(raw, dict) else "timeseries"
        if pipeline not in KINDS:
            raise ConfigError(
                f"`pipeline` must be one of {', '.join(KINDS)}. Received: {pipeline!r}"
            )
        kind = KINDS[pipeline]
        cfg = _build(kind.config_class, raw, "")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", cfg.study) or ".." in cfg.study:
            raise ConfigError(
                "`study` must be a plain name (letters, digits, '.', '_', '-'; no path "
                "separators or '..'): it names the folder <output_dir>/<study>. "
                f"Received: {cfg.study!r}"
            )
        if not cfg.models:
            raise ConfigError("`models` must list at least one model")
        cfg = replace(kind.resolve_paths(cfg, base_dir), source_file=source)
        _check_models(cfg)
        kind.check_evaluation(cfg)
        return _check_monitors(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _check_monitors(cfg):
    """The callbacks' ``monitor`` names checked against what the study kind's models
    log (:meth:`~dlpipe.pipelines.kinds.base.StudyKind.logged_metrics`), before anything
    runs (shared case C17); the first-edition alias ``val_acc`` becomes ``val_accuracy``."""
    from dlpipe.metrics import check_monitor

    logged = get_kind(cfg).logged_metrics()
    training = cfg.training
    try:
        es = replace(
            training.early_stopping,
            monitor=check_monitor(
                training.early_stopping.monitor, logged, "training.early_stopping.monitor"
            ),
        )
        rl = replace(
            training.reduce_lr_on_plateau,
            monitor=check_monitor(
                training.reduce_lr_on_plateau.monitor,
                logged,
                "training.reduce_lr_on_plateau.monitor",
            ),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return replace(cfg, training=replace(training, early_stopping=es, reduce_lr_on_plateau=rl))


def _check_models(cfg: StudyCommon) -> None:
    """Every model's family, hyperparameters and input length, the kind's own model
    checks, and the sweep's search spaces (before any data is read)."""
    from dlpipe.tasks.training.tf_setup import quiet_native_stderr

    kind = get_kind(cfg)
    with quiet_native_stderr():  # the registry imports Keras; no TF op runs here (C13)
        from dlpipe.models.registry import resolved_hparams

        families = kind.families()
    for i, model in enumerate(cfg.models):
        if model.family not in families:
            raise ConfigError(
                f"`models[{i}].family` must be one of {', '.join(families)}. "
                f"Received: {model.family!r}"
            )
        kind.check_model(cfg, i, model)
        try:
            hp = resolved_hparams(model.family, model.hp, cfg.pipeline)
            cfg.model_inputs(model)
            _check_input_length(cfg, model, hp, i)
        except ValueError as exc:
            raise ConfigError(f"`models[{i}]`: {exc}") from None
    sweep_spaces(cfg)  # raises ConfigError naming `sweep....`


def _check_input_length(cfg, model: ModelSpec, hp: dict, i: int) -> None:
    """A conv/pool stack gets at least the input length it needs (the family's
    ``min_input_length``), before any model is built."""
    from dlpipe.models.registry import get_family

    needed = get_family(model.family, cfg.pipeline).min_input_length(hp)
    length = get_kind(cfg).input_length(cfg, model)
    if needed is None or length is None:
        return
    have, what = length
    if have < needed:
        raise ConfigError(
            f"`models[{i}]`: family `{model.family}` needs {what} >= {needed} for its "
            f"conv/pool stack (kernel_size={hp['kernel_size']}, pool_size="
            f"{hp['pool_size']}). Received: {have}"
        )


def sweep_spaces(cfg: StudyCommon) -> dict[str, dict]:
    """The validated search space of every swept family (C12: one-value ranges become
    constants), checked against the family's hyperparameters and the warm starts.

    Raises:
        ConfigError: unknown family or hyperparameter, malformed space, bad warm start.
    """
    from dlpipe.models.spaces import get_spaces
    from dlpipe.tasks.sweep.space import SpaceError, is_leaf, validate_space, warm_start_point

    known_families, default_spaces = get_kind(cfg).families(), get_spaces(cfg.pipeline)
    sweep = cfg.sweep
    families = sweep.families or tuple(dict.fromkeys(m.family for m in cfg.models))
    unknown = [f for f in list(families) + list(sweep.spaces) if f not in known_families]
    if unknown:
        raise ConfigError(
            f"`sweep.families`/`sweep.spaces`: unknown family `{unknown[0]}` "
            f"(known: {', '.join(known_families)})"
        )
    spaces = {}
    for family in families:
        where = f"sweep.spaces.{family}"
        try:
            space = validate_space(sweep.spaces.get(family, default_spaces[family]), where)
        except SpaceError as exc:
            raise ConfigError(str(exc)) from None
        known = known_families[family].param_types
        for name in _space_names(space, is_leaf):
            if name not in known:
                raise ConfigError(
                    f"`{where}`: `{name}` is not a hyperparameter of "
                    f"`{family}` (known: {', '.join(known)})"
                )
        spaces[family] = space
    for i, point in enumerate(sweep.warm_start):
        try:
            warm_start_point(spaces, point)
        except SpaceError as exc:
            raise ConfigError(f"`sweep.warm_start[{i}]`: {exc}") from None
    return spaces


def _space_names(space: dict, is_leaf) -> set[str]:
    """Every hyperparameter name a space can set (all branches of its choices)."""
    names = set()
    for key, node in space.items():
        if is_leaf(node) and "choice" in node and any(isinstance(o, dict) for o in node["choice"]):
            for option in node["choice"]:
                names |= _space_names(option, is_leaf) if isinstance(option, dict) else {key}
        elif isinstance(node, dict) and not is_leaf(node):
            names |= _space_names(node, is_leaf)
        else:
            names.add(key)
    return names


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML 1.2 says
    keys are unique; PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML's own error follows
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise ConfigError(
                    f"line {line}: duplicated key `{key}` (first given on line "
                    f"{first}); a key may appear once in a mapping"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_study_file(path: str | Path):
    """The parsed YAML of a study file.

    Raises:
        ConfigError: one line naming the file when it is missing, a directory, not
            readable, not UTF-8 text (binary), not YAML, or holds a key twice in one
            mapping (naming both lines).
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, not a study file (give the .yaml file)")
    if not p.is_file():
        raise ConfigError(f"study file not found: {p}")
    try:
        payload = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = payload[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{p}: line {line}: not UTF-8 text (byte 0x{payload[exc.start]:02x} "
            "at offset "
            f"{exc.start}); a study file is a UTF-8 YAML file"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{p}: is a binary file (NUL bytes), not a YAML study file")
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {' '.join(str(exc).split())}") from None


def load_study(path: str | Path) -> StudyCommon:
    """Read and validate a study YAML file.

    Raises:
        ConfigError: the file is missing, a directory, binary or not UTF-8, is not
            YAML, holds a duplicated key, or fails validation.
    """
    p = Path(path)
    return parse_study(read_study_file(p), source=str(p), base_dir=p.parent)


def smoke_test(cfg: StudyCommon) -> StudyCommon:
    """The same study in smoke mode: at most 2 epochs of at most 3 batches, and every
    evaluated split capped at 3 batches, written under ``<study>-smoke``."""
    training = replace(
        cfg.training,
        epochs=min(cfg.training.epochs, SMOKE_EPOCHS),
        max_batches_per_epoch=SMOKE_BATCHES,
    )
    return replace(cfg, training=training, study=f"{cfg.study}-smoke")


__all__ = [
    "ConfigError",
    "EnsembleSpec",
    "SweepSpec",
    "SchedulerSpec",
    "ModelSpec",
    "ResourcesSpec",
    "StudyCommon",
    "TimeseriesStudyConfig",
    "TextStudyConfig",
    "ImageStudyConfig",
    "load_study",
    "parse_study",
    "smoke_test",
    "EarlyStoppingSpec",
    "ReduceLROnPlateauSpec",
    "TrainingSpec",
    "sweep_spaces",
]
