"""``dlpipe tensorboard RUN_DIR``: TensorBoard (book ch. 7.2.2) on a run directory's
event files (``<run_dir>/tensorboard/``), served on localhost only."""

from __future__ import annotations

import sys
import time
from pathlib import Path

#: TensorBoard's own default port
DEFAULT_PORT = 6006


def add_arguments(parser) -> None:
    """The ``dlpipe tensorboard`` arguments."""
    parser.add_argument("run_dir", help="run or sweep directory (e.g. runs/weather-demo)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free port)",
    )


def event_folder(run_dir: str | Path) -> Path:
    """The folder of a run directory's event files.

    Raises:
        FileNotFoundError: the run directory has no ``tensorboard/`` folder (a study
            run before event files existed, or with ``training.tensorboard.enabled``
            false).
    """
    folder = Path(run_dir) / "tensorboard"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no TensorBoard event files in {run_dir} (expected {folder}; runs write them "
            "unless `training.tensorboard: {enabled: false}`)"
        )
    return folder


def launch(run_dir: str | Path, port: int = DEFAULT_PORT) -> str:
    """Start TensorBoard on ``run_dir``'s event files in a background thread, listening
    on 127.0.0.1 only. Returns its URL."""
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(logdir=str(event_folder(run_dir)), host="127.0.0.1", port=port)
    return board.launch()


def run_from_args(args) -> int:
    """``dlpipe tensorboard``: print the URL, serve until Ctrl-C. Exit 2 when the run
    directory has no event files."""
    try:
        url = launch(args.run_dir, args.port)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"TensorBoard: {url}  (localhost only; Ctrl-C stops it)", flush=True)
    while True:
        time.sleep(3600)
