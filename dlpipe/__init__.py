"""dlpipe: the studies of *Deep Learning with Python* as Ray pipelines.

The code lives in the top-level folders ``pipelines/``, ``tasks/``, ``models/``,
``ensembles/`` and ``configs/`` of the repository; the package maps them to
``dlpipe.pipelines``, ``dlpipe.tasks``, ``dlpipe.models``, ``dlpipe.ensembles`` and
``dlpipe.configs`` so that an installed copy never collides with other packages.
"""

__version__ = "0.1.0"
