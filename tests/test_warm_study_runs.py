"""Warm workers for a study's runs (issues 14, 17): ``resources.reuse_workers``; a run
in a reused worker records what it records in a fresh one; the reused task keeps its
process, keyed by its TensorFlow threads."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from dlpipe.pipelines.config import parse_study
from dlpipe.pipelines.sections import ConfigError, ResourcesSpec

HERE = Path(__file__).resolve().parent


def test_reuse_workers_values_gpu_rule_and_what_it_leaves_alone(tmp_path):
    """``auto`` by default (warm for CPU runs, fresh for GPU runs), YAML booleans
    accepted, ``true`` with a GPU refused at load naming the field; the setting is not
    in a failed run's ``resources`` nor in a sweep's fingerprint."""
    from dlpipe.pipelines.jobs import resources_column
    from dlpipe.pipelines.sweeps.stamp import fingerprint, settings

    assert ResourcesSpec().reuse_workers == "auto" and ResourcesSpec().warm_workers
    assert not ResourcesSpec(num_gpus=0.5).warm_workers  # GPU runs: fresh workers
    assert not ResourcesSpec(reuse_workers=False).warm_workers
    assert ResourcesSpec(reuse_workers=True).reuse_workers == "true"
    with pytest.raises(ValueError, match="must be auto, true or false"):
        ResourcesSpec(reuse_workers="sometimes")
    assert resources_column(ResourcesSpec(reuse_workers=False)) == {
        "num_cpus": 1,
        "num_gpus": 0,
        "max_retries": 1,
    }
    (tmp_path / "t.csv").write_text("a,y\n" + "".join(f"{i},{2 * i}\n" for i in range(20)))
    raw = {
        "study": "s",
        "pipeline": "tabular",
        "data": {"path": str(tmp_path / "t.csv"), "target": "y"},
        "models": [{"family": "dense"}],
        "sweep": {"families": ["dense"]},
    }
    with pytest.raises(ConfigError, match="reuse_workers.*num_gpus=1"):
        parse_study({**raw, "resources": {"reuse_workers": True, "num_gpus": 1}}, source="s")
    on = parse_study({**raw, "resources": {"reuse_workers": True}}, source="s")
    off = parse_study({**raw, "resources": {"reuse_workers": False}}, source="s")
    assert (on.resources.reuse_workers, off.resources.reuse_workers) == ("true", "false")
    assert "reuse_workers" not in settings(on)["resources"]
    assert fingerprint(on) == fingerprint(off)


REUSE = """
import json, os, sys
import ray
sys.path.insert(0, sys.argv[1])
import warm_probe
from dlpipe.pipelines.runtime import init_ray
from dlpipe.tasks import remote

init_ray(None, num_cpus=1)
warm = remote.train_model_warm_task.options(runtime_env=remote.warm_runtime_env(1))
reused = [ray.get(warm.remote(warm_probe.report_process, seed=s, num_cpus=1)) for s in (1, 2, 3)]
try:  # at once, in the same worker (an idle worker may be ended after a second)
    ray.get(warm.remote(warm_probe.report_process, seed=9, num_cpus=2))
    mismatch = "no error"
except Exception as exc:
    mismatch = str(exc)
fresh = [ray.get(remote.tf_task(remote.train_model_task).remote(
    warm_probe.report_process, seed=s, num_cpus=1)) for s in (1, 2)]
