"""TensorFlow set-up of a worker process, before its first op (shared case C13), and
the rule that such a process never loads pyarrow (issue 11, section 3)."""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import sys


class DeviceError(RuntimeError):
    """A task asked for a GPU but TensorFlow sees none (shared case C13)."""


def setup_tensorflow(num_cpus: float = 1, num_gpus: float = 0) -> list[str]:
    """Fix this process's TensorFlow devices and threads before its first op (C13).

    * ``num_gpus == 0``: GPUs are hidden (``CUDA_VISIBLE_DEVICES=""``) before TF loads;
      Ray 2.60 no longer hides them from tasks that requested none.
    * ``num_gpus > 0``: memory growth on every visible GPU (TF otherwise grabs all
      memory, and two half-GPU trials on one card would starve each other); if no GPU
      is visible, :class:`DeviceError`.
    * intra-op threads = ``max(1, int(num_cpus))``, inter-op threads = 1 (two workers
      that each start one thread per core reached only 1.28x on 2 cores, DESIGN.md).
    * in a clean TensorFlow worker (:func:`keep_pyarrow_out` in place), the packages of
      :data:`SKIPPED_AT_IMPORT` are refused while TensorFlow and Keras load, so Keras
      takes its "not installed" path for them (issue 17: ~2 s of the ~6.5 s CPU start-up
      of every fresh worker here); they import normally afterwards if a task needs them.

    Returns:
        The logical devices TF will use, e.g. ``["CPU:0"]`` or ``["CPU:0", "GPU:0"]``.

    Raises:
        DeviceError: ``num_gpus > 0`` and no GPU is visible.
    """
    threads = max(1, int(num_cpus))
    lean = contextlib.nullcontext()
    if "tensorflow" not in sys.modules:
        if not num_gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"
        if any(isinstance(f, _RefusePyarrow) for f in sys.meta_path):  # a clean TF worker
            lean = refusing(SKIPPED_AT_IMPORT)
    with quiet_native_stderr(), lean:  # TF >= 2.16 logs C++ banners before absl is set up
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        if not num_gpus and gpus:
            tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        pass  # TF already initialized in this process (in-process tests): settings stay
    devices = [d.name.replace("/device:", "") for d in tf.config.list_logical_devices()]
    if num_gpus and not gpus:
        raise DeviceError(
            f"task asked for num_gpus={num_gpus} but TensorFlow sees no GPU "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
            "run it on a GPU node or set resources.num_gpus: 0"
        )
    return devices


#: packages Keras imports when it loads, each inside ``try/except ImportError``, only for
#: features a training worker never uses: ``keras.visualization`` (matplotlib.pyplot,
#: ~0.7 s), ``keras.wrappers`` (scikit-learn and scipy, ~0.8 s), pandas input support of
#: ``fit`` (~0.5 s; dlpipe passes NumPy arrays and tf.data datasets). Measured: a fresh
#: process's CPU time for import + a small fit + save, 6.2-7.6 s -> 4.0-4.4 s.
SKIPPED_AT_IMPORT = ("matplotlib", "sklearn", "scipy", "pandas")


class _Refuse(importlib.abc.MetaPathFinder):
    """Import hook: the named top-level packages (and their submodules) raise
    ModuleNotFoundError."""

    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (dlpipe: not loaded with TensorFlow)",
                name=fullname,
            )
        return None


@contextlib.contextmanager
def refusing(names):
    """Refuse to import the packages ``names`` (top-level names) for the block; modules
    already imported are not affected (Python finds them in ``sys.modules``)."""
    hook = _Refuse(names)
    sys.meta_path.insert(0, hook)
    try:
        yield
    finally:
        sys.meta_path.remove(hook)


class _RefusePyarrow(importlib.abc.MetaPathFinder):
    """Import hook: ``import pyarrow`` (or a submodule) raises ModuleNotFoundError."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "pyarrow" or fullname.startswith("pyarrow."):
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (dlpipe: a TensorFlow worker does not load "
                "pyarrow; the driver writes the Parquet reports)",
                name=fullname,
            )
        return None


#: the job's own Ray worker set-up hook, passed on to :func:`tf_worker_setup` (a task's
#: set-up hook replaces the job's in its workers)
CHAINED_SETUP_HOOK_ENV = "DLPIPE_CHAINED_SETUP_HOOK"


def tf_worker_setup() -> None:
    """Ray worker set-up hook of the workers that run TensorFlow (set by
    :func:`dlpipe.tasks.remote.tf_worker_runtime_env`): runs when the worker process
    starts, before it deserializes any task argument, so :func:`keep_pyarrow_out` is in
    place before Ray's own serializers would import pyarrow; then the job's own set-up
    hook, if :data:`CHAINED_SETUP_HOOK_ENV` names one.

    Raises:
        RuntimeError: the job's hook failed (its error text).
    """
    keep_pyarrow_out()
    chained = os.environ.get(CHAINED_SETUP_HOOK_ENV)
    if chained:
        from ray._private.runtime_env.setup_hook import load_and_execute_setup_hook

        error = load_and_execute_setup_hook(chained)
        if error is not None:
            raise RuntimeError(f"the job's worker_process_setup_hook failed: {error}")


def keep_pyarrow_out() -> bool:
    """Make this process refuse to load pyarrow, before TensorFlow is imported.

    TensorFlow >= 2.20 and pyarrow's native libraries in one process have aborted at
    worker exit (``[mutex.cc] Mutex corrupt`` -> SIGABRT, issue 11). dlpipe's training
    code never imports pyarrow (:mod:`dlpipe.tasks.reports.tables` imports it only inside the
    driver-side Parquet functions), but Keras imports pandas when TensorFlow loads, and
    pandas loads pyarrow when it is installed. With this hook pandas takes its
    "pyarrow not installed" path (its optional-dependency check catches the
    ImportError). Call it first thing in a fresh worker that will run TensorFlow (the
    Ray tasks of :mod:`dlpipe.tasks.remote`, ``max_calls=1``): the hook lives as long as
    the process, so never call it in a driver or a test process that writes reports.

    Returns:
        True when the hook is in place (installed now or before); False when pyarrow
        was already loaded, so nothing can keep it out (the hook is then not installed).
    """
    if any(isinstance(f, _RefusePyarrow) for f in sys.meta_path):
        return True
    if "pyarrow" in sys.modules:
        return False
    sys.meta_path.insert(0, _RefusePyarrow())
    return True


@contextlib.contextmanager
def quiet_native_stderr():
    """Send file descriptor 2 to /dev/null for the block (native-code log chatter only;
    Python exceptions still propagate). No-op when ``DLPIPE_TF_LOGS=1``."""
    if os.environ.get("DLPIPE_TF_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
