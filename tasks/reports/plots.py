"""Plots of a study (PNG, matplotlib's Agg backend, no screen needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dlpipe.metrics import Metric, get_metric


def smooth_curve(values, factor: float = 0.8) -> np.ndarray:
    """Exponential moving average of a noisy curve (book listing 5.22).

    ``s[0] = v[0]``; ``s[i] = factor * s[i-1] + (1 - factor) * v[i]``. NaN values are
    carried over without updating the average.

    Args:
        values: 1-D sequence of floats (e.g. a loss per epoch).
        factor: smoothing factor in [0, 1); 0 returns the values unchanged.

    Returns:
        float64 array of the same length.
    """
    if not 0 <= factor < 1:
        raise ValueError(f"`factor` must be in [0, 1). Received: factor={factor}")
    out = np.asarray(values, dtype=np.float64).copy()
    for i in range(1, len(out)):
        if math.isfinite(out[i - 1]) and math.isfinite(out[i]):
            out[i] = factor * out[i - 1] + (1 - factor) * out[i]
        elif not math.isfinite(out[i]):
            out[i] = out[i - 1]
    return out


#: curves shorter than this many epochs are drawn raw only: an average over a handful of
#: points mostly shows its own lag
MIN_SMOOTH_EPOCHS = 20


def smooth_debiased(values, factor: float = 0.8) -> np.ndarray:
    """Bias-corrected exponential moving average (as Adam corrects its moments):
    ``m[i] = factor * m[i-1] + (1 - factor) * v[i]`` from ``m = 0``, shown as
    ``m[i] / (1 - factor ** n)`` after ``n`` finite values. Unlike the book's EMA
    (:func:`smooth_curve`, which starts at the first value) it does not hold early
    values back: the first point is the first value, the second the weighted mean of
    two. Non-finite values are skipped (the last average is carried).

    Args:
        values: 1-D sequence of floats.
        factor: smoothing factor in [0, 1); 0 returns the values unchanged.

    Returns:
        float64 array of the same length (NaN before the first finite value).
    """
    if not 0 <= factor < 1:
        raise ValueError(f"`factor` must be in [0, 1). Received: factor={factor}")
    raw = np.asarray(values, dtype=np.float64)
    out = np.full(len(raw), np.nan)
    mean, seen = 0.0, 0
    for i, value in enumerate(raw):
        if math.isfinite(value):
            mean, seen = factor * mean + (1 - factor) * value, seen + 1
        if seen:
            out[i] = mean / (1 - factor**seen)
    return out


def pyplot():
    """matplotlib.pyplot on the Agg backend (PNG files, no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders created), close it, return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    pyplot().close(fig)
    return path


def plot_loss_curves(
    history,
    labels: dict[str, str],
    path: str | Path,
    *,
    factor: float = 0.8,
    ylabel: str = "MAE (normalized)",
    best_epochs: dict[str, int] | None = None,
    columns: tuple[str, str] = ("loss", "val_loss"),
) -> Path:
    """Training and validation curves per epoch, one panel per run: raw, smoothed by a
    bias-corrected EMA (:func:`smooth_debiased`) from :data:`MIN_SMOOTH_EPOCHS` epochs
    on, and the restored best epoch marked.

    Args:
        history: DataFrame of the ``history`` table (run_id, epoch and ``columns``).
        labels: run_id -> panel title.
        path: PNG file to write.
        factor: EMA factor for the smoothed lines (book ch. 5.3: 0.8).
        ylabel: the curves' name and units (weather: MAE (normalized); classification:
            crossentropy, or accuracy for the accuracy curves).
        best_epochs: run_id -> the epoch whose weights were restored (1-based).
        columns: the training and validation columns drawn.
    """
    plt = pyplot()
    runs = [r for r in labels if r in set(history["run_id"])]
    n = max(1, len(runs))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    for ax, run_id in zip(axes.flat, runs):
        h = history[history["run_id"] == run_id].sort_values("epoch")
        smooth = len(h) >= MIN_SMOOTH_EPOCHS
        for col, color in zip(columns, ("tab:blue", "tab:orange")):
            ax.plot(h["epoch"], h[col], color=color, alpha=0.3 if smooth else 1.0, marker=".",
                    label=col)  # fmt: skip
            if smooth:
                ax.plot(h["epoch"], smooth_debiased(h[col].to_numpy(), factor), color=color,
                        label=f"{col}, smoothed (EMA {factor}, bias-corrected)")  # fmt: skip
        best = (best_epochs or {}).get(run_id)
        if best:
            ax.axvline(best, color="tab:gray", linestyle=":", label=f"best epoch {best}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(labels[run_id], fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(runs) :]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_val_mae(
    labels: list[str],
    values: list[float],
    baseline: float,
    path: str | Path,
    *,
    units: str = "",
    metric: Metric | str = "mae",
    baseline_name: str | None = None,
) -> Path:
    """Horizontal bars of a validation metric per model with the baseline as a dashed line.

    Args:
        labels, values: model labels and their validation metric (MAE in the target's
            units by default; accuracy for classification).
        baseline: the baseline's value of the same metric.
        path: PNG file to write.
        units: unit label of the axis (e.g. ``degC``).
        metric: the :class:`dlpipe.metrics.Metric` (or its name): its display name is on
            the axis, and its direction sorts the bars best first and colors those
            that beat the baseline.
        baseline_name: legend text of the baseline (default: common-sense baseline
            for MAE, majority-class baseline otherwise).
    """
    plt = pyplot()
    metric = metric if isinstance(metric, Metric) else get_metric(metric)
    order = metric.order(values)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(values) + 2.0))
    from matplotlib.patches import Patch

    colors = ["tab:green" if metric.is_better(values[i], baseline) else "tab:gray" for i in order]
    ax.barh([labels[i] for i in order], [values[i] for i in order], color=colors)
    line = ax.axvline(baseline, color="tab:red", linestyle="--")
    ax.invert_yaxis()
    ax.set_xlim(0, max(max(values), baseline) * 1.05)
    shown = metric.display
    ax.set_xlabel(f"validation {shown} ({units})" if units else f"validation {shown}")
    better = "higher" if metric.higher_is_better else "lower"
    ax.set_title(f"validation {shown} per model ({better} is better)", fontsize=10)
    name = baseline_name or (
        "common-sense baseline" if shown == "MAE" else "majority-class baseline"
    )
    ax.legend(
        [line, Patch(color="tab:green"), Patch(color="tab:gray")],
        [f"{name} {baseline:.3f}", "beats the baseline", "does not beat it"],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.15 - 0.3 / max(1, len(values))),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    return save_figure(fig, path)


