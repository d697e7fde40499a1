"""``ray submit`` entry point of a hyperparameter sweep (the study file's ``sweep:``
section); the sweep itself is :mod:`dlpipe.pipelines.sweeps`.

Run as a script::

    python pipelines/sweep.py --config STUDY.yaml [--smoke-test]
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Script entry point (``ray submit cluster.yaml pipelines/sweep.py -- --config X``)."""
    from dlpipe.pipelines.cli import script_main

    return script_main("sweep", "Run or resume the hyperparameter sweep of a study file.", argv)


if __name__ == "__main__":
    sys.exit(main())
