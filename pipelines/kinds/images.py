"""The images kind: image-folder classification studies (book ch. 5.2-5.3, 7.3.1).

DAG: source (a folder, or ``demo:digits`` written out as a flat Kaggle-named folder)
-> split (driver; case C03; an already split folder is used as it is) -> validation,
one Ray task per shard of files (cases C01, C02; bad files listed and left out) ->
conv-base features through the content-keyed cache, Ray tasks (on a GPU when
``resources.num_gpus`` > 0; only when a model is ``features_head``) -> majority-class
baseline -> training tasks (from-scratch convnets on the images, heads on the cached
features, frozen base + fine-tuning).

The ``datasets`` row's ``quality`` JSON holds the class counts per split, the bad files
(path, reason, size; files declaring more than ``images.max_pixels`` pixels among them),
the files turned upright by their EXIF orientation (``rotated``, case C21), the files
whose bytes are another format than their extension (``format_mismatch``), these
counts (``counts``), the split report and the cache's hits, misses and conv-base
forward passes per split; a rerun of the same study finds every feature in the cache
(0 forward passes).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from dlpipe.pipelines.kinds.base import PredictInputs, StudyKind
from dlpipe.pipelines.kinds.classification import majority_baseline, put_fold_datasets
from dlpipe.pipelines.sections import ConfigError, ModelSpec, StudyCommon
from dlpipe.tasks.images.prepare import DEMO_PREFIX, ImageDataSpec, ImageSpec
from dlpipe.tasks.training.records import FoldDataset, PreparedDataset, RunResult

#: families whose models run the conv base (its weights must be at hand)
CONV_BASE_FAMILIES = ("features_head", "frozen_base")


@dataclass(frozen=True)
class ImageStudyConfig(StudyCommon):
    """An image-folder classification study (see ``configs/demo_images.yaml``,
    ``configs/dogs_vs_cats.yaml``). The split settings are part of ``data``."""

    study: str
    data: ImageDataSpec
    models: tuple[ModelSpec, ...]
    images: ImageSpec = field(default_factory=ImageSpec)

    def model_inputs(self, model: ModelSpec) -> ImageSpec:
        """What one model sees: the ``images`` settings (same for every model)."""
        return self.images

    @property
    def inputs(self) -> ImageSpec:
        """The study's input geometry (what sweep trials see): ``images``."""
        return self.images

    @property
    def split(self) -> ImageDataSpec:
        """The split settings (counts, mode, seed) live in ``data`` (sweep fingerprint)."""
        return self.data


