"""Heads on cached features trained jointly (issue 17): several ``features_head`` runs
that share the prepared data, the ``images`` section and the training settings, trained
in one compiled step (:func:`dlpipe.tasks.training.multihead.fit_heads`) when their
study sets ``training.joint_heads: true``.

Each run is built, scored, saved and reported as :func:`dlpipe.tasks.images.train.
train_image_model` does it alone: its own seed (initial weights, dropout masks), its own
hyperparameters (width, dropout, learning rate), callbacks, epoch rows, validation and
test scores, prediction rows, kept ``.keras`` model (a plain ``features_head``: ``dlpipe
predict`` and reports read it as any other) and ``runs`` row, with the same columns.
The heads share the batch order (seeded by
:data:`~dlpipe.tasks.training.multihead.JOINT_SHUFFLE_SEED`), so a run's results are
identical in kind to a separate run's, not bit-identical; a lone run with
``joint_heads`` trains through here too, so its results do not depend on which heads
share its task. Its ``inputs`` JSON adds ``joint_heads`` (heads trained together,
shuffle seed). ``wall_time_s``: its own build, saving and scoring plus an equal share
of the joint training.

Plain functions, no Ray.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from dlpipe.tasks.training.records import RunError, RunResult

__all__ = ["train_image_heads", "train_heads_jointly"]


def train_image_heads(
    *,
    data: dict,
    meta: dict,
    runs: list[dict],
    num_cpus: float = 1,
    num_gpus: float = 0,
    evaluate_test: bool = True,
    raise_errors: bool = False,
) -> list[RunResult | RunError]:
    """Train ``features_head`` runs together and score each.

    Args:
        data, meta: the prepared data and its description (as
            :func:`dlpipe.tasks.images.train.train_image_model`).
        runs: each run's ``family`` (``features_head``), ``hp``, ``inputs``,
            ``training`` (the same for all), ``seed``, ``run_id``, and optionally
            ``model_path`` (where to save its trained model) and ``epoch_hook``.
        num_cpus, num_gpus: the task's resources (TensorFlow's threads and devices).
        evaluate_test: score the test split too.
        raise_errors: a model that cannot be built raises (a lone run) instead of
            becoming a ``RunError``.

    Returns:
        One entry per run, in order: its :class:`RunResult`, or a :class:`RunError` for a
        run whose model could not be built (bad hyperparameter); the others train.

    Raises:
        ValueError: runs that do not share their training settings and inputs, or a
            family other than ``features_head``.
    """
    from dlpipe.tasks.images.inputs import (
        FEATURE_FAMILIES,
        data_hparams,
        input_shape,
        model_inputs,
        weights_used,
    )
    from dlpipe.tasks.training.classifier import score_classifier_splits, split_index
    from dlpipe.tasks.training.fit import error_text, run_row
    from dlpipe.tasks.training.multihead import JOINT_SHUFFLE_SEED, fit_heads, predict_heads
    from dlpipe.tasks.training.records import spec_dict
    from dlpipe.tasks.training.tf_setup import setup_tensorflow

    if not runs:
        return []
    training, inputs = runs[0]["training"], runs[0]["inputs"]
    if any(r["training"] != training or r["inputs"] != inputs for r in runs):
        raise ValueError("jointly trained heads share their training settings and inputs")
    if any(r["family"] not in FEATURE_FAMILIES for r in runs):
        raise ValueError("only heads on cached features (features_head) train jointly")
    devices = setup_tensorflow(num_cpus, num_gpus)
    import keras

    from dlpipe.models.registry import build_model, resolved_hparams

    out: list = [None] * len(runs)
    built = []  # (index, model, hp_resolved, build seconds)
    for i, run in enumerate(runs):
        t0 = time.perf_counter()
        try:
            keras.utils.set_random_seed(run["seed"])  # as the run alone: weights, dropout
            hp = resolved_hparams(
                run["family"], data_hparams(run["family"], run["hp"], meta, inputs), "images"
            )
            model = build_model(
                run["family"], input_shape(run["family"], meta, inputs), hp, "images"
            )
        except Exception as exc:  # this run failed; the others go on
            if raise_errors:
                raise
            out[i] = RunError(error_text(exc))
            continue
        built.append((i, model, hp, time.perf_counter() - t0))
    bs = training.batch_size
    cap = None if training.max_batches_per_epoch is None else training.max_batches_per_epoch * bs
    split = {s: split_index(data, s, cap) for s in ("train", "validation", "test")}
    labels = np.asarray(data["labels"])
    x = model_inputs(data, split["train"], "features_head", inputs, bs, False, 0)
    has_val = bool(len(split["validation"]))
    val = None
    if has_val:
        xv = model_inputs(data, split["validation"], "features_head", inputs, bs, False, 0)
        val = (xv, labels[split["validation"]])
    t0 = time.perf_counter()
    recorders = fit_heads(
        [m for _, m, _, _ in built],
        x,
        labels[split["train"]],
        val,
        training=training,
        run_ids=[runs[i]["run_id"] for i, *_ in built],
        epoch_hooks=[runs[i].get("epoch_hook") for i, *_ in built],
        shuffle_seed=JOINT_SHUFFLE_SEED,
    )
    scored = [s for s in ("validation", "test") if len(split[s])]
    if not evaluate_test:
        scored = [s for s in scored if s != "test"]
    models = [m for _, m, _, _ in built]
    probs = {
        s: predict_heads(
            models, model_inputs(data, split[s], "features_head", inputs, bs, False, 0)
        )
        for s in scored
    }
    share = (time.perf_counter() - t0) / max(1, len(built))  # fit and predict, shared
    for j, ((i, model, hp, build_s), recorder) in enumerate(zip(built, recorders)):
        run = runs[i]
        started = time.perf_counter() - build_s - share
        if run.get("model_path"):
            model.save(run["model_path"])
        scores, predictions = score_classifier_splits(
            None,
            None,
            split,
            data,
            run["run_id"],
            hp["num_classes"],
            evaluate_test=evaluate_test,
            probabilities={s: probs[s][j] for s in scored},
        )
        row = run_row(
            run_id=run["run_id"],
            family=run["family"],
            hp_resolved=hp,
            seed=run["seed"],
            model=model,
            recorder=recorder,
            metric="accuracy",
            scores=scores,
            started=started,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            devices=devices,
            checked="val_loss" if has_val else "test_loss",
        )
        row["inputs"] = {
            **spec_dict(inputs),
            "input": "cached_features",
            "weights_used": weights_used(run["family"], meta, inputs),
            "joint_heads": {"heads": len(built), "shuffle_seed": JOINT_SHUFFLE_SEED},
        }
        out[i] = RunResult(row, recorder.rows, predictions, recorder.tensorboard)
    return out


def joint_eligible(run: dict) -> bool:
    """Whether a run of a grouped task trains jointly: a ``features_head`` whose
    training settings ask for it (``training.joint_heads``)."""
    from dlpipe.tasks.images.inputs import FEATURE_FAMILIES

    training = run.get("training")
    return run.get("family") in FEATURE_FAMILIES and bool(getattr(training, "joint_heads", False))


def train_heads_jointly(shared: dict, runs: list[dict], hook_of=None) -> list:
    """The images kind's joint trainer of a grouped task
    (:func:`dlpipe.tasks.training.grouped.train_group`): the runs that are
    :func:`joint_eligible` train together (:func:`train_image_heads`), each keeping its
    model's ``.keras`` bytes when its ``keep_model`` says so; the others are left to
    the caller.

    Args:
        shared: keyword arguments of every run (``data``, ``meta``, ``num_cpus``,
            ``num_gpus``, ``evaluate_test``...).
        runs: each run's own keyword arguments (with ``keep_model``).
        hook_of: ``run_id -> epoch_hook``, or None.

    Returns:
        One entry per run: its ``RunResult`` / ``RunError``, or None for a run not
        trained here.
    """
    chosen = [i for i, r in enumerate(runs) if joint_eligible(r)]
    out: list = [None] * len(runs)
    if not chosen:
        return out
    allowed = {"data", "meta", "num_cpus", "num_gpus", "evaluate_test"}
    kwargs = {k: v for k, v in shared.items() if k in allowed}
    with tempfile.TemporaryDirectory(prefix="dlpipe-heads-") as folder:
        own = []
        for i in chosen:
            run = {k: v for k, v in runs[i].items() if k != "keep_model"}
            if runs[i].get("keep_model"):
                run["model_path"] = str(Path(folder) / f"{run['run_id']}.keras")
            if hook_of is not None:
                run["epoch_hook"] = hook_of(run["run_id"])
            own.append(run)
        results = train_image_heads(runs=own, **kwargs)
        for i, run, result in zip(chosen, own, results):
            path = run.get("model_path")
            if isinstance(result, RunResult) and path and Path(path).is_file():
                result.model = Path(path).read_bytes()
            out[i] = result
    return out
