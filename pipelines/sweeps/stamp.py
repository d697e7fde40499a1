"""A sweep's identity on disk: ``<output_dir>/<study>-sweep/sweep.json``, the settings
fingerprint a stored sweep continues only with (``num_trials`` and ``time_budget_s``
may grow), and its Tune experiments (``segments``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

from dlpipe.pipelines.config import ConfigError
from dlpipe.pipelines.kinds import get_kind
from dlpipe.pipelines.sections import StudyCommon
from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.records import spec_dict

#: sweep settings that may change on a stored sweep (how long it goes on); any other
#: change is refused
GROWABLE = ("num_trials", "time_budget_s")


def sweep_dir_of(cfg: StudyCommon) -> Path:
    """``<output_dir>/<study>-sweep`` (absolute: Ray Tune needs absolute storage)."""
    return (Path(cfg.output_dir) / f"{cfg.study}-sweep").resolve()


def settings(cfg: StudyCommon, *, legacy: bool = False) -> dict:
    """What a stored sweep must agree on (JSON types): everything but :data:`GROWABLE`
    (``legacy``: with them, the fingerprint of sweeps stored before extension existed)."""
    inputs = get_kind(cfg).inputs_name
    keep = {
        "data": asdict(cfg.data),
        "split": asdict(cfg.split),
        inputs: spec_dict(cfg.inputs),
        "training": asdict(cfg.training),
        "sweep": asdict(cfg.sweep),
        "seed": cfg.seed,
        "resources": asdict(cfg.resources),
    }
    if not cfg.evaluation.is_holdout:  # K-fold: other objective; hold-out keeps its print
        keep["evaluation"] = asdict(cfg.evaluation)
    del keep["training"]["tensorboard"]  # event files only: sweeps stored before match
    del keep["resources"]["group_heads"]  # how runs share tasks: no result changes
    del keep["resources"]["reuse_workers"]  # where runs train, not what
    if not cfg.training.joint_heads:  # the default: sweeps stored before the field match
        del keep["training"]["joint_heads"]
    if not cfg.sweep.max_failures:  # the default: sweeps stored before the field match
        del keep["sweep"]["max_failures"]
    del keep["sweep"]["reuse_workers"]  # where runs train, not what: may change
    if not legacy:
        for name in GROWABLE:
            del keep["sweep"][name]
    return json.loads(reports.dumps(keep))


def fingerprint(cfg: StudyCommon, *, legacy: bool = False) -> str:
    """Hash of :func:`settings`: a stored sweep continues only with the same one."""
    text = reports.dumps(settings(cfg, legacy=legacy))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_fields(old, new, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two settings dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += changed_fields(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def open_stamp(cfg: StudyCommon, sweep_dir: Path) -> dict:
    """The sweep's ``sweep.json`` for ``cfg``: checked against the stored one, written.

    Returns:
        ``{"fingerprint", "sweep_id", "settings", "segments", "study"}``; ``segments``
        lists the Tune experiments of the sweep (``name``, ``first`` trial number,
        ``trials``), empty for a new sweep.

    Raises:
        ConfigError: the stored sweep was started with other settings than
            ``num_trials`` / ``time_budget_s``; the message names the changed fields.
    """
    path = sweep_dir / "sweep.json"
    current_fp, current = fingerprint(cfg), settings(cfg)
    stamp = {
        "fingerprint": current_fp,
        "sweep_id": current_fp,
        "settings": current,
        "segments": [],
    }
    if path.is_file():
        stored = json.loads(path.read_text())
        old = stored.get("study", {}).get("sweep", {})
        if stored["fingerprint"] != current_fp and not legacy_match(cfg, stored):
            before = stored.get("settings")  # absent in stamps of older versions
            changed = changed_fields(before, current) if before else []
            raise ConfigError(
                f"{sweep_dir} holds a sweep started with other settings"
                + (f" (changed: {', '.join(changed)})" if changed else "")
                + "; only `sweep.num_trials` and `sweep.time_budget_s` may change on a "
                "stored sweep: give the study a new `study` name (or delete that folder) "
                "to start anew"
            )
        stamp["sweep_id"] = stored.get("sweep_id", stored["fingerprint"])
        stamp["segments"] = stored.get("segments") or [
            {"name": "tune", "first": 1, "trials": int(old.get("num_trials", 0))}
        ]
    stamp["study"] = asdict(cfg)
    write_stamp(sweep_dir, stamp)
    return stamp


def write_stamp(sweep_dir: Path, stamp: dict) -> None:
    """Write ``sweep.json`` atomically."""
    reports.atomic_write_bytes(
        sweep_dir / "sweep.json", json.dumps(stamp, indent=1, default=str).encode()
    )


def legacy_match(cfg: StudyCommon, stored: dict) -> bool:
    """A sweep stored before extension existed (fingerprint over every sweep field)
    matches ``cfg`` with the stored trial count and time budget."""
    old = stored.get("study", {}).get("sweep", {})
    try:
        then = replace(cfg, sweep=replace(cfg.sweep, **{k: old[k] for k in GROWABLE}))
    except KeyError:
        return False
    return fingerprint(then, legacy=True) == stored["fingerprint"]
