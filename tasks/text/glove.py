"""Pretrained word embeddings in GloVe text format (book 6.1.3, "Using pretrained word
embeddings"): parse the file, then build the Embedding matrix of a vocabulary.

File format: one word per line, the token then its `dim` floats, separated by single
ASCII spaces (`glove.6B.100d.txt`: 400,000 lines of a token and 100 floats). Parsing
rules (shared case C06):

* The file is read as bytes and each line decoded as **UTF-8** (strict): a line that
  does not decode is skipped and reported; the platform encoding is never used. Lines
  end at `\\n` only (a trailing `\\r` is dropped), so U+0085 or U+2028 inside a token
  never split a line.
* Each line is split **from the right**: the last `dim` space-separated fields are the
  vector, everything before them is the token. Tokens holding spaces or non-breaking
  spaces (`. . .` in glove.840B) survive intact. Tokens are NFC-normalized, like
  :func:`dlpipe.tasks.text.tokenize.standardize`'s output; matching is exact (no case
  folding: glove.6B is lowercase, glove.840B is cased).
* A line with fewer than `dim` numbers after a token, a field that is not a number, or a
  non-finite value is skipped and reported with its 1-based line number and the field
  (1-based, the token = field 1), e.g. ``field 3 (value 2 of 4): 'eight' is not a
  number``.
* A token seen twice: the first line wins; later ones are counted and their line
  numbers listed.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlpipe.tasks.text.tokenize import Vocabulary

#: Lines read to infer the dimension when `dim` is not given.
DIM_PROBE_LINES = 100
#: At most this many skipped / duplicate lines are listed in the report (all are counted).
MAX_LISTED = 1000


@dataclass
class GloveVectors:
    """Word vectors read from a GloVe-format file.

    Attributes:
        words: Tokens in file order (first occurrence only).
        vectors: float32 `(len(words), dim)`; row `i` is the vector of `words[i]`.
        dim: Vector length.
        report: `path`, `lines`, `loaded`, `skipped` (list of `{"line", "reason"}`),
            `skipped_count`, `duplicates`, `duplicate_lines`, `not_in_vocabulary`,
            `tokens_with_spaces`.
    """

    words: list[str]
    vectors: np.ndarray
    dim: int
    report: dict = field(default_factory=dict)

    def __post_init__(self):
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def get(self, word: str) -> np.ndarray | None:
        """The vector of `word` (float32 `(dim,)`), or None."""
        i = self.index.get(word)
        return None if i is None else self.vectors[i]


def _split(line: str, dim: int) -> tuple[str, list[str]] | None:
    """`(token, dim value fields)` split from the right, or None if too few fields."""
    parts = line.rsplit(" ", dim)
    if len(parts) != dim + 1 or not parts[0]:
        return None
    return parts[0], parts[1:]


def _trailing_numbers(line: str) -> int:
    """How many space-separated fields at the end of `line` parse as floats (the
    first field is always part of the token)."""
    fields = line.split(" ")
    count = 0
    for value in reversed(fields[1:]):
        try:
            float(value)
        except ValueError:
            break
        count += 1
    return count


def infer_dim(path: Path) -> int:
    """Most common count of trailing numbers over the first 100 lines of a GloVe file.

    Raises:
        ValueError: no line ends with numbers (the message names the file).
    """
    counts: Counter = Counter()
    with path.open("rb") as handle:
        for raw, _ in zip(handle, range(DIM_PROBE_LINES)):
            try:
                line = raw.decode("utf-8").rstrip("\r\n").rstrip(" \t")
            except UnicodeDecodeError:
                continue
            n = _trailing_numbers(line)
            if n:
                counts[n] += 1
    if not counts:
        raise ValueError(
            f"{path}: lines 1-{DIM_PROBE_LINES}: cannot infer the GloVe dimension: no "
            "line ends with numbers (expected `<token> <number> <number> ...`). Pass `dim`."
        )
    return counts.most_common(1)[0][0]


def load_glove(
    path: str | Path,
    *,
    dim: int | None = None,
    vocabulary: Vocabulary | Iterable[str] | None = None,
) -> GloveVectors:
    """Read a GloVe text file (book 6.1.3; rules in the module docstring, case C06).

    Args:
        path: The `.txt` file, e.g. `glove.6B.100d.txt`.
        dim: Vector length (100 for `glove.6B.100d`). None: the most common number of
            trailing numeric fields over the first 100 lines.
        vocabulary: Keep only these words (a :class:`Vocabulary` or any iterable of
            strings), so that 400,000 x dim floats are never all held in memory. Lines
            of other tokens are only checked for their field count.

    Returns:
        A :class:`GloveVectors` with float32 vectors `(words, dim)` and its report.

    Raises:
        FileNotFoundError: No such file.
        ValueError: `dim` is not a positive int, or it cannot be inferred.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"GloVe file not found: {source}")
    dim = _check_dim(source, dim)
    wanted = _wanted_words(vocabulary)
    read = _GloveRead()
    with source.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            read.lines += 1
            split = _token_and_values(raw, dim)
            if isinstance(split, str):
                read.skip(number, split)
                continue
            token, values = split
            if wanted is not None and token not in wanted:
                read.not_wanted += 1
                continue
            vector = _parse_vector(values, dim)
            if isinstance(vector, str):
                read.skip(number, vector)
                continue
            read.add(number, token, vector)
    vectors = np.stack(read.rows) if read.rows else np.zeros((0, dim), dtype=np.float32)
    return GloveVectors(
        read.words, vectors.astype(np.float32, copy=False), dim, read.report(source, dim)
    )


