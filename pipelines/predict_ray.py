"""``dlpipe predict`` at scale (issue 15): Ray Data ``map_batches`` over shards of the
input with a pool of actors, each loading the model(s) once (GPU actors when
``--num-gpus`` asks), results streamed to a Parquet (or CSV) folder with Ray Data's
progress bars.

The input is cut into shards (the kind's ``shard_inputs`` inputs each) by the kind's rule
(:meth:`~dlpipe.pipelines.kinds.base.StudyKind.predict_shards`): image files into
list files, table rows into Parquet files (each shard keeps its first row's number, so
the ``row`` ids are the input's). A kind whose inputs cannot be cut apart (a time
series: windows overlap) runs in-process.
"""

from __future__ import annotations

from pathlib import Path

#: inputs above which ``dlpipe predict`` uses Ray without ``--workers``
RAY_MIN_INPUTS = 20_000
#: inputs per shard (one ``map_batches`` item; the actor predicts it in model batches);
#: None: the kind's :attr:`~dlpipe.pipelines.kinds.base.StudyKind.shard_inputs`
SHARD_SIZE: int | None = None


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
    """

    def __init__(self, folder, selection: dict, bundle: bool, num_gpus: float, batch_size: int):
        from dlpipe.pipelines.bundle import open_bundle
        from dlpipe.pipelines.predict import Predictor, Selection

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
        for run_id in chosen.run_ids:  # load now: one load per actor, not per batch
            self.predictor.model(run_id)

    def __call__(self, batch):
        import pandas as pd

        frames = []
        for path, offset in zip(batch["path"], batch["offset"]):
            frame = self.predictor.predict(str(path), batch_size=self.batch_size)
            for column in ("row", "line"):
                if column in frame:
                    frame[column] = frame[column] + int(offset)
            frames.append(frame)
        out = pd.concat(frames, ignore_index=True)
        if "reason" in out:
            out["reason"] = out["reason"].fillna("").astype(str)
        return out


def predict_with_ray(predictor, path, output, *, workers: int = 1, batch_size: int = 32) -> Path:
    """Predict the input at ``path`` with ``workers`` Ray Data actors (module docstring).

    Returns:
        The output folder (a Parquet or CSV dataset: ``pandas.read_parquet(folder)``).
    """
    import tempfile

    import ray

    from dlpipe.pipelines.bundle import is_bundle
    from dlpipe.pipelines.runtime import init_ray

    output = Path(output)
    with tempfile.TemporaryDirectory(prefix="dlpipe-predict-") as tmp:
        size = SHARD_SIZE or predictor.kind.shard_inputs
        shards = predictor.kind.predict_shards(path, Path(tmp), size)
        if shards is None:
            from dlpipe.pipelines.predict import write_output

            print(f"{predictor.kind.name} input at {path} is not cut into shards: in-process")
            return write_output(predictor.predict(path, batch_size=batch_size), output)
        if not ray.is_initialized():
            init_ray(None)
        gpus = predictor.num_gpus
        ds = ray.data.from_items(shards).map_batches(
            PredictActor,
            fn_constructor_args=(
                str(predictor.folder.resolve()),
                predictor.selection.to_json(),
                is_bundle(predictor.folder),
                gpus,
                batch_size,
            ),
            batch_size=1,
            batch_format="pandas",
            concurrency=workers,
            num_cpus=1,
            **({"num_gpus": gpus} if gpus else {}),
        )
        if output.suffix.lower() == ".csv":
            ds.write_csv(str(output.resolve()))
        else:
            ds.write_parquet(str(output.resolve()))
    return output
