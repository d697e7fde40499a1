#!/usr/bin/env bash
# GPU machine check (issue 7), all within 10 minutes: run from anywhere on a machine
# with an NVIDIA GPU.
#
#   1. prints `nvidia-smi`;
#   2. runs the real-GPU tests: `pytest -m gpu -q` (tests/test_gpu.py);
#   3. runs a small weather study on the GPU: configs/demo_weather.yaml with
#      `resources: {num_cpus: 4, num_gpus: 1}` and its first 3 models, then prints the
#      devices each run used (the `devices` column of the runs report) and its
#      throughput (seconds per epoch and training windows per second, from the history
#      report; the first epoch, which includes tracing, is left out of the median);
#   4. only when a GPU is present: feature extraction (issue 17) with the VGG16 conv base
#      (weights=None, 150x150, batch 64, the compiled forward pass of extract_features)
#      in float32 and in mixed_float16 (`images.precision: float16`): images/s of each,
#      their ratio, and the relative difference of the features.
#
# Installs nothing when .venv exists (else `make install`, as `make test` does).
#
#   benchmarks/gpu_check.sh                       # the check (exit 0: all passed)
#   NUM_GPUS=0 NUM_CPUS=1 benchmarks/gpu_check.sh --smoke-test   # the wiring, on a CPU
#
# Environment: NUM_GPUS (1), NUM_CPUS (4), EPOCHS (8), MODELS (3),
# GPU_CHECK_TIMEOUT (600 s in all). Arguments are passed on to `dlpipe run`.
set -euo pipefail

cd "$(dirname "$0")/.."
NUM_GPUS=${NUM_GPUS:-1}
NUM_CPUS=${NUM_CPUS:-4}
EPOCHS=${EPOCHS:-8}
MODELS=${MODELS:-3}
BUDGET=${GPU_CHECK_TIMEOUT:-600}
START=$SECONDS
left() {  # seconds left of the budget (at least 1)
    local s=$((BUDGET - (SECONDS - START)))
    echo $((s > 0 ? s : 1))
}

if [ ! -x .venv/bin/python ]; then
    make install
fi
PY=.venv/bin/python
unset RAY_ADDRESS  # a real local Ray, real devices

echo "== nvidia-smi"
have_gpu=1
if ! nvidia-smi; then
    echo "nvidia-smi failed: no NVIDIA driver/GPU here" >&2
    [ "$NUM_GPUS" = 0 ] || exit 1
    have_gpu=0
fi

echo "== pytest -m gpu"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
timeout "$(( $(left) < 300 ? $(left) : 300 ))" "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider \
    2>&1 | tee "$log" || status=$?
if [ "$status" != 0 ]; then
    echo "error: the GPU tests failed (exit $status)" >&2
    exit 1
fi
if grep -q "needs a GPU visible to TensorFlow" "$log" && [ "$NUM_GPUS" != 0 ]; then
    echo "error: TensorFlow sees no GPU: the GPU tests were skipped" >&2
    exit 1
fi

echo "== weather study: $MODELS models, num_gpus=$NUM_GPUS, num_cpus=$NUM_CPUS"
work=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$work"' EXIT
"$PY" - "$work" "$NUM_CPUS" "$NUM_GPUS" "$EPOCHS" "$MODELS" <<'EOF'
import sys
from pathlib import Path

import yaml

from dlpipe.pipelines.cli import demo_config_path

work, cpus, gpus, epochs, models = sys.argv[1:]
study = yaml.safe_load(demo_config_path().read_text())
study.update(study="gpu-check", output_dir=str(Path(work) / "runs"),
             resources={"num_cpus": float(cpus), "num_gpus": float(gpus)},
             models=study["models"][:int(models)])
