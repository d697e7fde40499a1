"""The one table of metrics: which direction is "better" for every score dlpipe compares.

Every place that compares two scores (the best epoch and its restored weights,
EarlyStopping and ReduceLROnPlateau, the best run of a study, a sweep's best trial and
top-K, the ensemble method chosen, "vs baseline %", the plots' "best" markers) takes the
direction from :func:`get_metric` and compares through a :class:`Metric`, never with a
bare ``<`` on a score. This is the rule Keras's own callbacks apply with ``mode="auto"``
(``keras.callbacks.MonitorCallback``): losses and errors are minimized, accuracy and AUC
are maximized; unlike Keras, a name that is not in the table is an error, not a guess.

Names are Keras log names: ``loss``, ``mae``, ``accuracy``...; a ``val_`` prefix (a
validation-split value) has the same direction. The book's first-edition name ``acc``
(``val_acc``, *Deep Learning with Python* 1st ed., Keras 2.2) is an alias of
``accuracy``: Keras 3 logs ``val_accuracy``.

Shared cases C16 (direction of a monitored metric) and C17 (monitor names checked
before anything runs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    """A score and the direction in which it improves.

    Attributes:
        name: the Keras log name without ``val_`` (``"loss"``, ``"mae"``, ``"accuracy"``).
        display: the name shown to people (``"MAE"``, ``"accuracy"``).
        higher_is_better: True for accuracy/AUC, False for losses and errors.
    """

    name: str
    display: str
    higher_is_better: bool

    @property
    def mode(self) -> str:
        """``"max"`` or ``"min"``: the ``mode`` of Keras callbacks and Ray Tune."""
        return "max" if self.higher_is_better else "min"

    @property
    def sign(self) -> float:
        """``-1.0`` (maximized) or ``1.0``: ``sign * score`` is a quantity to minimize."""
        return -1.0 if self.higher_is_better else 1.0

    @property
    def worst(self) -> float:
        """The value every finite score beats (``-inf`` or ``inf``)."""
        return -math.inf if self.higher_is_better else math.inf

    @property
    def ascending(self) -> bool:
        """Sort order that puts the best first (for ``DataFrame.sort_values``)."""
        return not self.higher_is_better

    def is_better(self, a, b) -> bool:
        """Whether score ``a`` is strictly better than ``b``.

        A non-finite ``a`` (NaN, or infinity in the wrong direction) is never better;
        a finite ``a`` beats a NaN ``b``.
        """
        a, b = float(a), float(b)
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        return a > b if self.higher_is_better else a < b

    def best_index(self, values: Iterable) -> int | None:
        """Position of the best finite value (the first one on ties); None when no value
        is finite."""
        array = np.asarray(list(values), dtype=np.float64)
        finite = np.isfinite(array)
        if not finite.any():
            return None
        keyed = np.where(finite, self.sign * array, np.inf)
        return int(np.argmin(keyed))

    def order(self, values: Sequence) -> np.ndarray:
        """Positions sorted best first (stable on ties); NaN last."""
        array = np.asarray(values, dtype=np.float64)
        keyed = np.where(np.isnan(array), np.inf, self.sign * array)
        return np.argsort(keyed, kind="stable")

    def sort(self, frame, column: str, *, then: Sequence[str] = ()):
        """``frame`` sorted best first by ``column`` (stable; NaN last), then by the
        columns in ``then`` (ascending) among equal scores."""
        by = [column, *then]
        return frame.sort_values(
            by, ascending=[self.ascending] + [True] * len(then), na_position="last", kind="stable"
        )

    def change_vs(self, value, baseline) -> float:
        """``100 * (value / baseline - 1)``: the change against a baseline in percent
        (negative = lower). NaN when the baseline is 0 or not finite (print it as
        ``n/a``, never ``inf``: shared case C22)."""
        value, baseline = float(value), float(baseline)
        if not math.isfinite(baseline) or baseline == 0.0 or not math.isfinite(value):
            return math.nan
        return 100.0 * (value / baseline - 1.0)


_TABLE = (
    Metric("loss", "loss", False),
    Metric("mae", "MAE", False),
    Metric("mse", "MSE", False),
    Metric("rmse", "RMSE", False),
    Metric("log_loss", "log loss", False),
    Metric("binary_crossentropy", "binary crossentropy", False),
    Metric("categorical_crossentropy", "categorical crossentropy", False),
    Metric("sparse_categorical_crossentropy", "sparse categorical crossentropy", False),
    Metric("accuracy", "accuracy", True),
    Metric("binary_accuracy", "binary accuracy", True),
    Metric("categorical_accuracy", "categorical accuracy", True),
    Metric("sparse_categorical_accuracy", "sparse categorical accuracy", True),
    Metric("auc", "AUC", True),
)
METRICS: dict[str, Metric] = {m.name: m for m in _TABLE}
"""name -> :class:`Metric`, for every score dlpipe reads or compares."""

ALIASES = {"acc": "accuracy"}
"""First-edition Keras names (``val_acc``) -> the Keras 3 name."""


def canonical_name(name: str) -> str:
    """``name`` with its alias resolved, keeping a ``val_`` prefix: ``val_acc`` ->
    ``val_accuracy``, ``acc`` -> ``accuracy``; any other name unchanged."""
    prefix, base = ("val_", name[4:]) if name.startswith("val_") else ("", name)
    return prefix + ALIASES.get(base, base)


def get_metric(name: str) -> Metric:
    """The :class:`Metric` of a Keras log name, with or without ``val_``.

    Raises:
        ValueError: if the name (after its alias) is not in the table; the message
            lists the known names.
    """
    if not isinstance(name, str):
        raise ValueError(f"a metric name must be a string. Received: {name!r}")
    base = canonical_name(name)
    base = base[4:] if base.startswith("val_") else base
    if base not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {sorted(METRICS)}")
    return METRICS[base]


def monitor_names(logged: Iterable[str]) -> list[str]:
    """The names a callback may monitor in a study whose models log ``logged``
    (``("loss", "accuracy")``): each name and its ``val_`` form, validation first."""
    logged = list(logged)
    return [f"val_{n}" for n in logged] + logged


def check_monitor(monitor, logged: Iterable[str], field: str) -> str:
    """Check a callback's ``monitor`` against what the study's models log.

    Args:
        monitor: the study file's value (``"val_loss"``, ``"val_acc"``...).
        logged: the Keras log names the study kind's models produce (without ``val_``).
        field: the study-file field, named in the error
            (``training.early_stopping.monitor``).

    Returns:
        The canonical name (``val_acc`` -> ``val_accuracy``).

    Raises:
        ValueError: naming ``field``, the value and the valid names.
    """
    valid = monitor_names(logged)
    name = canonical_name(monitor) if isinstance(monitor, str) else monitor
    if name not in valid:
        raise ValueError(
            f"`{field}` must be one of {valid} (what this study's models "
            f"log). Received: {monitor!r}"
        )
    return name


__all__ = [
    "ALIASES",
    "METRICS",
    "Metric",
    "canonical_name",
    "check_monitor",
    "get_metric",
    "monitor_names",
]
