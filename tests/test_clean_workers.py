"""No pyarrow in a process that runs TensorFlow (issue 11, section 3).

A training worker died with ``[mutex.cc] Mutex corrupt`` -> SIGABRT after its run; TF
>= 2.20 and pyarrow's native libraries in one process are the reported cause. The
training path imports no pyarrow, the Ray tasks that run TensorFlow refuse it (Keras
imports pandas, which would load it), and the driver is the only Parquet writer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

TRAINING_MODULES = [
    "dlpipe.tasks.remote",
    "dlpipe.tasks.weather.train",
    "dlpipe.tasks.text.train",
    "dlpipe.tasks.images.train",
    "dlpipe.tasks.training.fit",
    "dlpipe.tasks.training.tf_setup",
    "dlpipe.tasks.reports.tables",
]


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_training_modules_import_no_pyarrow():
    """Importing the training path (what a Ray worker unpickles) loads no pyarrow, no
    pandas and no TensorFlow."""
    loaded = _run(
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in TRAINING_MODULES)
        + "print(json.dumps({m: m in sys.modules for m in "
        "('pyarrow', 'pandas', 'tensorflow')}))"
    )
    assert loaded == {"pyarrow": False, "pandas": False, "tensorflow": False}


@pytest.mark.train
def test_keep_pyarrow_out_with_tensorflow_and_pandas():
    """With the hook, TensorFlow + Keras train and pandas works, and pyarrow stays out
    (without it, importing TensorFlow loads pyarrow through Keras -> pandas: checked
    first, so the test shows the hook is what keeps it out)."""
    without = _run(
        "import json, sys\n"
        "from dlpipe.tasks.training.tf_setup import setup_tensorflow\n"
        "setup_tensorflow(1, 0)\n"
        "print(json.dumps({'pyarrow': 'pyarrow' in sys.modules}))"
    )
    out = _run(
        "import json, sys\n"
        "import numpy as np\n"
        "from dlpipe.tasks.training.tf_setup import keep_pyarrow_out, setup_tensorflow\n"
        "first, again = keep_pyarrow_out(), keep_pyarrow_out()\n"
        "setup_tensorflow(1, 0)\n"
        "import keras, pandas as pd\n"
        "m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])\n"
        "m.compile('sgd', 'mse')\n"
        "m.fit(np.ones((4, 2)), np.ones(4), verbose=0)\n"
        "total = int(pd.DataFrame({'a': [1, 2, 3]})['a'].sum())\n"
        "try:\n"
        "    import pyarrow.parquet\n"
        "    refused = ''\n"
        "except ModuleNotFoundError as e:\n"
        "    refused = e.name\n"
        "print(json.dumps({'first': first, 'again': again, 'total': total, 'refused': refused,\n"
        "                  'pyarrow': [k for k in sys.modules if k.split('.')[0] == 'pyarrow'],\n"
        "                  'pandas': 'pandas' in sys.modules}))"
    )
    assert without == {"pyarrow": True}
    assert out == {
        "first": True,
        "again": True,
        "total": 6,
        "refused": "pyarrow",
        "pyarrow": [],
        "pandas": True,
    }


@pytest.mark.train
def test_clean_worker_loads_tensorflow_without_optional_packages():
    """Issue 17: a clean TF worker (pyarrow hook in place) loads TensorFlow and Keras
    without the packages of ``SKIPPED_AT_IMPORT`` (in a driver process, the same
    ``setup_tensorflow`` loads them all: checked first, so the test shows the worker
    path is what skips them); a model still trains, saves and loads, and each package
    imports normally afterwards."""
    from dlpipe.tasks.training.tf_setup import SKIPPED_AT_IMPORT

    probe = f"[k for k in {list(SKIPPED_AT_IMPORT)!r} if k in sys.modules]"
    driver = _run(
        "import json, sys\n"
        "from dlpipe.tasks.training.tf_setup import setup_tensorflow\n"
        "setup_tensorflow(1, 0)\n"
        f"print(json.dumps({probe}))"
    )
    worker = _run(
        "import json, sys, tempfile, os\n"
        "import numpy as np\n"
        "from dlpipe.tasks.training.tf_setup import keep_pyarrow_out, setup_tensorflow\n"
        "keep_pyarrow_out()\n"
        "setup_tensorflow(1, 0)\n"
        f"skipped = {probe}\n"
        "import keras\n"
        "m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])\n"
        "m.compile('sgd', 'mse')\n"
        "m.fit(np.ones((4, 2)), np.ones(4), verbose=0)\n"
        "path = os.path.join(tempfile.mkdtemp(), 'm.keras')\n"
        "m.save(path)\n"
        "same = bool(np.allclose(keras.models.load_model(path).predict(np.ones((1, 2)), "
        "verbose=0), m.predict(np.ones((1, 2)), verbose=0)))\n"
        "import pandas, scipy.special, sklearn, matplotlib\n"
        f"print(json.dumps({{'during': skipped, 'after': {probe}, 'same': same}}))"
    )
    assert sorted(driver) == sorted(SKIPPED_AT_IMPORT)
    assert worker == {"during": [], "after": list(SKIPPED_AT_IMPORT), "same": True}


def test_keep_pyarrow_out_after_pyarrow_is_loaded_says_so():
    """In a process that already holds pyarrow (a driver) the hook is not installed, so
    the driver's own Parquet reads keep working."""
    out = _run(
        "import json, sys\n"
        "import pyarrow\n"
        "from dlpipe.tasks.training.tf_setup import keep_pyarrow_out\n"
        "ok = keep_pyarrow_out()\n"
        "import pyarrow.parquet\n"
        "print(json.dumps({'ok': ok}))"
    )
    assert out == {"ok": False}


