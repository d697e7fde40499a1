"""``dlpipe predict``: apply what a study trained to new data (issue 15), written once
for every kind: the kind replays its own preprocessing
(:meth:`~dlpipe.pipelines.kinds.base.StudyKind.predict_inputs`), the saved model(s)
predict, an ensemble combines its members with the stored weights of its chosen
method (:func:`dlpipe.ensembles.combine`), and the output gets one id per input and
provenance columns (``run_id``, ``model_sha256``, ``dataset_key``,
``dlpipe_version``).

A :class:`Predictor` reads a folder holding ``models/`` (a run directory, or an
exported bundle, :mod:`dlpipe.pipelines.bundle`) and a :class:`Selection` (which
model, or which members with which weights). Small inputs run in this process, without
Ray; many inputs run as Ray Data ``map_batches`` (:mod:`dlpipe.pipelines.predict_ray`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlpipe.metrics import get_metric
from dlpipe.pipelines.kinds import get_kind
from dlpipe.pipelines.kinds.base import constant
from dlpipe.tasks.training.saved import model_path, models_dir, read_run_info, read_state

#: the provenance columns every output row carries
PROVENANCE = ("model", "run_id", "model_sha256", "dataset_key", "dlpipe_version")
#: a file that each model load appends a line to (``<pid> <run_id>``), when set:
#: benchmarks and tests count loads per process with it
LOAD_LOG_ENV = "DLPIPE_PREDICT_LOAD_LOG"


@dataclass(frozen=True)
class Selection:
    """Which model predicts.

    Attributes:
        name: ``best``, a run id, or ``ensemble``.
        run_ids: the run(s) whose models predict (one, or the ensemble's members with
            a weight > 0).
        weights: the members' stored weights (None for one model).
        method: the ensemble's chosen method and its ``ensemble_id`` (``""`` for one model).
    """

    name: str
    run_ids: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    method: str = ""

    def to_json(self) -> dict:
        """JSON-able form (a bundle's manifest)."""
        return {
            "name": self.name,
            "run_ids": list(self.run_ids),
            "weights": None if self.weights is None else list(self.weights),
            "method": self.method,
        }


def saved_runs(run_dir: Path, runs):
    """The rows of ``runs`` whose model was kept (``models/<run_id>.json`` and
    ``.keras`` both there)."""
    keep = [
        (models_dir(run_dir) / f"{r}.json").is_file() and model_path(run_dir, r).is_file()
        for r in runs["run_id"]
    ]
    return runs[np.asarray(keep, dtype=bool)] if len(runs) else runs


def best_run(run_dir: Path) -> str:
    """The run id of the best saved model: the best validation headline metric
    (:mod:`dlpipe.metrics` direction) among hold-out runs; in a K-fold study, the final
    model of the model with the best fold mean.

    Raises:
        FileNotFoundError: no runs report, or no run kept its model.
    """
    from dlpipe.tasks.reports import tables as reports

    runs = reports.read_table(run_dir, "runs")
    ok = runs[(runs["status"] == "ok") & (runs["family"] != "baseline")]
    evaluation = ok["evaluation"] if "evaluation" in ok else None
    scored = ok if evaluation is None else ok[evaluation.isna() | (evaluation == "mean")]
    scored = scored[scored["val_metric"].notna()]
    if not len(scored):
        raise FileNotFoundError(f"{run_dir}: no finished model run in reports/runs")
    metric = get_metric(scored["metric"].iloc[-1])
    order = scored.sort_values("val_metric", ascending=metric.mode == "min", kind="stable")
    for row in order.itertuples():
        candidates = ok[ok["run_id"] == row.run_id]
        if evaluation is not None and row.evaluation == "mean":
            same = (ok["family"] == row.family) & (ok["hyperparameters"] == row.hyperparameters)
            candidates = ok[same & (ok["seed"] == row.seed) & (evaluation == "final")]
        found = saved_runs(run_dir, candidates)
        if len(found):
            return str(found["run_id"].iloc[-1])
    raise FileNotFoundError(
        f"{run_dir}: no finished run kept its model under {models_dir(run_dir)} (studies "
        "run before dlpipe saved models): run the study again in a new run directory"
    )


def ensemble_selection(run_dir: Path) -> Selection:
    """The chosen method of the newest ensemble build of ``run_dir`` (its stored
    members and weights; members with weight 0 left out).

    Raises:
        FileNotFoundError: no ``ensembles`` report (run ``dlpipe ensemble`` first).
    """
    from dlpipe.tasks.reports import tables as reports

    table = reports.read_table(run_dir, "ensembles")
    if not len(table):
        raise FileNotFoundError(
            f"{run_dir}: no ensembles report: run `dlpipe ensemble {run_dir}` first"
        )
    newest = table.sort_values("created_at", kind="stable")["ensemble_id"].iloc[-1]
    chosen = table[(table["ensemble_id"] == newest) & table["chosen"].astype(bool)].iloc[0]
    members, weights = json.loads(chosen["members"]), json.loads(chosen["weights"])
    kept = [(m, float(w)) for m, w in zip(members, weights) if w > 0]
    return Selection(
        "ensemble",
        tuple(m for m, _ in kept),
        tuple(w for _, w in kept),
        f"{chosen['method']} {newest}",
    )


def select_models(run_dir, model: str = "best") -> Selection:
    """The :class:`Selection` of ``--model``: ``best``, ``ensemble`` or a run id.

    Raises:
        FileNotFoundError: as :func:`best_run`, :func:`ensemble_selection`, or a run
            id that kept no model.
    """
    run_dir = Path(run_dir)
    if model == "best":
        return Selection("best", (best_run(run_dir),))
    if model == "ensemble":
        return ensemble_selection(run_dir)
    read_run_info(run_dir, model)  # raises naming the run when it kept no model
    return Selection(model, (model,))


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def as_outputs(raw) -> np.ndarray:
    """A model's outputs as the reports hold them: ``(n,)`` for one unit, else
    ``(n, k)``, float64."""
    out = np.asarray(raw, np.float64)
    return out.reshape(-1) if out.ndim == 2 and out.shape[1] == 1 else out


def id_keys(ids: dict) -> list[tuple]:
    """One hashable key per input from its id columns (members are aligned on it)."""
    columns = [np.asarray(v).tolist() for v in ids.values()]
    return list(zip(*columns))


class Predictor:
    """Predictions of one selection of saved models on new data.

    Args:
        folder: a run directory or a bundle (anything holding ``models/``).
        selection: which model(s) predict.
        num_cpus, num_gpus: TensorFlow set-up of this process (C13) before the first
            model loads.
    """

    def __init__(self, folder, selection: Selection, *, num_cpus: float = 1, num_gpus=0):
        self.folder = Path(folder)
        self.selection = selection
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.infos = {r: read_run_info(self.folder, r) for r in selection.run_ids}
        self.states = {r: read_state(self.folder, i["state"]) for r, i in self.infos.items()}
        kinds = {i["kind"] for i in self.infos.values()}
        if len(kinds) != 1:
            raise ValueError(f"an ensemble's members must be of one study kind: {sorted(kinds)}")
        self.kind = get_kind(kinds.pop())
        self.models: dict = {}
        self.model_loads = 0

    def model(self, run_id: str):
        """The saved model of ``run_id``, loaded once (safe mode)."""
        if run_id not in self.models:
            from dlpipe.tasks.training.tf_setup import setup_tensorflow

            setup_tensorflow(self.num_cpus, self.num_gpus)
            self.models[run_id] = self.kind.load_model(str(model_path(self.folder, run_id)))
            self.model_loads += 1
            log_model_load(run_id)
        return self.models[run_id]

    def provenance(self) -> dict:
        """The provenance values of this selection's outputs (computed once)."""
        if getattr(self, "_provenance", None) is None:
            self._provenance = self.compute_provenance()
        return self._provenance

    def compute_provenance(self) -> dict:
        """``model``, ``run_id`` (an ensemble: ``ensemble:<method> <ensemble_id>``),
        ``model_sha256`` (an ensemble: sha256 of its ``run_id:sha256`` lines),
        ``dataset_key`` and ``dlpipe_version``."""
        from dlpipe import __version__

        ids = self.selection.run_ids
        hashes = [file_sha256(model_path(self.folder, r)) for r in ids]
        single = len(ids) == 1 and self.selection.weights is None
        keys = sorted({self.infos[r]["dataset_key"] for r in ids})
        joined = "\n".join(f"{r}:{h}" for r, h in zip(ids, hashes))
        return {
            "model": self.selection.name,
            "run_id": ids[0] if single else f"ensemble:{self.selection.method}",
            "model_sha256": hashes[0] if single else hashlib.sha256(joined.encode()).hexdigest(),
            "dataset_key": ",".join(keys),
            "dlpipe_version": __version__,
        }

    def member_outputs(self, run_id: str, path, *, last=False, batch_size=32):
        """``(inputs, outputs)`` of one member on the new data at ``path``."""
        info, state = self.infos[run_id], self.states[run_id]
        inputs = self.kind.predict_inputs(state, info, path, last=last, batch_size=batch_size)
        model = self.model(run_id)
        try:
            raw = model.predict(inputs.x, batch_size=batch_size, verbose=0)
        except Exception as exc:
            if inputs.recheck is None:
                raise
            inputs = inputs.recheck(exc)  # the full checks name the file that failed
            raw = model.predict(inputs.x, batch_size=batch_size, verbose=0)
        return inputs, as_outputs(raw)

    def predict(self, path, *, last: bool = False, batch_size: int = 32):
        """The output table of the new data at ``path``.

        Args:
            path: the new data (as the study kind reads it).
            last: timeseries: only the newest window.
            batch_size: inputs per model call.

        Returns:
            A pandas DataFrame: the id columns, the kind's output columns (``prediction``,
            units or class probabilities and ``class_name``), ``status`` (``ok``, or
            ``bad`` with its ``reason`` for a file left out) and :data:`PROVENANCE`;
            ``status``, ``reason`` and the provenance columns are pandas categoricals
            (a few distinct strings: a large output builds and writes them ~5x faster).
        """
        import pandas as pd

        results = [
            self.member_outputs(r, path, last=last, batch_size=batch_size)
            for r in self.selection.run_ids
        ]
        inputs, outputs = self.combine(results)
        frame = pd.DataFrame(
            {
                **inputs.ids,
                **self.kind.predict_columns(self.states[self.selection.run_ids[0]], outputs),
            }
        )
        frame["status"], frame["reason"] = constant(len(frame), "ok"), constant(len(frame), "")
        if inputs.bad:
            bad = pd.DataFrame(inputs.bad).assign(status="bad")
            frame = pd.concat([frame, bad], ignore_index=True)
            for name in ("status", "reason"):
                frame[name] = frame[name].astype("category")
        for name, value in self.provenance().items():
            frame[name] = constant(len(frame), value)
        for note in inputs.notes:
            print(f"note: {note}")
        return frame

    def combine(self, results):
        """``(inputs, outputs)``: one model's, or the ensemble's over the inputs every
        member predicted (members aligned on their ids), weighted by the stored weights."""
        from dlpipe.ensembles import combine

        if self.selection.weights is None:
            return results[0]
        keys = [id_keys(inputs.ids) for inputs, _ in results]
        common = set(keys[0]).intersection(*map(set, keys[1:]))
        first = [i for i, k in enumerate(keys[0]) if k in common]
        stacked = []
        for (_, outputs), member_keys in zip(results, keys):
            where = {k: i for i, k in enumerate(member_keys)}
            stacked.append(outputs[[where[keys[0][i]] for i in first]])
        inputs = results[0][0]
        ids = {name: np.asarray(values)[first] for name, values in inputs.ids.items()}
        aligned = type(inputs)(None, ids, inputs.bad, inputs.notes)
        return aligned, combine(self.selection.weights, np.stack(stacked))


def log_model_load(run_id: str) -> None:
    """Append ``<pid> <run_id>`` to the file of :data:`LOAD_LOG_ENV`, when set."""
    import os

    log = os.environ.get(LOAD_LOG_ENV)
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {run_id}\n")


def write_output(frame, out: str | Path) -> Path:
    """Write the output table: CSV when ``out`` ends with ``.csv``, else Parquet
    (atomically: a temporary file, then a rename)."""
    import os

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix.lower() == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    return out
