"""Study files: YAML validated into typed, frozen config objects.

A study file maps onto :class:`StudyConfig`; every section is a dataclass of the task
that uses it (:class:`~dlpipe.tasks.weather.data.DataSpec`,
:class:`~dlpipe.tasks.weather.data.SplitSpec`, :class:`~dlpipe.tasks.weather.windows.WindowSpec`,
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
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from dlpipe.tasks.images.prepare import DEMO_PREFIX, ImageDataSpec, ImageSpec
from dlpipe.tasks.text.prepare import TextDataSpec, TextSpec, TextSplitSpec, resolve_text_path
from dlpipe.tasks.training.fit import EarlyStoppingSpec, ReduceLROnPlateauSpec, TrainingSpec
from dlpipe.tasks.weather.data import DataSpec, SplitSpec, resolve_path
from dlpipe.tasks.weather.windows import WindowSpec

SMOKE_EPOCHS = 2
SMOKE_BATCHES = 3


class ConfigError(ValueError):
    """A study file is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class ResourcesSpec:
    """Ray resources of each training task (``num_gpus`` may be fractional)."""

    num_cpus: float = 1
    num_gpus: float = 0
    max_retries: int = 1


@dataclass(frozen=True)
class EnsembleSpec:
    """The study's closing ensemble stage (issue 4, book ch. 7.3.3), off by default.

    Attributes:
        enabled: build ensembles of the study's models after training.
        loss: loss the weights are fitted and the methods compared with, in the
            target's units (``mae``, ``mse``, ``log_loss``, ``accuracy``).
        n_folds: cross-fitting folds on the validation samples (>= 2).
        align: ``exact`` (every model predicts the same sample ids) or ``common`` (use
            the sample ids all models predict, e.g. when a model has its own ``step``).
    """

    enabled: bool = False
    loss: str = "mae"
    n_folds: int = 5
    align: str = "exact"

    def __post_init__(self):
        from dlpipe.ensembles import LOSSES
        from dlpipe.tasks.ensembling.members import ALIGN_MODES

        if self.loss not in LOSSES:
            raise ValueError(
                f"`loss` must be one of {', '.join(LOSSES)}. Received: loss={self.loss!r}"
            )
        if isinstance(self.n_folds, bool) or not isinstance(self.n_folds, int) or self.n_folds < 2:
            raise ValueError(
                f"`n_folds` must be an integer >= 2. Received: n_folds={self.n_folds!r}"
            )
        if self.align not in ALIGN_MODES:
            raise ValueError(
                f"`align` must be one of {', '.join(ALIGN_MODES)}. Received: align={self.align!r}"
            )


@dataclass(frozen=True)
class SchedulerSpec:
    """Early termination of unpromising trials: ASHA (Li et al. 2020, "A System for
    Massively Parallel Hyperparameter Tuning"), on top of per-trial EarlyStopping.

    Attributes:
        type: ``asha``.
        grace_period: epochs every trial runs before it can be stopped.
        reduction_factor: keep the best ``1/reduction_factor`` at each rung.
    """

    type: str = "asha"
    grace_period: int = 2
    reduction_factor: int = 3

    def __post_init__(self):
        if self.type != "asha":
            raise ValueError(f"`type` must be 'asha'. Received: type={self.type!r}")
        if self.grace_period < 1 or self.reduction_factor < 2:
            raise ValueError(
                "`grace_period` must be >= 1 and `reduction_factor` >= 2. "
                f"Received: {self.grace_period}, {self.reduction_factor}"
            )