@pytest.mark.slow
@pytest.mark.ray
def test_ray_training_worker_never_loads_pyarrow():
    """Tiny weather runs through the real ``remote.train_model_task`` as the pipelines
    submit it (``remote.tf_task``: a fresh worker whose Ray set-up hook keeps pyarrow
    out before any argument is deserialized). The run is ok and, at its end, the worker
    holds no pyarrow (nor pandas: Keras loads without it in a clean worker). Control:
    the same task submitted without the hook loads pyarrow (Ray's argument serializers
    import it), so the check can fail; and a job-level ``worker_process_setup_hook``
    still runs in TF workers."""
    import ray

    from dlpipe.tasks import remote
    from dlpipe.tasks.training.fit import TrainingSpec
    from dlpipe.tasks.weather.windows import WindowSpec

    tests = str(Path(__file__).resolve().parent)
    rng = np.random.default_rng(0)
    kwargs = dict(
        data=rng.normal(size=(120, 3)).astype(np.float32),
        meta={
            "key": "tiny",
            "target_column": 0,
            "mean": [0.0] * 3,
            "std": [1.0] * 3,
            "splits": {"train": [[0, 60]], "validation": [[60, 90]], "test": [[90, 120]]},
        },
        family="dense",
        hp={},
        inputs=WindowSpec(lookback=6, step=1, delay=1, batch_size=16),
        training=TrainingSpec(epochs=1),
        seed=0,
        run_id="probe",
    )
    job_env = {"env_vars": {"PYTHONPATH": tests}, "worker_process_setup_hook": "worker_probe.mark"}
    ray.init(
        address="local",
        num_cpus=1,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env=job_env,
    )
    try:
        import worker_probe

        hooked = remote.train_model_task.options(
            runtime_env=remote.tf_worker_runtime_env({"PYTHONPATH": tests})
        )
        plain = remote.train_model_task.options(runtime_env={"env_vars": {"PYTHONPATH": tests}})
        with_hook = ray.get(hooked.remote(worker_probe.train_and_report, **kwargs), timeout=300)
        without = ray.get(plain.remote(worker_probe.train_and_report, **kwargs), timeout=300)
    finally:
        ray.shutdown()
    # [] : no pyarrow, and no pandas either (skipped while Keras loads, issue 17);
    # True: the job's hook ran too
    assert with_hook == ("ok", 1, [], True)
    assert "pyarrow" in without[2]


def test_driver_validates_every_demo_study_without_tensorflow():
    """The driver (study validation, the model registry, the CLI) loads no TensorFlow:
    it is the process that writes Parquet (issue 11, section 3). Keras comes in through
    `dlpipe.models.lazy_keras` only when a model is built."""
    code = textwrap.dedent("""
        import sys
        from dlpipe.pipelines import cli, study, sweep  # noqa: F401
        from dlpipe.pipelines.config import load_study, sweep_spaces
        from dlpipe.models.registry import get_families, resolved_hparams
        for name in ("weather", "text", "images"):
            cfg = load_study(cli.demo_config_path(name))
            sweep_spaces(cfg)
            for model in cfg.models:
                resolved_hparams(model.family, model.hp, cfg.pipeline)
        print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_lazy_keras_reverse_time_layer_round_trips(tmp_path):
    """`ReverseTime` is defined on first use and still found by `load_model`."""
    import keras

    from dlpipe.models.timeseries import ReverseTime, build_reversed_gru

    model = build_reversed_gru((6, 2), units=2)
    assert isinstance(model.get_layer("reverse_time"), ReverseTime)
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored.get_layer("reverse_time")) is ReverseTime
