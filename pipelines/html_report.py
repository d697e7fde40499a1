"""``reports/index.html``: one self-contained page per study or sweep (issue 16).

The study as a whole, which no other tool shows on one page: the study file and data
source, the dataset's quality (splits, repaired and skipped counts, bad files), every
run against the baseline (sortable; failed runs with their error), the loss curves and
metric charts, ensembles with their weights and val/test gap, a sweep's trials with
the running best, K-fold rows when present. Curves per epoch are TensorBoard's job
(``dlpipe tensorboard``). Rendering: :mod:`dlpipe.tasks.reports.html` (Jinja2).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

from dlpipe.pipelines.console import cell
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.reports.html import html_table, image_uri, write_page

#: plot file -> caption (other PNGs in ``plots/`` are shown under their file name)
CAPTIONS = {
    "loss_curves.png": "Training and validation loss per model (best epoch marked)",
    "accuracy_curves.png": "Training and validation accuracy per model (best epoch marked)",
    "val_mae.png": "Validation MAE per model against the common-sense baseline",
    "val_metric.png": "Validation accuracy per model against the majority-class baseline",
    "ensemble_weights.png": "Member weights per ensemble method",
    "trials.png": "Validation loss by trial, with the running best",
    "hyperparameters.png": "Validation loss against each numeric hyperparameter",
}
#: list items shown in the dataset section before "... (N in all)"
MAX_ITEMS = 5


def compact(value, limit: int = 400) -> str:
    """A report value as short text: long lists cut to their first items, JSON
    without spaces beyond ``, ``, at most ``limit`` characters."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value[:limit]
    if isinstance(value, list) and len(value) > MAX_ITEMS:
        head = json.dumps(value[:MAX_ITEMS], default=str)[:-1]
        return f"{head}, ... ({len(value)} in all)]"[:limit]
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def header_facts(run_dir: Path, datasets) -> list[tuple[str, str]]:
    """The page header: study file, kind, data source, dataset key, when written."""
    study = {}
    if (run_dir / "study.json").is_file():
        study = json.loads((run_dir / "study.json").read_text())
    elif (run_dir / "sweep.json").is_file():  # a sweep keeps its study in its stamp
        study = json.loads((run_dir / "sweep.json").read_text()).get("study", {})
    facts = [
        ("run directory", str(run_dir.resolve())),
        ("study file", str(study.get("source_file", "n/a"))),
        ("pipeline", str(study.get("pipeline", "n/a"))),
    ]
    if len(datasets):
        row = datasets.iloc[-1]
        facts += [("data source", str(row["source"])), ("dataset key", str(row["dataset_key"]))]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return facts + [("written", stamp)]


def dataset_facts(datasets) -> list[tuple[str, str]]:
    """The latest dataset's rows, target, splits, replaced values and quality counts."""
    if not len(datasets):
        return []
    row = datasets.iloc[-1]
    facts = [("rows", cell(row["rows"])), ("target", str(row["target"]))]
    facts.append(("splits", compact(row["splits"])))
    facts.append(("replaced values", compact(row["sentinel_counts"])))
    quality = json.loads(row["quality"]) if isinstance(row["quality"], str) else {}
    facts += [(f"quality: {k}", compact(v)) for k, v in sorted(quality.items())]
    return facts


def runs_table(run_dir: Path) -> dict:
    """The runs against the baseline, as ``dlpipe report`` prints them, sortable; the
    full error of every failed run under the table."""
    from dlpipe.pipelines.report import runs_summary
    from dlpipe.pipelines.study import headline

    frame, title = runs_summary(run_dir)
    runs = reports.read_table(run_dir, "runs")
    metric = headline(runs)[1]
    best = {c: metric.mode for c in frame.columns if c.startswith(("val ", "test "))}
    change = next((c for c in frame.columns if c.startswith("vs baseline")), None)
    if change:
        best[change] = metric.mode  # the change's sign follows the metric
    errors = [
        {"run_id": r.run_id, "error": str(r.error)}
        for r in runs.itertuples()
        if r.status != "ok" and r.error is not None
    ]
    classes = [
        "baseline" if f == "baseline" else ("failed" if not str(s).startswith("ok") else "")
        for f, s in zip(frame["family"], frame["status"])
    ]
    texts = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    return html_table(
        "runs", "Runs against the baseline", frame, texts,
        best=best, row_classes=classes, note=title, errors=errors,
    )  # fmt: skip


