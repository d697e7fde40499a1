"""``dlpipe predict`` at scale (issue 15), measured side by side in one run:

1. images/s: a folder of JPEG files through a small convnet (the images kind's
   ``small_convnet``, untrained: throughput does not depend on the weights), with
   ``dlpipe predict`` as Ray Data actors (1 and 2 workers) against a single-process loop:
   the same model loaded once, the same tf.data decoding, ``model.predict``;
2. rows/s: a Parquet table through a dense regression head (``tabular`` ``dense``) the
   same way; the single-process loop encodes the table with the study's encoding
   (:func:`dlpipe.tasks.tabular.predict.encode_table`) and calls ``model.predict``.

Each kind also runs ``dlpipe predict`` in-process (what it does without ``--workers`` for
inputs up to ``RAY_MIN_INPUTS``), against the same loop.

What a ratio includes (loop seconds / dlpipe seconds, both timed from the call to the
output on disk): the loop runs in this process, TensorFlow already imported, one
TensorFlow thread (``setup_tensorflow(1, 0)``, what each actor gets), and writes nothing.
dlpipe's side adds what ``dlpipe predict`` does that the loop does not: every image file
is checked with the study's validation (the checks that need no decoding; the decode
itself is the model input's, one per file), the output table with its provenance columns
is written (Parquet, one file per shard from the actors), and with Ray the whole start of
the actors: cutting the input into shard files, a new process per actor importing Ray
Data, pandas, pyarrow, TensorFlow and Keras, and loading the model (~5-10 s here, paid
once per command; ``ray.init`` itself is paid before the clock runs). That fixed start is
why the ratios grow with the input: Ray is used above ``RAY_MIN_INPUTS`` (20,000)
inputs, and ``--images 20000`` measures that scale. Model loads are counted from the
load log (``DLPIPE_PREDICT_LOAD_LOG``): one per actor, not per batch; the actors' output
rows are counted against the inputs. Targets: 1 worker >= 0.9x the loop, 2 workers >= 1.6x
(the 2-worker figure needs 2 free cores: other work on the machine shows; the loop's
tf.data decoding also runs beside its model thread).

    python benchmarks/bench_predict.py [--images 20000] [--rows 8000000] [--size 96]
        [--only images|table]

The defaults are the scale at which ``dlpipe predict`` uses Ray (above 20,000 inputs; a
table of 8,000,000 rows, because a row costs the loop ~5 us against ~5 s of start per
actor); the whole run takes ~10 min on 2 quiet cores (``--only`` runs one part; smaller
``--images``/``--rows`` show how the actors' fixed start weighs on small inputs).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dlpipe.pipelines.predict_ray import RAY_MIN_INPUTS


def make_images(folder: Path, count: int, size: int) -> None:
    """``count`` JPEG files of ``size`` x ``size`` noise-and-gradient images."""
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)[None, :, None]
    for i in range(count):
        pixels = np.clip(ramp + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:06d}.jpg", quality=90)


def image_run_dir(root: Path, size: int) -> tuple[Path, str]:
    """A run directory holding one untrained ``small_convnet`` and its state."""
    from dlpipe.models.registry import build_model, resolved_hparams
    from dlpipe.tasks.images.predict import predict_state
    from dlpipe.tasks.images.prepare import ImageSpec
    from dlpipe.tasks.training.saved import save_run_state

    images = ImageSpec(size=(size, size), weights="none")
    meta = {"key": "bench-images", "class_names": ["a", "b"], "feature_shape": None}
    state = predict_state(images, meta, 42, str(root / "feature_cache"))
    info = {"kind": "images", "family": "small_convnet", "inputs": asdict(images)}
    path = save_run_state(root, "bench-image", state, {**info, "dataset_key": "bench-images"})
    hp = resolved_hparams("small_convnet", {"num_classes": 1}, "images")
    build_model("small_convnet", (size, size, 3), hp, "images").save(path)
    return root, "bench-image"


def tabular_run_dir(root: Path, table: Path, rows: int) -> tuple[Path, str]:
    """A Parquet table of ``rows`` rows and a run directory with an untrained ``dense``."""
    import pandas as pd

    from dlpipe.models.registry import build_model, resolved_hparams
    from dlpipe.tasks.tabular.data import TabularDataSpec
    from dlpipe.tasks.tabular.predict import predict_state
    from dlpipe.tasks.training.saved import save_run_state

    rng = np.random.default_rng(1)
    columns = [f"x{j}" for j in range(8)]
    frame = pd.DataFrame(rng.normal(size=(rows, 8)).round(4), columns=columns)
    frame.to_parquet(table, index=False)
    spec = TabularDataSpec(path=str(table), target="y", features=tuple(columns))
    meta = {
        "key": "bench-table",
        "task": "regression",
        "target": "y",
        "class_names": [],
        "features": columns,
        "input_columns": columns,
        "mean": {c: 0.0 for c in columns},
        "std": {c: 1.0 for c in columns},
        "categories": {},
    }
    info = {"kind": "tabular", "family": "dense", "inputs": {"task": "regression"}}
    path = save_run_state(
        root, "bench-dense", predict_state(spec, meta), {**info, "dataset_key": "bench-table"}
    )
    hp = resolved_hparams("dense", {"task": "regression", "num_classes": 1}, "tabular")
    build_model("dense", (8,), hp, "tabular").save(path)
    return root, "bench-dense"


def loop_images(run_dir: Path, run_id: str, folder: Path, batch_size: int) -> float:
    """Seconds of the single-process loop: the model loaded once, tf.data decoding of
    every file (the study's), ``model.predict``."""
    from dlpipe.pipelines.predict import Predictor, Selection
    from dlpipe.tasks.images.predict import image_inputs, list_images

    started = time.perf_counter()
    predictor = Predictor(run_dir, Selection(run_id, (run_id,)))
    info = predictor.infos[run_id]
    x = image_inputs(list_images(folder), info["family"], info["inputs"], batch_size)
    predictor.model(run_id).predict(x, verbose=0)
    return time.perf_counter() - started


def loop_table(run_dir: Path, run_id: str, table: Path, batch_size: int) -> float:
    """Seconds of the single-process loop: the table encoded with the study's encoding,
    ``model.predict``."""
    from dlpipe.pipelines.predict import Predictor, Selection
    from dlpipe.tasks.tabular.predict import encode_table

    started = time.perf_counter()
    predictor = Predictor(run_dir, Selection(run_id, (run_id,)))
    x, _, _ = encode_table(predictor.states[run_id], table)
    predictor.model(run_id).predict(x, batch_size=batch_size, verbose=0)
    return time.perf_counter() - started


def dlpipe_local(run_dir: Path, run_id: str, path: Path, out: Path, bs: int) -> float:
    """Seconds of ``dlpipe predict`` in this process (its path for inputs up to
    :data:`~dlpipe.pipelines.predict_ray.RAY_MIN_INPUTS`): the study's checks and
    preprocessing, ``model.predict``, the Parquet output with its provenance columns."""
    from dlpipe.pipelines.predict import Predictor, Selection, write_output

    started = time.perf_counter()
    predictor = Predictor(run_dir, Selection(run_id, (run_id,)))
    write_output(predictor.predict(str(path), batch_size=bs), out)
    return time.perf_counter() - started


def dlpipe_ray(run_dir: Path, run_id: str, path: Path, out: Path, workers: int, bs: int):
    """``(seconds, model loads, processes that loaded, output rows)`` of ``dlpipe
    predict`` through Ray Data with ``workers`` actors (Ray already started)."""
    import pandas as pd

    from dlpipe.pipelines.predict import LOAD_LOG_ENV, Predictor, Selection
    from dlpipe.pipelines.predict_ray import predict_with_ray

    log = Path(os.environ[LOAD_LOG_ENV])  # set before Ray started: actors inherit it
    before = log.read_text().splitlines() if log.is_file() else []
    started, cpu = time.perf_counter(), time.process_time()
    predictor = Predictor(run_dir, Selection(run_id, (run_id,)))
    predict_with_ray(predictor, path, out, workers=workers, batch_size=bs)
    seconds = time.perf_counter() - started
    print(f"  (driver CPU {time.process_time() - cpu:.1f} s of {seconds:.1f} s)")
    lines = log.read_text().splitlines()[len(before) :]
    actors = [line for line in lines if line.split()[0] != str(os.getpid())]
    rows = len(pd.read_parquet(out, columns=["status"]))
    return seconds, len(actors), len({line.split()[0] for line in actors}), rows


def measure(name, count, unit, loop, local_run, ray_run) -> None:
    """Print one input kind's throughputs and ratios."""
    cpu = time.process_time()
    base = loop()
    cpu = time.process_time() - cpu
    print(
        f"{name}: single-process model.predict loop {count / base:,.0f} {unit}/s ({base:.1f} s, "
        f"CPU {cpu:.1f} s: {cpu / base:.2f} cores with its tf.data threads)"
    )
    seconds = local_run()
    print(
        f"{name}: dlpipe predict in-process (its path up to {RAY_MIN_INPUTS:,} inputs): "
        f"{count / seconds:,.0f} {unit}/s ({seconds:.1f} s), {base / seconds:.2f}x the loop"
    )
    for workers in (1, 2):
        seconds, loads, actors, rows = ray_run(workers)
        print(
            f"{name}: dlpipe predict, {workers} worker(s): {count / seconds:,.0f} {unit}/s "
            f"({seconds:.1f} s), {base / seconds:.2f}x the loop; model loads {loads} in "
            f"{actors} actor process(es); {rows:,} output rows"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--rows", type=int, default=8_000_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--only", choices=("images", "table"), default=None)
    args = parser.parse_args(argv)
    import ray

    from dlpipe.pipelines.predict import LOAD_LOG_ENV
    from dlpipe.pipelines.runtime import init_ray
    from dlpipe.tasks.training.tf_setup import setup_tensorflow

    setup_tensorflow(1, 0)  # the loop gets what one actor gets: one thread
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        tmp = Path(tmp)
        os.environ[LOAD_LOG_ENV] = str(tmp / "model_loads.log")
        bs = args.batch_size
        if args.only != "table":
            make_images(tmp / "images", args.images, args.size)
            image_dir, image_run = image_run_dir(tmp / "run-images", args.size)
        if args.only != "images":
            table = tmp / "table.parquet"
            table_dir, table_run = tabular_run_dir(tmp / "run-table", table, args.rows)
        init_ray(None, num_cpus=os.cpu_count())
        if args.only != "table":
            measure(
                "images",
                args.images,
                "images",
                lambda: loop_images(image_dir, image_run, tmp / "images", bs),
                lambda: dlpipe_local(image_dir, image_run, tmp / "images", tmp / "i0.parquet", bs),
                lambda w: dlpipe_ray(
                    image_dir, image_run, tmp / "images", tmp / f"i{w}.parquet", w, bs
                ),
            )
        if args.only != "images":
            measure(
                "table",
                args.rows,
                "rows",
                lambda: loop_table(table_dir, table_run, table, 1024),
                lambda: dlpipe_local(table_dir, table_run, table, tmp / "t0.parquet", 1024),
                lambda w: dlpipe_ray(table_dir, table_run, table, tmp / f"t{w}.parquet", w, 1024),
            )
        print(f"load average after: {os.getloadavg()}")
        ray.shutdown()


if __name__ == "__main__":
    main()
