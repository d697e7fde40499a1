"""dlpipe: the studies of *Deep Learning with Python* as Ray pipelines.

The code lives in the top-level folders ``pipelines/``, ``tasks/``, ``models/``,
``ensembles/`` and ``configs/`` of the repository; the package maps them to
``dlpipe.pipelines``, ``dlpipe.tasks``, ``dlpipe.models``, ``dlpipe.ensembles`` and
``dlpipe.configs`` so that an installed copy never collides with other packages.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``dlpipe.load_bundle``, imported on first use (``import dlpipe`` stays light)."""
    if name == "load_bundle":
        from dlpipe.pipelines.bundle import load_bundle

        return load_bundle
    raise AttributeError(f"module 'dlpipe' has no attribute {name!r}")


__all__ = ["__version__", "load_bundle"]
