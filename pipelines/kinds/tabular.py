"""The tabular kind: vector data from a CSV or Parquet table (book ch. 3.5-3.6, 4.4),
regression, binary or multiclass classification, hold-out split.

DAG: prepare (one Ray task: read, check, split, normalize with the training split's
statistics, one-hot; the arrays go to the object store once) -> baseline (the mean
predictor of the training targets, or the majority class) -> training tasks -> reports
(regression: MAE in the target's units; classification: accuracy).

The headline metric depends on the study's task, so the reports ask the kind for the
view of the runs' stored ``metric`` (:meth:`TabularKind.for_metric`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from dlpipe.pipelines.kinds.base import PredictInputs, StudyKind
from dlpipe.pipelines.kinds.classification import majority_baseline
from dlpipe.pipelines.sections import ConfigError, ModelSpec, StudyCommon
from dlpipe.tasks.tabular.data import DEMO_PREFIX, TASKS, TabularDataSpec, TabularSplitSpec
from dlpipe.tasks.training.records import FoldDataset, PreparedDataset, RunResult, baseline_result

#: the Keras log names (without ``val_``) each task's models compile
TASK_LOGGED = {
    "regression": ("loss", "mae"),
    "binary": ("loss", "accuracy"),
    "multiclass": ("loss", "accuracy"),
}
#: hyperparameters the data fixes (never set in a study file)
DATA_HPARAMS = ("task", "num_classes")


@dataclass(frozen=True)
class TabularInputs:
    """What a tabular model is built for: the study's ``task`` (None: inferred from the
    target; the inferred task is part of the dataset key)."""

    task: str | None = None


@dataclass(frozen=True)
class TabularStudyConfig(StudyCommon):
    """A tabular study (see ``configs/demo_tabular.yaml``)."""

    study: str
    data: TabularDataSpec
    models: tuple[ModelSpec, ...]
    split: TabularSplitSpec = field(default_factory=TabularSplitSpec)
    task: str | None = None

    def __post_init__(self):
        if self.task is not None and self.task not in TASKS:
            raise ValueError(
                f"`task` must be one of {', '.join(TASKS)} (or left out: inferred from the "
                f"target). Received: task={self.task!r}"
            )

    def model_inputs(self, model: ModelSpec) -> TabularInputs:
        """What one model is built for: the study's task (same for every model)."""
        return TabularInputs(self.task)

    @property
    def inputs(self) -> TabularInputs:
        """The study's inputs (what sweep trials see)."""
        return TabularInputs(self.task)


