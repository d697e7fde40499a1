"""Image-folder classification study (book ch. 5.2-5.3, issue 5) as a Ray pipeline.

DAG: source (a folder, or ``demo:digits`` written out as a flat Kaggle-named folder)
-> split (driver; case C03; an already split folder is used as it is) -> validation,
one Ray task per shard of files (cases C01, C02; bad files listed and left out) ->
conv-base features through the content-keyed cache, one Ray task (on a GPU when
``resources.num_gpus`` > 0; only when a model is ``features_head``) -> majority-class
baseline -> one Ray training task per configured model, in parallel (from-scratch
convnets on the images, heads on the cached features, frozen base + fine-tuning) ->
Parquet reports (``runs``, ``history``, ``predictions``, ``datasets``) and plots ->
optional ensemble stage.

The ``datasets`` row's ``quality`` JSON holds the class counts per split, the bad files
(path, reason, size; files declaring more than ``images.max_pixels`` pixels among them),
the files turned upright by their EXIF orientation (``rotated``, case C21), the files
whose bytes are another format than their extension (``format_mismatch``), these
counts (``counts``), the split report and the cache's hits, misses and conv-base
forward passes per split; a rerun of the same study finds every feature in the cache
(0 forward passes) and skips every finished run.

Runs as a script for ``ray submit``::

    python pipelines/images.py --config configs/dogs_vs_cats.yaml [--smoke-test]
"""

from __future__ import annotations

import sys
from pathlib import Path

from dlpipe.pipelines import study
from dlpipe.tasks.reports import tables as reports

PIPELINE = "images"


def ray_map(function, args_list):
    """``starmap`` of :func:`dlpipe.tasks.images.prepare.validate_shard` over Ray tasks
    (:func:`dlpipe.tasks.remote.validate_images_task`), results in order."""
    import ray

    from dlpipe.tasks.remote import validate_images_task

    return ray.get([validate_images_task.remote(*args) for args in args_list])


def ray_features(cfg):
    """A ``features_fn`` for :func:`prepare_images`: ``images.feature_shards`` Ray tasks
    compute the missing features into the shared cache (each with the study's
    resources, so each gets a GPU when the study asks for one), then one task gathers
    every feature from the cache; the report counts the shards' hits and misses."""

    def run(paths, labels, images, root, seed):
        import ray

        from dlpipe.tasks.images.prepare import feature_shards, merge_shard_reports
        from dlpipe.tasks.remote import image_features_task

        res = cfg.resources
        task = image_features_task.options(num_cpus=res.num_cpus, num_gpus=res.num_gpus)
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


def needs_features(cfg) -> bool:
    """Whether a configured model (or a swept family) trains on cached features."""
    from dlpipe.tasks.images.train import FEATURE_FAMILIES

    families = {m.family for m in cfg.models} | set(cfg.sweep.families)
    return bool(families & set(FEATURE_FAMILIES))


def prepare_dataset(cfg, run_dir: Path):
    """Split, validate (Ray tasks), cache features (a Ray task), write the ``datasets``
    row, print a summary.

    Returns:
        ``(data_ref, meta)``: an ObjectRef of the prepared arrays (paths, labels, split
        codes, features; passed to training tasks by reference, case C14) and the
        dataset description.

    Raises:
        FileNotFoundError, ValueError: missing folder, bad split, a class with no usable
        image in a split (C22), weights that cannot be loaded.
    """
    import ray

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
    reports.write_part(
        run_dir,
        "datasets",
        meta["key"],
        [
            {
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
        ],
    )
    print_dataset(meta)
    return ray.put(arrays), meta


#: the majority-class baseline row (:func:`dlpipe.pipelines.study.write_majority_baseline`)
write_baseline = study.write_majority_baseline


def run_study(cfg, *, progress: bool = True) -> Path:
    """Run an image study end to end on the connected Ray (call ``init_ray`` first).

    Returns:
        The run directory (``reports/``, ``plots/``, ``artifacts/``, ``feature_cache/``,
        ``study.json``).

    Raises:
        FileNotFoundError, ValueError: bad data or settings, raised before any model
        is trained.
    """
    return study.run_stages(cfg, prepare_dataset, write_baseline, progress=progress)


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


def main(argv: list[str] | None = None) -> int:
    """Script entry point (``ray submit cluster.yaml pipelines/images.py -- --config X``)."""
    from dlpipe.pipelines.cli import script_main

    return script_main("run", "Run an image-folder study (book ch. 5).", argv)


if __name__ == "__main__":
    sys.exit(main())
