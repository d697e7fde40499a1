"""``dlpipe predict`` at scale (issue 15): Ray Data ``map_batches`` over shards of the
input with a pool of actors, each loading the model(s) once (GPU actors when
``--num-gpus`` asks), results streamed to a Parquet (or CSV) folder with Ray Data's
progress bars.

The input is cut into shards (the kind's ``shard_inputs`` inputs each) by the kind's rule
(:meth:`~dlpipe.pipelines.kinds.base.StudyKind.predict_shards`): image files into
list files, the rows of a Parquet table into files naming them (CSV rows into Parquet
files; each shard keeps its first row's number, so the ``row`` ids are the input's). A
kind whose inputs cannot be cut apart (a time series: windows overlap) runs in-process.

What keeps the actors busy (``benchmarks/bench_predict.py``): each actor writes its
shards' output files itself (``part-<shard>.parquet``), so no Ray Data write stage
competes with the actors for the CPUs they hold; Ray Data gives an actor one shard at a
time (``max_tasks_in_flight_per_actor=1``: a shard waits for the first free actor,
never in a busy actor's queue, so the last shards finish together); an actor imports
TensorFlow and Keras without the packages of :data:`ACTOR_SKIPPED_AT_IMPORT` and runs
TensorFlow on one thread per CPU it holds.
"""

from __future__ import annotations

from pathlib import Path

#: inputs above which ``dlpipe predict`` uses Ray without ``--workers``
RAY_MIN_INPUTS = 20_000
#: inputs per shard (one ``map_batches`` item; the actor predicts it in model batches);
#: None: the kind's :attr:`~dlpipe.pipelines.kinds.base.StudyKind.shard_inputs`
SHARD_SIZE: int | None = None
#: packages an actor refuses while TensorFlow and Keras load (Keras then takes its "not
#: installed" path for them): :data:`~dlpipe.tasks.training.tf_setup.SKIPPED_AT_IMPORT`
#: but pandas, which Ray Data's batches need
ACTOR_SKIPPED_AT_IMPORT = ("matplotlib", "sklearn", "scipy")


def count_inputs(path) -> int:
    """A cheap count of the inputs at ``path``: files under a folder, rows of a
    Parquet table (metadata), lines of any other file (0 when unreadable)."""
    path = Path(path)
    if path.is_dir():
        return sum(1 for p in path.rglob("*") if p.is_file())
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return 0