class TabularKind(StudyKind):
    """Tables of numeric and categorical features; regression (MAE in the target's
    units, the mean predictor as baseline) or classification (accuracy, majority class)."""

    name = "tabular"
    config_class = TabularStudyConfig
    inputs_name = "task"
    headline = "mae"
    baseline_name = "mean-predictor"
    loss_label = "MSE (target units squared)"
    metric_plot = "val_mae.png"
    evaluations = ("holdout", "kfold", "iterated_kfold")
    shard_inputs = 262_144  # table rows: cheap per row, so large shards

    def for_metric(self, metric: str) -> StudyKind:
        """The classification view for runs scored by ``accuracy``, else this kind."""
        return TABULAR_CLASSIFICATION if metric == "accuracy" else self

    @property
    def train(self):
        from dlpipe.tasks.tabular.train import train_tabular_model

        return train_tabular_model

    @property
    def cost_model(self):
        from dlpipe.tasks.tabular.train import cost_model

        return cost_model

    @property
    def evaluate(self):
        from dlpipe.tasks.tabular.train import evaluate_saved_tabular_model

        return evaluate_saved_tabular_model

    def resolve_paths(self, cfg, base_dir: Path | None):
        """``data.path`` resolved against the study file's folder and checked to be a
        file (not absent, not a directory); ``demo:<name>`` checked against the demo
        tables."""
        from dlpipe.tasks.tabular.demo import DEMO_TABLES

        data = cfg.data
        if data.path.startswith(DEMO_PREFIX):
            name = data.path[len(DEMO_PREFIX) :]
            if name not in DEMO_TABLES:
                raise ConfigError(
                    f"`data.path`: demo table must be one of "
                    f"{', '.join(DEMO_PREFIX + n for n in DEMO_TABLES)}. Received: {data.path!r}"
                )
            return cfg
        path = Path(data.path).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = (base_dir / path).resolve()
        if path.is_dir():
            raise ConfigError(
                f"`data.path`: a directory, not a table file (give a .csv, .tsv or .parquet "
                f"file): {data.path} (resolved to {path})"
            )
        if not path.is_file():
            raise ConfigError(f"`data.path`: table not found: {data.path} (resolved to {path})")
        return replace(cfg, data=replace(data, path=str(path)))

    def check_model(self, cfg, index: int, model: ModelSpec) -> None:
        """No ``step``; ``task``/``num_classes`` follow the data; with a given ``task``,
        the callbacks' monitors must be what its models compile."""
        super().check_model(cfg, index, model)
        fixed = [name for name in DATA_HPARAMS if name in model.hp]
        if fixed:
            raise ConfigError(
                f"`models[{index}].hp.{fixed[0]}` follows the data (the study's `task` and "
                "the target's classes); leave it out"
            )
        if cfg.task is not None:
            check_task_monitors(cfg, cfg.task)

    def check_source(self, cfg) -> None:
        """The table's header, read before Ray starts
        (:func:`dlpipe.tasks.tabular.read.read_header`): the file is not empty, its
        first bytes are UTF-8, every column has a name, none is repeated, a data row
        follows, and the header holds the target, features and categorical columns."""
        if not cfg.data.path.startswith(DEMO_PREFIX):
            from dlpipe.tasks.tabular.data import feature_columns
            from dlpipe.tasks.tabular.read import read_header

            path = Path(cfg.data.path)
            feature_columns(cfg.data, read_header(path), path)

    def prepare(self, cfg, run_dir: Path) -> PreparedDataset:
        """The preparation Ray task; its own error (ValueError, FileNotFoundError) is
        raised unwrapped from Ray's task error, so the user sees its message."""
        import ray

        from dlpipe.tasks.remote import prepare_tabular_task

        data_ref, meta_ref = prepare_tabular_task.remote(
            cfg.data, cfg.split, cfg.task, str(run_dir)
        )
        try:
            meta = ray.get(meta_ref)
        except ray.exceptions.RayTaskError as exc:
            try:
                ray.get(data_ref)  # consume the twin error so Ray does not log it again
            except ray.exceptions.RayTaskError:
                pass
            cause = exc.cause if isinstance(exc.cause, Exception) else exc
            raise cause from None
        self.print_dataset(meta)
        return PreparedDataset(data_ref, meta, dataset_row=dataset_row(meta))

    def fold_datasets(self, cfg, prepared: PreparedDataset) -> list[FoldDataset]:
        """One Ray task re-reads the table and encodes every fold with its training rows'
        statistics (:func:`dlpipe.tasks.tabular.folds.fold_arrays`); each fold's arrays
        are their own object in the store; their meta is the dataset's with the fold's
        encoding (``input_columns``, ``mean``, ``std``, ``categories``...)."""
        import ray

        from dlpipe.tasks.remote import tabular_folds_task

        ev = cfg.evaluation
        count = ev.k * ev.repeats + 1
        refs = tabular_folds_task.options(num_returns=count + 1).remote(
            cfg.data, cfg.split, prepared.meta["task"], str(cfg.run_dir), ev, cfg.seed
        )
        try:
            infos = ray.get(refs[-1])
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, Exception) else exc
            raise cause from None
        out = []
        for ref, info in zip(refs[:-1], infos):
            meta = {**prepared.meta, **info}
            out.append(
                FoldDataset(
                    info["repeat"], info["fold"], PreparedDataset(ref, meta, prepared.units)
                )
            )
        return out

    def check_prepared(self, cfg, prepared: PreparedDataset) -> None:
        """The callbacks' monitors are what the (inferred) task's models compile.

        Raises:
            ConfigError: naming the study file (as every config error), the field and
                the task.
        """
        try:
            check_task_monitors(cfg, prepared.meta["task"])
        except ConfigError as exc:
            raise ConfigError(f"{cfg.source_file}: {exc}") from None

    def baseline(self, cfg, prepared: PreparedDataset, data) -> RunResult:
        """Regression: the mean of the training targets (its validation/test MAE in the
        target's units, MSE as loss); classification: the majority class."""
        run_id = self.baseline_id(cfg, prepared)
        if prepared.meta["task"] != "regression":
            return majority_baseline(run_id, cfg, prepared, data)
        from dlpipe.tasks.tabular.train import mean_baseline_scores

        scores = mean_baseline_scores(data)
        mean = scores.pop("mean")
        return baseline_result(
            run_id, cfg.seed, {"rule": "mean of the training targets", "mean": mean}, "mae", scores
        )

    def headline_title(self, target: str) -> str:
        """``MAE of <target>``."""
        return f"MAE of {target}"

    def print_dataset(self, meta: dict) -> None:
        print_dataset(meta)

    def predict_state(self, cfg, meta: dict) -> dict:
        """The ``data`` section, task, classes, features and the training encoding
        (:func:`dlpipe.tasks.tabular.predict.predict_state`)."""
        from dlpipe.tasks.tabular.predict import predict_state

        return predict_state(cfg.data, meta)

    def predict_shards(self, path, folder: Path, size: int) -> list[dict]:
        """Parquet files of ``size`` table rows each, offset by their first row."""
        from dlpipe.tasks.tabular.predict import write_table_shards

        return write_table_shards(path, folder, size)

    def predict_inputs(self, state, run, path, *, last=False, batch_size=32) -> PredictInputs:
        """A table's feature columns, encoded with the training encoding
        (:func:`dlpipe.tasks.tabular.predict.encode_table`); id ``row``."""
        from dlpipe.tasks.tabular.predict import encode_table

        x, ids, unseen = encode_table(state, path)
        notes = [
            f"column `{c}`: {n} row(s) hold a category not seen in training (all-zero one-hot)"
            for c, n in unseen.items()
        ]
        return PredictInputs(x, ids, notes=notes)

    def predict_columns(self, state, raw) -> dict:
        """Regression: ``prediction`` in the target's units and ``target``; else the
        class probabilities and class name."""
        if state["task"] != "regression":
            return super().predict_columns(state, raw)
        import numpy as np

        values = np.asarray(raw, np.float64).reshape(-1)
        from dlpipe.pipelines.kinds.base import constant

        return {"prediction": values, "target": constant(len(values), state["target"])}