@dataclass(frozen=True)
class SweepSpec:
    """A hyperparameter sweep (book ch. 7.3.2): Hyperopt's TPE through Ray Tune.

    Attributes:
        families: families searched (a ``family`` choice when several); default: the
            families of ``models``.
        spaces: family -> search space replacing that family's default space
            (:mod:`dlpipe.models.spaces` documents the format).
        num_trials: trials in all (a resumed sweep ends with exactly this many).
        max_concurrent_trials: trials running at once.
        searcher: ``tpe`` or ``random`` (random search: every trial is drawn at random).
        n_initial_points: random trials before TPE starts modelling.
        seed: seed of the searcher (default: the study's ``seed``); an int (case C11).
        time_budget_s: stop proposing new trials after this many seconds.
        warm_start: configurations evaluated first (``{family: ..., <hp>: value}``).
        scheduler: optional ASHA early termination.
        test_top_k: the best K configurations are scored once on the test split.
        max_failures: retries of a trial after a worker/node loss or an error (Ray
            Tune's ``FailureConfig(max_failures=...)``); the retry keeps the trial's
            number and run key, so reports hold one row per trial. ``0``: a failed
            trial is recorded as failed at once.
    """

    families: tuple[str, ...] = ()
    spaces: dict = field(default_factory=dict)
    num_trials: int = 20
    max_concurrent_trials: int = 2
    searcher: str = "tpe"
    n_initial_points: int = 5
    seed: int | None = None
    time_budget_s: float | None = None
    warm_start: tuple[dict, ...] = ()
    scheduler: SchedulerSpec | None = None
    test_top_k: int = 3
    max_failures: int = 0

    def __post_init__(self):
        if self.max_failures < 0:
            raise ValueError(f"`max_failures` must be >= 0. Received: {self.max_failures}")
        if self.searcher not in ("tpe", "random"):
            raise ValueError(
                f"`searcher` must be 'tpe' or 'random'. Received: searcher={self.searcher!r}"
            )
        for name in ("num_trials", "max_concurrent_trials", "n_initial_points", "test_top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {getattr(self, name)}")


@dataclass(frozen=True)
class ModelSpec:
    """One model to train: a registry family, hyperparameters over its defaults, and
    optionally its own window ``step`` (the book's convnet+GRU runs at half the step)."""

    family: str
    hp: dict = field(default_factory=dict)
    step: int | None = None
    seed: int | None = None


