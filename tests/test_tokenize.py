"""Tokenization: standardization (C05), vocabulary rules (exact count, ties, reserved
indices, train-only fitting), sequences, padding side, multi-hot, JSON round trip, the
ASCII fast path against the Python path, and agreement with Keras TextVectorization."""

import random
from collections import Counter

import numpy as np
import pytest

from dlpipe.tasks.text.tokenize import (
    OOV,
    PAD,
    Vocabulary,
    build_vocabulary,
    count_words,
    merge_counts,
    multi_hot,
    pad_sequences,
    reverse_sequences,
    standardize,
    texts_to_sequences,
    tokenize,
)

# Hand-counted: the 5 | cat 3, on 3, sat 3 | a 2, mat 2 | dog 1, no 1, zebra 1.
TEXTS = [
    "The cat sat on the mat.",
    "The cat sat; the dog sat!",
    "A cat on a... no: ZEBRA on the mat",
]


@pytest.mark.parametrize(
    "raw, tokens",
    [
        ("Great film.<br /><br />Loved it", ["great", "film", "loved", "it"]),
        ("one<br/>two<br>three<BR />four< br / >five", ["one", "two", "three", "four", "five"]),
        ("Don't stop—it’s ‘fine’", ["dont", "stop", "its", "fine"]),
        ("snake_case, e-mail & 3.14", ["snake", "case", "e", "mail", "3", "14"]),
        ("Café CAFÉ cafe\u0301", ["café", "café", "café"]),  # NFC: e + combining accent
        ("caf\ufffd\x00end", ["caf", "end"]),
        ("", []),
        ("  \t\n ", []),
    ],
)
def test_c05_standardize_and_tokenize(raw, tokens):
    assert tokenize(raw) == tokens
    assert standardize(raw).split() == tokens


def test_count_words_and_merge_of_shards_equal_whole():
    counts = count_words(TEXTS)
    assert counts == Counter(
        {"the": 5, "cat": 3, "sat": 3, "on": 3, "mat": 2, "a": 2, "dog": 1, "no": 1, "zebra": 1}
    )
    shards = [count_words(TEXTS[:1]), count_words(TEXTS[1:])]
    assert merge_counts(shards) == counts


def test_vocabulary_keeps_exactly_max_words_ties_alphabetical():
    counts = count_words(TEXTS)
    # the 5 | cat 3, on 3, sat 3 (tie -> alphabetical) | a 2, mat 2 | dog 1, no 1, zebra 1
    assert build_vocabulary(counts, 4).words == ("the", "cat", "on", "sat")
    assert build_vocabulary(counts, 5).words == ("the", "cat", "on", "sat", "a")
    vocab = build_vocabulary(counts, 7)
    assert vocab.words == ("the", "cat", "on", "sat", "a", "mat", "dog")
    assert len(vocab.words) == 7 == vocab.max_words
    # fewer distinct words than max_words: all of them, width still fixed by max_words
    small = build_vocabulary(counts, 50)
    assert len(small.words) == 9 and small.input_dim == 52
    # insertion order of the counts does not matter
    reordered = Counter(dict(reversed(list(counts.items()))))
    assert build_vocabulary(reordered, 7) == vocab


def test_reserved_indices():
    vocab = build_vocabulary(count_words(TEXTS), 4)
    assert (PAD, OOV) == (0, 1)
    assert vocab.lookup("the") == 2 and vocab.lookup("sat") == 5
    assert vocab.lookup("zebra") == OOV and vocab.lookup("") == OOV
    assert vocab.input_dim == 6  # max_words + 2 = Embedding input_dim
    sequences = texts_to_sequences(["the zebra sat"], vocab)
    assert sequences[0].tolist() == [2, OOV, 5]
    assert all(PAD not in s for s in texts_to_sequences(TEXTS, vocab))


def test_vocabulary_is_fitted_on_training_text_only():
    train, test = ["good movie", "good plot"], ["good unseen"]
    vocab = build_vocabulary(count_words(train), 10)
    assert "unseen" not in vocab.words
    assert texts_to_sequences(test, vocab)[0].tolist() == [vocab.lookup("good"), OOV]