class ImagesKind(StudyKind):
    """Image-folder classification: convnets on images, heads on cached conv-base
    features; accuracy."""

    name = "images"
    evaluations = ("holdout", "kfold", "iterated_kfold")
    config_class = ImageStudyConfig
    inputs_name = "images"
    headline = "accuracy"
    baseline_name = "majority-class"
    loss_label = "crossentropy"
    #: heads on the same cached features train several to a task (issue 17): their steps
    #: are cheap, a worker's start-up, TensorFlow import and feature load are not
    grouped_families = ("features_head",)

    @property
    def train(self):
        from dlpipe.tasks.images.train import train_image_model

        return train_image_model

    @property
    def train_jointly(self):
        """Heads on cached features with ``training.joint_heads`` train in one compiled
        step (:func:`dlpipe.tasks.images.heads.train_heads_jointly`)."""
        from dlpipe.tasks.images.heads import train_heads_jointly

        return train_heads_jointly

    def sample_length(self, inputs) -> int:
        """Pixels of an image (height x width of ``size``)."""
        height, width = inputs.size
        return height * width

    @property
    def evaluate(self):
        from dlpipe.tasks.images.train import evaluate_saved_image_model

        return evaluate_saved_image_model

    def resolve_paths(self, cfg, base_dir: Path | None):
        """``data.path`` (a folder, or ``demo:<source>`` written at run time under
        ``<output_dir>/<study>/artifacts/demo_source``), a local ``images.weights`` file
        and a local ``images.cache_root``, resolved against the study file's folder."""
        return resolve_image_paths(cfg, base_dir)

    def check_model(self, cfg, index: int, model: ModelSpec) -> None:
        """The small convnets need images of at least 46x46 (four conv/pool stages)."""
        super().check_model(cfg, index, model)
        if model.family.startswith("small_convnet") and min(cfg.images.size) < 46:
            raise ConfigError(
                f"`models[{index}]`: family `{model.family}` needs `images.size` "
                f">= 46x46 (four conv/pool stages). Received: "
                f"{list(cfg.images.size)}"
            )

    def prepare(self, cfg, run_dir: Path) -> PreparedDataset:
        """Split, validate (Ray tasks), cache features (Ray tasks); the arrays (paths,
        labels, split codes, features) put in the object store once (case C14).

        Raises:
            FileNotFoundError, ValueError: missing folder, bad split, a class with no
                usable image in a split (C22), weights that cannot be loaded.
        """
        import ray

        arrays, meta = prepare_image_dataset(cfg, run_dir)
        self.print_dataset(meta)
        return PreparedDataset(ray.put(arrays), meta, dataset_row=dataset_row(meta))

    def fold_datasets(self, cfg, prepared: PreparedDataset) -> list[FoldDataset]:
        """The folds as split codes over the prepared arrays
        (:func:`dlpipe.tasks.training.folds.split_code_folds`): index subsets of the
        validated non-test images and of their cached conv-base features, so the fold
        runs and final models perform no conv-base forward pass; each fold's arrays
        are put in the object store once."""
        import ray

        from dlpipe.tasks.training.folds import class_counts, split_code_folds, split_counts

        arrays, meta = ray.get(prepared.data), prepared.meta
        entries = [
            (
                {**arrays, "split": codes},
                {
                    "repeat": repeat,
                    "fold": fold,
                    "split_counts": split_counts(codes),
                    "class_counts": class_counts(codes, arrays["labels"], meta["num_classes"]),
                },
            )
            for repeat, fold, codes in split_code_folds(
                arrays["split"], arrays["labels"], cfg.evaluation, cfg.seed, meta["class_names"]
            )
        ]
        if "features" in arrays:
            pool = sum(meta["split_counts"][s] for s in ("train", "validation"))
            print(
                f"K-fold on the cached conv-base features of {pool} non-test images: "
                "0 conv-base forward passes (folds are index subsets)"
            )
        return put_fold_datasets(prepared, entries)

    def baseline(self, cfg, prepared: PreparedDataset, data) -> RunResult:
        return majority_baseline(self.baseline_id(cfg, prepared), cfg, prepared, data)

    def print_dataset(self, meta: dict) -> None:
        print_dataset(meta)

    def predict_state(self, cfg, meta: dict) -> dict:
        """The ``images`` section, class names, feature cache root and base key, the
        study's seed (:func:`dlpipe.tasks.images.predict.predict_state`)."""
        from dlpipe.tasks.images.predict import predict_state
        from dlpipe.tasks.images.prepare import cache_root

        return predict_state(cfg.images, meta, cfg.seed, cache_root(cfg.images, cfg.run_dir))

    def predict_shards(self, path, folder: Path, size: int) -> list[dict]:
        """List files of ``size`` image paths each (the path is the id)."""
        from dlpipe.tasks.images.predict import list_images, write_list_shards

        return write_list_shards(list_images(path), folder, size)

    def predict_inputs(self, state, run, path, *, last=False, batch_size=32) -> PredictInputs:
        """The image files of a folder or a list, validated as the study validated its
        files (bad ones left out with their reason), as the run's inputs
        (:mod:`dlpipe.tasks.images.predict`); id ``path``. An image-fed model's files
        are decoded once (:func:`~dlpipe.tasks.images.predict.screened_inputs`); when
        one fails to decode there, ``recheck`` runs the full validation for its reason."""
        from dlpipe.tasks.images.predict import list_images, screened_inputs
        from dlpipe.tasks.images.train import FEATURE_FAMILIES

        files = list_images(path)
        if run["family"] in FEATURE_FAMILIES:
            return checked_inputs(state, run, path, files, batch_size)
        x, good, bad = screened_inputs(files, run["family"], run["inputs"], batch_size)
        if not good:
            return checked_inputs(state, run, path, files, batch_size)  # names the bad files

        def recheck(exc):
            import tensorflow as tf

            if not isinstance(exc, tf.errors.OpError):
                raise exc
            return checked_inputs(state, run, path, files, batch_size)

        return PredictInputs(
            x,
            {"path": good},
            [{"path": b["path"], "reason": b["reason"]} for b in bad],
            recheck=recheck,
        )