study["training"]["epochs"] = int(epochs)
study.pop("sweep", None)
(Path(work) / "gpu-check.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
print(f"study file: {Path(work) / 'gpu-check.yaml'}")
EOF
timeout "$(left)" .venv/bin/dlpipe run "$work/gpu-check.yaml" "$@"

echo "== devices and throughput"
"$PY" - "$work/runs" <<'EOF'
import json
import sys
from pathlib import Path

from dlpipe.tasks.reports.tables import tables as reports
from dlpipe.tasks.weather.windows import WindowSpec, split_window_rows

(run_dir,) = [p.parents[1] for p in Path(sys.argv[1]).glob("*/reports/runs")]
study = json.loads((run_dir / "study.json").read_text())
runs = reports.read_table(run_dir, "runs")
runs = runs[runs["family"] != "baseline"]
history = reports.read_table(run_dir, "history")
(splits,) = reports.read_table(run_dir, "datasets")["splits"]
splits = json.loads(splits) if isinstance(splits, str) else splits
cap = study["training"]["max_batches_per_epoch"]
print(f"{'run':<28} {'devices':<16} {'status':<7} {'epochs':>6} {'s/epoch':>8} "
      f"{'1st epoch s':>11} {'windows/s':>10} {'val MAE':>8}")
for run in runs.itertuples():
    windows = WindowSpec(lookback=int(run.lookback), step=int(run.step),
                         delay=int(run.delay), batch_size=study["windows"]["batch_size"])
    n = len(split_window_rows(windows, splits["train"], split="train"))
    if cap:
        n = min(n, cap * windows.batch_size)
    seconds = history[history["run_id"] == run.run_id].sort_values("epoch")["seconds"]
    steady = seconds.iloc[1:] if len(seconds) > 1 else seconds
    per_epoch = float(steady.median()) if len(steady) else float("nan")
    first = float(seconds.iloc[0]) if len(seconds) else float("nan")
    print(f"{run.run_id:<28} {run.devices:<16} {run.status:<7} {run.epochs_run:>6} "
          f"{per_epoch:>8.2f} {first:>11.2f} {n / per_epoch:>10.0f} {run.val_mae_units:>8.3f}")
gpus = float(study["resources"]["num_gpus"])
off_gpu = ~runs["devices"].str.contains("GPU:") if gpus > 0 else False
bad = runs[(runs["status"] != "ok") | off_gpu]
if len(bad):
    sys.exit(f"error: runs not ok or not on a GPU: {list(bad['run_id'])}")
print(f"all {len(runs)} runs ok" + (" on the GPU" if gpus else " (CPU only)"))
EOF
if [ "$have_gpu" = 1 ] && [ "$NUM_GPUS" != 0 ]; then
    echo "== feature extraction: float16 vs float32 (VGG16 conv base, 150x150, batch 64)"
    timeout "$(left)" "$PY" - "$NUM_CPUS" <<'EOF'
import sys
import time

import numpy as np

from dlpipe.tasks.training.tf_setup import setup_tensorflow

setup_tensorflow(float(sys.argv[1]), 1)
import keras

from dlpipe.models.images import conv_base
from dlpipe.models.precision import dtype_policy_scope
from dlpipe.tasks.features.extract import compiled_forward

batch, reps = 64, 5
x = np.random.default_rng(0).uniform(-120, 150, (batch, 150, 150, 3)).astype(np.float32)
rates, features = {}, {}
for policy in ("float32", "mixed_float16"):
    keras.utils.set_random_seed(0)  # the same weights in both policies
    with dtype_policy_scope(policy):
        base = conv_base("vgg16", weights=None, input_shape=(150, 150, 3))
    forward = compiled_forward(base)
    features[policy] = forward(x).numpy()  # warm-up: tracing, cuDNN autotuning
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        forward(x).numpy()
        best = min(best, time.perf_counter() - t0)
    rates[policy] = batch / best
    print(f"  {policy:<14} {rates[policy]:8.0f} images/s (best of {reps}, batch {batch})")
a, b = features["float32"], features["mixed_float16"]
rel = float(np.linalg.norm(b - a) / np.linalg.norm(a))
print(f"  float16 / float32: {rates['mixed_float16'] / rates['float32']:.2f}x images/s; "
      f"features stored float32 ({b.dtype}), relative difference {rel:.2g}")
EOF
else
    echo "== feature extraction float16 vs float32: skipped (no GPU)"
fi
echo "gpu_check: done in $((SECONDS - START)) s"
