"""Class probabilities for new text (issue 15): documents are read from a folder of
files, a table or a file of lines, decoded as the study's readers decode (case C05),
tokenized with the study's stored training vocabulary
(:func:`dlpipe.tasks.text.tokenize.texts_to_sequences`, the same standardization) and
turned into padded sequences or multi-hot rows by the functions training reads
(:func:`dlpipe.tasks.text.prepare.sequences`, :func:`~dlpipe.tasks.text.prepare.multi_hot_rows`).

Plain numpy, no Ray, no TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dlpipe.tasks.tabular.read import ROWS_SUFFIX
from dlpipe.tasks.text.data import decode_bytes, read_text_file
from dlpipe.tasks.text.prepare import TextSpec, encode_shard, multi_hot_rows, sequences
from dlpipe.tasks.text.tokenize import Vocabulary

#: table suffixes read as one document per row of the study's text column
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")


def predict_state(data, meta: dict, vocabulary: Vocabulary) -> dict:
    """The preprocessing state of a prepared text dataset (JSON-able): the ``data``
    section (the table's text column), the class names in label order and the
    training vocabulary (its JSON, :meth:`Vocabulary.to_json`)."""
    return {
        "kind": "text",
        "dataset_key": meta["key"],
        "data": asdict(data),
        "class_names": list(meta["class_names"]),
        "vocabulary": json.loads(vocabulary.to_json()),
    }


def read_documents(state: dict, path: str | Path) -> tuple[list[str], dict]:
    """``(texts, ids)`` of new documents.

    Args:
        state: :func:`predict_state` of the study's dataset.
        path: a folder (every file under it, sorted, one document each: ``id`` = the
            file path), a ``.csv``/``.tsv``/``.parquet`` table (the study's
            ``data.text_column``: ``row`` = 0-based data row) or any other file (one
            document per non-empty line: ``line`` = 1-based line number).

    Raises:
        FileNotFoundError: no such file or folder.
        ValueError: a table without the text column, or no document, naming the file
            and the field.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        texts = [read_text_file(p)[0] for p in files]
        ids = {"path": [str(p) for p in files]}
    elif path.suffix.lower() in TABLE_SUFFIXES or path.name.endswith(ROWS_SUFFIX):
        from dlpipe.tasks.tabular.read import read_table_or_rows

        frame = read_table_or_rows(path).frame  # a table, or a shard naming its rows
        column = state["data"]["text_column"]
        if column not in frame.columns:
            raise ValueError(
                f"{path}: field `{column}` (data.text_column) is not a column; the table's "
                f"columns are {[str(c) for c in frame.columns]}"
            )
        texts = ["" if v is None or v != v else str(v) for v in frame[column].tolist()]
        ids = {"row": np.arange(len(texts), dtype=np.int64)}
    else:
        if not path.is_file():
            raise FileNotFoundError(f"no such file or folder: {path}")
        lines = decode_bytes(path.read_bytes())[0].splitlines()
        kept = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
        texts = [line for _, line in kept]
        ids = {"line": np.asarray([i for i, _ in kept], np.int64)}
    if not texts:
        raise ValueError(f"{path}: field `documents`: no document to classify")
    return texts, ids


def text_inputs(state: dict, texts: list[str], family: str, inputs: dict) -> np.ndarray:
    """The model inputs of ``texts``, as training built them for ``family``.

    Args:
        state: :func:`predict_state` (its vocabulary).
        texts: the documents.
        family: the model family (multi-hot rows or padded sequences).
        inputs: the run's stored ``text`` settings (maxlen, padding, reverse).

    Returns:
        float32 ``(n, max_words + 2)`` multi-hot rows or int32 ``(n, maxlen)`` sequences.
    """
    from dlpipe.tasks.text.train import MULTI_HOT_FAMILIES

    vocab = Vocabulary.from_json(json.dumps(state["vocabulary"]))
    spec = TextSpec(**{k: v for k, v in inputs.items() if k in TextSpec.__dataclass_fields__})
    ids, lengths = encode_shard(texts, vocab)
    arrays = {"ids": ids, "offsets": np.r_[0, np.cumsum(lengths)].astype(np.int64)}
    index = np.arange(len(texts))
    if family in MULTI_HOT_FAMILIES:
        return multi_hot_rows(arrays, index, spec.max_words + 2)
    return sequences(arrays, index, spec)
