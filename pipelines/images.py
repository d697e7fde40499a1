"""``ray submit`` entry point of an image-folder classification study (``pipeline:
images``); the study itself is :mod:`dlpipe.pipelines.kinds.images` run by
:func:`dlpipe.pipelines.study.run_study`.

Run as a script::

    python pipelines/images.py --config STUDY.yaml [--smoke-test]
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Script entry point (``ray submit cluster.yaml pipelines/images.py -- --config X``)."""
    from dlpipe.pipelines.cli import script_main

    return script_main("run", "Run an image-folder study (book ch. 5).", argv)


if __name__ == "__main__":
    sys.exit(main())