class TabularClassificationKind(TabularKind):
    """The tabular kind as its classification runs are shown (accuracy, majority class)."""

    headline = "accuracy"
    baseline_name = "majority-class"
    loss_label = "crossentropy"
    metric_plot = "val_metric.png"

    def headline_title(self, target: str) -> str:
        return StudyKind.headline_title(self, target)


TABULAR_CLASSIFICATION = TabularClassificationKind()


def check_task_monitors(cfg, task: str) -> None:
    """The callbacks' ``monitor`` names are logged by the models of ``task``
    (regression: ``val_loss``/``val_mae``; classification: ``val_loss``/``val_accuracy``).

    Raises:
        ConfigError: naming the field, the task and the valid names.
    """
    from dlpipe.metrics import check_monitor

    training = cfg.training
    for name, spec in (
        ("early_stopping", training.early_stopping),
        ("reduce_lr_on_plateau", training.reduce_lr_on_plateau),
    ):
        try:
            check_monitor(spec.monitor, TASK_LOGGED[task], f"training.{name}.monitor")
        except ValueError as exc:
            raise ConfigError(f"{exc} (task: {task})") from None


def dataset_row(meta: dict) -> dict:
    """The ``datasets`` report row of a prepared table: ``sentinel_counts`` = missing
    cells per column (non-finite numbers included); ``quality``: the task, rows
    dropped, the missing-value policy, non-finite cells per column and label spellings
    merged (each only when any), normalization statistics, categories, constant
    columns, unseen categories, class counts and warnings."""
    quality = (
        "task",
        "task_inferred",
        "rows_read",
        "rows_dropped",
        "missing_policy",
        "nonfinite_counts",
        "label_variants_merged",
        "class_names",
        "class_counts",
        "input_columns",
        "mean",
        "std",
        "categories",
        "constant_features",
        "unseen_categories",
        "warnings",
    )
    return {
        "dataset_key": meta["key"],
        "source": meta["source"],
        "rows": meta["rows"],
        "columns": meta["features"],
        "target": meta["target"],
        "splits": meta["split_counts"],
        "sentinel_counts": meta["missing_counts"],
        "quality": {k: meta[k] for k in quality if k in meta},
    }


def print_dataset(meta: dict) -> None:
    """A few lines on what was read, dropped, split and encoded."""
    split = ", ".join(f"{k} {meta['split_counts'][k]}" for k in ("train", "validation", "test"))
    how = "inferred from the target" if meta["task_inferred"] else "from the study"
    print(
        f"dataset {meta['key']}: {meta['rows']} rows x {len(meta['features'])} features "
        f"({len(meta['input_columns'])} inputs) from {meta['source']}; task {meta['task']} "
        f"({how}), target `{meta['target']}`; splits: {split}"
    )
    if meta["class_names"]:
        counts = meta["class_counts"]
        print(
            "  classes (train/validation/test rows): "
            + ", ".join(
                f"{name} {'/'.join(str(counts[s][i]) for s in ('train', 'validation', 'test'))}"
                for i, name in enumerate(meta["class_names"])
            )
        )
    merged = meta.get("label_variants_merged")
    if merged:
        spelled = "; ".join(
            f"{', '.join(repr(v) for v in group)} -> {keep!r}" for keep, group in merged.items()
        )
        print(f"  label spellings merged (data.label_variants: merge): {spelled}")
    missing = {k: v for k, v in meta["missing_counts"].items() if v}
    nonfinite = meta.get("nonfinite_counts")
    print(
        f"  missing cells: {missing or 'none'} (data.missing: {meta['missing_policy']}; "
        f"{meta['rows_dropped']} row(s) dropped)"
        + (f"; of them non-finite numbers (inf/-inf): {nonfinite}" if nonfinite else "")
    )
    if meta["categories"]:
        print(
            "  one-hot: "
            + ", ".join(f"{c} ({len(v)} categories)" for c, v in meta["categories"].items())
        )
    for line in meta["warnings"]:
        print(f"  warning: {line}")
