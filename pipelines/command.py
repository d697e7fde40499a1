"""The shared start of every command that runs a study file (``dlpipe run``, ``demo``,
``sweep``): load and validate it, the checks that need no Ray, then start or join Ray.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path


def prepare_command(
    config: str | Path,
    *,
    smoke_mode,
    output_dir: str | None,
    address: str | None,
    num_cpus: int | None,
    run_dir_of=None,
    same_study: bool = True,
):
    """Shared start of the commands that run a study file: load and validate it
    (errors printed, ``None`` returned), apply ``smoke_mode`` (a function of the config,
    or ``None``) and ``--output-dir``; with ``run_dir_of`` (config -> folder), check and
    lock that folder (:func:`dlpipe.pipelines.rundir.preflight`); then start or join
    Ray. Every check that needs no Ray runs before Ray starts."""
    from dlpipe.pipelines.config import ConfigError, load_study
    from dlpipe.pipelines.rundir import RunDirError, preflight
    from dlpipe.pipelines.runtime import RayStartError, check_resources, init_ray

    try:
        cfg = load_study(config)
        if smoke_mode is not None:
            cfg = smoke_mode(cfg)
        if output_dir:
            cfg = replace(cfg, output_dir=output_dir)
        check_offline_settings(cfg)
        if run_dir_of is not None:
            preflight(run_dir_of(cfg), cfg, same_study=same_study)
    except (ConfigError, RunDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    if not check_data_source(cfg):
        return None
    try:
        init_ray(address, num_cpus=num_cpus)
    except RayStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    try:
        check_resources(cfg.resources.num_cpus, cfg.resources.num_gpus)
    except ValueError as exc:
        print(f"error: {cfg.source_file}: {exc}", file=sys.stderr)
        return None
    return cfg


def check_data_source(cfg) -> bool:
    """Cheap data checks of the study's kind (its ``check_source``: file readable,
    header, first rows) before Ray starts; an error is printed as one line and
    ``False`` returned."""
    from dlpipe.pipelines.kinds import get_kind

    try:
        get_kind(cfg).check_source(cfg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def check_offline_settings(cfg) -> None:
    """Settings that need the network, refused before Ray starts when it cannot be had:
    ``weights: imagenet`` of an image study's conv base with no local weights file.

    Raises:
        ConfigError: naming the study file and the field.
    """
    from dlpipe.pipelines.config import ConfigError
    from dlpipe.pipelines.kinds.images import uses_conv_base

    images = getattr(cfg, "images", None)
    if images is None or not uses_conv_base(cfg):
        return
    from dlpipe.models.weights import imagenet_weights_available

    base, weights = images.conv_base, images.weights
    problem = imagenet_weights_available(base, weights)
    if problem:
        raise ConfigError(f"{cfg.source_file}: `images.weights` {weights!r}: {problem}")
