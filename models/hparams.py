"""Hyperparameter coercion at the boundary where search values become layer arguments."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

_TYPE_WORDS = {int: "an integer", float: "a finite number", str: "a string", bool: "a boolean"}


def coerce_hparams(
    hp: Mapping[str, object], param_types: Mapping[str, type], *, family: str
) -> dict:
    """Convert hyperparameter values to plain Python `int` / `float` / `str` / `bool`.

    Shared case C09: Hyperopt hands over `32.0` for `hp.quniform` and `numpy.int64(32)`
    for `hp.choice(numpy.arange(...))`; Keras 3 rejects both as `units` / `filters` /
    `output_dim`. This is the one place where such values are converted. Conversions:

    - `int`: Python or numpy integers, and integral floats (`32.0`, `np.float32(32.0)`)
      become `int`; non-integral or non-finite floats, bools and strings are rejected.
    - `float`: Python or numpy integers and floats become `float`; NaN, infinities,
      bools and strings are rejected.
    - `str`: `str` (including `numpy.str_`) only.
    - `bool`: Python `bool` or `numpy.bool_` only (no 0/1, no "true").

    Args:
        hp: Hyperparameter values by name, e.g. `{"units": 32.0, "learning_rate": 1e-3}`.
            May hold any subset of `param_types`.
        param_types: The type each known hyperparameter must have, one of
            `int`, `float`, `str`, `bool`.
        family: Model family name, used in error messages.

    Returns:
        A new dict with the same keys as `hp` and plain Python values.

    Raises:
        ValueError: If `hp` has a key missing from `param_types` (the message lists the
            known keys), a value cannot be converted exactly to its type, or is out of
            range (integers >= 1, `learning_rate` > 0, dropout rates in [0, 1)); the
            message names the family, the key and the received value.
        TypeError: If `param_types` declares a type other than int, float, str, bool.
    """
    unknown = sorted(set(hp) - set(param_types))
    if unknown:
        raise ValueError(
            f"Unknown hyperparameter(s) {unknown} for family `{family}`. "
            f"Known hyperparameters: {sorted(param_types)}. Received: hp={dict(hp)!r}"
        )
    out = {
        key: _coerce_value(value, param_types[key], key=key, family=family)
        for key, value in hp.items()
    }
    for key, value in out.items():
        _check_range(key, value, family)
    return out


def _check_range(key: str, value: object, family: str) -> None:
    """Every integer hyperparameter of the builders is a count or a size (>= 1);
    learning rates are > 0; dropout rates are in [0, 1)."""
    problem = None
    if isinstance(value, int) and not isinstance(value, bool) and value < 1:
        problem = "a positive integer"
    elif key == "learning_rate" and isinstance(value, float) and not value > 0:
        problem = "> 0"
    elif "dropout" in key and isinstance(value, float) and not 0.0 <= value < 1.0:
        problem = "in [0, 1)"
    if problem:
        raise ValueError(
            f"Hyperparameter `{key}` of family `{family}` must be {problem}. "
            f"Received: {key}={value!r}"
        )


def _coerce_value(value: object, kind: type, *, key: str, family: str) -> object:
    """Return `value` as a plain `kind`, or raise ValueError in Keras style."""
    if kind not in _TYPE_WORDS:
        raise TypeError(
            f"Hyperparameter `{key}` of family `{family}` declares an unsupported type. "
            f"Expected one of int, float, str, bool. Received: {kind!r}"
        )
    is_bool = isinstance(value, (bool, np.bool_))
    if kind is bool and is_bool:
        return bool(value)
    if kind is str and isinstance(value, str):
        return str(value)
    if kind is int and not is_bool:
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real) and float(value).is_integer():
            return int(value)
    if kind is float and not is_bool and isinstance(value, numbers.Real):
        if math.isfinite(float(value)):
            return float(value)
    raise ValueError(
        f"`{key}` of family `{family}` must be {_TYPE_WORDS[kind]}. Received: {key}={value!r}"
    )
