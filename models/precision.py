"""Keras dtype policies applied while a model is built (issue 17's precision policy).

Layers take the global dtype policy in force when they are created (Keras mixed
precision); :func:`dtype_policy_scope` sets it for the duration of a ``with`` block and
puts the previous one back, so a worker process that builds a bfloat16 conv base
builds its next model in float32 again.
"""

from __future__ import annotations

import contextlib

from dlpipe.models.lazy_keras import keras

#: Keras policy names a scope accepts: variables float32, computations in the second
#: dtype (``float32``: everything float32).
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


@contextlib.contextmanager
def dtype_policy_scope(policy: str):
    """Build layers under a Keras dtype policy, then restore the previous one.

    Args:
        policy: One of :data:`POLICIES`. ``mixed_float16`` models compiled inside the
            scope get Keras' loss scaling (``compile`` wraps the optimizer).

    Yields:
        None.

    Raises:
        ValueError: Unknown ``policy``.
    """
    if policy not in POLICIES:
        raise ValueError(f"`policy` must be one of {', '.join(POLICIES)}. Received: {policy!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