@dataclass(frozen=True, kw_only=True)
class StudyCommon:
    """The sections every study has, whatever its data (keyword-only fields)."""

    pipeline: str = "timeseries"
    seed: int = 42
    output_dir: str = "runs"
    training: TrainingSpec = field(default_factory=TrainingSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    ensemble: EnsembleSpec = field(default_factory=EnsembleSpec)
    sweep: SweepSpec = field(default_factory=SweepSpec)
    source_file: str = ""

    @property
    def run_dir(self) -> Path:
        """``<output_dir>/<study>``: reports, plots and cached artifacts of the study."""
        return Path(self.output_dir) / self.study


@dataclass(frozen=True)
class StudyConfig(StudyCommon):
    """A weather (timeseries) study (see ``configs/demo_weather.yaml``)."""

    study: str
    data: DataSpec
    split: SplitSpec
    windows: WindowSpec
    models: tuple[ModelSpec, ...]

    def model_windows(self, model: ModelSpec) -> WindowSpec:
        """The window geometry of one model (its own ``step`` if it has one)."""
        return self.windows if model.step is None else replace(self.windows, step=model.step)

    def model_inputs(self, model: ModelSpec) -> WindowSpec:
        """What one model sees: its windows."""
        return self.model_windows(model)

    @property
    def inputs(self) -> WindowSpec:
        """The study's input geometry (what sweep trials see): ``windows``."""
        return self.windows


@dataclass(frozen=True)
class TextStudyConfig(StudyCommon):
    """A text classification study (see ``configs/demo_text.yaml``, ``configs/imdb.yaml``)."""

    study: str
    data: TextDataSpec
    models: tuple[ModelSpec, ...]
    split: TextSplitSpec = field(default_factory=TextSplitSpec)
    text: TextSpec = field(default_factory=TextSpec)

    def model_inputs(self, model: ModelSpec) -> TextSpec:
        """What one model sees: the ``text`` settings (same for every model)."""
        return self.text

    @property
    def inputs(self) -> TextSpec:
        """The study's input geometry (what sweep trials see): ``text``."""
        return self.text


@dataclass(frozen=True)
class ImageStudyConfig(StudyCommon):
    """An image-folder classification study (see ``configs/demo_images.yaml``,
    ``configs/dogs_vs_cats.yaml``). The split settings are part of ``data``."""

    study: str
    data: ImageDataSpec
    models: tuple[ModelSpec, ...]
    images: ImageSpec = field(default_factory=ImageSpec)

    def model_inputs(self, model: ModelSpec) -> ImageSpec:
        """What one model sees: the ``images`` settings (same for every model)."""
        return self.images

    @property
    def inputs(self) -> ImageSpec:
        """The study's input geometry (what sweep trials see): ``images``."""
        return self.images

    @property
    def split(self) -> ImageDataSpec:
        """The split settings (counts, mode, seed) live in ``data`` (sweep fingerprint)."""
        return self.data


#: ``pipeline:`` value -> its study class.
STUDY_CLASSES = {"timeseries": StudyConfig, "text": TextStudyConfig, "images": ImageStudyConfig}


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


def parse_study(raw: dict, *, source: str = "<study>", base_dir: Path | None = None) -> StudyConfig:
    """Validate a study mapping (parsed YAML) into a :class:`StudyConfig`.

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
        if pipeline not in STUDY_CLASSES:
            raise ConfigError(
                f"`pipeline` must be one of {', '.join(STUDY_CLASSES)}. Received: {pipeline!r}"
            )
        cfg = _build(STUDY_CLASSES[pipeline], raw, "")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", cfg.study) or ".." in cfg.study:
            raise ConfigError(
                "`study` must be a plain name (letters, digits, '.', '_', '-'; no path "
                "separators or '..'): it names the folder <output_dir>/<study>. "
                f"Received: {cfg.study!r}"
            )
        if not cfg.models:
            raise ConfigError("`models` must list at least one model")
        data = _resolve_data(cfg, base_dir)
        cfg = replace(cfg, data=data, source_file=source)
        _check_models(cfg)
        return _check_monitors(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _check_monitors(cfg):
    """The callbacks' ``monitor`` names checked against what the study kind's models
    log (:data:`dlpipe.models.registry.LOGGED_METRICS`), before anything runs (shared
    case C17); the first-edition alias ``val_acc`` becomes ``val_accuracy``."""
    from dlpipe.metrics import check_monitor
    from dlpipe.models.registry import LOGGED_METRICS

    logged = LOGGED_METRICS[cfg.pipeline]
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


def _resolve_data(cfg, base_dir: Path | None):
    """``data.path`` resolved against the study file's folder; it must exist."""
    if cfg.pipeline == "images":
        return _resolve_images(cfg, base_dir)
    data = cfg.data
    packaged = data.path.startswith("pvlib:") or (
        cfg.pipeline != "timeseries"
        and ":" in data.path
        and not Path(data.path).exists()
        and len(data.path.split(":", 1)[0]) > 1
    )
    if base_dir is not None and not packaged and not Path(data.path).expanduser().is_absolute():
        data = replace(data, path=str((base_dir / data.path).resolve()))
    try:
        (resolve_path if cfg.pipeline == "timeseries" else resolve_text_path)(data.path)
    except FileNotFoundError as exc:
        raise ConfigError(f"`data.path`: {exc}") from exc
    if cfg.pipeline == "text" and cfg.text.glove:
        glove = cfg.text.glove
        if base_dir is not None and not Path(glove).expanduser().is_absolute():
            glove = str((base_dir / glove).resolve())
        if not Path(glove).expanduser().is_file():
            raise ConfigError(
                f"`text.glove`: GloVe file not found: {cfg.text.glove} (resolved to {glove})"
            )
        object.__setattr__(cfg, "text", replace(cfg.text, glove=glove))
    return data


def _resolve_images(cfg, base_dir: Path | None):
    """Image studies: ``data.path`` (a folder, or ``demo:<source>`` written at run
    time under ``<output_dir>/<study>/artifacts/demo_source``), a local
    ``images.weights`` file and a local ``images.cache_root``, resolved against the
    study file's folder."""
    from dlpipe.tasks.images.demo import DEMO_SOURCES

    def resolve(path: str) -> str:
        p = Path(path).expanduser()
        return (
            str((base_dir / p).resolve())
            if base_dir is not None and not p.is_absolute()
            else str(p)
        )

    data, images = cfg.data, cfg.images
    if data.path.startswith(DEMO_PREFIX):
        if data.path[len(DEMO_PREFIX) :] not in DEMO_SOURCES:
            raise ConfigError(
                f"`data.path`: demo source must be one of "
                f"{', '.join(DEMO_PREFIX + k for k in DEMO_SOURCES)}. "
                f"Received: {data.path!r}"
            )
    else:
        data = replace(data, path=resolve(data.path))
        if not Path(data.path).is_dir():
            raise ConfigError(
                f"`data.path`: image folder not found: {cfg.data.path} (resolved to {data.path})"
            )
    if images.weights not in ("imagenet", "none"):
        weights = resolve(images.weights)
        if not Path(weights).is_file():
            raise ConfigError(
                f"`images.weights`: weights file not found: {images.weights} "
                f"(resolved to {weights}); use 'imagenet', 'none' or a "
                ".h5/.keras file"
            )
        images = replace(images, weights=weights)
    if images.cache_root and "://" not in images.cache_root:
        images = replace(images, cache_root=resolve(images.cache_root))
    object.__setattr__(cfg, "images", images)
    return data


def _check_models(cfg: StudyConfig) -> None:
    from dlpipe.tasks.training.tf_setup import quiet_native_stderr

    with quiet_native_stderr():  # the registry imports Keras; no TF op runs here (C13)
        from dlpipe.models.registry import get_families, resolved_hparams

    families = get_families(cfg.pipeline)
    for i, model in enumerate(cfg.models):
        if model.family not in families:
            raise ConfigError(
                f"`models[{i}].family` must be one of {', '.join(families)}. "
                f"Received: {model.family!r}"
            )
        if model.step is not None and cfg.pipeline != "timeseries":
            raise ConfigError(f"`models[{i}].step` is for timeseries windows only")
        if (
            cfg.pipeline == "images"
            and model.family.startswith("small_convnet")
            and min(cfg.images.size) < 46
        ):
            raise ConfigError(
                f"`models[{i}]`: family `{model.family}` needs `images.size` "
                f">= 46x46 (four conv/pool stages). Received: "
                f"{list(cfg.images.size)}"
            )
        if cfg.pipeline == "text" and model.family == "glove_dense" and not cfg.text.glove:
            raise ConfigError(
                f"`models[{i}]`: family `glove_dense` needs `text.glove` (a "
                "GloVe text file such as glove.6B.100d.txt)"
            )
        if cfg.pipeline == "text" and model.family == "glove_dense" and "embedding_dim" in model.hp:
            from dlpipe.tasks.text.glove import infer_dim

            try:
                dim = infer_dim(Path(cfg.text.glove))
            except ValueError as exc:
                raise ConfigError(f"`text.glove`: {exc}") from None
            if model.hp["embedding_dim"] != dim:
                raise ConfigError(
                    f"`models[{i}].hp.embedding_dim` is {model.hp['embedding_dim']!r} but "
                    f"the GloVe file {cfg.text.glove} holds {dim}-dimensional vectors; "
                    "leave it out (it follows the file)"
                )
        try:
            hp = resolved_hparams(model.family, model.hp, cfg.pipeline)
            cfg.model_inputs(model)
            _check_input_length(cfg, model, hp, i)
        except ValueError as exc:
            raise ConfigError(f"`models[{i}]`: {exc}") from None
    sweep_spaces(cfg)  # raises ConfigError naming `sweep....`


def _check_input_length(cfg, model: ModelSpec, hp: dict, i: int) -> None:
    """A conv/pool stack gets at least the input length it needs (registry's
    ``min_input_length``), before any model is built."""
    from dlpipe.models.registry import min_input_length

    needed = min_input_length(model.family, hp, cfg.pipeline)
    if needed is None:
        return
    if cfg.pipeline == "timeseries":
        have, what = cfg.model_windows(model).timesteps, "window timesteps (lookback // step)"
    else:
        have, what = cfg.text.maxlen, "`text.maxlen`"
    if have < needed:
        raise ConfigError(
            f"`models[{i}]`: family `{model.family}` needs {what} >= {needed} for its "
            f"conv/pool stack (kernel_size={hp['kernel_size']}, pool_size="
            f"{hp['pool_size']}). Received: {have}"
        )


def sweep_spaces(cfg: StudyConfig) -> dict[str, dict]:
    """The validated search space of every swept family (C12: one-value ranges become
    constants), checked against the family's hyperparameters and the warm starts.

    Raises:
        ConfigError: unknown family or hyperparameter, malformed space, bad warm start.
    """
    from dlpipe.models.registry import get_families
    from dlpipe.models.spaces import get_spaces
    from dlpipe.tasks.sweep.space import SpaceError, is_leaf, validate_space, warm_start_point

    known_families, default_spaces = get_families(cfg.pipeline), get_spaces(cfg.pipeline)
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


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML file.

    Raises:
        ConfigError: the file is missing, a directory, binary or not UTF-8, is not
            YAML, holds a duplicated key, or fails validation.
    """
    p = Path(path)
    return parse_study(read_study_file(p), source=str(p), base_dir=p.parent)


def smoke_test(cfg: StudyConfig) -> StudyConfig:
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
    "StudyConfig",
    "TextStudyConfig",
    "ImageStudyConfig",
    "load_study",
    "parse_study",
    "smoke_test",
    "EarlyStoppingSpec",
    "ReduceLROnPlateauSpec",
]
