"""Registry of model families: name -> builder, default hyperparameters and their types."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping

from dlpipe.models import images, tabular, text, timeseries
from dlpipe.models.hparams import coerce_hparams
from dlpipe.models.lazy_keras import keras


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """One model family.

    Attributes:
        name: Registry key, e.g. "gru".
        pipeline: Pipeline the family belongs to, e.g. "timeseries".
        build: Builder `build(input_shape, **hyperparameters) -> keras.Model`.
        defaults: The builder's keyword defaults (learning_rate included).
        param_types: The type of each hyperparameter, taken from its default.
        description: One line, the builder's docstring summary.
        min_length: ``min_length(hp_resolved) -> int``: the shortest first input
            dimension its conv/pool stack accepts (window timesteps, or ``maxlen``), or
            None for families without such a limit.
    """

    name: str
    pipeline: str
    build: Callable[..., keras.Model]
    defaults: dict
    param_types: dict
    description: str
    min_length: Callable[[Mapping], int] | None = None

    def min_input_length(self, hp_resolved: Mapping[str, object]) -> int | None:
        """Shortest first input dimension for ``hp_resolved`` (None: no limit), so a study
        file can be checked before any model is built (the builders raise the same)."""
        return None if self.min_length is None else self.min_length(hp_resolved)


def _family(
    name: str, pipeline: str, build: Callable[..., keras.Model], min_length=None
) -> ModelFamily:
    """Describe `build` from its signature, so defaults cannot drift from the code."""
    params = [
        p
        for p in inspect.signature(build).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    missing = [p.name for p in params if p.default is inspect.Parameter.empty]
    if missing:
        raise TypeError(
            f"Builder of family `{name}` has hyperparameters without defaults: {missing}"
        )
    defaults = {p.name: p.default for p in params}
    return ModelFamily(
        name=name,
        pipeline=pipeline,
        build=build,
        defaults=defaults,
        param_types={key: type(value) for key, value in defaults.items()},
        description=inspect.getdoc(build).splitlines()[0],
        min_length=min_length,
    )


def _families(
    module, pipeline: str, names: tuple[str, ...], min_lengths: dict | None = None
) -> dict[str, ModelFamily]:
    """The families ``names`` of ``pipeline``, built by ``module.build_<name>``, with their
    input-length limits (``min_lengths``: name -> function of the resolved hp)."""
    return {
        name: _family(
            name, pipeline, getattr(module, f"build_{name}"), (min_lengths or {}).get(name)
        )
        for name in names
    }


TIMESERIES_FAMILIES: dict[str, ModelFamily] = _families(
    timeseries,
    "timeseries",
    (
        "dense",
        "gru",
        "gru_dropout",
        "stacked_gru",
        "reversed_gru",
        "bidirectional_gru",
        "conv1d",
        "conv_gru",
        "lstm",
    ),
    {"conv1d": timeseries.conv1d_min_timesteps, "conv_gru": timeseries.conv_gru_min_timesteps},
)

#: Text families (book ch. 3.4 and 6.1-6.4). Their builders take `num_classes` as a
#: keyword hyperparameter (default 1 = binary sigmoid head; >= 3 = softmax), so they
#: fit the same `build(input_shape, **hp)` protocol; input_shape is `(maxlen,)`, or the
#: multi-hot width for "multihot_dense".
TEXT_FAMILIES: dict[str, ModelFamily] = _families(
    text,
    "text",
    (
        "multihot_dense",
        "embedding_flatten",
        "glove_dense",
        "simple_rnn",
        "lstm",
        "bidirectional_lstm",
        "conv1d",
    ),
    {"conv1d": text.conv1d_min_maxlen},
)

#: Image families (book ch. 5, 7.3.1). input_shape is `(height, width, channels)`, or
#: the cached feature shape (e.g. `(4, 4, 512)`) for "features_head". Fine-tuning is
#: the second step of "frozen_base": `dlpipe.models.images.fine_tune(model)`.
IMAGE_FAMILIES: dict[str, ModelFamily] = _families(
    images,
    "images",
    (
        "small_convnet",
        "small_convnet_dropout",
        "features_head",
        "frozen_base",
    ),
)

#: Tabular families (book ch. 3.5-3.6, 4.4). input_shape is `(width,)`, the feature
#: row after one-hot encoding; `task` and `num_classes` follow from the data.
TABULAR_FAMILIES: dict[str, ModelFamily] = _families(
    tabular, "tabular", ("dense", "dense_dropout", "dense_l2")
)

_PIPELINES: dict[str, dict[str, ModelFamily]] = {
    "timeseries": TIMESERIES_FAMILIES,
    "text": TEXT_FAMILIES,
    "images": IMAGE_FAMILIES,
    "tabular": TABULAR_FAMILIES,
}


LOGGED_METRICS: dict[str, tuple[str, ...]] = {
    "timeseries": ("loss",),  # compiled with loss="mae" and no other metric
    "text": ("loss", "accuracy"),
    "images": ("loss", "accuracy"),
    # regression compiles mae, classification accuracy: the study's task decides which
    # one a monitor may name (dlpipe.pipelines.kinds.tabular checks it)
    "tabular": ("loss", "mae", "accuracy"),
}
"""The Keras log names (without ``val_``) that every family of a pipeline compiles:
what a callback's ``monitor`` may name in a study of that pipeline."""


