"""The timeseries kind: weather forecasting studies (book ch. 6.3-6.4).

DAG: prepare (one Ray task: load, clean, repair the time axis, split, normalize with
the training split's statistics; the array goes to the object store once) ->
common-sense baseline (last observed target value) -> training tasks on windows
(lookback / step / delay) -> reports in the target's units.

``evaluation: {forward_chaining: {folds: K}}`` adds one Ray task that builds every
fold's array (:mod:`dlpipe.tasks.weather.folds`), then the K-fold stages of
:mod:`dlpipe.pipelines.kfold`; shuffled K-fold is refused (it trains on the future).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from dlpipe.pipelines.kinds.base import PredictInputs, StudyKind
from dlpipe.pipelines.sections import ConfigError, ModelSpec, StudyCommon
from dlpipe.tasks.training.records import (
    FoldDataset,
    PreparedDataset,
    RunResult,
    baseline_result,
)
from dlpipe.tasks.weather.prepare import SplitSpec, baseline_mae, split_window_counts
from dlpipe.tasks.weather.read import DataSpec, check_weather_source, resolve_path
from dlpipe.tasks.weather.windows import WindowSpec


@dataclass(frozen=True)
class TimeseriesStudyConfig(StudyCommon):
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


class TimeseriesKind(StudyKind):
    """Weather studies: windows of a multivariate series, MAE in the target's units."""

    name = "timeseries"
    evaluations = ("holdout", "forward_chaining")
    kfold_refusal = (
        "plain K-fold on a time series trains on the future: shuffled folds put future "
        "rows into training (leakage); use forward chaining, "
        "`evaluation: {forward_chaining: {folds: K}}`"
    )
    config_class = TimeseriesStudyConfig
    inputs_name = "windows"
    headline = "mae"
    baseline_name = "common-sense"
    loss_label = "MAE (normalized)"
    metric_plot = "val_mae.png"

    @property
    def train(self):
        from dlpipe.tasks.weather.train import train_model

        return train_model

    @property
    def cost_model(self):
        from dlpipe.tasks.weather.train import cost_model

        return cost_model

    @property
    def evaluate(self):
        from dlpipe.tasks.weather.train import evaluate_saved_model

        return evaluate_saved_model

    def input_columns(self, inputs: WindowSpec) -> dict:
        """``lookback``, ``step``, ``delay`` (timesteps) of the model's windows."""
        return {"lookback": inputs.lookback, "step": inputs.step, "delay": inputs.delay}

    def sample_length(self, inputs: WindowSpec) -> int:
        """Timesteps of a window (``lookback // step``)."""
        return inputs.lookback // inputs.step

    def score_columns(self, split: str, loss: float, metric: float) -> dict:
        """``<split>_mae`` (normalized) and ``<split>_mae_units`` (target's units)."""
        return {f"{split}_mae": loss, f"{split}_mae_units": metric}

    def resolve_paths(self, cfg, base_dir: Path | None):
        data = cfg.data
        if base_dir is not None and not data.path.startswith("pvlib:"):
            if not Path(data.path).expanduser().is_absolute():
                data = replace(data, path=str((base_dir / data.path).resolve()))
        try:
            resolve_path(data.path)
        except FileNotFoundError as exc:
            raise ConfigError(f"`data.path`: {exc}") from exc
        return replace(cfg, data=data)

    def check_model(self, cfg, index: int, model: ModelSpec) -> None:
        """A model may set its own window ``step`` (nothing else to check)."""

    def input_length(self, cfg, model: ModelSpec) -> tuple[int, str]:
        return cfg.model_windows(model).timesteps, "window timesteps (lookback // step)"

    def check_evaluation(self, cfg) -> None:
        """As every kind's (:meth:`StudyKind.check_evaluation`); forward chaining also
        needs one time-ordered block (``split.blocks: 1``).

        Raises:
            ConfigError: naming ``evaluation`` or ``split.blocks`` and the reason.
        """
        super().check_evaluation(cfg)
        if cfg.evaluation.is_forward_chaining and cfg.split.blocks != 1:
            raise ConfigError(
                "`split.blocks`: forward chaining trains each fold on the rows before its "
                "validation block in one time-ordered series; blocked splits interleave "
                f"test rows into it: set `split.blocks: 1`. Received: {cfg.split.blocks}"
            )

    def check_source(self, cfg) -> None:
        """File readable, header, first rows, time column
        (:func:`dlpipe.tasks.weather.read.check_weather_source`)."""
        check_weather_source(cfg.data)

    def prepare(self, cfg, run_dir: Path) -> PreparedDataset:
        """The preparation Ray task; its own error (DataFormatError, SplitTooShortError,
        ValueError, FileNotFoundError) is raised unwrapped from Ray's task error, so the
        user sees its message, not a remote traceback."""
        import ray

        from dlpipe.tasks.remote import prepare_weather_task

        data_ref, meta_ref = prepare_weather_task.remote(
            cfg.data, cfg.split, cfg.windows, str(run_dir / "artifacts")
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
        return PreparedDataset(
            data_ref, meta, units=target_units(meta["target"]), dataset_row=dataset_row(meta)
        )

    def fold_datasets(self, cfg, prepared: PreparedDataset) -> list[FoldDataset]:
        """One Ray task re-reads and cleans the series and normalizes every
        forward-chaining fold with its own training rows
        (:func:`dlpipe.tasks.weather.folds.fold_arrays`); each fold's array is its own
        object in the store; its meta is the dataset's with the fold's ``splits``,
        ``blocks``, ``mean`` and ``std``."""
        import ray

        from dlpipe.tasks.remote import weather_folds_task

        folds = cfg.evaluation.k
        windows = [cfg.model_windows(model) for model in cfg.models]
        refs = weather_folds_task.options(num_returns=folds + 2).remote(
            cfg.data, cfg.split, windows, folds
        )
        try:
            infos = ray.get(refs[-1])
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, Exception) else exc
            raise cause from None
        base = {k: v for k, v in prepared.meta.items() if k != "windows_excluded"}
        return [
            FoldDataset(
                info["repeat"], info["fold"], PreparedDataset(ref, {**base, **info}, prepared.units)
            )
            for ref, info in zip(refs[:-1], infos)
        ]

    def check_prepared(self, cfg, prepared: PreparedDataset) -> None:
        """Every model's windows fit in every split (every block, and between gaps),
        before any training (case C08)."""
        for model in cfg.models:
            split_window_counts(cfg.model_windows(model), prepared.meta)

    def baseline_id(self, cfg, prepared: PreparedDataset) -> str:
        cap = cfg.training.max_batches_per_epoch
        return f"baseline-{prepared.key}-{cfg.windows.delay}-{cap}"

    def baseline(self, cfg, prepared: PreparedDataset, data) -> RunResult:
        """The common-sense baseline (book ch. 6.3.3): the last observed target value,
        scored on the same validation and test windows as the models."""
        from dlpipe.tasks.weather.train import split_batches

        meta, cap = prepared.meta, cfg.training.max_batches_per_epoch
        std = meta["std"][meta["target_column"]]
        scores = {}
        for split in ("validation", "test"):
            batches = split_batches(data, meta, cfg.windows, split, max_batches=cap)
            scores[split] = baseline_mae(data, batches.rows, cfg.windows, meta["target_column"])
        val, test = scores["validation"], scores["test"]
        return baseline_result(
            self.baseline_id(cfg, prepared),
            cfg.seed,
            {"rule": "last observed target value"},
            "mae",
            {
                "val_loss": val,
                "test_loss": test,
                "val_metric": val * std,
                "test_metric": test * std,
            },
            **self.input_columns(cfg.windows),
            **self.score_columns("val", val, val * std),
            **self.score_columns("test", test, test * std),
        )

    def headline_title(self, target: str) -> str:
        """``MAE of <target column>``."""
        return f"MAE of {target}"

    def print_dataset(self, meta: dict) -> None:
        print_dataset(meta)

    def predict_state(self, cfg, meta: dict) -> dict:
        """Reader settings, columns, target, training mean/std, period
        (:func:`dlpipe.tasks.weather.predict.predict_state`)."""
        from dlpipe.tasks.weather.predict import predict_state

        return predict_state(cfg.data, meta)

    def predict_inputs(self, state, run, path, *, last=False, batch_size=32) -> PredictInputs:
        """One window per window end of the file (``last``: the newest only), ids
        ``window_end``, ``target_row`` and ``target_time``
        (:func:`dlpipe.tasks.weather.predict.forecast_inputs`)."""
        from dlpipe.tasks.weather.predict import forecast_inputs

        windows = WindowSpec(**run["inputs"])
        found = forecast_inputs(state, path, windows, last=last)
        ids = {k: v for k, v in found.ids.items() if v is not None}
        return PredictInputs(found.x, ids)

    def predict_columns(self, state, raw) -> dict:
        """``prediction`` in the target's units, ``target`` (its column), ``units``."""
        from dlpipe.tasks.weather.predict import forecast_columns

        return forecast_columns(state, raw)

    def load_model(self, path: str):
        """The saved model, with the custom reverse-time layer registered first."""
        from dlpipe.models.timeseries import reverse_time_layer

        reverse_time_layer()
        return super().load_model(path)


