"""Text to integers (book ch. 3.4.2 and 6.1): standardize, count, vocabulary, sequences.

Plain functions, no Ray. The expensive step, counting words, splits into shards:
:func:`count_words` on each shard (a Ray task), :func:`merge_counts` on the driver,
then :func:`build_vocabulary` once. Encoding (:func:`texts_to_sequences`,
:func:`pad_sequences`, :func:`multi_hot`) reuses the saved :class:`Vocabulary`.

Standardization (:func:`standardize`, shared case C05), in this order:

1. Unicode NFC normalization (``e`` + combining accent == ``é``), then lowercase.
2. HTML line breaks ``<br />``, ``<br/>``, ``<br>`` (any case, any inner spaces), which
   aclImdb reviews are full of, become a space: never the token ``br``.
3. Apostrophes (``'`` and ``’``) are deleted, so contractions stay one word
   (``don't`` -> ``dont``, as Keras ``TextVectorization`` does).
4. Every other character that is neither a letter, a digit nor whitespace (ASCII and
   Unicode punctuation, symbols, ``_``, U+FFFD from undecodable bytes) becomes a space
   (as the book's Keras ``Tokenizer`` filters do): ``film.Loved`` -> ``film loved``.

Tokens are then the whitespace-separated runs.

Speed: ASCII documents (most of aclImdb) skip the regular expressions: a shard is
joined, translated byte-wise and handed to Arrow's C++ string kernels (pyarrow, already
a dependency) to split, count and look up; the tokens are exactly those of
:func:`tokenize` (tested on adversarial text). 25,000 reviews of ~240 words: ~0.85 s
for count + vocabulary + sequences + pad, vs ~1.6 s for Keras ``TextVectorization``
adapt + call (``benchmarks/bench_text.py``).

Index layout of a :class:`Vocabulary` with ``max_words`` words:

====================  ==========================================================
index                 meaning
====================  ==========================================================
0 (:data:`PAD`)       padding, stands for no word (book: "index 0 is reserved")
1 (:data:`OOV`)       out of vocabulary: any word not among the kept ones
2 .. max_words + 1    the kept words, most frequent first
====================  ==========================================================

so an ``Embedding`` needs ``input_dim = max_words + 2`` (10,002 for the book's 10,000
words), the same layout as Keras ``TextVectorization(max_tokens=max_words + 2)``.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

#: Index of padding (no word).
PAD = 0
#: Index of every word outside the vocabulary.
OOV = 1
#: Number of reserved indices before the first real word.
RESERVED = 2
VOCABULARY_FORMAT = "dlpipe.vocabulary"
VOCABULARY_VERSION = 1

_WS = r"[ \t\n\r\f\v]*"
_BREAK = re.compile(rf"<{_WS}br{_WS}/?{_WS}>", re.IGNORECASE)
_APOSTROPHE = re.compile(r"['\u2019]")
_NOT_WORD = re.compile(r"[^\w\s]")

# Fast path for ASCII documents, token for token the same as `tokenize` (tested): the
# documents of a shard are joined with "\x1f", one bytes.translate lowercases letters,
# keeps digits, deletes apostrophes and turns every other byte into a space; the
# buffer becomes an Arrow string array (one entry per document, no copy) that Arrow's
# C++ kernels split, count and look up. Other documents take the plain Python path.
_SEP = "\x1f"
_BREAK_BYTES = re.compile(rf"<{_WS}br{_WS}/?{_WS}>".encode("ascii"), re.IGNORECASE)
_ASCII_TABLE = bytes(
    ord(chr(b).lower()) if b < 128 and chr(b).isalnum() else b if b == ord(_SEP) else ord(" ")
    for b in range(256)
)


def standardize(text: str) -> str:
    """Standardize one document (module docstring, case C05).

    Args:
        text: Raw document, e.g. `"Great film.<br /><br />Loved it"`.

    Returns:
        The standardized document, e.g. `"great film    loved it"`; split it on
        whitespace to get the tokens.
    """
    text = unicodedata.normalize("NFC", text).lower()
    text = _BREAK.sub(" ", text)
    text = _APOSTROPHE.sub("", text).replace("_", " ")
    return _NOT_WORD.sub(" ", text)


def tokenize(text: str) -> list[str]:
    """The tokens of one document: `standardize(text).split()`."""
    return standardize(text).split()


def _as_text_list(texts: Iterable[str]) -> list[str]:
    """`texts` as a list of strings, or ValueError."""
    if isinstance(texts, str):
        raise ValueError(
            "`texts` must be a sequence of documents, not one string. "
            f"Received: texts={texts[:40]!r}"
        )
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(
                f"`texts` must hold strings. Received: {type(text).__name__} at index {i}"
            )
    return texts


@dataclass
class _FastTokens:
    """Tokens of the fast-path (ASCII) documents of a shard.

    Attributes:
        docs: Indices of those documents in the shard.
        flat: Arrow string array of all their tokens, document after document.
        lengths: int64 `(len(docs),)` tokens per document.
        other: Indices of the documents left to the Python path.
    """

    docs: list[int]
    flat: object
    lengths: np.ndarray
    other: list[int]


def _fast_tokens(texts: list[str]) -> _FastTokens:
    """Split `texts` between the Arrow fast path and the Python path, and tokenize the
    fast-path documents (ASCII, without the separator character)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    fast = [i for i, text in enumerate(texts) if text.isascii() and _SEP not in text]
    other = sorted(set(range(len(texts))).difference(fast)) if len(fast) < len(texts) else []
    if not fast:
        return _FastTokens(fast, pa.array([], pa.large_string()), np.zeros(0, np.int64), other)
    joined = _SEP.join(texts[i] for i in fast).encode("ascii")
    data = bytearray(_BREAK_BYTES.sub(b" ", joined)).translate(_ASCII_TABLE, b"'")
    buffer = np.frombuffer(data, dtype=np.uint8)
    separators = np.flatnonzero(buffer == ord(_SEP))
    buffer[separators] = ord(" ")
    offsets = np.concatenate(([0], separators + 1, [len(buffer)])).astype(np.int64)
    docs = pa.LargeStringArray.from_buffers(len(fast), pa.py_buffer(offsets), pa.py_buffer(buffer))
    docs = pc.ascii_trim_whitespace(docs)
    tokens = pc.ascii_split_whitespace(docs)  # an empty document gives one "" token
    flat = tokens.flatten()
    empty_docs = pc.equal(pc.binary_length(docs), 0).to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(tokens).to_numpy().astype(np.int64) - empty_docs
    if empty_docs.any():
        flat = flat.filter(pc.greater(pc.binary_length(flat), 0))
    return _FastTokens(fast, flat, lengths, other)


