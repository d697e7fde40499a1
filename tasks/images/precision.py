"""The image study's precision policy (issue 17): ``images.precision`` and how each node
resolves it to a Keras dtype policy.

* ``float32`` (default): everything in float32, as before the setting existed.
* ``bfloat16``: ``mixed_bfloat16`` (float32 variables, bfloat16 computations).
* ``float16``: ``mixed_float16`` (the same with float16; training scales the loss).
* ``auto``: resolved on the node that runs the task: ``mixed_float16`` when TensorFlow
  sees a GPU; ``mixed_bfloat16`` on a CPU whose ``/proc/cpuinfo`` flags show
  AVX512-BF16 or AMX (``avx512_bf16``, ``amx_bf16``: native bfloat16 arithmetic);
  ``float32`` otherwise (bfloat16 emulated on other CPUs is slower than float32).

It applies to the conv base of feature extraction and to ``frozen_base`` training.
Features are stored float32 whatever the policy; a policy other than ``float32`` is
part of the feature cache's base key. NumPy-free, TensorFlow imported only to list GPUs.
"""

from __future__ import annotations

#: Values of ``images.precision``.
PRECISIONS = ("float32", "bfloat16", "float16", "auto")
#: ``/proc/cpuinfo`` flags of CPUs with native bfloat16 arithmetic.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def check_precision(precision) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`.

    Raises:
        ValueError: Another value (the message names the field ``precision``).
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {', '.join(PRECISIONS)}. Received: {precision!r}"
        )
    return precision


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU flags the kernel reports (the ``flags`` lines of ``path``); an empty set
    when the file cannot be read (not Linux)."""
    try:
        with open(path) as f:
            lines = [line for line in f if line.startswith("flags")]
    except OSError:
        return set()
    return {flag for line in lines for flag in line.split(":", 1)[-1].split()}


def resolve_precision(precision: str, *, gpus=None, flags=None) -> str:
    """The Keras dtype policy of ``precision`` on this node.

    Args:
        precision: One of :data:`PRECISIONS`.
        gpus: The GPUs TensorFlow sees (default:
            ``tf.config.list_physical_devices("GPU")``, only read for ``auto``).
        flags: CPU flags (default: :func:`cpu_flags`, only read for ``auto``).

    Returns:
        ``"float32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"``.

    Raises:
        ValueError: Unknown ``precision``.
    """
    check_precision(precision)
    if precision != "auto":
        return _POLICY[precision]
    if gpus is None:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return "mixed_float16"
    flags = cpu_flags() if flags is None else set(flags)
    return "mixed_bfloat16" if flags.intersection(BF16_FLAGS) else "float32"