print("RESULT" + json.dumps({"reused": reused, "fresh": fresh, "mismatch": mismatch}))
"""


@pytest.mark.slow
@pytest.mark.ray
def test_the_warm_task_keeps_its_process_and_its_threads():
    """Three runs of the warm task on a 1-CPU Ray: one process, TensorFlow loaded by
    the worker's trainer, pyarrow kept out (issue 11), each run's own seed; the fresh
    task (control) gets a new process per run; a run asking for other threads than
    the worker has is refused with the reason."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(HERE)
    proc = subprocess.run(
        [sys.executable, "-c", REUSE, str(HERE)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    reused, fresh = out["reused"], out["fresh"]
    assert len({r["pid"] for r in reused}) == 1
    assert [r["seed"] for r in reused] == [1, 2, 3]
    assert all(r["tensorflow"] and not r["pyarrow"] for r in reused)
    assert len({r["pid"] for r in fresh}) == 2 and not {r["pid"] for r in fresh} & {
        reused[0]["pid"]
    }
    assert "runs TensorFlow with 1 CPU(s); a run asking for 2" in out["mismatch"]


STUDY = """
study: {name}
pipeline: tabular
output_dir: out
seed: 7
data: {{path: t.csv, target: target}}
evaluation: {{kfold: {{k: 3}}}}
training: {{epochs: 3, batch_size: 8}}
resources: {{reuse_workers: {reuse}}}
models:
  - {{family: dense, hp: {{learning_rate: 0.01}}}}
  - {{family: dense_dropout}}
"""


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.train
def test_a_study_in_warm_workers_records_what_fresh_workers_record(tmp_path):
    """The same K-fold study (2 models x 3 folds + 2 final models: 8 runs on 2
    slots) with ``reuse_workers`` true and false: the same run ids, validation and
    test scores, histories and predictions, bit for bit."""
    from dlpipe.tasks.reports import tables as reports

    rng = np.random.default_rng(0)
    lines = ["a,b,target"] + [
        f"{a:.3f},{b:.3f},{3 * a + 2 * b + 10:.3f}"
        for a, b in zip(rng.normal(0, 1, 48), rng.normal(5, 2, 48))
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = {}
    for name, reuse in (("warm", "true"), ("fresh", "false")):
        study = textwrap.dedent(STUDY.format(name=name, reuse=reuse))
        (tmp_path / f"{name}.yaml").write_text(study)
        cmd = [str(Path(sys.executable).parent / "dlpipe"), "run", f"{name}.yaml"]
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        run_dir = tmp_path / "out" / name
        runs = reports.read_table(run_dir, "runs").sort_values(["run_id", "evaluation"])
        history = reports.read_table(run_dir, "history").sort_values(["run_id", "epoch"])
        predictions = reports.read_table(run_dir, "predictions")
        predictions = predictions.sort_values(["run_id", "split", "sample_index"])
        out[name] = (runs, history, predictions)
    (runs_w, hist_w, pred_w), (runs_f, hist_f, pred_f) = out["warm"], out["fresh"]
    assert len(runs_w) == 11 and (runs_w["status"] == "ok").all()  # 8 runs, 2 means, baseline

    def same(a, b):  # exact; NaN/None (a final model's val_*, the baseline's) match
        pd.testing.assert_series_equal(
            a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True
        )

    for column in ("run_id", "evaluation", "fold", "val_metric", "val_loss", "test_metric"):
        same(runs_w[column], runs_f[column])
    for column in ("run_id", "epoch", "loss", "val_loss"):
        same(hist_w[column], hist_f[column])
    assert len(pred_w) > 48 and pred_w["run_id"].tolist() == pred_f["run_id"].tolist()
    assert pred_w["prediction"].tolist() == pred_f["prediction"].tolist()


def test_a_single_cpu_run_goes_to_the_warm_task_and_a_gpu_or_fresh_one_does_not(monkeypatch):
    """``launch_group`` of one job: the warm task with the warm ``runtime_env`` (its
    threads in it) for CPU runs under ``auto``; the fresh ``max_calls=1`` task for GPU
    runs and under ``reuse_workers: false``."""
    from dlpipe.pipelines import jobs
    from dlpipe.tasks import remote

    calls = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def options(self, **options):
            calls.append((self.name, options))
            return self

        def remote(self, *args, **kwargs):
            return f"{self.name}-ref"

    monkeypatch.setattr(remote, "train_model_warm_task", Fake("warm"))
    monkeypatch.setattr(remote, "train_model_task", Fake("fresh"))
    monkeypatch.setattr(remote, "tf_worker_runtime_env", lambda extra=None: {"env_vars": extra})
    job = SimpleNamespace(
        model=SimpleNamespace(family="dense", hp={}),
        inputs=None,
        training=None,
        seed=1,
        run_id="r",
        data=SimpleNamespace(data="d", meta={}),
    )
    kind = SimpleNamespace(train=print)
    cases = [
        (ResourcesSpec(num_cpus=2), "warm"),
        (ResourcesSpec(num_gpus=1), "fresh"),
        (ResourcesSpec(reuse_workers=False), "fresh"),
    ]
    for res, want in cases:
        calls.clear()
        assert jobs.launch_group(kind, res, [job], [None], None) == [f"{want}-ref"]
        assert calls[-1][0] == want
        env = calls[-1][1].get("runtime_env") or {}
        if want == "warm":
            assert env == {"env_vars": {remote.WARM_THREADS_ENV: "2"}}