def plot_trials(trials, path: str | Path, metric: Metric | str = "val_loss") -> Path:
    """Validation loss of every trial in trial order, with the running best (a step
    line) and failed trials marked on the x axis.

    Args:
        trials: DataFrame of the ``trials`` table (trial, val_loss, status, family).
        path: PNG file to write.
    """
    plt = pyplot()
    t = trials.sort_values("trial")
    fig, ax = plt.subplots(figsize=(8, 4))
    ok = t[t["status"] != "failed"]
    for family, group in ok.groupby("family"):
        ax.scatter(group["trial"], group["val_loss"], label=family, s=22)
    metric = metric if isinstance(metric, Metric) else get_metric(metric)
    # running best in the metric's direction (NaN = failed trials are skipped)
    best = metric.sign * np.fmin.accumulate(metric.sign * t["val_loss"].to_numpy(dtype=float))
    ax.step(t["trial"], best, where="post", color="black", label="running best")
    failed = t[t["status"] == "failed"]
    if len(failed):
        ymin = np.nanmin(t["val_loss"]) if ok.size else 0
        ax.scatter(failed["trial"], [ymin] * len(failed), marker="x", color="red", label="failed")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation loss")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("validation loss by trial, with the running best", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_hp_effects(trials, path: str | Path) -> Path:
    """Validation loss against each numeric hyperparameter (one panel each, log x
    axis for learning rates)."""
    import json

    plt = pyplot()
    ok = trials[trials["status"] != "failed"]
    hps = [json.loads(h) for h in ok["hyperparameters"]]
    names = sorted(
        {
            k
            for h in hps
            for k, v in h.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    )
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    loss = ok["val_loss"].to_numpy(dtype=float)
    families = ok["family"].to_numpy()
    for ax, name in zip(axes.flat, names):
        xs = np.array([h.get(name, np.nan) for h in hps], dtype=float)
        for family in sorted(set(families)):
            mask = families == family
            ax.scatter(xs[mask], loss[mask], s=18, label=family)
        if name.endswith("learning_rate") and np.nanmin(xs) > 0:
            readable_log_axis(ax.xaxis)
        ax.set_xlabel(name)
        ax.set_ylabel("validation loss")
    if names:
        axes.flat[0].legend(fontsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def readable_log_axis(axis) -> None:
    """A log axis labelled at 1, 2 and 5 of each decade in plain numbers (``0.0002``,
    ``0.0005``, ``0.001``), not powers of ten only; at every digit (``0.0007``,
    ``0.0008``...) when the data spans less than a decade. Call after plotting."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.axes.set_xscale("log") if axis.axis_name == "x" else axis.axes.set_yscale("log")
    low, high = sorted(axis.get_view_interval())
    narrow = low > 0 and high / low < 10  # within a decade: label every digit
    subs = tuple(float(d) for d in range(1, 10)) if narrow else (1.0, 2.0, 5.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(
        FuncFormatter(lambda v, _: np.format_float_positional(v, precision=6, trim="-"))
    )
    axis.set_minor_formatter(NullFormatter())
    axis.set_tick_params(labelsize=7, labelrotation=30)


def plot_kfold_curve(
    curve, smoothed, chosen: int, path: str | Path, *, metric: Metric, title: str
) -> Path:
    """The per-epoch validation curve averaged across K-fold folds (book listings
    3.29-3.30): raw, smoothed (when given) and the epoch chosen for the final model.

    Args:
        curve: ``pandas.Series`` of the fold mean, indexed by epoch (1-based).
        smoothed: the smoothed curve (same length) or None (short curves).
        chosen: the epoch count of the final model.
        metric: the curve's metric (its display name).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = np.asarray(curve.index)
    ax.plot(epochs, curve.to_numpy(), alpha=0.5 if smoothed is not None else 1.0, label="mean")
    if smoothed is not None:
        ax.plot(epochs, smoothed, label="smoothed (EMA 0.9)")
    ax.axvline(chosen, color="grey", linestyle="--", label=f"final epochs {chosen}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric.display} (fold mean)")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)