def count_words(texts: Iterable[str]) -> Counter:
    """Count the tokens of one shard of documents (run one call per Ray task).

    Tokens are those of :func:`tokenize`; ASCII documents take a fast path through
    Arrow's C++ string kernels with exactly the same tokens (`_fast_tokens`).

    Args:
        texts: Raw documents (standardized here).

    Returns:
        A `collections.Counter` word -> occurrences over all the documents.

    Raises:
        ValueError: `texts` is a single string or holds a non-string.
    """
    import pyarrow.compute as pc

    texts = _as_text_list(texts)
    fast = _fast_tokens(texts)
    counts: Counter = Counter()
    if len(fast.flat):
        found = pc.value_counts(fast.flat)
        counts.update(
            dict(zip(found.field("values").to_pylist(), found.field("counts").to_pylist()))
        )
    for i in fast.other:
        counts.update(tokenize(texts[i]))
    return counts


def merge_counts(counters: Iterable[Mapping[str, int]]) -> Counter:
    """Sum the per-shard counts of :func:`count_words` into one `Counter`."""
    total: Counter = Counter()
    for counts in counters:
        total.update(counts)
    return total


@dataclass(frozen=True)
class Vocabulary:
    """The kept words and their indices (layout in the module docstring).

    Attributes:
        words: Real words in index order: `words[k]` has index `k + 2`; most frequent
            first, ties in alphabetical order. At most `max_words` of them.
        max_words: The requested number of words (book: 10,000). Fixes the widths
            `input_dim = max_words + 2` even when the corpus had fewer distinct words.
    """

    words: tuple[str, ...]
    max_words: int

    def __post_init__(self):
        if (
            isinstance(self.max_words, bool)
            or not isinstance(self.max_words, int)
            or self.max_words < 1
        ):
            raise ValueError(
                f"`max_words` must be a positive integer. Received: max_words={self.max_words!r}"
            )
        if not isinstance(self.words, tuple):
            object.__setattr__(self, "words", tuple(self.words))
        if len(self.words) > self.max_words:
            raise ValueError(
                f"A vocabulary holds at most `max_words` words. Received: "
                f"{len(self.words)} words with max_words={self.max_words}"
            )
        bad = [
            w
            for w in self.words
            if not isinstance(w, str) or not w or len(w.split()) != 1 or w.split()[0] != w
        ]
        if bad:
            raise ValueError(
                "Vocabulary words must be non-empty strings without whitespace (tokens). "
                f"Received: {bad[:5]!r}"
            )
        if len(set(self.words)) != len(self.words):
            repeated = sorted(w for w, n in Counter(self.words).items() if n > 1)
            raise ValueError(f"Vocabulary words must be distinct. Repeated: {repeated[:10]!r}")

    @property
    def input_dim(self) -> int:
        """Rows of an Embedding / columns of a multi-hot matrix: `max_words + 2`."""
        return self.max_words + RESERVED

    @cached_property
    def index(self) -> dict[str, int]:
        """word -> index (2 .. len(words) + 1)."""
        return {word: i for i, word in enumerate(self.words, start=RESERVED)}

    def lookup(self, word: str) -> int:
        """Index of an already standardized `word`; `OOV` (1) if it is not kept."""
        return self.index.get(word, OOV)

    def to_json(self) -> str:
        """Serialize (with the reserved indices spelled out) for saving with a study."""
        return json.dumps(
            {
                "format": VOCABULARY_FORMAT,
                "version": VOCABULARY_VERSION,
                "max_words": self.max_words,
                "reserved": {str(PAD): "<padding>", str(OOV): "<oov>"},
                "standardize": "lower, NFC, <br> -> space, apostrophes deleted, "
                "other non-word characters -> space",
                "words": list(self.words),
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> "Vocabulary":
        """Rebuild a vocabulary written by :meth:`to_json`.

        Raises:
            ValueError: Not JSON, not a dlpipe vocabulary, another version, or invalid
                content (the message says which).
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Vocabulary JSON does not parse: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != VOCABULARY_FORMAT:
            raise ValueError(
                f"Not a dlpipe vocabulary: `format` must be {VOCABULARY_FORMAT!r}. "
                f"Received: format={data.get('format') if isinstance(data, dict) else None!r}"
            )
        if data.get("version") != VOCABULARY_VERSION:
            raise ValueError(
                f"Vocabulary `version` must be {VOCABULARY_VERSION}. "
                f"Received: version={data.get('version')!r}"
            )
        words = data.get("words")
        if not isinstance(words, list):
            raise ValueError(f"Vocabulary `words` must be a list. Received: {type(words).__name__}")
        return cls(tuple(words), data.get("max_words"))


def build_vocabulary(counts: Mapping[str, int], max_words: int) -> Vocabulary:
    """Keep the `max_words` most frequent words (book 6.1.3: 10,000).

    Fit it on the **training text only** (this function only sees the counts it is
    given; merge the training shards' counts, never validation/test ones), so words
    seen only in validation/test text are OOV, as they would be for new text.

    Tie rule, deterministic: higher count first, then alphabetical order (Python
    string order, by code point). Exactly `max_words` words are kept, fewer only if
    the counts hold fewer distinct words with a positive count.

    Args:
        counts: word -> occurrences (a :func:`merge_counts` result); words with a
            count <= 0 are dropped.
        max_words: Number of real words to keep, a positive int.

    Returns:
        A :class:`Vocabulary`.

    Raises:
        ValueError: `max_words` is not a positive int; a count is not an integer or a
            word not a non-empty string (the message names it).
    """
    if isinstance(max_words, bool) or not isinstance(max_words, (int, np.integer)) or max_words < 1:
        raise ValueError(
            f"`max_words` must be a positive integer. Received: max_words={max_words!r}"
        )
    items = []
    for word, n in counts.items():
        if not isinstance(word, str) or not word:
            raise ValueError(f"`counts` keys must be non-empty strings. Received: {word!r}")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise ValueError(f"`counts` values must be integers. Received: {word!r}: {n!r}")
        if n > 0:
            items.append((-int(n), word))
    items.sort()
    return Vocabulary(tuple(word for _, word in items[: int(max_words)]), int(max_words))


def texts_to_sequences(
    texts: Iterable[str], vocab: Vocabulary, *, reverse: bool = False
) -> list[np.ndarray]:
    """Map each document to the indices of its tokens (book 6.1: `texts_to_sequences`).

    Out-of-vocabulary tokens become `OOV` (1), unlike the book's Keras `Tokenizer`,
    which drops them; index 0 never occurs.

    Args:
        texts: Raw documents (standardized here, as for counting).
        vocab: The vocabulary fitted on the training text.
        reverse: Reverse each sequence (book 6.3.8, "reversed LSTM"): done *before*
            padding, so `pad_sequences` keeps the first words of each review.

    Returns:
        One int32 array `(tokens,)` per document (empty for a document without words).

    Raises:
        ValueError: `texts` is a single string or holds a non-string.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = _as_text_list(texts)
    sequences: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
    fast = _fast_tokens(texts)
    if fast.docs:
        # position in `words` (null = not kept) + 2 = index; null -> -1 + 2 = OOV
        found = pc.index_in(fast.flat, value_set=pa.array(vocab.words, pa.large_string()))
        ids = (
            found.fill_null(OOV - RESERVED).to_numpy(zero_copy_only=False).astype(np.int32)
            + RESERVED
        )
        for i, seq in zip(fast.docs, np.split(ids, np.cumsum(fast.lengths)[:-1])):
            sequences[i] = seq
    for i in fast.other:
        sequences[i] = np.fromiter(
            map(vocab.index.get, tokenize(texts[i]), itertools.repeat(OOV)), dtype=np.int32
        )
    return reverse_sequences(sequences) if reverse else sequences


def reverse_sequences(sequences: Iterable[Sequence[int]]) -> list[np.ndarray]:
    """Reverse each (unpadded) sequence: the book's `[x[::-1] for x in x_train]`."""
    return [np.asarray(seq, dtype=np.int32)[::-1].copy() for seq in sequences]


def pad_sequences(
    sequences: Sequence[Sequence[int]],
    maxlen: int,
    *,
    padding: str = "pre",
    truncating: str = "pre",
) -> np.ndarray:
    """Pad or truncate each sequence to `maxlen` indices.

    The defaults are Keras `pad_sequences`'s, which the book uses: `"pre"` for both,
    so short sequences get zeros at the *start* and long ones lose their *first*
    tokens (the last `maxlen` are kept). Example with `maxlen=3`: `[5, 6]` ->
    `[0, 5, 6]`; `[5, 6, 7, 8]` -> `[6, 7, 8]`. (`TextVectorization`'s
    `output_sequence_length` is `padding="post", truncating="post"`.)

    Args:
        sequences: Int sequences (lists or arrays), e.g. from :func:`texts_to_sequences`.
        maxlen: Output length, a positive int (book: 20, 100 or 500).
        padding: `"pre"` or `"post"`: where zeros go.
        truncating: `"pre"` or `"post"`: which end is cut.

    Returns:
        int32 array `(len(sequences), maxlen)`, 0 = padding.

    Raises:
        ValueError: Bad `maxlen`, `padding` or `truncating`; a sequence that is not
            one-dimensional integers (the message gives its index).
    """
    if isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 1:
        raise ValueError(f"`maxlen` must be a positive integer. Received: maxlen={maxlen!r}")
    for name, value in (("padding", padding), ("truncating", truncating)):
        if value not in ("pre", "post"):
            raise ValueError(f'`{name}` must be "pre" or "post". Received: {name}={value!r}')
    maxlen = int(maxlen)
    out = np.zeros((len(sequences), maxlen), dtype=np.int32)
    # One slice copy per row: faster than one fancy-indexed scatter of all tokens.
    for i, seq in enumerate(_int_rows(sequences)):
        seq = seq[-maxlen:] if truncating == "pre" else seq[:maxlen]
        if len(seq):
            if padding == "pre":
                out[i, maxlen - len(seq) :] = seq
            else:
                out[i, : len(seq)] = seq
    return out


def multi_hot(sequences: Sequence[Sequence[int]], vocab: Vocabulary) -> np.ndarray:
    """Multi-hot ("binary matrix") encoding (book 3.4.2, `vectorize_sequences`).

    Column `j` of row `i` is 1.0 if index `j` occurs in sequence `i`. Column 0
    (padding) is always 0, so padded sequences give the same rows as unpadded ones;
    column 1 flags documents holding an out-of-vocabulary word. Memory: 25,000
    documents x 10,002 columns is 1.0 GB in float32 (the book's float64: 2.0 GB).

    Args:
        sequences: Int sequences (ragged lists/arrays, or a padded 2D array).
        vocab: The vocabulary that produced them (fixes the width).

    Returns:
        float32 array `(len(sequences), vocab.max_words + 2)`.

    Raises:
        ValueError: An index outside `[0, max_words + 2)`, or a sequence that is not
            one-dimensional integers (the message gives the sequence's index).
    """
    width = vocab.input_dim
    out = np.zeros((len(sequences), width), dtype=np.float32)
    for i, seq in enumerate(_int_rows(sequences)):
        if len(seq) and (seq.min() < 0 or seq.max() >= width):
            bad = int(seq[(seq < 0) | (seq >= width)][0])
            raise ValueError(
                f"Sequence indices must be in [0, {width}) for this vocabulary "
                f"(max_words={vocab.max_words}). Received: {bad} in sequence {i}"
            )
        out[i, seq] = 1.0
    out[:, PAD] = 0.0
    return out


def _int_rows(sequences):
    """Yield each sequence as a 1D integer array, or raise ValueError naming it."""
    for i, seq in enumerate(sequences):
        array = np.asarray(seq)
        if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
            raise ValueError(
                "`sequences` must hold one-dimensional integer sequences. Received: "
                f"shape {array.shape}, dtype {array.dtype} at index {i}"
            )
        yield array if array.size else array.astype(np.int32)