def min_input_length(
    name: str, hp_resolved: Mapping[str, object], pipeline: str = "timeseries"
) -> int | None:
    """Shortest first input dimension the family's conv/pool stack accepts: timesteps of
    a window (timeseries ``conv1d``, ``conv_gru``) or ``maxlen`` (text ``conv1d``);
    None for families without such a limit (:meth:`ModelFamily.min_input_length`).

    Args:
        hp_resolved: the family's resolved hyperparameters (``kernel_size``,
            ``pool_size``).
    """
    return get_family(name, pipeline).min_input_length(hp_resolved)


def get_families(pipeline: str) -> dict[str, ModelFamily]:
    """The family table of ``pipeline`` (``timeseries``, ``text`` or ``images``).

    Raises:
        ValueError: unknown pipeline.
    """
    if pipeline not in _PIPELINES:
        raise ValueError(
            f"`pipeline` must be one of {sorted(_PIPELINES)}. Received: pipeline={pipeline!r}"
        )
    return _PIPELINES[pipeline]


def get_family(name: str, pipeline: str = "timeseries") -> ModelFamily:
    """Return the registered family `name` of `pipeline`.

    Raises:
        ValueError: If the pipeline or the family is unknown (the message lists the
            known ones).
    """
    families = get_families(pipeline)
    if name not in families:
        raise ValueError(
            f"`name` must be a {pipeline} model family, one of {sorted(families)}. "
            f"Received: name={name!r}"
        )
    return families[name]


def resolved_hparams(
    name: str, hp: Mapping[str, object] | None = None, pipeline: str = "timeseries"
) -> dict:
    """Return the family defaults overridden by `hp`, coerced to plain Python types.

    This is the full set of keyword arguments the builder receives; reports store it.

    Raises:
        ValueError: If the family is unknown, `hp` has an unknown key, or a value does
            not convert to its type (see `coerce_hparams`, case C09).
    """
    family = get_family(name, pipeline)
    return {**family.defaults, **coerce_hparams(hp or {}, family.param_types, family=name)}


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    hp: Mapping[str, object] | None = None,
    pipeline: str = "timeseries",
) -> keras.Model:
    """Build and compile family `name` with its defaults overridden by `hp`.

    Args:
        name: Family name, e.g. "gru" (see `TIMESERIES_FAMILIES`, `TEXT_FAMILIES`).
        input_shape: One sample's shape: `(timesteps, features)` of a window
            (timeseries); `(maxlen,)` of a padded sequence, or `(max_words + 2,)` of a
            multi-hot row (text).
        hp: Hyperparameter overrides, e.g. a Hyperopt sample; values are coerced
            with `coerce_hparams` (case C09). Text families also take `num_classes`
            here (default 1, binary).
        pipeline: Pipeline whose registry to use: "timeseries" or "text".

    Returns:
        The compiled Functional `keras.Model`.

    Raises:
        ValueError: As `resolved_hparams`, or from the builder (bad `input_shape`,
            too few timesteps for a convolutional family, `num_classes` of 2).
    """
    family = get_family(name, pipeline)
    return family.build(input_shape, **resolved_hparams(name, hp, pipeline))
