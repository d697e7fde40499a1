"""The study-kind interface: one object per kind of study (timeseries, text, images, tabular),
owning everything that differs by kind, so that the stages every study shares
(:mod:`dlpipe.pipelines.study`, :mod:`dlpipe.pipelines.sweeps`, the study-file reader)
never ask which kind they run.

A kind is registered in one place, :data:`dlpipe.pipelines.kinds.KINDS`. Adding one means
a config class, a ``prepare`` (Ray tasks in, a :class:`PreparedDataset` out), a baseline,
a trainer and a saved-model evaluator (plain functions in ``tasks/<domain>/``), model
families in ``models/`` and one registry line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dlpipe.pipelines.sections import ConfigError, ModelSpec, StudyCommon
from dlpipe.tasks.training.records import FoldDataset, PreparedDataset, RunResult


@dataclass
class PredictInputs:
    """New inputs replayed through a study's preprocessing, ready for one model.

    Attributes:
        x: the model's input (a float32/int32 array, or a ``tf.data.Dataset``).
        ids: the id columns, one value per input (a timestamp or row, a file path,
            a row or line number).
        bad: inputs left out, ``{"path", "reason"}`` each (image files that fail the
            study's validation).
        notes: what the user should know (unseen categories...), one line each.
        recheck: None, or a function of the error a model's ``predict`` over ``x``
            raised -> the inputs rebuilt by the full checks (an image file that passed
            the checks made before decoding but does not decode); it raises the error
            again when it is not such a failure.
    """

    x: object
    ids: dict
    bad: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    recheck: object = None


def constant(n: int, value: str):
    """An output column of ``n`` times the string ``value``: a pandas Categorical (a
    large output builds and writes it ~5x faster than ``n`` Python strings)."""
    import numpy as np
    import pandas as pd

    return pd.Categorical.from_codes(np.zeros(n, np.int8), [value])


class StudyKind:
    """What one kind of study does differently from the others (subclass per kind).

    Attributes:
        name: the study file's ``pipeline:`` value (``timeseries``, ``text``, ``images``,
            ``tabular``).
        config_class: its study config dataclass (a :class:`StudyCommon` subclass).
        inputs_name: the study section that says what a model sees (``windows``,
            ``text``, ``images``); the sweep fingerprint stores it under this name.
        headline: name of the headline metric in :mod:`dlpipe.metrics` (``mae`` in the
            target's units, ``accuracy``): its display name, units and direction.
        baseline_name: the baseline the models are compared with (book ch. 6.3.3:
            ``common-sense``; ch. 3.5: ``majority-class``).
        loss_label: y-axis label of the loss curves (what the model's loss is).
        metric_plot: file name of the headline-metric bar chart under ``plots/``.
    """

    name: str = ""
    config_class: type = StudyCommon
    inputs_name: str = ""
    headline: str = ""
    baseline_name: str = ""
    loss_label: str = "loss"
    metric_plot: str = "val_metric.png"
    #: the ``evaluation:`` modes the kind supports (K-fold needs :meth:`fold_datasets`)
    evaluations: tuple[str, ...] = ("holdout",)
    #: why the kind refuses K-fold (the study-file error's reason)
    kfold_refusal: str = "not built yet for this kind"
    #: why the kind refuses forward chaining (the study-file error's reason)
    forward_chaining_refusal: str = (
        "forward chaining validates each fold on the block that follows its training "
        "rows in one time-ordered series (timeseries studies); use kfold or iterated_kfold"
    )
    #: inputs per Ray Data shard of ``dlpipe predict`` (:meth:`predict_shards`)
    shard_inputs: int = 1024
    #: families whose runs may share a training task when they share data, inputs and
    #: training settings (``resources.group_heads``; :func:`dlpipe.pipelines.jobs.job_groups`)
    grouped_families: tuple[str, ...] = ()

    def for_metric(self, metric: str) -> StudyKind:
        """The kind as runs whose headline metric is ``metric`` are shown (their stored
        ``metric`` column): ``headline``, ``baseline_name``, ``loss_label``,
        ``metric_plot`` and ``headline_title`` of that view. A kind whose headline
        depends on the study (tabular: MAE or accuracy) returns a view per metric; the
        others return themselves."""
        return self

    # -- the functions a training worker runs (plain, module level: sent by reference) --
    @property
    def train(self) -> Callable[..., RunResult]:
        """The trainer: ``train(*, data, meta, family, hp, inputs, training, seed, run_id,
        num_cpus, num_gpus, evaluate_test, model_path, epoch_hook) -> RunResult``."""
        raise NotImplementedError

    @property
    def train_jointly(self) -> Callable[..., list] | None:
        """The joint trainer of a grouped task's runs, ``joint(shared, runs, hook_of)``
        (:func:`dlpipe.tasks.training.grouped.train_group`), or None (the default:
        grouped runs train one after another)."""
        return None

    @property
    def cost_model(self) -> Callable | None:
        """The builder of a run's untrained model for its cost estimate,
        ``cost_model(family, hp, inputs, meta) -> keras.Model``
        (:func:`dlpipe.tasks.training.costs.estimate_costs`, run in a worker), or None
        (the default: runs are ordered by parameter count x :meth:`sample_length`,
        :mod:`dlpipe.pipelines.slots`)."""
        return None

    @property
    def evaluate(self) -> Callable[..., dict]:
        """The saved-model evaluator: ``evaluate(*, data, meta, model_path, inputs, run_id,
        split, max_batches, batch_size, family, num_cpus, num_gpus)`` ->
        ``{"loss", "metric", "predictions"}``."""
        raise NotImplementedError

    # -- models ----------------------------------------------------------------------
    def families(self) -> dict:
        """The kind's model families (:mod:`dlpipe.models.registry`)."""
        from dlpipe.models.registry import get_families

        return get_families(self.name)

    def logged_metrics(self) -> tuple[str, ...]:
        """The Keras log names (without ``val_``) every family of the kind compiles."""
        from dlpipe.models.registry import LOGGED_METRICS

        return LOGGED_METRICS[self.name]

    def input_columns(self, inputs) -> dict:
        """The kind's own ``runs`` columns for a model's inputs (none by default)."""
        return {}

    def sample_length(self, inputs) -> int:
        """The length of one sample a model of these inputs reads (1 by default: a
        tabular row), a factor of a run's expected cost
        (:func:`dlpipe.pipelines.slots.expected_cost`)."""
        return 1

    # -- the study file ----------------------------------------------------------------
    def resolve_paths(self, cfg, base_dir: Path | None):
        """``cfg`` with its file paths resolved against the study file's folder and
        checked to exist.

        Raises:
            ConfigError: naming the field and the path.
        """
        raise NotImplementedError

    def check_model(self, cfg, index: int, model: ModelSpec) -> None:
        """Kind-specific checks of ``models[index]`` (before any data is read).

        Raises:
            ConfigError: naming ``models[index]``.
        """
        if model.step is not None:
            raise ConfigError(f"`models[{index}].step` is for timeseries windows only")

    def input_length(self, cfg, model: ModelSpec) -> tuple[int, str] | None:
        """``(length, what)``: the input length a model's conv/pool stack gets (checked
        against its family's minimum), or None when the kind has no such length."""
        return None

    def check_evaluation(self, cfg) -> None:
        """The study's ``evaluation:`` mode is one the kind supports (else the kind's
        :attr:`kfold_refusal` or :attr:`forward_chaining_refusal`); a K-fold study's
        ensemble stage fits on out-of-fold predictions
        (:mod:`dlpipe.tasks.ensembling.oof`).

        Raises:
            ConfigError: naming ``evaluation`` (with the kind's reason).
        """
        mode = cfg.evaluation.mode
        if mode not in self.evaluations:
            reason = (
                self.forward_chaining_refusal
                if cfg.evaluation.is_forward_chaining
                else self.kfold_refusal
            )
            raise ConfigError(
                f"`evaluation`: {mode} is not available for {self.name} studies: {reason}"
            )

    def check_source(self, cfg) -> None:
        """Cheap checks of the data source before Ray starts (none by default).

        Raises:
            FileNotFoundError, ValueError: naming the file and the line or field.
        """

    # -- the stages ----------------------------------------------------------------------
    def prepare(self, cfg, run_dir: Path) -> PreparedDataset:
        """Prepare the dataset with Ray tasks, write its ``datasets`` row, print a summary.

        Returns:
            The :class:`PreparedDataset` (data by reference in the object store).
        """
        raise NotImplementedError

    def fold_datasets(self, cfg, prepared: PreparedDataset) -> list[FoldDataset]:
        """The datasets of a K-fold study (kinds whose :attr:`evaluations` hold K-fold):
        one per fold, each encoded with its fold's training rows only and put in the
        object store once, then the final model's (every non-test row trains).

        Returns:
            ``repeats * k`` :class:`FoldDataset` (repeat-major), then the final one
            (``repeat``/``fold`` None).
        """
        raise NotImplementedError(f"K-fold is not built for {self.name} studies")

    def check_prepared(self, cfg, prepared: PreparedDataset) -> None:
        """Checks that need the prepared dataset, before any training (none by default)."""

    def baseline_id(self, cfg, prepared: PreparedDataset) -> str:
        """Run id of the baseline row (written once per dataset and settings)."""
        return f"baseline-{prepared.key}"

    def baseline(self, cfg, prepared: PreparedDataset, data) -> RunResult:
        """The baseline's scores as a ``runs`` row (family ``baseline``).

        Args:
            data: the prepared arrays (``prepared.data`` fetched from the object store).
        """
        raise NotImplementedError

    def score_columns(self, split: str, loss: float, metric: float) -> dict:
        """The kind's own ``runs`` columns for a split's scores (``split``: ``val`` or
        ``test``; none by default)."""
        return {}

    def headline_title(self, target: str) -> str:
        """What the headline metric measures, for table titles (``accuracy``)."""
        from dlpipe.metrics import get_metric

        return get_metric(self.headline).display

    def print_dataset(self, meta: dict) -> None:
        """Print what was read, repaired, split and cached."""

    # -- prediction on new data (issue 15) ------------------------------------------------
    def predict_state(self, cfg, meta: dict) -> dict:
        """The preprocessing state of a prepared dataset (JSON-able), stored beside the
        models trained on it (:mod:`dlpipe.tasks.training.saved`): what
        :meth:`predict_inputs` needs to replay the preprocessing on new data."""
        raise NotImplementedError

    def predict_inputs(
        self, state: dict, run: dict, path, *, last: bool = False, batch_size: int = 32
    ) -> PredictInputs:
        """New inputs at ``path`` through the preprocessing the run was trained with,
        by the same functions ``prepare`` used.

        Args:
            state: :meth:`predict_state` of the run's dataset.
            run: the run's stored description (``family``, ``inputs``).
            path: the new data (a file or folder, as the kind reads them).
            last: timeseries only: the newest window only.
            batch_size: inputs per batch of a ``tf.data`` input.

        Raises:
            FileNotFoundError, ValueError: naming the file and the field at fault.
        """
        raise NotImplementedError

    def predict_shards(self, path, folder: Path, size: int) -> list[dict] | None:
        """The input cut into shard files of ``size`` inputs under ``folder`` for Ray
        Data (:mod:`dlpipe.pipelines.predict_ray`): ``[{"path", "offset"}]`` (``offset``:
        added to a shard's ``row``/``line`` ids), or None when the kind's input is not cut
        (the default: it runs in-process)."""
        return None

    def predict_columns(self, state: dict, raw) -> dict:
        """The output columns of a model's (or an ensemble's) raw outputs: ``prediction``
        as the stored ``predictions`` report holds it, with the units or the class
        probabilities and class name."""
        from dlpipe.tasks.training.classifier import class_columns

        return class_columns(state["class_names"], raw)

    def load_model(self, path: str):
        """A saved model, Keras ``safe_mode`` on (no arbitrary code is deserialized)."""
        import keras

        return keras.saving.load_model(path, safe_mode=True)
