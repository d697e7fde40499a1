"""The ensemble stage's outputs: the ``ensembles`` Parquet part and the weights plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from dlpipe.tasks.ensembling.members import MemberPredictions
from dlpipe.tasks.reports import tables as reports


def plot_ensemble_weights(rows: list[dict], members: MemberPredictions, path: str | Path) -> Path:
    """Heat map of member weights per method (rows: methods, columns: members).

    Args:
        rows: rows of `build_ensembles` (``method``, ``chosen``, ``weights``,
            ``val_score``, ``test_score``).
        members: the members the weights are aligned with (labels: family + run id).
        path: PNG file to write (matplotlib Agg, no screen needed).

    Returns:
        ``path``.
    """
    from dlpipe.tasks.reports.plots import pyplot, save_figure

    plt = pyplot()
    weights = np.array([json.loads(row["weights"]) for row in rows])  # (methods, members)
    methods = [
        f"{'* ' if row['chosen'] else ''}{row['method']}\n"
        f"val {row['val_score']:.3f} / test {row['test_score']:.3f}"
        for row in rows
    ]
    labels = [
        f"{family} [{run_id[-6:]}]" for family, run_id in zip(members.families, members.run_ids)
    ]
    n_methods, n_members = weights.shape
    fig, ax = plt.subplots(
        figsize=(min(40.0, max(7.0, 3.0 + 0.75 * n_members)), 1.6 + 0.6 * n_methods)
    )
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(n_members), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_methods), methods, fontsize=8)
    if n_members <= 30:
        for i in range(n_methods):
            for j in range(n_members):
                if weights[i, j] >= 0.005:  # softmax weights are never exactly 0
                    ax.text(
                        j,
                        i,
                        f"{weights[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if weights[i, j] > 0.6 else "white",
                    )
    loss = rows[0]["loss"] if rows else ""
    ax.set_title(
        f"ensemble weights, loss {loss}\n(* = chosen by cross-fitting on "
        "validation; test scored once)",
        fontsize=10,
    )
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="weight")
    fig.tight_layout()
    return save_figure(fig, path)


def write_ensemble_report(run_dir, rows: list[dict], members: MemberPredictions) -> list[Path]:
    """Writes the ensemble rows (one Parquet part, atomic) and the weights plot.

    Args:
        run_dir: the run directory to write into.
        rows: rows of `build_ensembles` (one ``ensemble_id``).
        members: the members the rows' weights are aligned with.

    Returns:
        ``[<run_dir>/reports/ensembles/part-<ensemble_id>.parquet,
        <run_dir>/plots/<weights_plot_name(members)>]``.

    Raises:
        ValueError: ``rows`` is empty, mixes several ensemble ids, or has weights that
            do not match the members.
    """
    if not rows:
        raise ValueError("`rows` must hold at least 1 ensemble row. Received: []")
    ids = {row["ensemble_id"] for row in rows}
    if len(ids) != 1:
        raise ValueError(f"`rows` must share one `ensemble_id`. Received: {sorted(ids)}")
    for row in rows:
        weights = json.loads(row["weights"])
        if len(weights) != members.n_members or not math.isclose(sum(weights), 1.0, abs_tol=1e-9):
            raise ValueError(
                f"`rows` method {row['method']!r} must have {members.n_members} weights "
                f"summing to 1 (one per member). Received: {weights}"
            )
    run_dir = Path(run_dir)
    part = reports.write_part(run_dir, "ensembles", ids.pop(), rows)
    plot = plot_ensemble_weights(rows, members, run_dir / "plots" / weights_plot_name(members))
    return [part, plot]


def weights_plot_name(members: MemberPredictions) -> str:
    """``ensemble_weights.png`` (hold-out studies, and a K-fold study's out-of-fold fit),
    ``ensemble_weights_holdout.png`` (a K-fold study's hold-out fit)."""
    return "ensemble_weights_holdout.png" if members.fit == "holdout" else "ensemble_weights.png"


__all__ = ["plot_ensemble_weights", "weights_plot_name", "write_ensemble_report"]
