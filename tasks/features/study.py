"""A study's conv-base features: every split's images through the cache (book 5.3.1,
fast feature extraction), in one task or in shards whose reports are merged."""

from __future__ import annotations

import numpy as np

from dlpipe.tasks.images.folders import SPLITS
from dlpipe.tasks.images.prepare import ImageSpec, base_preprocessing, describe_weights, shards


def cache_features(
    paths: dict,
    labels: dict,
    images: ImageSpec,
    root: str,
    seed: int = 42,
    num_cpus: float = 1,
    num_gpus: float = 0,
) -> tuple[np.ndarray, dict]:
    """Conv-base features of every split's images through the cache (book 5.3.1, fast
    feature extraction; issue 5's cache).

    The base is built once, under the Keras dtype policy ``images.precision`` resolves
    to on this node (:func:`~dlpipe.tasks.images.precision.resolve_precision`); its
    weights identity (:func:`feature_cache.weights_id`: ``imagenet`` or a weights
    file's sha256; for ``none``, the fingerprint of the seeded random initialization)
    goes into the base key with the base name, the input size, the preprocessing, the
    Keras version and, when not ``float32``, the policy (``extra={"precision": ...}``:
    float32 keys are those of caches written before the setting existed). Features
    are stored float32 whatever the policy.

    Args:
        paths, labels: ``{split: [path]}`` and ``{split: int array}`` in SPLIT_CODES order.
        images: conv base, weights, size, preprocessing, batch size.
        root: cache root (local folder or fsspec URI).
        seed: initializer seed of a ``weights: none`` base.
        num_cpus, num_gpus: this process's TensorFlow set-up (C13).

    Returns:
        ``(features float32 (n, *feature_shape), report)``: rows in split order then
        input order; report = ``{"root", "base_key", "base", "weights_used", "splits":
        {split: {"hits", "misses", "forward_images"}}, "hits", "misses",
        "forward_images"}``, and ``"precision"`` (the policy) when not ``float32``.

    Raises:
        WeightsUnavailableError: ``imagenet`` weights could not be downloaded.
        ValueError: bad weights file, input size too small for the base.
    """
    from dlpipe.tasks.training.tf_setup import setup_tensorflow

    setup_tensorflow(num_cpus, num_gpus)
    import keras

    from dlpipe.models.images import conv_base
    from dlpipe.models.precision import dtype_policy_scope
    from dlpipe.tasks.features import keys as cache_keys
    from dlpipe.tasks.features.extract import extract_features
    from dlpipe.tasks.images.precision import resolve_precision

    keras.utils.set_random_seed(seed)
    weights = None if images.weights == "none" else images.weights
    policy = resolve_precision(images.precision)
    with dtype_policy_scope(policy):
        base = conv_base(images.conv_base, weights=weights, input_shape=(*images.size, 3))
    identity = (
        cache_keys.model_fingerprint(base) if weights is None else cache_keys.weights_id(weights)
    )
    pre = base_preprocessing(images)
    key, description = study_base_key(images, identity, policy)
    filesystem, local_root = filesystem_of(root)
    out, splits = [], {}
    for split in SPLITS:
        if not len(paths[split]):  # a shard may hold no image of a split
            splits[split] = {"hits": 0, "misses": 0, "forward_images": 0}
            continue
        result = extract_features(
            paths[split],
            base,
            size=tuple(images.size),
            preprocessing=pre,
            batch_size=images.feature_batch_size,
            labels=labels[split],
            cache_root=local_root,
            base_key=key,
            description=description,
            filesystem=filesystem,
        )
        if result.paths != list(paths[split]):
            raise RuntimeError("feature rows are not aligned with the input paths")
        out.append(result.features)
        splits[split] = {
            "hits": result.hits,
            "misses": result.misses,
            "forward_images": result.forward_images,
        }
    totals = {k: sum(s[k] for s in splits.values()) for k in ("hits", "misses", "forward_images")}
    return np.concatenate(out), {
        "root": root,
        "base_key": key,
        "base": description,
        "weights_used": describe_weights(images, identity),
        "splits": splits,
        **totals,
        **({} if policy == "float32" else {"precision": policy}),
    }


def study_base_key(images: ImageSpec, identity: str, policy: str) -> tuple[str, dict]:
    """``(base key, base description)`` of a study's conv base: name, weights identity,
    input size, preprocessing, Keras version and, when not ``float32``, the dtype
    ``policy`` (``extra={"precision": policy}``; float32 keys are those written before
    the setting existed)."""
    from dlpipe.tasks.features import keys as cache_keys

    args = (images.conv_base.lower(), identity, tuple(images.size), base_preprocessing(images))
    extra = {} if policy == "float32" else {"precision": policy}
    return cache_keys.base_key(*args, extra=extra), cache_keys.base_description(*args, extra=extra)


def features_of(paths: list[str], images: ImageSpec, root: str, seed: int = 42) -> np.ndarray:
    """Conv-base features of new image files (issue 15: ``dlpipe predict`` with a
    ``features_head`` model), taken from the study's cache ``root`` or computed and
    added to it: :func:`cache_features` with the study's conv base, weights, size,
    preprocessing and ``seed`` (the same base key as the study's).

    Returns:
        float32 ``(len(paths), *feature_shape)``, in ``paths`` order.
    """
    empty = np.zeros(0, np.int64)
    features, _ = cache_features(
        {"train": list(paths), "validation": [], "test": []},
        {"train": np.zeros(len(paths), np.int64), "validation": empty, "test": empty},
        images,
        root,
        seed,
    )
    return features


def feature_shards(paths: dict, labels: dict, num_shards: int) -> list[tuple[dict, dict]]:
    """``(paths, labels)`` of each feature shard: all images (split order, then input
    order) cut into at most ``num_shards`` contiguous pieces, as per-split dicts."""
    flat = [(split, i) for split in SPLITS for i in range(len(paths[split]))]
    out = []
    for chunk in shards(flat, num_shards):
        index = {split: [i for s, i in chunk if s == split] for split in SPLITS}
        out.append(
            (
                {s: [paths[s][i] for i in index[s]] for s in SPLITS},
                {s: np.asarray(labels[s])[index[s]] for s in SPLITS},
            )
        )
    return out


def merge_shard_reports(final: dict, shard_reports: list[dict]) -> dict:
    """The gather task's report with hits/misses/forward passes of the shard tasks (the
    gather itself only reads the cache the shards filled)."""
    splits = {
        split: {
            k: sum(r["splits"][split][k] for r in shard_reports)
            for k in ("hits", "misses", "forward_images")
        }
        for split in SPLITS
    }
    totals = {k: sum(s[k] for s in splits.values()) for k in ("hits", "misses", "forward_images")}
    return {**final, "splits": splits, **totals, "shards": len(shard_reports)}


def filesystem_of(root: str):
    """``(fsspec filesystem or None, path inside it)`` of a cache root."""
    if "://" not in root:
        return None, root
    import fsspec

    fs, path = fsspec.core.url_to_fs(root)
    return fs, path
