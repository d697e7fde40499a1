"""One image-classification run (book ch. 5.2-5.3): a plain function, no Ray.

Inputs per family:

* ``small_convnet``, ``small_convnet_dropout`` (from scratch, book 5.2): the validated
  image files through :func:`dlpipe.tasks.images.dataset.image_dataset` (tf.data, parallel
  decode), resized to ``images.size`` and rescaled by 1/255; augmentation, when the
  family has it, is inside the model (active in training only).
* ``features_head`` (book 5.3.1, fast feature extraction): the cached conv-base
  features of the prepared data (``data["features"]``), in NumPy batches. Such a head
  is bound by per-step overhead, not arithmetic: with ``training.steps_per_execution``
  at its default 1, its ``fit`` runs one compiled call per epoch
  (:func:`head_steps_per_execution`; the same updates, batches and per-epoch history,
  validation and callbacks; predictions and the kept model keep 1). XLA stays Keras's
  ``jit_compile="auto"`` (on with a GPU, off on CPU: no faster there, and XLA draws
  other dropout masks for a seed, so a head's losses would change).
* ``frozen_base`` (book 5.3.1 with augmentation; 5.3.2 fine-tuning): the images,
  preprocessed as ``images.preprocessing`` says, through the study's conv base and
  weights. With ``images.fine_tune``, after the head is trained the named layers are
  unfrozen (:func:`dlpipe.models.images.fine_tune`, low learning rate) and the model is
  trained again: the history holds both steps, epochs numbered on (step 2 starts at
  the epoch after step 1's last).

``num_classes`` is fixed by the data: 2 classes -> 1 sigmoid unit, k > 2 -> softmax.
Headline metric: accuracy; ``val_loss`` is the crossentropy computed from the predicted
probabilities (:mod:`dlpipe.ensembles.metrics`), like the text pipeline.
"""

from __future__ import annotations

import contextlib
import time
from types import SimpleNamespace

import numpy as np

from dlpipe.tasks.images.inputs import (
    FEATURE_FAMILIES,
    data_hparams,
    input_shape,
    model_inputs,
    weights_used,
)
from dlpipe.tasks.images.prepare import ImageSpec
from dlpipe.tasks.training.classifier import (
    score_classifier_splits,
    score_saved_classifier,
    split_index,
)
from dlpipe.tasks.training.fit import TrainingSpec, fit_model, run_row
from dlpipe.tasks.training.records import RunResult, spec_dict
from dlpipe.tasks.training.tf_setup import setup_tensorflow

__all__ = [
    "train_image_model",
    "training_policy",
    "evaluate_saved_image_model",
    "data_hparams",
    "model_inputs",
    "head_steps_per_execution",
    "fit_steps_per_execution",
]


def _fit(model, data, split, family, images, training, seed, run_id, epoch_hook):
    bs = training.batch_size
    train = model_inputs(data, split["train"], family, images, bs, True, seed)
    has_val = bool(len(split["validation"]))  # a K-fold final model has none
    val = (
        model_inputs(data, split["validation"], family, images, bs, False, seed)
        if has_val
        else None
    )
    if family in FEATURE_FAMILIES:
        labels = np.asarray(data["labels"])
        with fit_steps_per_execution(model, head_steps_per_execution(training, len(train))):
            return fit_model(
                model,
                train,
                (val, labels[split["validation"]]) if has_val else None,
                training=training,
                run_id=run_id,
                epoch_hook=epoch_hook,
                y=labels[split["train"]],
                batch_size=bs,
                shuffle=True,
            )
    return fit_model(
        model,
        train,
        val,
        training=training,
        run_id=run_id,
        epoch_hook=epoch_hook,
        shuffle=False,
    )  # tf.data shuffles the training split


