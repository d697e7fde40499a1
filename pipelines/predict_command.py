"""``dlpipe predict`` and ``dlpipe export``: the command-line glue over
:mod:`dlpipe.pipelines.predict` (in-process), :mod:`dlpipe.pipelines.predict_ray` (Ray
Data, many inputs) and :mod:`dlpipe.pipelines.bundle` (bundles)."""

from __future__ import annotations

from pathlib import Path

from dlpipe.pipelines.bundle import is_bundle, open_bundle
from dlpipe.pipelines.predict import PROVENANCE, Predictor, select_models, write_output
from dlpipe.pipelines.predict_ray import predict_with_ray, wants_ray


def run_predict(
    run_dir,
    input_path,
    *,
    model: str = "best",
    output=None,
    last: bool = False,
    batch_size: int = 32,
    workers: int | None = None,
    num_gpus: float = 0,
) -> tuple[object, Path]:
    """``dlpipe predict``: select, predict, write.

    Args:
        run_dir: a finished study's run directory, or an exported bundle.
        input_path: the new data.
        model: ``best``, ``ensemble`` or a run id (a bundle: what it was exported with).
        output: the output file (default ``<run_dir>/predictions/<input name>.parquet``).
        last: timeseries: only the newest window.
        batch_size: inputs per model call.
        workers: Ray Data actors (None: in this process, unless the input is large,
            :func:`dlpipe.pipelines.predict_ray.wants_ray`).
        num_gpus: GPUs per actor (Ray) or for this process.

    Returns:
        ``(frame or None, output path)``: the table (None when streamed by Ray Data).
    """
    run_dir = Path(run_dir)
    if is_bundle(run_dir):
        predictor = open_bundle(run_dir, num_gpus=num_gpus)
        if model not in ("best", predictor.selection.name):
            raise ValueError(
                f"{run_dir}: the bundle holds `{predictor.selection.name}`; "
                f"`--model {model}` is not in it"
            )
    else:
        predictor = Predictor(run_dir, select_models(run_dir, model), num_gpus=num_gpus)
    if output is None:
        output = run_dir / "predictions" / f"{Path(input_path).name or 'input'}.parquet"
    if wants_ray(input_path, workers):
        return None, predict_with_ray(
            predictor, input_path, output, workers=workers or 2, batch_size=batch_size
        )
    frame = predictor.predict(input_path, last=last, batch_size=batch_size)
    return frame, write_output(frame, output)


def add_arguments(parser) -> None:
    """The arguments of ``dlpipe predict``."""
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a finished study's run directory, or a bundle"
    )
    parser.add_argument(
        "--input", required=True, help="the new data: a file or folder in the study's format"
    )
    parser.add_argument(
        "--model",
        default="best",
        help="best (default: the best validation score), a run id, or ensemble (the chosen "
        "ensemble method's stored weights)",
    )
    parser.add_argument("--output", default=None, help="output file: .parquet (default) or .csv")
    parser.add_argument("--last", action="store_true", help="timeseries: only the newest window")
    parser.add_argument("--batch-size", type=int, default=32, help="inputs per model call")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Ray Data actors (one model load each); default: in this process for small "
        "inputs, 2 actors for large ones",
    )
    parser.add_argument("--num-gpus", type=float, default=0, help="GPUs per actor")


def run_from_args(args) -> int:
    """``dlpipe predict`` from parsed arguments: 0, or 2 with ``error: ...``."""
    import sys

    try:
        frame, out = run_predict(
            args.run_dir,
            args.input,
            model=args.model,
            output=args.output,
            last=args.last,
            batch_size=args.batch_size,
            workers=args.workers,
            num_gpus=args.num_gpus,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if frame is not None:
        from dlpipe.pipelines.console import print_frame

        bad = int((frame["status"] != "ok").sum())
        shown = frame.drop(columns=[c for c in PROVENANCE if c != "run_id"]).head(10)
        print_frame(shown, f"predictions ({len(frame)} rows, {bad} bad inputs; first 10)")
    print(f"predictions: {out}")
    return 0
