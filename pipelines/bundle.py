"""Bundles: what a study trained, in one self-contained folder (issue 15).

``dlpipe export RUN_DIR [--model best|RUN_ID|ensemble] DEST`` writes::

    DEST/manifest.json              format, versions, the selection, sha256 of every file
    DEST/models/<run_id>.keras      the model(s), Keras format
    DEST/models/<run_id>.json       each run's description (kind, family, inputs)
    DEST/models/state-<id>.json     the preprocessing state(s) (JSON)
    DEST/ensemble.json              an ensemble's members, stored weights and method

``dlpipe.load_bundle(DEST).predict(PATH)`` works without Ray, the study file or the run
directory. Every file's sha256 is checked against the manifest before anything is
loaded: a bundle whose files were changed, added to ``models/`` or removed is refused.
Models load with Keras ``safe_mode`` on. An image study's conv-base features go to
``DEST/feature_cache`` (computed on first use).
"""

from __future__ import annotations

import json
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from dlpipe.pipelines.predict import Predictor, Selection, file_sha256, select_models
from dlpipe.tasks.training.saved import MODELS_DIR, model_path, models_dir, read_run_info

MANIFEST = "manifest.json"
BUNDLE_FORMAT = "dlpipe-bundle"
BUNDLE_VERSION = 1


class BundleError(ValueError):
    """A bundle that cannot be trusted or read (hashes, missing files, format)."""


def library_versions() -> dict:
    """The versions of what made the bundle (Python, dlpipe, Keras, TensorFlow, numpy)."""
    from importlib import metadata

    from dlpipe import __version__

    out = {"python": sys.version.split()[0], "dlpipe": __version__}
    for name in ("keras", "tensorflow", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def bundle_files(run_dir: Path, selection: Selection) -> list[Path]:
    """The run directory's files a selection needs: each run's model, description and
    preprocessing state (each state once)."""
    files, states = [], set()
    for run_id in selection.run_ids:
        info = read_run_info(run_dir, run_id)
        files += [model_path(run_dir, run_id), models_dir(run_dir) / f"{run_id}.json"]
        states.add(info["state"])
    return files + [models_dir(run_dir) / f"state-{s}.json" for s in sorted(states)]


def export_bundle(run_dir, dest, *, model: str = "best") -> Path:
    """Write the bundle of ``run_dir``'s ``model`` selection to ``dest``.

    Returns:
        ``dest``.

    Raises:
        FileNotFoundError: as :func:`dlpipe.pipelines.predict.select_models`.
        FileExistsError: ``dest`` exists and is not empty.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest}: exists and is not empty; give a new folder")
    selection = select_models(run_dir, model)
    (dest / MODELS_DIR).mkdir(parents=True, exist_ok=True)
    hashes = {}
    for source in bundle_files(run_dir, selection):
        target = dest / MODELS_DIR / source.name
        shutil.copyfile(source, target)
        hashes[f"{MODELS_DIR}/{source.name}"] = file_sha256(target)
    if selection.weights is not None:
        ensemble = {
            "method": selection.method,
            "members": list(selection.run_ids),
            "weights": list(selection.weights),
        }
        (dest / "ensemble.json").write_text(json.dumps(ensemble, indent=1))
        hashes["ensemble.json"] = file_sha256(dest / "ensemble.json")
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "source": str(run_dir.resolve()),
        "selection": selection.to_json(),
        "versions": library_versions(),
        "files": hashes,
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return dest


def is_bundle(path) -> bool:
    """Whether ``path`` is a bundle folder (holds ``manifest.json``)."""
    return (Path(path) / MANIFEST).is_file()


def verify_bundle(dest) -> dict:
    """The manifest of a bundle whose files all match their sha256.

    Raises:
        BundleError: not a bundle, another format/version, a listed file missing or
            changed, or a file in ``models/`` that the manifest does not list (each
            naming the file).
    """
    dest = Path(dest)
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{dest}: not a dlpipe bundle ({MANIFEST}: {exc})") from None
    if manifest.get("format") != BUNDLE_FORMAT or manifest.get("version") != BUNDLE_VERSION:
        raise BundleError(
            f"{dest / MANIFEST}: format {manifest.get('format')!r} version "
            f"{manifest.get('version')!r}; expected {BUNDLE_FORMAT!r} {BUNDLE_VERSION}"
        )
    listed = manifest["files"]
    for name, digest in listed.items():
        path = dest / name
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing; bundle refused")
        if file_sha256(path) != digest:
            raise BundleError(
                f"{path}: sha256 differs from the manifest (the file was changed); bundle refused"
            )
    extra = [
        p for p in sorted((dest / MODELS_DIR).iterdir()) if f"{MODELS_DIR}/{p.name}" not in listed
    ]
    if extra:
        raise BundleError(f"{extra[0]}: not listed in the manifest; bundle refused")
    return manifest


def open_bundle(dest, *, num_cpus: float = 1, num_gpus: float = 0) -> Predictor:
    """A :class:`~dlpipe.pipelines.predict.Predictor` of a verified bundle; an image
    study's feature cache is the bundle's own ``feature_cache``.

    Raises:
        BundleError: as :func:`verify_bundle`.
    """
    dest = Path(dest)
    manifest = verify_bundle(dest)
    s = manifest["selection"]
    weights = None if s["weights"] is None else tuple(s["weights"])
    selection = Selection(s["name"], tuple(s["run_ids"]), weights, s["method"])
    predictor = Predictor(dest, selection, num_cpus=num_cpus, num_gpus=num_gpus)
    for state in predictor.states.values():
        if "cache_root" in state:
            state["cache_root"] = str(dest.resolve() / "feature_cache")
    return predictor


class Bundle:
    """An exported bundle, loaded: ``Bundle.predict(path)`` -> a DataFrame.

    Attributes:
        path: the bundle folder.
        manifest: its verified manifest (versions, selection, file hashes).
        predictor: the :class:`~dlpipe.pipelines.predict.Predictor` it runs.
    """

    def __init__(self, path, *, num_cpus: float = 1, num_gpus: float = 0):
        self.path = Path(path)
        self.predictor = open_bundle(self.path, num_cpus=num_cpus, num_gpus=num_gpus)
        self.manifest = verify_bundle(self.path)

    @property
    def selection(self) -> Selection:
        """The model or ensemble the bundle holds."""
        return self.predictor.selection

    def predict(self, path, *, last: bool = False, batch_size: int = 32):
        """Predictions on the new data at ``path`` (see
        :meth:`dlpipe.pipelines.predict.Predictor.predict`)."""
        return self.predictor.predict(path, last=last, batch_size=batch_size)


def load_bundle(path, *, num_cpus: float = 1, num_gpus: float = 0) -> Bundle:
    """Load an exported bundle (hashes checked; no Ray, no study file, no run directory).

    Raises:
        BundleError: as :func:`verify_bundle`.
    """
    return Bundle(path, num_cpus=num_cpus, num_gpus=num_gpus)


def add_arguments(parser) -> None:
    """The arguments of ``dlpipe export``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished study's run directory")
    parser.add_argument("dest", metavar="DEST", help="the bundle folder to write (new or empty)")
    parser.add_argument("--model", default="best", help="best (default), a run id, or ensemble")


def run_from_args(args) -> int:
    """``dlpipe export`` from parsed arguments: 0, or 2 with ``error: ...``."""
    try:
        dest = export_bundle(args.run_dir, args.dest, model=args.model)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"bundle: {dest} (load with dlpipe.load_bundle({str(dest)!r}))")
    return 0