def head_steps_per_execution(training: TrainingSpec, train_samples: int) -> int:
    """Batches per compiled call of a head on cached features: the study's
    ``training.steps_per_execution`` when set (> 1), else one call per epoch
    (``ceil(train_samples / batch_size)`` batches; at least 1).

    Keras runs that many training steps inside one ``tf.function`` call, so the Python
    work per step (iterator, callbacks, logs) is paid once per epoch; the updates,
    their order and every per-epoch callback are those of one call per step."""
    if training.steps_per_execution > 1:
        return training.steps_per_execution
    return max(1, -(-int(train_samples) // training.batch_size))


@contextlib.contextmanager
def fit_steps_per_execution(model, steps: int):
    """``model.steps_per_execution = steps`` inside the block (its ``fit``: training
    and the per-epoch validation), the compiled value afterwards (``predict``, the kept
    model's compile config). The compiled train/test/predict functions are dropped on
    entry and exit, so Keras rebuilds them for the value in force."""
    before = model.steps_per_execution

    def use(value):
        model.steps_per_execution = value
        model.train_function = model.test_function = model.predict_function = None

    use(steps)
    try:
        yield
    finally:
        use(before)


def _recompile(model, training: TrainingSpec) -> None:
    if training.steps_per_execution > 1:
        model.compile(
            optimizer=model.optimizer,
            loss=model.loss,
            metrics=["accuracy"],
            steps_per_execution=training.steps_per_execution,
        )


def train_image_model(
    *,
    data: dict,
    meta: dict,
    family: str,
    hp: dict,
    inputs: ImageSpec,
    training: TrainingSpec,
    seed: int,
    run_id: str,
    num_cpus: float = 1,
    num_gpus: float = 0,
    evaluate_test: bool = True,
    model_path: str | None = None,
    epoch_hook=None,
) -> RunResult:
    """Train one image model on the prepared data and score it.

    Args:
        data: :func:`dlpipe.tasks.images.prepare.prepare_images` arrays (read-only from
            Ray, never modified, case C14).
        meta: its description (``num_classes``, ``feature_shape``, ``weights_used``).
        family: an image family (:data:`dlpipe.models.registry.IMAGE_FAMILIES`).
        hp: hyperparameters over the family defaults (coerced, case C09).
        inputs: the study's ``images`` section.
        training: epochs, callbacks, ``batch_size``, ``max_batches_per_epoch`` (caps
            every split at that many batches: smoke tests).
        seed, run_id, num_cpus, num_gpus, evaluate_test, model_path, epoch_hook: as
            :func:`dlpipe.tasks.text.train.train_text_model`.

    Returns:
        a :class:`RunResult` (``run``, ``history``, ``predictions`` rows);
        ``metric`` = ``accuracy``;
        ``inputs`` JSON = the ``images`` section + ``input``, ``weights_used``,
        ``dtype_policy`` when not ``float32`` (:func:`training_policy`) and, when
        fine-tuned, ``fine_tune_step`` (``{"head_epochs", "fine_tune_epochs",
        "unfrozen"}``). Prediction rows: ``sample_index`` = row of the prepared data,
        ``prediction`` = P(class 1) (binary) or the argmax class with ``probabilities``.

    Raises:
        DeviceError: GPUs requested but none visible (C13).
        ValueError: bad hyperparameter or size; ``features_head`` without features.
        WeightsUnavailableError: ``imagenet`` weights could not be downloaded.
    """
    if family in FEATURE_FAMILIES and training.joint_heads:
        return _joint_alone(locals())
    started = time.perf_counter()
    devices = setup_tensorflow(num_cpus, num_gpus)
    import keras

    from dlpipe.models.precision import dtype_policy_scope
    from dlpipe.models.registry import build_model, resolved_hparams

    keras.utils.set_random_seed(seed)
    hp_resolved = resolved_hparams(family, data_hparams(family, hp, meta, inputs), "images")
    width = hp_resolved["num_classes"]
    policy = training_policy(family, inputs)
    with dtype_policy_scope(policy):
        model = build_model(family, input_shape(family, meta, inputs), hp_resolved, "images")
    _recompile(model, training)
    bs = training.batch_size
    cap = None if training.max_batches_per_epoch is None else training.max_batches_per_epoch * bs
    split = {s: split_index(data, s, cap) for s in ("train", "validation", "test")}
    recorder = _fit(model, data, split, family, inputs, training, seed, run_id, epoch_hook)
    extra = {} if policy == "float32" else {"dtype_policy": policy}
    if family == "frozen_base" and inputs.fine_tune:
        recorder, step = _fine_tune_step(
            model, recorder, data, split, inputs, training, seed, run_id, epoch_hook
        )
        extra.update(step)
    if model_path:
        model.save(model_path)
    scores, predictions = score_classifier_splits(
        model,
        lambda name: model_inputs(data, split[name], family, inputs, bs, False, seed),
        split,
        data,
        run_id,
        width,
        evaluate_test=evaluate_test,
    )
    run = run_row(
        run_id=run_id,
        family=family,
        hp_resolved=hp_resolved,
        seed=seed,
        model=model,
        recorder=recorder,
        metric="accuracy",
        scores=scores,
        started=started,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        devices=devices,
        checked="val_loss" if len(split["validation"]) else "test_loss",
    )
    run["inputs"] = {
        **spec_dict(inputs),
        "input": "cached_features" if family in FEATURE_FAMILIES else "images",
        "weights_used": weights_used(family, meta, inputs),
        **extra,
    }
    return RunResult(run, recorder.rows, predictions, recorder.tensorboard)


def _joint_alone(args: dict) -> RunResult:
    """A ``features_head`` run with ``training.joint_heads`` trained on its own: through
    the joint trainer (:func:`dlpipe.tasks.images.heads.train_image_heads`, one head),
    so its results do not depend on which heads share its task."""
    from dlpipe.tasks.images.heads import train_image_heads

    own = ("family", "hp", "inputs", "training", "seed", "run_id", "model_path", "epoch_hook")
    (result,) = train_image_heads(
        data=args["data"],
        meta=args["meta"],
        runs=[{k: args[k] for k in own}],
        num_cpus=args["num_cpus"],
        num_gpus=args["num_gpus"],
        evaluate_test=args["evaluate_test"],
        raise_errors=True,
    )
    return result


def training_policy(family: str, images: ImageSpec) -> str:
    """The Keras dtype policy a model of ``family`` is built under: ``images.precision``
    resolved on this node (:func:`~dlpipe.tasks.images.precision.resolve_precision`)
    for ``frozen_base`` (the whole model: Keras mixed precision, loss scaling with
    ``mixed_float16``), ``float32`` for the other families (``features_head`` trains on
    the stored float32 features)."""
    if family != "frozen_base":
        return "float32"
    from dlpipe.tasks.images.precision import resolve_precision

    return resolve_precision(images.precision)


def _fine_tune_step(
    model, head, data, split, images: ImageSpec, training, seed, run_id, epoch_hook
):
    """Step 2 of the book's schedule (5.3.2): unfreeze ``images.fine_tune_layers``,
    recompile at ``fine_tune_learning_rate``, train again. Returns a recorder holding
    both steps' rows (epochs numbered on) and event files (the second step's under
    ``fine_tune/``), and the ``fine_tune_step`` report."""
    from dlpipe.models.images import fine_tune

    offset = len(head.rows)
    fine_tune(
        model, unfreeze=list(images.fine_tune_layers), learning_rate=images.fine_tune_learning_rate
    )
    _recompile(model, training)
    hook = None if epoch_hook is None else (lambda e, logs: epoch_hook(e + offset, logs))
    tuned = _fit(model, data, split, "frozen_base", images, training, seed + 1, run_id, hook)
    for row in tuned.rows:
        row["epoch"] += offset
    best = offset + tuned.best_epoch if tuned.best_epoch else head.best_epoch
    both = SimpleNamespace(
        rows=head.rows + tuned.rows,
        best_epoch=best,
        diverged=head.diverged or tuned.diverged,
        # TensorBoard: the fine-tuning step's curves as their own runs (its steps
        # restart at 0), beside the head's
        tensorboard={
            **head.tensorboard,
            **{f"fine_tune/{k}": v for k, v in tuned.tensorboard.items()},
        },
    )
    report = {
        "fine_tune_step": {
            "head_epochs": offset,
            "fine_tune_epochs": len(tuned.rows),
            "unfrozen": list(images.fine_tune_layers),
            "learning_rate": images.fine_tune_learning_rate,
        }
    }
    return both, report


def evaluate_saved_image_model(
    *,
    data: dict,
    meta: dict,
    model_path: str,
    inputs: ImageSpec,
    run_id: str,
    split: str = "test",
    max_batches: int | None = None,
    batch_size: int = 32,
    family: str = "small_convnet",
    num_cpus: float = 1,
    num_gpus: float = 0,
) -> dict:
    """Score a saved image model once on one split (the sweep's final test evaluation).

    ``family`` decides the input (cached features, or images with 1/255 or the base's
    preprocessing).

    Returns:
        ``{"loss": crossentropy, "metric": accuracy, "predictions": rows}``.
    """
    return score_saved_classifier(
        model_path,
        data,
        split,
        run_id,
        batch_size=batch_size,
        max_batches=max_batches,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        make_inputs=lambda index, width: model_inputs(
            data, index, family, inputs, batch_size, False, 0
        ),
    )
