"""Per-fold datasets of a text K-fold study (book ch. 3.6.4 with 6.1: no leakage): plain
functions, no Ray (the driver passes a ``map_fn`` that runs the word counting and the
encoding shards as Ray tasks, as the hold-out prepare does).

The documents are read, deduplicated and split as :func:`dlpipe.tasks.text.prepare.
prepare_text` does (:func:`~dlpipe.tasks.text.prepare.read_split_documents`: same
documents, same rows, same test split); the folds partition the non-test documents
(:func:`dlpipe.tasks.training.folds.split_code_folds`, stratified by class unless
``stratified: false``). Each fold's vocabulary is built from that fold's TRAINING
documents only and every document is encoded with it
(:func:`~dlpipe.tasks.text.prepare.encode_documents`): a word seen only in a fold's
validation documents is out of vocabulary (index 1) for that fold. The final model's
vocabulary comes from every non-test document.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import starmap

import numpy as np

from dlpipe.tasks.text.prepare import (
    TextDataSpec,
    TextSpec,
    TextSplitSpec,
    encode_documents,
    read_split_documents,
)
from dlpipe.tasks.training.folds import class_counts, split_code_folds, split_counts


def fold_arrays(
    data: TextDataSpec,
    split: TextSplitSpec,
    text: TextSpec,
    evaluation,
    seed: int,
    map_fn: Callable = starmap,
) -> list[tuple[dict, dict, object]]:
    """The encoded documents of every fold and of the final model.

    Args:
        data, split, text: the study's sections (as :func:`prepare_text`).
        evaluation: the study's :class:`~dlpipe.pipelines.sections.EvaluationSpec`.
        seed: the study seed (fold shuffles).
        map_fn: runs the shards (``itertools.starmap`` here; Ray tasks in a study).

    Returns:
        ``repeats * k`` fold entries (repeat-major) then the final model's; each
        ``(arrays, info, vocabulary)``: arrays as :func:`prepare_text`'s (the rows of the
        prepared dataset, encoded with the entry's vocabulary; ``embedding`` with
        ``text.glove``); info: ``repeat``, ``fold`` (None for the final),
        ``split_counts``, ``class_counts``, ``vocabulary_size``,
        ``distinct_train_words``, ``oov_rate`` (and ``glove_coverage``).

    Raises:
        FileNotFoundError, ValueError: as :func:`prepare_text`; too few non-test
            documents (of a class, stratified) for ``k``.
    """
    corpus, _, _, codes, _ = read_split_documents(data, split)
    used = np.flatnonzero(codes >= 0)
    texts = [corpus["texts"][i] for i in used]
    labels = corpus["labels"][used]
    names = corpus["class_names"]
    base = {"labels": labels, "paths": np.asarray([corpus["paths"][i] for i in used], dtype=str)}
    out = []
    for repeat, fold, fold_codes in split_code_folds(codes[used], labels, evaluation, seed, names):
        encoded, vocab, counts = encode_documents(texts, fold_codes, text, map_fn)
        info = {
            "repeat": repeat,
            "fold": fold,
            "split_counts": split_counts(fold_codes),
            "class_counts": class_counts(fold_codes, labels, len(names)),
            "vocabulary_size": vocab.input_dim,
            "distinct_train_words": len(counts),
            "oov_rate": float(np.mean(encoded["ids"] == 1)) if len(encoded["ids"]) else 0.0,
        }
        out.append(({**encoded, **base, "split": fold_codes}, info, vocab))
    if text.glove:
        add_embeddings(out, text.glove)
    return out


def add_embeddings(entries: list, glove_path: str) -> None:
    """Each entry's GloVe matrix for its own vocabulary (``arrays["embedding"]``,
    ``info["glove_coverage"]``); the file is read once, for the words of every
    vocabulary."""
    from dlpipe.tasks.text.glove import embedding_matrix, load_glove
    from dlpipe.tasks.text.prepare import check_glove_report

    words = set()
    for _, _, vocab in entries:
        words.update(vocab.words)
    glove = load_glove(glove_path, vocabulary=words)
    check_glove_report(glove_path, glove.report)
    for arrays, info, vocab in entries:
        arrays["embedding"], info["glove_coverage"] = embedding_matrix(vocab, glove)