def _check_dim(source: Path, dim) -> int:
    """`dim` as an int, inferred from the file when None.

    Raises:
        ValueError: `dim` is not a positive int, or it cannot be inferred.
    """
    if dim is None:
        dim = infer_dim(source)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"`dim` must be a positive integer. Received: dim={dim!r}")
    return int(dim)


def _wanted_words(vocabulary: Vocabulary | Iterable[str] | None) -> set[str] | None:
    """The set of words to keep, or None to keep every word."""
    if vocabulary is None:
        return None
    if isinstance(vocabulary, Vocabulary):
        return set(vocabulary.words)
    return set(vocabulary)


def _token_and_values(raw: bytes, dim: int) -> tuple[str, list[str]] | str:
    """One raw line -> `(NFC token, dim value fields)`, or the reason it is skipped."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}"
    line = line.rstrip("\r\n").rstrip(" \t")
    if not line:
        return "empty line"
    split = _split(line, dim)
    if split is None:
        return (
            f"{len(line.split(' ')) - 1} values after the token, "
            f"expected {dim} "
            f"({f'fields 2-{dim + 1}' if dim > 1 else 'field 2'})"
        )
    token, values = split
    return unicodedata.normalize("NFC", token), values


def _parse_vector(values: list[str], dim: int) -> np.ndarray | str:
    """The float32 `(dim,)` vector of the value fields, or the reason it is skipped."""
    try:
        vector = np.array(values, dtype=np.float32)
    except ValueError:
        k, bad = next((k, v) for k, v in enumerate(values, 1) if not _is_float(v))
        return f"field {k + 1} (value {k} of {dim}): {bad!r} is not a number"
    if not np.isfinite(vector).all():
        k = int(np.flatnonzero(~np.isfinite(vector))[0]) + 1
        return f"field {k + 1} (value {k} of {dim}): {values[k - 1]!r} is not a finite number"
    return vector


@dataclass
class _GloveRead:
    """What `load_glove` has read so far: the kept words and vectors, and the counts
    and (at most `MAX_LISTED`) line numbers of its report."""

    words: list[str] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    skipped: list[dict] = field(default_factory=list)
    duplicate_lines: list[int] = field(default_factory=list)
    skipped_count: int = 0
    duplicates: int = 0
    not_wanted: int = 0
    with_spaces: int = 0
    lines: int = 0

    def skip(self, number: int, reason: str) -> None:
        """Counts a skipped line; lists it among the first `MAX_LISTED`."""
        self.skipped_count += 1
        if len(self.skipped) < MAX_LISTED:
            self.skipped.append({"line": number, "reason": reason})

    def add(self, number: int, token: str, vector: np.ndarray) -> None:
        """Keeps a token's vector; a token seen before is counted as a duplicate."""
        if token in self.seen:
            self.duplicates += 1
            if len(self.duplicate_lines) < MAX_LISTED:
                self.duplicate_lines.append(number)
            return
        self.seen.add(token)
        if " " in token or "\u00a0" in token:
            self.with_spaces += 1
        self.words.append(token)
        self.rows.append(vector)

    def report(self, source: Path, dim: int) -> dict:
        """The `GloveVectors.report` dict."""
        return {
            "path": str(source),
            "dim": dim,
            "lines": self.lines,
            "loaded": len(self.words),
            "skipped": self.skipped,
            "skipped_count": self.skipped_count,
            "duplicates": self.duplicates,
            "duplicate_lines": self.duplicate_lines,
            "not_in_vocabulary": self.not_wanted,
            "tokens_with_spaces": self.with_spaces,
        }


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def embedding_matrix(vocab: Vocabulary, glove: GloveVectors) -> tuple[np.ndarray, float]:
    """The Embedding weights of `vocab` from pretrained vectors (book listing 6.10).

    Row `i` is the vector of the word with index `i` (layout of
    :mod:`dlpipe.tasks.text.tokenize`: rows 0 = padding and 1 = OOV stay zero, word rows
    start at 2); words missing from `glove` stay all-zero, as do the rows beyond the
    vocabulary's words when the corpus had fewer than `max_words` words. Load it with
    `model.get_layer("embedding").set_weights([matrix])` and freeze that layer.

    Args:
        vocab: The vocabulary fitted on the training text.
        glove: Vectors from :func:`load_glove`.

    Returns:
        `(matrix, coverage)`: float32 `(vocab.max_words + 2, glove.dim)`, and the share
        of the vocabulary's real words found in `glove` (0.0 for an empty vocabulary).
    """
    matrix = np.zeros((vocab.input_dim, glove.dim), dtype=np.float32)
    found = 0
    for i, word in enumerate(vocab.words, start=2):
        row = glove.index.get(word)
        if row is not None:
            matrix[i] = glove.vectors[row]
            found += 1
    coverage = found / len(vocab.words) if vocab.words else 0.0
    return matrix, coverage