def test_sequences_dtype_order_and_empty_documents():
    vocab = build_vocabulary(count_words(TEXTS), 10)
    sequences = texts_to_sequences(["", "The CAT.", "!!!", "cat the"], vocab)
    assert [s.tolist() for s in sequences] == [[], [2, 3], [], [3, 2]]
    assert all(s.dtype == np.int32 for s in sequences)


def test_fast_path_equals_python_path_on_tricky_mixed_shards():
    rng = random.Random(0)
    alphabet = "aAbBzZ09 _'-.,;<>/!\t\n\r\x0b\x0c\x1c\x1d\x1e\x00\x7f\"#"
    pieces = ["<br />", "<BR/>", "<br>", "< br / >", "don't", "café", "\x1f", "’", "é"]
    texts = []
    for _ in range(300):
        parts = [
            rng.choice(pieces) if rng.random() < 0.15 else rng.choice(alphabet)
            for _ in range(rng.randint(0, 40))
        ]
        texts.append("".join(parts))
    texts += ["", "   ", "only ascii here", "\x1f"]
    expected = Counter()
    for text in texts:
        expected.update(tokenize(text))
    assert count_words(texts) == expected
    vocab = build_vocabulary(expected, 15)
    got = texts_to_sequences(texts, vocab)
    for text, seq in zip(texts, got):
        assert seq.tolist() == [vocab.lookup(w) for w in tokenize(text)], repr(text)


@pytest.mark.parametrize(
    "padding, truncating, expected",
    [
        ("pre", "pre", [[0, 0, 0, 5, 6], [3, 4, 5, 6, 7], [0, 0, 0, 0, 0]]),
        ("post", "pre", [[5, 6, 0, 0, 0], [3, 4, 5, 6, 7], [0, 0, 0, 0, 0]]),
        ("pre", "post", [[0, 0, 0, 5, 6], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]]),
        ("post", "post", [[5, 6, 0, 0, 0], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]]),
    ],
)
def test_pad_sequences_sides(padding, truncating, expected):
    sequences = [[5, 6], [1, 2, 3, 4, 5, 6, 7], []]
    out = pad_sequences(sequences, 5, padding=padding, truncating=truncating)
    assert out.dtype == np.int32 and out.shape == (3, 5)
    assert out.tolist() == expected


def test_pad_sequences_default_is_pre_like_keras():
    from keras.utils import pad_sequences as keras_pad

    sequences = [[5, 6], [1, 2, 3, 4, 5, 6, 7], [], [9]]
    np.testing.assert_array_equal(pad_sequences(sequences, 4), keras_pad(sequences, maxlen=4))
    np.testing.assert_array_equal(pad_sequences(np.array([[1, 2, 3]]), 2), [[2, 3]])
    assert pad_sequences([], 3).shape == (0, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"maxlen": 0}, r"`maxlen` must be a positive integer\. Received: maxlen=0"),
        ({"maxlen": 2.0}, r"Received: maxlen=2\.0"),
        (
            {"maxlen": 2, "padding": "left"},
            r'`padding` must be "pre" or "post"\. Received: padding=\'left\'',
        ),
        ({"maxlen": 2, "truncating": None}, r"`truncating` must be"),
    ],
)
def test_pad_sequences_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pad_sequences([[1]], **kwargs)


def test_pad_sequences_rejects_non_integer_sequence():
    with pytest.raises(ValueError, match=r"integer sequences.*at index 1"):
        pad_sequences([[1], [0.5]], 2)


def test_reverse_option_is_applied_before_padding():
    vocab = build_vocabulary(count_words(["a b c d e"]), 10)  # a=2 b=3 c=4 d=5 e=6
    forward = texts_to_sequences(["a b c d e"], vocab)
    backward = texts_to_sequences(["a b c d e"], vocab, reverse=True)
    assert backward[0].tolist() == [6, 5, 4, 3, 2] == reverse_sequences(forward)[0].tolist()
    # truncating "pre" of the reversed sequence keeps the review's first words
    assert pad_sequences(backward, 3).tolist() == [[4, 3, 2]]


