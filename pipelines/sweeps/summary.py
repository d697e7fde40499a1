"""What a finished sweep shows: the best trials, the top K, its plots."""

from __future__ import annotations

from pathlib import Path

from dlpipe.pipelines.sweeps.recorder import OBJECTIVE, compact_hp
from dlpipe.tasks.reports import tables as reports


def top_k(ok, k: int):
    """The best ``k`` distinct runs (by ``run_id``) of the finished trials ``ok``,
    ordered by :data:`OBJECTIVE` on ``val_loss`` (ties: the earlier trial)."""
    return OBJECTIVE.sort(ok, "val_loss", then=["trial"]).drop_duplicates("run_id").head(k)


def write_sweep_plots(sweep_dir: Path) -> list[Path]:
    """Validation loss by trial with the running best, and loss against each numeric
    hyperparameter."""
    from dlpipe.tasks.reports.plots import plot_hp_effects, plot_trials

    trials = reports.read_table(sweep_dir, "trials")
    return [
        plot_trials(trials, sweep_dir / "plots" / "trials.png"),
        plot_hp_effects(trials, sweep_dir / "plots" / "hyperparameters.png"),
    ]


def write_sweep_outputs(sweep_dir: Path) -> Path:
    """Everything a finished (or stopped) sweep shows: its plots, TensorBoard's HParams
    experiment (one session per trial) and the HTML report. Returns the report's path."""
    from dlpipe.pipelines.html_report import write_html_report
    from dlpipe.tasks.reports.hparams import write_hparams

    write_sweep_plots(sweep_dir)
    write_hparams(sweep_dir, reports.read_table(sweep_dir, "trials"))
    return write_html_report(sweep_dir)


def sweep_summary(sweep_dir: str | Path, top: int = 10):
    """The best trials with their resolved hyperparameters and, for the top K, test MAE.

    Returns:
        ``(frame, title)``.
    """
    import pandas as pd

    from dlpipe.pipelines.study import headline, kind_of_runs

    trials = reports.read_table(sweep_dir, "trials")
    all_runs = reports.read_table(sweep_dir, "runs")
    name = headline(all_runs)[1].display
    label = f"val {name}"
    runs = all_runs.assign(test=all_runs["test_metric"])
    merged = OBJECTIVE.sort(
        trials.merge(runs[["run_id", "test", "epochs_run"]], on="run_id", how="left"),
        "val_loss",
        then=["trial"],
    )
    frame = pd.DataFrame(
        {
            "trial": merged["trial"],
            "family": merged["family"],
            "hyperparameters": [compact_hp(h) for h in merged["hyperparameters"]],
            "val_loss": merged["val_loss"],
            label: merged["val_metric"],
            f"test {name}": merged["test"],
            "epochs": merged["epochs_run"],
            "status": merged["status"],
        }
    ).head(top)
    counts = trials["status"].value_counts().to_dict()
    base = runs[runs["family"] == "baseline"]
    values = headline(base)[0] if len(base) else None
    kind = kind_of_runs(all_runs)
    base_text = (
        f"{kind.baseline_name} baseline {label} {values.iloc[-1]:.3f} / "
        f"test {base['test'].iloc[-1]:.3f}; "
        if len(base)
        else ""
    )
    loss_text = f"validation {kind.loss_label}"
    title = (
        f"{Path(sweep_dir).name}: {len(trials)} trials ({counts}); {base_text}val_loss = "
        f"{loss_text}; test {name} only for the best K"
    )
    return frame.reset_index(drop=True), title