def shard_size(count: int, workers: int, most: int) -> int:
    """Inputs per shard: ``count`` inputs cut into a multiple of ``workers`` shards of at
    most ``most`` inputs, at least two per worker (equal shards end together: an actor
    takes one shard at a time, so the last round has no straggler; an actor that
    starts first takes more than its share).

    >>> shard_size(20_000, 2, 1024), shard_size(1_500, 2, 1024), shard_size(0, 1, 1024)
    (1000, 375, 1)
    """
    per_worker = max(2, -(-count // (workers * most)))
    return max(1, -(-count // (workers * per_worker)))


def wants_ray(path, workers: int | None) -> bool:
    """Ray Data when ``--workers`` is given, or when the input holds more than
    :data:`RAY_MIN_INPUTS` inputs; small inputs run in this process."""
    return workers is not None or count_inputs(path) > RAY_MIN_INPUTS


class PredictActor:
    """One Ray Data actor: loads the selection's model(s) once, predicts shards.

    Args:
        folder: the run directory or bundle.
        selection: the :class:`~dlpipe.pipelines.predict.Selection` as JSON.
        bundle: whether ``folder`` is a bundle (hashes checked, bundle feature cache).
        num_gpus: GPUs the actor holds (TensorFlow set-up, C13).
        batch_size: inputs per model call.
        output: the output folder: each shard's output is written there as
            ``part-<shard>.parquet`` (``.csv`` when ``output`` ends with ``.csv``).
    """

    def __init__(
        self, folder, selection: dict, bundle: bool, num_gpus: float, batch_size: int, output
    ):
        from dlpipe.pipelines.bundle import open_bundle
        from dlpipe.pipelines.predict import Predictor, Selection
        from dlpipe.tasks.training.tf_setup import refusing, setup_tensorflow

        with refusing(ACTOR_SKIPPED_AT_IMPORT):  # ~1.5 s less start-up per actor
            setup_tensorflow(1, num_gpus)
            import keras  # noqa: F401

        weights = selection["weights"]
        chosen = Selection(
            selection["name"],
            tuple(selection["run_ids"]),
            None if weights is None else tuple(weights),
            selection["method"],
        )
        self.predictor = (
            open_bundle(folder, num_gpus=num_gpus)
            if bundle
            else Predictor(folder, chosen, num_gpus=num_gpus)
        )
        self.batch_size = batch_size
        self.output = Path(output)
        for run_id in chosen.run_ids:  # load now: one load per actor, not per batch
            self.predictor.model(run_id)

    def __call__(self, batch):
        """Predict the batch's shards, write each shard's output file; returns one row
        per shard: ``shard``, ``rows`` (output rows), ``bad`` (inputs left out)."""
        import pandas as pd

        from dlpipe.pipelines.predict import write_output

        done = []
        for path, offset, shard in zip(batch["path"], batch["offset"], batch["shard"]):
            frame = self.predictor.predict(str(path), batch_size=self.batch_size)
            for column in ("row", "line"):
                if column in frame:
                    frame[column] = frame[column] + int(offset)
            suffix = ".csv" if self.output.suffix.lower() == ".csv" else ".parquet"
            write_output(frame, self.output / f"part-{int(shard):06d}{suffix}")
            bad = int((frame["status"] == "bad").sum()) if "status" in frame else 0
            done.append({"shard": int(shard), "rows": len(frame), "bad": bad})
        return pd.DataFrame(done)


def predict_with_ray(predictor, path, output, *, workers: int = 1, batch_size: int = 32) -> Path:
    """Predict the input at ``path`` with ``workers`` Ray Data actors (module docstring).

    Returns:
        The output folder of ``part-<shard>.parquet`` (or ``.csv``) files, one per shard
        (``pandas.read_parquet(folder)``).
    """
    import tempfile

    import ray

    from dlpipe.pipelines.bundle import is_bundle
    from dlpipe.pipelines.runtime import init_ray

    output = Path(output)
    with tempfile.TemporaryDirectory(prefix="dlpipe-predict-") as tmp:
        size = SHARD_SIZE or shard_size(count_inputs(path), workers, predictor.kind.shard_inputs)
        shards = predictor.kind.predict_shards(path, Path(tmp), size)
        if shards is None:
            from dlpipe.pipelines.predict import write_output

            print(f"{predictor.kind.name} input at {path} is not cut into shards: in-process")
            return write_output(predictor.predict(path, batch_size=batch_size), output)
        if not ray.is_initialized():
            init_ray(None)
        output.mkdir(parents=True, exist_ok=True)
        for old in output.glob("part-*"):  # a previous run's shards
            old.unlink()
        gpus = predictor.num_gpus
        items = [{**shard, "shard": i} for i, shard in enumerate(shards)]
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            PredictActor,
            fn_constructor_args=(
                str(predictor.folder.resolve()),
                predictor.selection.to_json(),
                is_bundle(predictor.folder),
                gpus,
                batch_size,
                str(output.resolve()),
            ),
            batch_size=1,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
            num_cpus=1,
            **({"num_gpus": gpus} if gpus else {}),
        )
        rows = bad = 0
        for done in ds.iter_batches(batch_size=None, batch_format="pandas"):
            rows, bad = rows + int(done["rows"].sum()), bad + int(done["bad"].sum())
    print(f"{rows:,} output rows ({bad:,} bad inputs) in {len(items)} files under {output}")
    return output