def ensembles_table(run_dir: Path) -> dict | None:
    """Ensemble methods with members, weights and the val/test gap (None without)."""
    import pandas as pd

    if not (run_dir / "reports" / "ensembles").is_dir():
        return None
    ens = reports.read_table(run_dir, "ensembles")
    if ens.empty:
        return None
    ens = ens[ens["created_at"] == ens["created_at"].max()]  # the latest stage's rows
    members = [json.loads(m) for m in ens["members"]]
    weights = [json.loads(w) for w in ens["weights"]]
    frame = pd.DataFrame(
        {
            "method": ens["method"].to_numpy(),
            "chosen": ["yes" if c else "" for c in ens["chosen"]],
            "loss": ens["loss"].to_numpy(),
            "cv score": ens["cv_score"].to_numpy(),
            "val score": ens["val_score"].to_numpy(),
            "test score": ens["test_score"].to_numpy(),
            "val/test gap": ens["val_test_gap"].to_numpy(),
            "best single val": ens["best_single_val"].to_numpy(),
            "weights": [
                ", ".join(f"{m} {w:.2f}" for m, w in zip(ms, ws) if round(w, 2) > 0)
                for ms, ws in zip(members, weights)
            ],
        }
    )
    texts = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    mode = "max" if str(ens["loss"].iloc[0]) == "accuracy" else "min"
    return html_table(
        "ensembles", "Ensembles", frame, texts,
        best={c: mode for c in ("cv score", "val score", "test score")},
        id_columns=(), note="scores in the ensemble's loss; gap = test - validation",
    )  # fmt: skip


def trials_table(run_dir: Path) -> dict | None:
    """A sweep's trials in order with the running best validation loss (None for a
    study)."""
    from dlpipe.metrics import get_metric

    if not (run_dir / "reports" / "trials").is_dir():
        return None
    trials = reports.read_table(run_dir, "trials").sort_values("trial").reset_index(drop=True)
    objective, best, running = get_metric("val_loss"), math.inf, []
    for value in trials["val_loss"]:
        if math.isfinite(value) and objective.is_better(value, best):
            best = float(value)
        running.append(best if math.isfinite(best) else math.nan)
    frame = trials[["trial", "family", "run_id", "hyperparameters", "val_loss", "val_metric"]]
    frame = frame.assign(**{"running best val_loss": running, "status": trials["status"]})
    texts = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    return html_table(
        "trials", "Sweep trials", frame, texts, best={"val_loss": "min"},
        note="in proposal order; the running best is the lowest validation loss so far",
    )  # fmt: skip


def figures(run_dir: Path) -> list[dict]:
    """Every PNG of ``plots/``, inline, the known ones first in a fixed order."""
    folder = run_dir / "plots"
    if not folder.is_dir():
        return []
    order = list(CAPTIONS)
    paths = sorted(
        folder.glob("*.png"),
        key=lambda p: (order.index(p.name) if p.name in order else len(order), p.name),
    )
    return [{"uri": image_uri(p), "caption": CAPTIONS.get(p.name, p.name)} for p in paths]


def write_html_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/reports/index.html`` from the run directory's reports and
    plots. Returns its path."""
    from importlib.metadata import version

    run_dir = Path(run_dir)
    datasets = reports.read_table(run_dir, "datasets")
    sweep = (run_dir / "reports" / "trials").is_dir()
    tables = [
        t for t in (trials_table(run_dir), runs_table(run_dir), ensembles_table(run_dir)) if t
    ]
    context = {
        "title": f"{'sweep' if sweep else 'study'} {run_dir.name}",
        "header": header_facts(run_dir, datasets),
        "dataset": dataset_facts(datasets),
        "tables": tables,
        "figures": figures(run_dir),
        "footer": f"dlpipe {version('dlpipe')}; per-epoch curves of every run: "
        f"dlpipe tensorboard {run_dir}",
    }
    return write_page(run_dir / "reports" / "index.html", context)
