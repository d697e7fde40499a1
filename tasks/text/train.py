"""One text-classification run (book ch. 3.4, 6.1-6.3): a plain function, no Ray.

Inputs per family: ``multihot_dense`` gets multi-hot rows built per batch from every
token of each document (25,000 x 10,002 float32 would be 1 GB at once); every other
family gets sequences padded/truncated to ``maxlen``. ``glove_dense`` gets the study's
GloVe matrix loaded into its Embedding layer (frozen unless ``trainable_embedding``).
``num_classes``, ``vocab_size`` and the GloVe ``embedding_dim`` come from the prepared
data, not from the user. Headline metric: accuracy; the loss is the model's
crossentropy.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict

import numpy as np

from dlpipe.tasks.text.prepare import SPLIT_CODES, TextSpec, multi_hot_rows, sequences
from dlpipe.tasks.training.arrays import py_dataset_batches
from dlpipe.tasks.training.classifier import (
    head_classes,
    score_classifier_splits,
    score_saved_classifier,
    split_index,
)
from dlpipe.tasks.training.fit import TrainingSpec, fit_model, run_row
from dlpipe.tasks.training.records import RunResult
from dlpipe.tasks.training.tf_setup import setup_tensorflow

MULTI_HOT_FAMILIES = ("multihot_dense",)


def data_hparams(family: str, hp: dict, meta: dict, embedding: np.ndarray | None) -> dict:
    """``hp`` with the values the data fixes: ``num_classes``, ``vocab_size`` and, for
    ``glove_dense``, ``embedding_dim`` = the GloVe vectors' length.

    Raises:
        ValueError: ``glove_dense`` without a GloVe file in the study (``text.glove``).
    """
    from dlpipe.models.registry import get_family

    known = get_family(family, "text").param_types
    fixed = {"num_classes": head_classes(meta["num_classes"])}
    if "vocab_size" in known:
        fixed["vocab_size"] = meta["vocabulary_size"]
    if family == "glove_dense":
        if embedding is None:
            raise ValueError(
                "family `glove_dense` needs pretrained vectors: set `text.glove` "
                "to a GloVe text file (e.g. glove.6B.100d.txt)"
            )
        fixed["embedding_dim"] = int(embedding.shape[1])
    return {**hp, **fixed}


def _batches(
    arrays: dict,
    index: np.ndarray,
    family: str,
    text: TextSpec,
    width: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
):
    """``(inputs, labels)`` batches of documents ``index``: a Keras PyDataset read as
    ``fit`` reads it (:func:`~dlpipe.tasks.training.arrays.py_dataset_batches`)."""
    import keras

    labels = arrays["labels"]
    padded = None if family in MULTI_HOT_FAMILIES else sequences(arrays, index, text)

    class TextBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.order = np.arange(len(index))
            self.rng = np.random.default_rng(seed)
            if shuffle:
                self.rng.shuffle(self.order)

        def __len__(self):
            return math.ceil(len(index) / batch_size)

        def __getitem__(self, i):
            rows = self.order[i * batch_size : (i + 1) * batch_size]
            y = labels[index[rows]].astype(np.float32 if width == 1 else np.int64)
            if padded is None:
                return multi_hot_rows(arrays, index[rows], text.max_words + 2), y
            return padded[rows], y

        def on_epoch_end(self):
            if shuffle:
                self.rng.shuffle(self.order)

    # fit shuffles the training batches' order too; fed in the training thread
    return py_dataset_batches(TextBatches(), shuffle=shuffle)


def cost_model(family: str, hp: dict, inputs: TextSpec, meta: dict):
    """The untrained model :func:`train_text_model` builds for these arguments (input
    ``(maxlen,)``, or ``(max_words + 2,)`` for multi-hot families), for its cost estimate
    (:func:`dlpipe.tasks.training.costs.estimate_costs`). Call in a TensorFlow worker.

    Raises:
        ValueError: bad hyperparameter, or ``glove_dense`` (its width comes from the
            GloVe vectors, which are not in ``meta``).
    """
    from dlpipe.models.registry import build_model, resolved_hparams

    hp_resolved = resolved_hparams(family, data_hparams(family, hp, meta, None), "text")
    multi_hot = family in MULTI_HOT_FAMILIES
    shape = (inputs.max_words + 2,) if multi_hot else (inputs.maxlen,)
    return build_model(family, shape, hp_resolved, "text")


def train_text_model(
    *,
    data: dict,
    meta: dict,
    family: str,
    hp: dict,
    inputs: TextSpec,
    training: TrainingSpec,
    seed: int,
    run_id: str,
    num_cpus: float = 1,
    num_gpus: float = 0,
    evaluate_test: bool = True,
    model_path: str | None = None,
    epoch_hook=None,
) -> RunResult:
    """Train one text model on the prepared documents and score it.

    Args:
        data: :func:`dlpipe.tasks.text.prepare.prepare_text` arrays (read-only from Ray,
            never modified, case C14).
        meta: its description (``num_classes``, ``vocabulary_size``, ``class_names``).
        family: a text family (:data:`dlpipe.models.registry.TEXT_FAMILIES`).
        hp: hyperparameters over the family defaults (coerced, case C09).
        inputs: the study's ``text`` section (maxlen, padding, reverse).
        training: epochs, callbacks, ``batch_size``, ``max_batches_per_epoch`` (caps
            every split at that many batches: smoke tests).
        seed, run_id, num_cpus, num_gpus, evaluate_test, model_path, epoch_hook: as
            :func:`dlpipe.tasks.weather.train.train_model`.

    Returns:
        a :class:`RunResult` (``run``, ``history``, ``predictions`` rows);
        ``metric`` = ``accuracy``,
        ``val_loss`` = crossentropy. Prediction rows: ``sample_index`` = document row,
        ``prediction`` = P(class 1) (binary) or the argmax class with
        ``probabilities`` (multi-class), ``target`` = the label.

    Raises:
        DeviceError: GPUs requested but none visible (C13).
        ValueError: bad hyperparameter, or ``glove_dense`` without GloVe vectors.
    """
    started = time.perf_counter()
    devices = setup_tensorflow(num_cpus, num_gpus)
    import keras

    from dlpipe.models.registry import build_model, resolved_hparams

    keras.utils.set_random_seed(seed)
    embedding = data.get("embedding")
    hp_resolved = resolved_hparams(family, data_hparams(family, hp, meta, embedding), "text")
    width = hp_resolved["num_classes"]
    multi_hot = family in MULTI_HOT_FAMILIES
    shape = (inputs.max_words + 2,) if multi_hot else (inputs.maxlen,)
    model = build_model(family, shape, hp_resolved, "text")
    if family == "glove_dense":
        model.get_layer("embedding").set_weights([np.asarray(embedding)])
    if training.steps_per_execution > 1:
        model.compile(
            optimizer=model.optimizer,
            loss=model.loss,
            metrics=["accuracy"],
            steps_per_execution=training.steps_per_execution,
        )
    bs = training.batch_size
    cap = None if training.max_batches_per_epoch is None else training.max_batches_per_epoch * bs
    split = {s: split_index(data, s, cap) for s in SPLIT_CODES}
    batches = {
        s: _batches(data, split[s], family, inputs, width, bs, s == "train", seed)
        for s in SPLIT_CODES
        if len(split[s])  # a K-fold final model has no validation rows
    }
    has_val = bool(len(split["validation"]))  # a K-fold final model has none
    recorder = fit_model(
        model,
        batches["train"],
        batches["validation"] if has_val else None,
        training=training,
        run_id=run_id,
        epoch_hook=epoch_hook,
        shuffle=False,  # the batches come in fit's shuffled order already
    )
    if model_path:
        model.save(model_path)
    scores, predictions = score_classifier_splits(
        model, batches.__getitem__, split, data, run_id, width, evaluate_test=evaluate_test
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
        checked="val_loss" if has_val else "test_loss",
    )
    run["inputs"] = {**asdict(inputs), "input": "multi_hot" if multi_hot else "sequences"}
    return RunResult(run, recorder.rows, predictions, recorder.tensorboard)


def evaluate_saved_text_model(
    *,
    data: dict,
    meta: dict,
    model_path: str,
    inputs: TextSpec,
    run_id: str,
    split: str = "test",
    max_batches: int | None = None,
    batch_size: int = 32,
    family: str = "lstm",
    num_cpus: float = 1,
    num_gpus: float = 0,
) -> dict:
    """Score a saved text model once on one split (the sweep's final test evaluation).

    ``family`` decides the input encoding (multi-hot rows or padded sequences).

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
        make_inputs=lambda index, width: _batches(
            data, index, family, inputs, width, batch_size, False, 0
        ),
    )