def checked_inputs(state, run, path, files, batch_size) -> PredictInputs:
    """The inputs of :meth:`ImagesKind.predict_inputs` with every file validated by the
    study's validation first (a second decode of each good file)."""
    from dlpipe.tasks.features.study import features_of
    from dlpipe.tasks.images.predict import check_files, image_inputs, image_spec
    from dlpipe.tasks.images.train import FEATURE_FAMILIES

    good, bad = check_files(state, files, run["inputs"])
    if not good:
        raise ValueError(
            f"{path}: field `files`: no image passed the study's validation "
            f"({len(bad)} bad; first: {bad[0]['path']}: {bad[0]['reason']})"
        )
    if run["family"] in FEATURE_FAMILIES:
        spec = image_spec(run["inputs"])
        x = features_of(good, spec, state["cache_root"], state["seed"])
    else:
        x = image_inputs(good, run["family"], run["inputs"], batch_size)
    return PredictInputs(
        x, {"path": good}, [{"path": b["path"], "reason": b["reason"]} for b in bad]
    )


def uses_conv_base(cfg) -> bool:
    """Whether a configured model (or a swept family) runs the conv base."""
    families = {m.family for m in cfg.models} | set(cfg.sweep.families)
    return bool(families & set(CONV_BASE_FAMILIES))


def needs_features(cfg) -> bool:
    """Whether a configured model (or a swept family) trains on cached features."""
    from dlpipe.tasks.images.train import FEATURE_FAMILIES

    families = {m.family for m in cfg.models} | set(cfg.sweep.families)
    return bool(families & set(FEATURE_FAMILIES))


def ray_map(function, args_list):
    """``starmap`` of :func:`dlpipe.tasks.images.prepare.validate_shard` over Ray tasks
    (:func:`dlpipe.tasks.remote.validate_images_task`), results in order."""
    import ray

    from dlpipe.tasks.remote import tf_task, validate_images_task

    task = tf_task(validate_images_task)
    return ray.get([task.remote(*args) for args in args_list])


def ray_features(cfg):
    """A ``features_fn`` for :func:`prepare_images`: ``images.feature_shards`` Ray tasks
    compute the missing features into the shared cache (each with the study's
    resources, so each gets a GPU when the study asks for one), then one task gathers
    every feature from the cache; the report counts the shards' hits and misses."""

    def run(paths, labels, images, root, seed):
        import ray

        from dlpipe.tasks.features.study import feature_shards, merge_shard_reports
        from dlpipe.tasks.remote import image_features_task, tf_task

        res = cfg.resources
        task = tf_task(image_features_task, num_cpus=res.num_cpus, num_gpus=res.num_gpus)
        shard_reports = None
        if images.feature_shards > 1:
            refs = [
                task.remote(p, y, images, root, seed, res.num_cpus, res.num_gpus)[1]
                for p, y in feature_shards(paths, labels, images.feature_shards)
            ]
            shard_reports = ray.get(refs)
        features, report = ray.get(
            list(task.remote(paths, labels, images, root, seed, res.num_cpus, res.num_gpus))
        )
        if shard_reports is not None:
            report = merge_shard_reports(report, shard_reports)
        return features, report

    return run


def print_dataset(meta: dict) -> None:
    """A few lines on what was split, validated and cached."""
    split = ", ".join(f"{k} {meta['split_counts'][k]}" for k in ("train", "validation", "test"))
    print(
        f"dataset {meta['key']}: {meta['images']} images, {meta['num_classes']} classes "
        f"{meta['class_names']} from {meta['source']}; splits: {split}"
    )
    how = (
        "already split, used as it is"
        if meta["split"].get("already_split")
        else f"split {meta['split'].get('mode')} {meta['split'].get('counts')} per class into "
        f"{meta['split']['root']} ({meta['split'].get('copied', 0)} copied, "
        f"{meta['split'].get('reused', 0)} reused)"
    )
    print(f"  {how}")
    strays = meta["split"].get("strays") or []
    if strays:
        names = ", ".join(f"{x['name']} ({x['reason']})" for x in strays[:5])
        more = f" and {len(strays) - 5} more" if len(strays) > 5 else ""
        print(f"  {len(strays)} stray name(s) not copied: {names}{more}")
    bad = meta["bad_files"]
    print(f"  {len(bad)} bad file(s) skipped" + (":" if bad else ""))
    for b in bad[:10]:
        size = "" if "bytes)" in b["reason"] else f" ({b['size_bytes']} bytes)"
        print(f"    {b['path']}: {b['reason']}{size}")
    if len(bad) > 10:
        print(f"    ... {len(bad) - 10} more in the datasets report (quality.bad_files)")
    rotated = meta.get("rotated") or []
    print(
        f"  {len(rotated)} file(s) turned upright by their EXIF orientation"
        + (
            f" (e.g. {rotated[0]['path']}: orientation {rotated[0]['orientation']})"
            if rotated
            else ""
        )
    )
    mismatch = meta.get("format_mismatch") or []
    if mismatch:
        print(
            f"  {len(mismatch)} file(s) whose bytes are another format than the "
            "extension says (read by content; rename them at the source):"
        )
        for m in mismatch[:5]:
            print(f"    {m['path']}: {m['format'].upper()} bytes named {m['extension']}")
        if len(mismatch) > 5:
            print(
                f"    ... {len(mismatch) - 5} more in the datasets report (quality.format_mismatch)"
            )
    cache = meta.get("feature_cache")
    if cache:
        print(
            f"  cache: {cache['hits']} hits, {cache['misses']} misses, "
            f"{cache['forward_images']} conv-base forward passes "
            f"({cache['base']['architecture']}, weights {meta['weights_used']}; features "
            f"{tuple(meta['feature_shape'])}; root {cache['root']})"
        )