def test_multi_hot_rows():
    vocab = build_vocabulary(count_words(TEXTS), 4)  # the=2 cat=3 on=4 sat=5
    sequences = texts_to_sequences(["the cat the", "zebra", ""], vocab)
    x = multi_hot(sequences, vocab)
    assert x.dtype == np.float32 and x.shape == (3, 6)
    assert x.tolist() == [[0, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]
    np.testing.assert_array_equal(multi_hot(pad_sequences(sequences, 4), vocab), x)
    with pytest.raises(ValueError, match=r"must be in \[0, 6\).*Received: 6 in sequence 1"):
        multi_hot([[2], [6]], vocab)


def test_vocabulary_json_round_trip_and_errors():
    vocab = build_vocabulary(count_words(TEXTS + ["café naïve"]), 8)
    restored = Vocabulary.from_json(vocab.to_json())
    assert restored == vocab and restored.index == vocab.index
    text = "The café cat"
    assert (
        texts_to_sequences([text], restored)[0].tolist()
        == texts_to_sequences([text], vocab)[0].tolist()
    )
    with pytest.raises(ValueError, match="does not parse"):
        Vocabulary.from_json("{")
    with pytest.raises(ValueError, match="Not a dlpipe vocabulary"):
        Vocabulary.from_json('{"words": []}')
    with pytest.raises(ValueError, match="`version` must be 1"):
        Vocabulary.from_json('{"format": "dlpipe.vocabulary", "version": 2}')


@pytest.mark.parametrize(
    "words, max_words, message",
    [
        (("a", "b"), 1, r"at most `max_words` words\. Received: 2 words with max_words=1"),
        (("a", "a"), 5, r"must be distinct\. Repeated: \['a'\]"),
        (("a b",), 5, r"without whitespace"),
        (("a",), 0, r"`max_words` must be a positive integer\. Received: max_words=0"),
    ],
)
def test_vocabulary_validation(words, max_words, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary(words, max_words)


def test_build_vocabulary_validation():
    with pytest.raises(ValueError, match=r"Received: max_words=-1"):
        build_vocabulary({"a": 1}, -1)
    with pytest.raises(ValueError, match=r"integers\. Received: 'a': 1\.5"):
        build_vocabulary({"a": 1.5}, 3)
    assert build_vocabulary({"a": 0, "b": 2}, 3).words == ("b",)
    with pytest.raises(ValueError, match="not one string"):
        count_words("a single string")


def test_sequences_match_keras_text_vectorization_where_counts_differ():
    import keras

    # every word has a different count (7, 6, ..., 1), so both tie rules agree
    corpus = [
        "alpha " * 7 + "beta " * 6,
        "gamma " * 5 + "Delta, " * 4,
        "epsilon " * 3 + "zeta " * 2 + "eta",
    ]
    counts = count_words(corpus)
    assert sorted(counts.values()) == [1, 2, 3, 4, 5, 6, 7]
    vocab = build_vocabulary(counts, 5)
    layer = keras.layers.TextVectorization(max_tokens=vocab.input_dim, output_sequence_length=6)
    layer.adapt(corpus)
    assert [str(w) for w in layer.get_vocabulary()] == ["", "[UNK]"] + list(vocab.words)
    new_text = ["beta omega alpha zeta delta", "alpha " * 8, ""]
    ours = pad_sequences(texts_to_sequences(new_text, vocab), 6, padding="post", truncating="post")
    theirs = keras.ops.convert_to_numpy(layer(new_text))
    np.testing.assert_array_equal(ours, theirs)


def test_keras_breaks_ties_reverse_alphabetically_we_alphabetically():
    import keras

    layer = keras.layers.TextVectorization(max_tokens=10)
    layer.adapt(["b a c", "c a b"])
    assert [str(w) for w in layer.get_vocabulary()[2:]] == ["c", "b", "a"]
    assert build_vocabulary(count_words(["b a c", "c a b"]), 8).words == ("a", "b", "c")
