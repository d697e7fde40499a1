"""Image benchmarks (issue 5): heads on cached conv-base features vs recomputing the
base, dlpipe's image loader vs Keras', and the conv base's GFLOP/s vs a matmul, measured
side by side in one run.

1. Cache: VGG16 (weights=None: the same FLOPs as ImageNet weights, which cannot be
   downloaded here) at the study's input size. One conv-base pass over N images through
   `extract_features` + `store` (the cache build), then >= 5 classifier heads trained on
   the cached features (book 5.3.1: Flatten, Dense 256, Dropout, 30 epochs, batch 20),
   against heads that recompute the frozen base every epoch (measured for 1 head x 2
   epochs, extrapolated to 20 heads). Target: >= 100x at 20 heads, cache build included;
   a second run of the same study does 0 conv-base forward passes. Then (issue 17)
   where a head step's time goes at the book's batch 20 (input path, shuffling,
   callbacks, steps_per_execution, XLA, against one fixed batch and the matmul), and
   the 20 heads x the epochs at batch 20 trained as one grouped training task trains
   them (the same updates as the book's), one after another and then jointly
   (`training.joint_heads`: one compiled step for all heads): target >= 300x, cache
   build included; and the fused RMSprop update alone over the 20 heads' parameters
   (the memory-bound floor of a joint step).
2. Ingest: images/s of `image_dataset` vs `keras.utils.image_dataset_from_directory`
   on the same JPEG files (scikit-learn's digits, upscaled), same output size and batch.
   Target >= 1x.
3. Conv-base forward GFLOP/s (FLOPs = 2 x multiply-adds counted from the layer shapes)
   run as `extract_features` runs it (its compiled forward pass, the feature batch
   size, the feature task's threads; then every core), against the best of several
   float32 matmuls (numpy `@` and `tf.matmul`, 1024/2048/4096) measured in the same
   process with the same threads; also the eager call of before, `predict_on_batch`,
   `predict`, other batch sizes, mixed_bfloat16, `extract_features` end to end (input
   pipeline stalls), optionally XLA (`--jit`) and oneDNN off (`--onednn-off`).
   Target >= 0.8.

    python benchmarks/bench_images.py [--quick] [--size 150] [--images 800] [--epochs 30]
    python benchmarks/bench_images.py --parts 3 [--flops-threads 1] [--jit] [--onednn-off]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

STUDY_HEADS = 20
#: (units, dropout, learning rate) of the heads of the study; the first is the book's.
HEAD_CONFIGS = [
    (256, 0.5, 2e-5),
    (256, 0.5, 1e-4),
    (128, 0.3, 1e-4),
    (512, 0.5, 5e-5),
    (64, 0.0, 3e-4),
    (256, 0.2, 1e-3),
    (128, 0.5, 3e-5),
    (512, 0.3, 2e-4),
]


# ---------------------------------------------------------------------------- FLOPs


def count_macs(model) -> dict:
    """Multiply-adds of one forward pass of one sample, from the layer shapes.

    Counted: convolutions (``H_out * W_out * C_out * k_h * k_w * C_in / groups`` =
    output positions x kernel size, for Conv1D/2D/3D), depthwise and separable
    convolutions, and Dense layers (``positions * in * units``). Not counted: biases,
    activations, pooling, normalization (a few % of a VGG's work at most). Nested
    models are walked. Layers must have been called (a built Functional model).

    Returns:
        ``{"total": int, "layers": [(layer name, macs), ...]}``.
    """
    import keras

    layers = []

    def walk(m):
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                walk(layer)
                continue
            macs = _layer_macs(layer, keras)
            if macs:
                layers.append((layer.name, macs))

    walk(model)
    return {"total": int(sum(m for _, m in layers)), "layers": layers}


def _layer_macs(layer, keras) -> int:
    out_shape = tuple(layer.output.shape)[1:]
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
    spatial = out_shape[1:] if channels_first else out_shape[:-1]
    positions = int(np.prod(spatial)) if spatial else 1
    if isinstance(layer, keras.layers.SeparableConv2D) or isinstance(
        layer, keras.layers.SeparableConv1D
    ):
        return positions * (
            int(np.prod(layer.depthwise_kernel.shape)) + int(np.prod(layer.pointwise_kernel.shape))
        )
    if isinstance(layer, (keras.layers.DepthwiseConv2D, keras.layers.DepthwiseConv1D)):
        return positions * int(np.prod(layer.kernel.shape))
    if isinstance(
        layer,
        (keras.layers.Conv2DTranspose, keras.layers.Conv1DTranspose, keras.layers.Conv3DTranspose),
    ):
        raise ValueError(f"transposed convolution {layer.name} is not counted")
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        # kernel (k_h, k_w, C_in / groups, C_out): one MAC per weight per output position
        return positions * int(np.prod(layer.kernel.shape))
    if isinstance(layer, keras.layers.Dense):
        return int(np.prod(out_shape[:-1], dtype=np.int64)) * int(np.prod(layer.kernel.shape))
    return 0


# ---------------------------------------------------------------------------- helpers


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def load() -> str:
    try:
        return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "load average n/a"


def write_jpegs(dst: Path, work: Path, src_size: int, limit: int):
    """Real images as JPEG class folders: scikit-learn's digits (8x8 grayscale), written
    by `write_demo_images`, upscaled to `src_size` (bilinear), RGB, quality 90; classes
    taken round-robin up to `limit` files. Returns the image folder listing."""
    from PIL import Image

    from dlpipe.tasks.images.demo import write_demo_images
    from dlpipe.tasks.images.folders import list_image_folder
    from dlpipe.tasks.images.split import scan_flat_folder

    flat = work / "digits-png"
    write_demo_images(flat, "digits")
    scan = scan_flat_folder(flat)
    names = sorted(
        (ident, cls, name) for cls, items in scan.by_class.items() for ident, name in items
    )[:limit]
    for _, cls, name in names:
        (dst / cls).mkdir(parents=True, exist_ok=True)
        with Image.open(flat / name) as im:
            im.convert("RGB").resize((src_size, src_size), Image.BILINEAR).save(
                dst / cls / (Path(name).stem + ".jpg"), format="JPEG", quality=90
            )
    return list_image_folder(dst)


class CountingBase:
    """The conv base, counting the images and calls that go through it."""

    def __init__(self, model):
        from dlpipe.tasks.features.extract import compiled_forward

        self.model, self.name, self.images, self.calls = model, model.name, 0, 0
        self.forward = compiled_forward(model)  # as extract_features runs a Keras base

    def __call__(self, x, training=False):
        self.images += int(x.shape[0])
        self.calls += 1
        return self.forward(x)


def head_time(
    features, labels, config, *, epochs, batch_size, steps_per_execution, num_classes, seed
):
    """Seconds to build, compile and train one head on cached features (and its final
    training accuracy)."""
    import keras

    from dlpipe.models.images import build_features_head

    units, dropout, lr = config
    keras.utils.set_random_seed(seed)
    t0 = time.perf_counter()
    model = build_features_head(
        features.shape[1:], units=units, dropout=dropout, num_classes=num_classes, learning_rate=lr
    )
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    history = model.fit(features, labels, epochs=epochs, batch_size=batch_size, verbose=0)
    return time.perf_counter() - t0, history.history["accuracy"][-1]


class EpochTimes:
    """Keras callback: wall seconds of each epoch."""

    def __new__(cls):
        import keras

        class _Times(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.times = []

            def on_epoch_begin(self, epoch, logs=None):
                self._t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self._t0)

        return _Times()


# ---------------------------------------------------------------------------- sections


def bench_cache(args, folder, cache_root, macs):
    import keras

    from dlpipe.models.images import build_frozen_base, conv_base
    from dlpipe.tasks.features.extract import extract_features
    from dlpipe.tasks.features.keys import base_description, base_key, model_fingerprint
    from dlpipe.tasks.features.store import list_bases
    from dlpipe.tasks.images.dataset import image_dataset

    size = (args.size, args.size)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.permutation(len(folder.paths))[: args.images])
    paths = [folder.paths[i] for i in pick]
    labels = folder.labels[pick]
    num_classes = len(folder.class_names)
    n = len(paths)
    print(
        f"== 1. heads on cached features vs recomputing the conv base ==\n"
        f"VGG16 conv base (weights=None), input {args.size}x{args.size}, {n} images "
        f"({num_classes} classes), preprocessing vgg16, {args.epochs} epochs per head, "
        f"{STUDY_HEADS} heads in the study; {2 * macs / 1e9:.2f} GFLOP per image"
    )

    keras.utils.set_random_seed(0)
    base = conv_base("vgg16", weights=None, input_shape=(*size, 3))
    fields = ("vgg16", model_fingerprint(base), size, "vgg16")
    key, description = base_key(*fields), base_description(*fields)
    counting = CountingBase(base)
    build_s, first = timed(
        extract_features,
        paths,
        counting,
        size=size,
        preprocessing="vgg16",
        batch_size=32,
        labels=labels,
        cache_root=cache_root,
        base_key=key,
        description=description,
    )
    info = list_bases(cache_root)[key]
    print(
        f"cache build (1 conv-base pass: decode + forward + sha256 keys + store): "
        f"{build_s:.1f} s = {n / build_s:.1f} images/s = "
        f"{n * 2 * macs / build_s / 1e9:.0f} GFLOP/s effective; "
        f"{counting.images} images through the base in {counting.calls} calls; "
        f"{info['entries']} entries, {info['size_bytes'] / 2**20:.1f} MiB; "
        f"features {first.features.shape[1:]}"
    )
    before = counting.images
    second_s, second = timed(
        extract_features,
        paths,
        counting,
        size=size,
        preprocessing="vgg16",
        batch_size=32,
        labels=labels,
        cache_root=cache_root,
        base_key=key,
        description=description,
    )
    same = bool(np.array_equal(first.features, second.features))
    print(
        f"second run of the same study: {counting.images - before} conv-base forward "
        f"passes (counted at the base's __call__; extract_features reports "
        f"forward_images={second.forward_images}), hits {second.hits}/{n}, misses "
        f"{second.misses}, {second_s:.1f} s (hash + read); features identical: {same}"
    )
    features, flabels = first.features, first.labels

    # Heads are per-step-overhead bound: batch size and steps_per_execution.
    spe_book = max(1, min(25, -(-n // 20)))
    settings = [(20, 1), (20, spe_book), (128, 1), (128, max(1, min(8, -(-n // 128))))]
    print(
        f"\nhead training setting (book head {HEAD_CONFIGS[0]}, {args.epochs} epochs; "
        f"best of 2, interleaved; build + compile + fit):"
    )
    seconds = {s: [] for s in settings}
    accuracy = {s: [] for s in settings}
    for rep in range(2):
        for batch, spe in settings:
            t, acc = head_time(
                features,
                flabels,
                HEAD_CONFIGS[0],
                epochs=args.epochs,
                batch_size=batch,
                steps_per_execution=spe,
                num_classes=num_classes,
                seed=rep,
            )
            seconds[(batch, spe)].append(t)
            accuracy[(batch, spe)].append(acc)
    best = {s: min(v) for s, v in seconds.items()}
    for (batch, spe), t in best.items():
        steps = -(-n // batch) * args.epochs
        print(
            f"  batch {batch:4d}, steps_per_execution {spe:3d}: {t:6.2f} s per head "
            f"({steps} steps, {t / steps * 1e3:.2f} ms/step)   "
            f"{best[settings[0]] / t:5.2f}x vs batch 20 / spe 1; final training accuracy "
            f"{np.mean(accuracy[(batch, spe)]):.3f}"
        )
    book_setting = min(settings[:2], key=best.get)
    fastest = min(settings, key=best.get)
    batch, spe = fastest
    print(
        f"  -> the heads and the ratio below use the fastest: batch {batch}, "
        f"steps_per_execution {spe} ({best[settings[0]] / best[fastest]:.2f}x batch 20 / "
        f"spe 1); note a batch > 20 makes fewer updates per epoch than the book's (see "
        f"the accuracy column); steps_per_execution leaves the updates as they are"
    )

    head_s = []
    for i in range(args.heads):
        config = HEAD_CONFIGS[i % len(HEAD_CONFIGS)]
        t, acc = head_time(
            features,
            flabels,
            config,
            epochs=args.epochs,
            batch_size=batch,
            steps_per_execution=spe,
            num_classes=num_classes,
            seed=100 + i,
        )
        head_s.append(t)
        print(
            f"  head {i + 1} (units {config[0]}, dropout {config[1]}, lr {config[2]:g}): "
            f"{t:5.2f} s, final training accuracy {acc:.3f}"
        )
    per_head = statistics.mean(head_s)
    print(
        f"  {args.heads} heads trained on cached features: mean {per_head:.2f} s per head "
        f"(min {min(head_s):.2f}, max {max(head_s):.2f})"
    )

    # One head that recomputes the frozen base every epoch, measured for 2 epochs.
    units, dropout, lr = HEAD_CONFIGS[0]
    keras.utils.set_random_seed(0)
    t0 = time.perf_counter()
    model = build_frozen_base(
        (*size, 3),
        base="vgg16",
        weights="none",
        units=units,
        dropout=dropout,
        augment=False,
        num_classes=num_classes,
        learning_rate=lr,
    )
    ds = image_dataset(
        paths, labels, size=size, batch_size=20, shuffle=True, preprocessing="vgg16"
    )  # compute bound: the batch size hardly matters
    build_model_s = time.perf_counter() - t0
    times = EpochTimes()
    model.fit(ds, epochs=2, verbose=0, callbacks=[times], shuffle=False)  # ds shuffles
    epoch1, epoch2 = times.times
    # The faster of the 2 epochs (epoch 1 includes tracing and warm-up, a busy spell can
    # slow either): the conservative choice, it makes recomputing look cheaper.
    epoch = min(epoch1, epoch2)
    setup = build_model_s
    per_head_recompute = setup + args.epochs * epoch
    print(
        f"\nrecomputing head (frozen VGG16 + the same head, images decoded each epoch, "
        f"batch 20), measured 1 head x 2 epochs: build {build_model_s:.1f} s, "
        f"epoch 1 {epoch1:.1f} s (incl. tracing), epoch 2 {epoch2:.1f} s"
    )
    print(
        f"  EXTRAPOLATED from those measured times (the faster epoch): 1 head x "
        f"{args.epochs} epochs = {setup:.1f} + {args.epochs} x {epoch:.1f} = "
        f"{per_head_recompute:.0f} s"
    )

    cached_total = build_s + STUDY_HEADS * per_head
    recompute_total = STUDY_HEADS * per_head_recompute
    ratio = recompute_total / cached_total
    print(f"\nstudy of {STUDY_HEADS} heads x {args.epochs} epochs on {n} images:")
    print(
        f"  cached:     cache build {build_s:.1f} s + {STUDY_HEADS} x {per_head:.2f} s "
        f"(measured per head) = {cached_total:.0f} s"
    )
    print(
        f"  recomputed: {STUDY_HEADS} x {per_head_recompute:.0f} s = {recompute_total:.0f} s "
        f"(EXTRAPOLATED from the measured 2 epochs of 1 head)"
    )
    print(
        f"  per head: {per_head_recompute / per_head:.0f}x; whole study, cache build "
        f"included: {ratio:.0f}x (target >= 100x: {'met' if ratio >= 100 else 'MISSED'}"
        f"{'; --quick: fewer epochs, smaller images' if args.quick else ''})"
    )
    book_total = build_s + STUDY_HEADS * per_head * best[book_setting] / best[fastest]
    print(
        f"  (with the book's batch 20, spe {book_setting[1]}: mean head time scaled by the "
        f"measured {best[book_setting] / best[fastest]:.2f}x, "
        f"{recompute_total / book_total:.0f}x)\n"
    )
    bench_head_steps(args, features, flabels, num_classes)
    grouped = bench_grouped_heads(args, features, flabels, num_classes)
    grouped_ratio = recompute_total / (build_s + grouped)
    joint = bench_joint_heads(args, features, flabels, num_classes)
    joint_ratio = recompute_total / (build_s + joint)
    print(
        f"  study with the {STUDY_HEADS} heads grouped (book's batch 20, same updates): "
        f"cache build {build_s:.1f} s + {grouped:.1f} s = {build_s + grouped:.0f} s vs "
        f"recomputed {recompute_total:.0f} s (EXTRAPOLATED): {grouped_ratio:.0f}x (target "
        f">= 300x: {'met' if grouped_ratio >= 300 else 'MISSED'}"
        f"{'; --quick: fewer epochs, smaller images' if args.quick else ''})"
    )
    print(
        f"  study with the {STUDY_HEADS} heads trained jointly (training.joint_heads, "
        f"book's batch 20, same updates): cache build {build_s:.1f} s + {joint:.1f} s = "
        f"{build_s + joint:.0f} s vs recomputed {recompute_total:.0f} s (EXTRAPOLATED): "
        f"{joint_ratio:.0f}x (target >= 300x: {'met' if joint_ratio >= 300 else 'MISSED'}"
        f"; {grouped / joint:.2f}x the heads one after another"
        f"{'; --quick: fewer epochs, smaller images' if args.quick else ''})\n"
    )
    return {
        "ratio": ratio,
        "grouped_ratio": grouped_ratio,
        "joint_ratio": joint_ratio,
        "second_forward": counting.images - before,
    }


def bench_head_steps(args, features, labels, num_classes) -> None:
    """Where a head step's time goes at the book's batch 20 (issue 17): steady-state
    milliseconds per training step (epochs after the first, so no tracing; the best
    epoch) of the book head fitted on the cached features, one setting changed at a
    time, against a fixed batch through ``train_on_batch`` and the forward matmul."""
    import keras
    import tensorflow as tf

    from dlpipe.models.images import build_features_head
    from dlpipe.tasks.training.fit import TrainingSpec, fit_model

    n, batch, epochs = len(features), 20, 4
    steps, k = -(-n // batch), max(1, n // 5)
    units, dropout, lr = HEAD_CONFIGS[0]

    def head(spe=1, jit=False):
        keras.utils.set_random_seed(0)
        model = build_features_head(
            features.shape[1:], units=units, dropout=dropout, num_classes=num_classes
        )
        model.compile(
            optimizer=keras.optimizers.RMSprop(lr),
            loss=model.loss,
            metrics=["accuracy"],
            steps_per_execution=spe,
            jit_compile=jit,
        )
        return model

    def numpy_fit(shuffle=True):
        def fit(model):
            times = EpochTimes()
            model.fit(
                features,
                labels,
                epochs=epochs,
                batch_size=batch,
                shuffle=shuffle,
                verbose=0,
                callbacks=[times],
            )
            return times.times

        return fit

    def dataset_fit(model):
        ds = tf.data.Dataset.from_tensor_slices((features, labels)).cache()
        ds = ds.shuffle(n, seed=0).batch(batch).prefetch(tf.data.AUTOTUNE)
        times = EpochTimes()
        model.fit(ds, epochs=epochs, verbose=0, callbacks=[times])
        return times.times

    def study_fit(model):  # recorder, TensorBoard, TerminateOnNaN, EarlyStopping, ...
        training = TrainingSpec(epochs=epochs, batch_size=batch)
        recorder = fit_model(
            model,
            features,
            (features[:k], labels[:k]),
            training=training,
            run_id="r",
            y=labels,
            batch_size=batch,
            shuffle=True,
        )
        return [row["seconds"] for row in recorder.rows]

    rows = [
        ("fit(numpy arrays), steps_per_execution 1 (the old head default)", numpy_fit(), {}),
        ("  ... no shuffling", numpy_fit(False), {}),
        ("  ... tf.data in memory (cache, shuffle, batch, prefetch)", dataset_fit, {}),
        (f"  ... the study's fit_model (callbacks; validates {k} samples)", study_fit, {}),
        ("  ... jit_compile=True (XLA)", numpy_fit(), {"jit": True}),
        (
            f"steps_per_execution {steps} (one call per epoch: the new head default)",
            numpy_fit(),
            {"spe": steps},
        ),
        ("  ... the study's fit_model (as above)", study_fit, {"spe": steps}),
        ("  ... jit_compile=True (XLA)", numpy_fit(), {"spe": steps, "jit": True}),
    ]
    print(
        f"where a head step's time goes (book head, batch {batch}, {n} samples = {steps} "
        f"steps per epoch; steady state: the best of epochs 2-{epochs}, ms per step):"
    )
    for name, fit, options in rows:
        print(f"  {name:<72} {min(fit(head(**options))[1:]) / steps * 1e3:6.2f} ms")
    model = head()
    xb, yb = tf.constant(features[:batch]), tf.constant(labels[:batch])
    model.train_on_batch(xb, yb)
    t, _ = timed(lambda: [model.train_on_batch(xb, yb) for _ in range(50)])
    kernel = tf.random.normal((int(np.prod(features.shape[1:])), units))
    forward = tf.function(lambda x: tf.matmul(tf.reshape(x, (batch, -1)), kernel))
    forward(xb)
    f, _ = timed(lambda: [forward(xb) for _ in range(200)])
    print(
        f"  {'train_on_batch on one fixed batch (no input pipeline, no epoch loop)':<72} "
        f"{t / 50 * 1e3:6.2f} ms\n"
        f"  {'the hidden layer forward matmul alone (x 3 ~ the arithmetic of a step)':<72} "
        f"{f / 200 * 1e3:6.2f} ms;  {load()}"
    )


def head_study(args, features, labels, num_classes, joint: bool):
    """The data, meta and runs of :func:`bench_grouped_heads` (``joint``: with
    ``training.joint_heads``)."""
    from dlpipe.tasks.images.prepare import ImageSpec
    from dlpipe.tasks.training.fit import EarlyStoppingSpec, ReduceLROnPlateauSpec, TrainingSpec

    n, k = len(features), max(1, len(features) // 5)
    data = {
        "features": np.concatenate([features, features[:k], features[-k:]]),
        "labels": np.concatenate([labels, labels[:k], labels[-k:]]),
        "split": np.repeat([0, 1, 2], [n, k, k]),
        "paths": np.array([""] * (n + 2 * k)),
    }
    meta = {"num_classes": num_classes, "feature_shape": list(features.shape[1:])}
    training = TrainingSpec(
        epochs=args.epochs,
        batch_size=20,
        early_stopping=EarlyStoppingSpec(enabled=False),
        reduce_lr_on_plateau=ReduceLROnPlateauSpec(enabled=False),
        joint_heads=joint,
    )
    configs = [HEAD_CONFIGS[i % len(HEAD_CONFIGS)] for i in range(STUDY_HEADS)]
    runs = [
        {
            "family": "features_head",
            "hp": dict(zip(("units", "dropout", "learning_rate"), config)),
            "inputs": ImageSpec(size=(args.size, args.size), weights="none"),
            "training": training,
            "seed": 100 + i,
            "run_id": f"head-{i}",
            "keep_model": True,
        }
        for i, config in enumerate(configs)
    ]
    return data, meta, runs


def bench_grouped_heads(args, features, labels, num_classes) -> float:
    """Seconds to train the study's heads as one grouped training task trains them
    (:func:`dlpipe.tasks.training.grouped.train_group` over the real trainer, in this
    process: what :func:`dlpipe.tasks.remote.train_models_task` runs, less the worker's
    start): STUDY_HEADS heads x ``args.epochs`` epochs at the book's batch 20 on all
    ``n`` features (the recompute side's epoch), with a validation and a test split of
    n // 5 rows each scored as a study scores them (extra work the recompute side does
    not do), TensorBoard event files as the study default; early stopping and
    ReduceLROnPlateau off, so every head makes its full ``epochs x ceil(n / 20)``
    updates. Each head: one compiled call per epoch (the study default for heads)."""
    from dlpipe.tasks.images.train import train_image_model
    from dlpipe.tasks.training.grouped import train_group

    n = len(features)
    data, meta, runs = head_study(args, features, labels, num_classes, joint=False)
    t, results = timed(train_group, train_image_model, {"data": data, "meta": meta}, runs)
    updates = {len(r.history) * -(-n // 20) for r in results}
    failed = [r for r in results if not hasattr(r, "run") or r.run["status"] != "ok"]
    print(
        f"{STUDY_HEADS} heads grouped in one training task (train_group: build, fit with "
        f"the study's callbacks, score 3 splits, keep the model), batch 20, "
        f"{args.epochs} epochs, {sorted(updates)} updates per head, {len(failed)} failed: "
        f"{t:.1f} s = {t / STUDY_HEADS:.2f} s per head, "
        f"{t / (STUDY_HEADS * max(updates)) * 1e3:.2f} ms per update (all included); {load()}"
    )
    return t


def bench_joint_heads(args, features, labels, num_classes) -> float:
    """Seconds to train the study's heads as one grouped task with
    ``training.joint_heads`` trains them (:func:`dlpipe.tasks.images.heads.
    train_heads_jointly`, via ``train_group``): the runs of :func:`bench_grouped_heads`
    (the same splits, scoring, kept models, event files and updates), all heads in one
    compiled step per batch, one call per epoch. Also the fused RMSprop update alone
    over every head's variables, timed in the same run: the memory-bound part of a
    joint step that no overhead cut removes (each update streams every weight and its
    optimizer state)."""
    import tensorflow as tf

    from dlpipe.tasks.images.heads import train_heads_jointly
    from dlpipe.tasks.images.train import train_image_model
    from dlpipe.tasks.training.grouped import train_group

    n = len(features)
    data, meta, runs = head_study(args, features, labels, num_classes, joint=True)
    t, results = timed(
        train_group,
        train_image_model,
        {"data": data, "meta": meta},
        runs,
        None,
        train_heads_jointly,
    )
    updates = {len(r.history) * -(-n // 20) for r in results}
    failed = [r for r in results if not hasattr(r, "run") or r.run["status"] != "ok"]
    joint = [r for r in results if hasattr(r, "run") and "joint_heads" in r.run["inputs"]]
    params = sum(r.run["params"] for r in results if hasattr(r, "run"))
    steps = max(updates)
    print(
        f"{STUDY_HEADS} heads trained jointly in one grouped task (training.joint_heads: "
        f"one compiled step for all heads, each its own loss, RMSprop and rows; the "
        f"same build, scoring and kept models), batch 20, {args.epochs} epochs, "
        f"{sorted(updates)} updates per head, {len(joint)} joint, {len(failed)} failed: "
        f"{t:.1f} s = {t / STUDY_HEADS:.2f} s per head, "
        f"{t / steps * 1e3:.1f} ms per joint step of {STUDY_HEADS} heads "
        f"({t / (STUDY_HEADS * steps) * 1e3:.2f} ms per head update, all included); {load()}"
    )
    # the update alone: fused RMSprop over tensors of the heads' sizes
    variables = [tf.Variable(tf.random.normal((params,)) * 0.01) for _ in range(3)]
    grad = tf.random.normal((params,))

    @tf.function
    def update():
        tf.raw_ops.ResourceApplyRMSProp(
            var=variables[0].handle,
            ms=variables[1].handle,
            mom=variables[2].handle,
            lr=0.0,
            rho=0.9,
            momentum=0.0,
            epsilon=1e-7,
            grad=grad,
        )
        return variables[0][0]

    update()
    u, _ = timed(lambda: [update() for _ in range(10)])
    per = u / 10
    print(
        f"  floor: the fused RMSprop update alone over the {params / 1e6:.1f} M parameters "
        f"of the {STUDY_HEADS} heads takes {per * 1e3:.1f} ms per step (memory-bound: "
        f"{7 * 4 * params / per / 1e9:.1f} GB/s streamed), x {steps} updates = "
        f"{per * steps:.1f} s, {per * steps / t:.0%} of the joint heads' time"
    )
    return t


def bench_ingest(args, folder, root):
    import keras

    from dlpipe.tasks.images.dataset import image_dataset
    from dlpipe.tasks.images.decode import load_image

    size = (args.size, args.size)
    n = len(folder.paths)
    print(
        f"== 2. ingest: images/s, decode + resize to {size[0]}x{size[1]} + batch 32 ==\n"
        f"{n} JPEG files ({args.src_size}x{args.src_size}, {len(folder.class_names)} "
        f"class folders); dlpipe image_dataset(preprocessing=None) vs "
        f"keras.utils.image_dataset_from_directory(shuffle=False) (both float32 in "
        f"[0, 255], bilinear); 1 warm-up pass each, then {args.ingest_reps} full passes "
        f"each, interleaved"
    )
    ours = image_dataset(folder.paths, folder.labels, size=size, batch_size=32, preprocessing=None)
    theirs = keras.utils.image_dataset_from_directory(
        root, image_size=size, batch_size=32, shuffle=False, verbose=False
    )

    def one_pass(ds):
        t0, c0, count = time.perf_counter(), time.process_time(), 0
        for _x, y in ds:
            count += int(y.shape[0])
        return count / (time.perf_counter() - t0), count / (time.process_time() - c0), count

    names = ("dlpipe image_dataset", "keras image_dataset_from_directory")
    rates = {name: [] for name in names}
    cpu_rates = {name: [] for name in names}
    for ds in (ours, theirs):
        one_pass(ds)
    for _ in range(args.ingest_reps):
        for name, ds in zip(names, (ours, theirs)):
            r, cpu, count = one_pass(ds)
            assert count == n, (name, count)
            rates[name].append(r)
            cpu_rates[name].append(cpu)
    x_k, _ = next(iter(theirs))
    x_k = x_k.numpy()
    ref = np.stack([load_image(p, size) for p in theirs.file_paths[: len(x_k)]])
    diff = float(np.abs(ref - x_k).max())
    width = max(map(len, names))
    for name in names:
        r, c = rates[name], cpu_rates[name]
        print(
            f"  {name:<{width}}  wall: best {max(r):6.0f} images/s, median "
            f"{np.median(r):6.0f};  per CPU-second (all threads): median "
            f"{np.median(c):6.0f}, best {max(c):6.0f}"
        )
    a, b = (rates[k] for k in names)
    ca, cb = (cpu_rates[k] for k in names)
    ratio = float(np.median(ca) / np.median(cb))
    pairs = np.asarray(ca) / np.asarray(cb)  # interleaved passes, one ratio each
    verdict = (
        "met"
        if ratio >= 1
        else "parity within the pass-to-pass spread"
        if pairs.max() >= 1
        else "MISSED"
    )
    print(
        f"  ratio dlpipe / keras: wall {max(a) / max(b):.2f}x best, "
        f"{np.median(a) / np.median(b):.2f}x median; images per CPU-second "
        f"{ratio:.2f}x median, {pairs.min():.2f}-{pairs.max():.2f} over the "
        f"{len(pairs)} interleaved pairs (the steady measure when other processes take "
        f"CPUs; target >= 1x: {verdict}); same pixels as keras (max abs diff "
        f"{diff:.2g})\n"
    )
    return ratio


def matmul_variants(sizes):
    """``{name: (FLOPs, fn)}``: float32 matmuls (numpy ``@`` and ``tf.matmul``) at each
    side in ``sizes``; the reference of part 3 is the fastest of them."""
    import tensorflow as tf

    out = {}
    for m in sizes:
        rng = np.random.default_rng(m)
        a, b = (rng.standard_normal((m, m)).astype(np.float32) for _ in range(2))
        ta, tb = tf.constant(a), tf.constant(b)
        out[f"numpy {m}x{m} @"] = (2 * m**3, lambda a=a, b=b: a @ b)
        out[f"tf.matmul {m}x{m}"] = (2 * m**3, lambda ta=ta, tb=tb: tf.matmul(ta, tb).numpy())
    return out


def conv_variants(spec, flop):
    """``{name: (FLOPs, fn)}``: ways to run the VGG16 conv base (weights=None) forward on
    ``spec["batch"]`` images: the eager call feature extraction made before issue 17,
    ``compiled_forward`` (what ``extract_features`` runs now) at each batch size in
    ``spec["batches"]``, ``predict_on_batch``, ``predict``, and optionally the compiled
    call under ``mixed_bfloat16`` and with XLA (``jit_compile``)."""
    import keras
    import tensorflow as tf

    from dlpipe.models.images import conv_base
    from dlpipe.models.precision import dtype_policy_scope
    from dlpipe.tasks.features.extract import compiled_forward

    size, batch = spec["size"], spec["batch"]
    keras.utils.set_random_seed(0)
    base = conv_base("vgg16", weights=None, input_shape=(size, size, 3))
    rng = np.random.default_rng(0)
    x = {
        b: rng.uniform(-120, 150, (b, size, size, 3)).astype(np.float32)
        for b in sorted({batch, *spec["batches"]})
    }
    xt = {b: tf.constant(v) for b, v in x.items()}
    forward = compiled_forward(base)
    out = {
        f"eager base(x), batch {batch} (extract_features before)": (
            batch * flop,
            lambda: np.asarray(base(xt[batch], training=False)),
        )
    }
    for b in sorted(x):
        out[f"compiled_forward, batch {b}" + (" (extract_features now)" if b == batch else "")] = (
            b * flop,
            lambda b=b: forward(xt[b]).numpy(),
        )
    out[f"predict_on_batch, batch {batch}"] = (
        batch * flop,
        lambda: base.predict_on_batch(x[batch]),
    )
    out[f"predict, batch {batch}"] = (
        batch * flop,
        lambda: base.predict(x[batch], batch_size=batch, verbose=0),
    )
    if spec["bf16"]:
        with dtype_policy_scope("mixed_bfloat16"):
            low = conv_base("vgg16", weights=None, input_shape=(size, size, 3))
        low_forward = compiled_forward(low)
        out[f"compiled_forward mixed_bfloat16, batch {batch}"] = (
            batch * flop,
            lambda: low_forward(xt[batch]).numpy(),
        )
    if spec["jit"]:
        jit = tf.function(lambda t: base(t, training=False), jit_compile=True)
        out[f"tf.function jit_compile, batch {batch}"] = (
            batch * flop,
            lambda: jit(xt[batch]).numpy(),
        )
    return out


def extract_variant(spec, flop):
    """``{name: (FLOPs, fn)}``: ``extract_features`` end to end without a cache (read,
    decode, resize, preprocess through tf.data, compiled forward) on ``spec["paths"]``:
    compared with the forward pass alone, it shows whether the input pipeline stalls
    the base."""
    import keras

    from dlpipe.models.images import conv_base
    from dlpipe.tasks.features.extract import extract_features

    paths, size, batch = spec["paths"], spec["size"], spec["batch"]
    keras.utils.set_random_seed(0)
    base = conv_base("vgg16", weights=None, input_shape=(size, size, 3))
    return {
        f"extract_features end to end, {len(paths)} JPEGs, batch {batch}": (
            len(paths) * flop,
            lambda: extract_features(
                paths, base, size=(size, size), preprocessing="vgg16", batch_size=batch
            ),
        )
    }


def flops_child(spec) -> dict:
    """Part 3 in a fresh process whose threads were fixed before TensorFlow loaded (the
    parent sets the environment): intra-op threads = ``spec["threads"]`` as
    :func:`~dlpipe.tasks.training.tf_setup.setup_tensorflow` gives a task with that
    ``num_cpus`` (BLAS threads alike). Interleaved best of ``spec["reps"]``.

    Returns:
        ``{name: [GFLOP/s, best seconds, GFLOP per CPU-second]}``, matmuls first (CPU
        seconds of this process, all threads: steadier than wall time when other
        processes take the cores).
    """
    from dlpipe.tasks.training.tf_setup import setup_tensorflow

    setup_tensorflow(spec["threads"], 0)
    flop = spec["flop"]
    fns = {**matmul_variants(spec["sizes"]), **conv_variants(spec, flop)}
    if spec["paths"]:
        fns.update(extract_variant(spec, flop))
    for _, fn in fns.values():  # warm-up: tracing, thread pools, oneDNN primitives
        fn()
    times = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(spec["reps"]):  # interleaved, so a busy spell hits all alike
        for name, (_, fn) in fns.items():
            c0 = time.process_time()
            times[name].append(timed(fn)[0])
            cpu[name].append(time.process_time() - c0)
    return {
        name: [fns[name][0] / min(t) / 1e9, min(t), fns[name][0] / min(cpu[name]) / 1e9]
        for name, t in times.items()
    }


def run_flops_child(spec, onednn=None) -> dict:
    """:func:`flops_child` in a subprocess with ``spec["threads"]`` threads (TensorFlow
    intra-op, OpenMP, OpenBLAS, MKL) and ``TF_ENABLE_ONEDNN_OPTS=onednn`` if given."""
    import json
    import subprocess
    import sys

    threads = str(spec["threads"])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = threads
    if onednn is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    done = subprocess.run(
        [sys.executable, __file__, "--flops-child", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"part 3 child failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def print_flops(title, rows) -> tuple[float, float]:
    """Print one child's table against its best matmul (wall GFLOP/s, and GFLOP per
    CPU-second); return the two references."""
    matmuls = {k: v for k, v in rows.items() if "matmul" in k or "@" in k}
    ref_name = max(matmuls, key=lambda k: matmuls[k][0])
    cpu_name = max(matmuls, key=lambda k: matmuls[k][2])
    ref, cpu_ref = matmuls[ref_name][0], matmuls[cpu_name][2]
    width = max(map(len, rows))
    print(
        f"  {title}; reference = the best float32 matmul: {ref_name} {ref:.1f} GFLOP/s "
        f"wall; per CPU-second: {cpu_name} {cpu_ref:.1f}"
    )
    for name, (gflops, s, per_cpu) in rows.items():
        print(
            f"    {name:<{width}}  {gflops:7.1f} GFLOP/s ({s * 1e3:8.1f} ms) "
            f"{gflops / ref:5.2f}x best matmul;  per CPU-second {per_cpu:6.1f} "
            f"{per_cpu / cpu_ref:5.2f}x"
        )
    return ref, cpu_ref


def bench_flops(args, macs, folder=None):
    """Part 3: the conv base forward pass as feature extraction runs it, against the
    best float32 matmul measured in the same process (same threads); once with the
    feature task's threads (``--flops-threads``, resources.num_cpus) and once with
    every core. Returns the fraction for the task's threads."""
    size, flop, batch = args.size, 2 * macs, args.flops_batch
    paths = [] if folder is None else list(folder.paths[: max(batch, args.flops_images)])
    print(
        f"== 3. conv base forward GFLOP/s vs the best float32 matmul ==\n"
        f"FLOPs = 2 x multiply-adds, counted from the layer shapes (convolutions; "
        f"biases, ReLU and pooling not counted): VGG16 conv part at {size}x{size} = "
        f"{macs / 1e9:.3f} GMAC = {flop / 1e9:.2f} GFLOP per image; feature batch {batch}; "
        f"best of {args.flops_reps}, interleaved; each thread setting in its own process "
        f"(threads fixed before TensorFlow loads, as setup_tensorflow does for a task)"
    )
    spec = {
        "size": size,
        "batch": batch,
        "batches": [int(b) for b in args.flops_batches.split(",") if b],
        "sizes": [int(m) for m in args.matmul_sizes.split(",")],
        "flop": flop,
        "reps": args.flops_reps,
        "bf16": not args.quick,
        "jit": args.jit,
        "paths": paths,
    }
    cores = os.cpu_count() or 1
    settings = [(args.flops_threads, "the feature task's num_cpus")]
    if cores != args.flops_threads:
        settings.append((cores, "every core"))
    fracs, cpu_fracs = {}, {}
    for threads, label in settings:
        rows = run_flops_child({**spec, "threads": threads})
        ref, cpu_ref = print_flops(f"{threads} thread(s) ({label}), {load()}", rows)
        now = next(v for k, v in rows.items() if k.endswith("(extract_features now)"))
        fracs[threads] = now[0] / ref
        cpu_fracs[threads] = now[2] / cpu_ref
    if args.onednn_off:
        small = {**spec, "threads": args.flops_threads, "bf16": False, "jit": False, "paths": []}
        print_flops("TF_ENABLE_ONEDNN_OPTS=0", run_flops_child(small, onednn="0"))
    frac, cpu_frac = fracs[args.flops_threads], cpu_fracs[args.flops_threads]
    others = "; ".join(
        f"{t} threads: {f:.2f} wall, {cpu_fracs[t]:.2f} per CPU-second"
        for t, f in fracs.items()
        if t != args.flops_threads
    )
    print(
        f"  conv base forward as extract_features runs it (compiled_forward, batch {batch}) / "
        f"best float32 matmul, {args.flops_threads} thread(s): {frac:.2f} wall, "
        f"{cpu_frac:.2f} per CPU-second (target >= 0.8: {'met' if frac >= 0.8 else 'MISSED'} "
        f"wall){'; ' + others if others else ''}\n"
    )
    return frac


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller images, fewer images and epochs (~2 min)"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="conv base input size (default 150, the study's; quick 96)",
    )
    parser.add_argument(
        "--images",
        type=int,
        default=None,
        help="images through the conv base (default 800; quick 300)",
    )
    parser.add_argument(
        "--files",
        type=int,
        default=None,
        help="JPEG files for the ingest benchmark (default 1797: all of "
        "scikit-learn's digits; quick 800)",
    )
    parser.add_argument("--src-size", type=int, default=256, help="JPEG side in pixels")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per head (default 30, the book's; quick 10)",
    )
    parser.add_argument("--heads", type=int, default=5, help="heads actually trained")
    parser.add_argument("--ingest-reps", type=int, default=None)
    parser.add_argument(
        "--flops-batch", type=int, default=None, help="feature batch size (default 32; quick 16)"
    )
    parser.add_argument(
        "--flops-batches", default=None, help="other batch sizes (default 8,64; quick none)"
    )
    parser.add_argument("--flops-reps", type=int, default=None, help="default 5; quick 3")
    parser.add_argument(
        "--flops-threads",
        type=int,
        default=1,
        help="threads of the feature task (its resources.num_cpus; default 1)",
    )
    parser.add_argument(
        "--flops-images", type=int, default=None, help="JPEGs of the end-to-end pass (64; 32)"
    )
    parser.add_argument(
        "--matmul-sizes", default=None, help="matmul sides (1024,2048,4096; quick 1024,2048)"
    )
    parser.add_argument("--jit", action="store_true", help="part 3: also XLA (slow to compile)")
    parser.add_argument(
        "--onednn-off", action="store_true", help="part 3: also with TF_ENABLE_ONEDNN_OPTS=0"
    )
    parser.add_argument("--parts", default="1,2,3", help="parts to run (default 1,2,3)")
    parser.add_argument("--flops-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--keep", default=None, help="work folder to keep (default: a temporary one, removed)"
    )
    args = parser.parse_args()
    if args.flops_child:
        import json

        print(json.dumps(flops_child(json.loads(args.flops_child))))
        return
    quick = args.quick
    for name, full, small in (
        ("size", 150, 96),
        ("images", 800, 300),
        ("files", 1797, 800),
        ("epochs", 30, 10),
        ("ingest_reps", 5, 3),
        ("flops_batch", 32, 16),
        ("flops_batches", "8,64", ""),
        ("flops_reps", 5, 3),
        ("flops_images", 64, 32),
        ("matmul_sizes", "1024,2048,4096", "1024,2048"),
    ):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import tensorflow as tf

    from dlpipe.models.images import conv_base

    start = time.perf_counter()
    print(
        f"bench_images{' --quick' if quick else ''}: {machine()}; TensorFlow "
        f"{tf.__version__}, Keras {keras.__version__}; {load()} at start (other processes "
        f"may share these CPUs: best-of timings)\n"
    )
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_images-"))
    try:
        root = work / "jpeg"
        if root.exists():
            shutil.rmtree(root)
        folder = write_jpegs(root, work, args.src_size, args.files)
        cache_root = work / "cache"
        if cache_root.exists():
            shutil.rmtree(cache_root)
        macs = count_macs(conv_base("vgg16", weights=None, input_shape=(args.size, args.size, 3)))[
            "total"
        ]
        parts = {p.strip() for p in args.parts.split(",")}
        summary = []
        if "1" in parts:
            cache = bench_cache(args, folder, cache_root, macs)
            summary.append(
                f"cache study {cache['ratio']:.0f}x at {STUDY_HEADS} heads (target 100x), "
                f"{cache['grouped_ratio']:.0f}x with the heads grouped at batch 20, "
                f"{cache['joint_ratio']:.0f}x trained jointly (target 300x), second run "
                f"{cache['second_forward']} forward passes"
            )
        if "2" in parts:
            ingest = bench_ingest(args, folder, root)
            summary.append(f"ingest {ingest:.2f}x keras (images per CPU-second; target 1x)")
        if "3" in parts:
            frac = bench_flops(args, macs, folder)
            summary.append(
                f"VGG16 forward {frac:.2f} of the best float32 matmul GFLOP/s with "
                f"{args.flops_threads} thread(s) (target 0.8)"
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"summary: {'; '.join(summary)}; {time.perf_counter() - start:.0f} s in all; "
        f"{load()} at end"
    )


if __name__ == "__main__":
    main()