def dataset_row(meta: dict) -> dict:
    """The ``datasets`` report row of a prepared weather dataset (the table's fixed
    schema: :mod:`dlpipe.tasks.reports.tables`).

    Columns: key, source, rows, columns, target, ``splits`` (per split the segments of
    equally spaced rows that windows read), ``sentinel_counts`` (per column, every value
    the missing-value policy replaced) and ``quality`` (JSON): the time axis in file
    order and its repairs (rows out of order, repeated stamps dropped and conflicting,
    gaps filled and cut, ...), ``blocks`` (the split as configured), per column
    ``missing_counts`` (missing spellings) and ``nonfinite_counts`` (``inf``/``-inf``),
    ``constant_features``, and per split the study windows' ``windows`` and
    ``windows_excluded`` (spanning a gap).
    """
    extra = (
        "blocks",
        "missing_counts",
        "nonfinite_counts",
        "constant_features",
        "windows",
        "windows_excluded",
    )
    return {
        "dataset_key": meta["key"],
        "source": meta["source"],
        "rows": meta["rows"],
        "columns": meta["columns"],
        "target": meta["target"],
        "splits": meta["splits"],
        "sentinel_counts": meta["sentinel_counts"],
        "quality": {**meta["quality"], **{k: meta[k] for k in extra if k in meta}},
    }