def resolve_image_paths(cfg, base_dir: Path | None):
    """``cfg`` with ``data.path``, ``images.weights`` (a file) and ``images.cache_root``
    resolved against the study file's folder (``base_dir``); ``demo:<source>`` checked.

    Raises:
        ConfigError: unknown demo source, missing folder or weights file.
    """
    from dlpipe.tasks.images.demo import DEMO_SOURCES

    def resolve(path: str) -> str:
        p = Path(path).expanduser()
        return (
            str((base_dir / p).resolve())
            if base_dir is not None and not p.is_absolute()
            else str(p)
        )

    data, images = cfg.data, cfg.images
    if data.path.startswith(DEMO_PREFIX):
        if data.path[len(DEMO_PREFIX) :] not in DEMO_SOURCES:
            raise ConfigError(
                f"`data.path`: demo source must be one of "
                f"{', '.join(DEMO_PREFIX + k for k in DEMO_SOURCES)}. "
                f"Received: {data.path!r}"
            )
    else:
        data = replace(data, path=resolve(data.path))
        if not Path(data.path).is_dir():
            raise ConfigError(
                f"`data.path`: image folder not found: {cfg.data.path} (resolved to {data.path})"
            )
    if images.weights not in ("imagenet", "none"):
        weights = resolve(images.weights)
        if not Path(weights).is_file():
            raise ConfigError(
                f"`images.weights`: weights file not found: {images.weights} "
                f"(resolved to {weights}); use 'imagenet', 'none' or a "
                ".h5/.keras file"
            )
        images = replace(images, weights=weights)
    if images.cache_root and "://" not in images.cache_root:
        images = replace(images, cache_root=resolve(images.cache_root))
    return replace(cfg, data=data, images=images)


def prepare_image_dataset(cfg, run_dir: Path) -> tuple[dict, dict]:
    """Split, validate, cache features and write the ``datasets`` row.

    Returns:
        ``(arrays, meta)`` of :func:`dlpipe.tasks.images.prepare.prepare_images`.
    """
    from dlpipe.tasks.images.prepare import prepare_images

    if (
        cfg.images.weights == "none"
        and cfg.images.preprocessing == "rescale"
        and ({m.family for m in cfg.models} & {"features_head", "frozen_base"})
    ):
        print(
            "warning: a random-initialized conv base (`weights: none`) on x/255 inputs "
            "gives near-zero features (heads stay at chance); use `preprocessing: base` "
            "or real weights (`weights: imagenet` or a weights file)",
            file=sys.stderr,
        )
    arrays, meta = prepare_images(
        cfg.data,
        cfg.images,
        run_dir,
        features=needs_features(cfg),
        seed=cfg.seed,
        map_fn=ray_map,
        features_fn=ray_features(cfg),
    )
    return arrays, meta


def dataset_row(meta: dict) -> dict:
    """The ``datasets`` report row of a prepared image dataset: class counts per split,
    bad, rotated and format-mismatched files with their counts, the split report and the
    feature cache's hits, misses and forward passes."""
    return {
        "dataset_key": meta["key"],
        "source": meta["source"],
        "rows": meta["images"],
        "columns": meta["class_names"],
        "target": "label",
        "splits": meta["split_counts"],
        "sentinel_counts": {},
        "quality": {
            **{
                k: meta[k]
                for k in (
                    "class_counts",
                    "bad_files",
                    "rotated",
                    "format_mismatch",
                    "max_pixels",
                    "split",
                    "demo",
                    "feature_cache",
                    "feature_shape",
                    "weights_used",
                )
            },
            "counts": {
                "bad_files": len(meta["bad_files"]),
                "rotated": len(meta["rotated"]),
                "format_mismatch": len(meta["format_mismatch"]),
            },
        },
    }
