"""The registry of study kinds: the one place that maps a study file's ``pipeline:``
value to the object that knows that kind (:class:`~dlpipe.pipelines.kinds.base.StudyKind`).

Adding a kind: a module here with its config class and ``StudyKind`` subclass, its
tasks under ``tasks/<domain>/`` (prepare, trainer, evaluator), its model families in
``models/`` (and their search spaces), and one line in :data:`KINDS`.
"""

from __future__ import annotations

from dlpipe.pipelines.kinds.base import StudyKind
from dlpipe.pipelines.kinds.images import ImagesKind
from dlpipe.pipelines.kinds.tabular import TabularKind
from dlpipe.pipelines.kinds.text import TextKind
from dlpipe.pipelines.kinds.timeseries import TimeseriesKind

#: ``pipeline:`` value -> its kind
KINDS: dict[str, StudyKind] = {
    k.name: k for k in (TimeseriesKind(), TextKind(), ImagesKind(), TabularKind())
}


def get_kind(name_or_cfg) -> StudyKind:
    """The kind of a study config (its ``pipeline``) or of a ``pipeline:`` name.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    name = getattr(name_or_cfg, "pipeline", name_or_cfg)
    if name not in KINDS:
        raise ValueError(f"`pipeline` must be one of {', '.join(KINDS)}. Received: {name!r}")
    return KINDS[name]


__all__ = ["KINDS", "StudyKind", "get_kind"]
