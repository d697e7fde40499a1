"""Keras, imported on first use.

The model modules name ``keras`` at module level, but only use it inside the builders.
Importing them through this proxy lets a process read the registry (family names,
defaults, hyperparameter types, input-length limits) without loading TensorFlow: the
driver validates study files and writes the Parquet reports, and a process that holds
both TensorFlow (>= 2.20) and pyarrow's native libraries has been seen to abort at exit
(issue 11, section 3). The first attribute read (``keras.layers``, ``keras.Input``...)
imports the real module.
"""

from __future__ import annotations

import importlib


class LazyModule:
    """A stand-in for a module that imports it at the first attribute access.

    Args:
        name: the module's import name (``"keras"``).
    """

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str):
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


keras = LazyModule("keras")

__all__ = ["LazyModule", "keras"]