def target_units(column: str) -> str:
    """The units in a Jena-style column name: ``"T (degC)"`` -> ``"degC"``."""
    return column[column.find("(") + 1 : column.rfind(")")] if "(" in column else ""


def print_dataset(meta: dict) -> None:
    """Print the dataset summary: rows, splits, time-axis repairs, replaced values."""
    q = meta["quality"]
    blocks = meta.get("blocks", meta["splits"])
    splits = ", ".join(
        f"{k} {sum(b - a for a, b in segs)}" + (f" in {len(segs)} blocks" if len(segs) > 1 else "")
        for k, segs in blocks.items()
    )
    print(
        f"dataset {meta['key']}: {meta['rows']} rows x {len(meta['columns'])} columns from "
        f"{meta['source']}; splits (rows): {splits}"
    )
    order = (
        f", {q['rows_out_of_order']} rows out of order (sorted by time)"
        if q.get("rows_out_of_order")
        else ""
    )
    conflicting = (
        f" ({q['duplicates_conflicting']} with other values)"
        if q.get("duplicates_conflicting")
        else ""
    )
    print(
        f"  timestamps: {q.get('duplicates_dropped', q.get('duplicate_timestamps', 0))} "
        f"repeated (first kept, rest dropped){conflicting}, "
        f"{q.get('missing_slots', q.get('missing_timestamps', 0))} missing{order}"
    )
    if q.get("gaps"):
        print(
            f"  gaps: {q['gaps']} ({q['missing_slots']} missing slots): {q['gaps_filled']} "
            f"filled ({q['slots_filled']} slots, max_gap {q['max_gap']}), "
            f"{q['gaps_cut']} cut"
            + (f", {q['irregular_steps']} irregular steps cut" if q.get("irregular_steps") else "")
        )
    elif q.get("irregular_steps"):
        print(f"  {q['irregular_steps']} irregular time steps: the series is cut there")
    if any(meta.get("windows_excluded", {}).values()):
        print(
            "  windows spanning a gap, excluded: "
            + ", ".join(
                f"{k} {v} of {v + meta['windows'][k]}" for k, v in meta["windows_excluded"].items()
            )
        )
    for key, label in (
        ("sentinel_counts", "values replaced by the sentinel policy"),
        ("missing_counts", "of which missing cells (NaN/NA/null/empty)"),
        ("nonfinite_counts", "of which non-finite (inf/-inf)"),
    ):
        bad = {k: v for k, v in meta.get(key, {}).items() if v}
        if key == "sentinel_counts" or bad:
            print(f"  {label}: {bad or 'none'}")
    if meta.get("constant_features"):
        print(
            f"  warning: constant over the training rows (carry no information): "
            f"{meta['constant_features']}"
        )
    if "tmy_stitches" in q:
        print(
            f"  TMY3: {q['time_axis']}; {q['tmy_stitches']} month stitches between source "
            f"years {q['tmy_source_years']}"
        )
