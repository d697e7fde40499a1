"""``ray submit`` entry point of a text classification study (``pipeline: text``); the study
itself is :mod:`dlpipe.pipelines.kinds.text` run by :func:`dlpipe.pipelines.study.run_study`.

Run as a script::

    python pipelines/text.py --config STUDY.yaml [--smoke-test]
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Script entry point (``ray submit cluster.yaml pipelines/text.py -- --config X``)."""
    from dlpipe.pipelines.cli import script_main

    return script_main("run", "Run a text classification study (book ch. 6.1).", argv)


if __name__ == "__main__":
    sys.exit(main())
