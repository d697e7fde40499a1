"""The sections every study file has, whatever its kind: resources, training, the
ensemble stage, the sweep, the models list (typed, frozen dataclasses), and
:class:`ConfigError`. Each study kind adds its own sections in its config class
(:mod:`dlpipe.pipelines.kinds`); :mod:`dlpipe.pipelines.config` reads study files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dlpipe.tasks.training.fit import (
    EarlyStoppingSpec,
    ReduceLROnPlateauSpec,
    TensorBoardSpec,
    TrainingSpec,
)

__all__ = [
    "ConfigError",
    "EvaluationSpec",
    "ResourcesSpec",
    "EnsembleSpec",
    "SchedulerSpec",
    "SweepSpec",
    "ModelSpec",
    "StudyCommon",
    "EarlyStoppingSpec",
    "ReduceLROnPlateauSpec",
    "TensorBoardSpec",
    "TrainingSpec",
]


class ConfigError(ValueError):
    """A study file is invalid; the message names the file and the field."""


#: ``evaluation:`` modes of a study file
EVALUATION_MODES = ("holdout", "kfold", "iterated_kfold", "forward_chaining")
#: the keys each non-hold-out mode's mapping may hold (the first is required)
MODE_KEYS = {
    "kfold": ("k", "stratified"),
    "iterated_kfold": ("k", "stratified", "repeats"),
    "forward_chaining": ("folds",),
}


@dataclass(frozen=True)
class EvaluationSpec:
    """How the study scores its models (book ch. 3.6.4; 2nd ed. 4.2).

    Study file: ``evaluation: holdout`` (the default: the split's validation rows),
    ``evaluation: {kfold: {k: 4}}`` or ``evaluation: {iterated_kfold: {k: 4, repeats: 3}}``
    (each may add ``stratified: true|false``), or, for a time series,
    ``evaluation: {forward_chaining: {folds: 4}}`` (time-ordered folds with expanding
    training windows: :func:`dlpipe.tasks.training.folds.forward_chaining_folds`).

    Attributes:
        mode: ``holdout``, ``kfold``, ``iterated_kfold`` or ``forward_chaining``.
        k: folds per repeat (K-fold modes, >= 2); ``forward_chaining``: its ``folds``.
        repeats: reshuffled partitions (``iterated_kfold``; 1 otherwise).
        stratified: folds stratified by class; None: stratified for classification
            (always None for ``forward_chaining``).
    """

    mode: str = "holdout"
    k: int = 0
    repeats: int = 1
    stratified: bool | None = None

    def __post_init__(self):
        if self.mode not in EVALUATION_MODES:
            raise ValueError(
                f"`evaluation` must be one of {', '.join(EVALUATION_MODES)}. "
                f"Received: {self.mode!r}"
            )
        if self.mode == "holdout":
            return
        for name, least in (("k", 2), ("repeats", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                field_name = "folds" if name == "k" and self.is_forward_chaining else name
                raise ValueError(
                    f"`evaluation.{self.mode}.{field_name}` must be an integer >= {least}. "
                    f"Received: {value!r}"
                )
        if self.is_forward_chaining and (self.repeats != 1 or self.stratified is not None):
            raise ValueError(
                "`evaluation.forward_chaining` takes `folds` only (one time-ordered "
                f"partition, never shuffled nor stratified). Received: repeats="
                f"{self.repeats!r}, stratified={self.stratified!r}"
            )
        if self.stratified is not None and not isinstance(self.stratified, bool):
            raise ValueError(
                f"`evaluation.{self.mode}.stratified` must be a boolean. "
                f"Received: {self.stratified!r}"
            )

    @classmethod
    def from_study(cls, value, where: str = "evaluation") -> EvaluationSpec:
        """The spec of a study file's ``evaluation:`` value (a mode name, or a mapping of
        one mode to its settings).

        Raises:
            ConfigError: naming the field (unknown mode or key, bad ``k``/``repeats``).
        """
        if value is None or value == "holdout" or value == {"holdout": None}:
            return cls()
        if isinstance(value, str) or not isinstance(value, dict) or len(value) != 1:
            raise ConfigError(
                f"`{where}` must be `holdout` or a mapping of one of "
                f"{', '.join(EVALUATION_MODES[1:])} to its settings. Received: {value!r}"
            )
        ((mode, settings),) = value.items()
        if mode not in EVALUATION_MODES[1:]:
            raise ConfigError(
                f"`{where}`: unknown mode `{mode}` (known: {', '.join(EVALUATION_MODES)})"
            )
        settings = settings or {}
        known = MODE_KEYS[mode]
        unknown = sorted(set(settings) - set(known)) if isinstance(settings, dict) else ["?"]
        if unknown:
            raise ConfigError(
                f"unknown key `{where}.{mode}.{unknown[0]}` (known keys: {', '.join(known)})"
            )
        if known[0] not in settings:
            raise ConfigError(f"missing required key `{where}.{mode}.{known[0]}`")
        try:
            return cls(
                mode, settings[known[0]], settings.get("repeats", 1), settings.get("stratified")
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def is_holdout(self) -> bool:
        """The hold-out split (today's behaviour: no folds)."""
        return self.mode == "holdout"

    @property
    def is_forward_chaining(self) -> bool:
        """Time-ordered folds with expanding training windows (time series)."""
        return self.mode == "forward_chaining"

    def stratify(self, classification: bool) -> bool:
        """Whether the folds are stratified (default: for classification)."""
        return classification if self.stratified is None else self.stratified

    def key_payload(self) -> dict:
        """What a K-fold run's key adds (the mode, ``k``, ``repeats``, ``stratified``;
        forward chaining: the mode and ``folds``)."""
        if self.is_forward_chaining:
            return {"mode": self.mode, "folds": self.k}
        return {
            "mode": self.mode,
            "k": self.k,
            "repeats": self.repeats,
            "stratified": self.stratified,
        }


def reuse_workers_value(value) -> str:
    """A ``reuse_workers`` setting as ``"auto"``, ``"true"`` or ``"false"`` (YAML's
    booleans accepted).

    Raises:
        ValueError: any other value.
    """
    reuse = {True: "true", False: "false"}.get(value, value)
    if reuse not in ("auto", "true", "false"):
        raise ValueError(f"`reuse_workers` must be auto, true or false. Received: {value!r}")
    return reuse


@dataclass(frozen=True)
class ResourcesSpec:
    """Ray resources of each training task (``num_gpus`` may be fractional).

    Attributes:
        num_cpus, num_gpus: per training task.
        max_retries: Ray retries of a task whose worker died.
        group_heads: train the models of a family that its study kind groups (images:
            ``features_head``) that share their data, inputs and training settings
            several to a task, in as many tasks as can run at once
            (:func:`dlpipe.pipelines.jobs.job_groups`): the worker start-up, TensorFlow
            import and data load are paid once per task, not per model. Every run keeps
            its own key, rows, seed and kept model, and the same results. Not part of
            any key or sweep fingerprint (it changes no result).
        reuse_workers: train a study's runs in warm workers that each train run after
            run (TensorFlow started once per worker process, not per run; issues 14,
            17; :data:`dlpipe.tasks.remote.train_model_warm_task`): ``auto`` (the
            default: when the runs need no GPU), ``true`` (CPU runs only: refused with
            ``num_gpus`` > 0: TensorFlow never gives GPU memory back) or ``false`` (a
            fresh worker per run). A run gives the same results either way (Keras'
            state and the seeds are reset before each run). Not part of any key or
            sweep fingerprint. Sweeps have their own switch, ``sweep.reuse_workers``.
    """

    num_cpus: float = 1
    num_gpus: float = 0
    max_retries: int = 1
    group_heads: bool = True
    reuse_workers: bool | str = "auto"

    def __post_init__(self):
        reuse = reuse_workers_value(self.reuse_workers)
        if reuse == "true" and self.num_gpus:
            raise ValueError(
                "`reuse_workers: true` keeps one TensorFlow process per worker, which never "
                f"gives GPU memory back; with num_gpus={self.num_gpus} leave it at `auto` "
                "(fresh workers for GPU runs)"
            )
        object.__setattr__(self, "reuse_workers", reuse)

    @property
    def warm_workers(self) -> bool:
        """Whether a study's runs train in warm workers (``reuse_workers``)."""
        return self.reuse_workers == "true" or (self.reuse_workers == "auto" and not self.num_gpus)


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
        reuse_workers: train the trials in warm workers that each train run after run
            (TensorFlow started once per worker, not per trial: issue 17): ``auto``
            (the default: when the runs need no GPU), ``true`` (CPU runs only: refused
            with ``resources.num_gpus`` > 0) or ``false`` (a fresh worker per run).
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
    reuse_workers: bool | str = "auto"

    def __post_init__(self):
        reuse = reuse_workers_value(self.reuse_workers)
        object.__setattr__(self, "reuse_workers", reuse)
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
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    source_file: str = ""

    @property
    def run_dir(self) -> Path:
        """``<output_dir>/<study>``: reports, plots and cached artifacts of the study."""
        return Path(self.output_dir) / self.study
