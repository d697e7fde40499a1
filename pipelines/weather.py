"""``ray submit`` entry point of a weather forecasting study (``pipeline: timeseries``); the study
itself is :mod:`dlpipe.pipelines.kinds.timeseries` run by :func:`dlpipe.pipelines.study.run_study`.

Run as a script::

    python pipelines/weather.py --config STUDY.yaml [--smoke-test]
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Script entry point (``ray submit cluster.yaml pipelines/weather.py -- --config X``)."""
    from dlpipe.pipelines.cli import script_main

    return script_main("run", "Run a weather forecasting study (book ch. 6.3).", argv)


if __name__ == "__main__":
    sys.exit(main())
