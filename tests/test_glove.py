"""GloVe text format (C06) and the Embedding matrix aligned with a vocabulary."""

import numpy as np
import pytest

from dlpipe.tasks.text.glove import embedding_matrix, load_glove
from dlpipe.tasks.text.tokenize import Vocabulary, build_vocabulary, count_words

DOTS = ".\u00a0.\u00a0."  # dots separated by non-breaking spaces (glove.840B has these)
C06_LINES = [
    "the 0.1 0.2 0.3 0.4",
    f"{DOTS} 0.5 0.6 0.7 0.8",
    "a b 1 2 3 4",
    "bad 0.1 0.2 0.3",
    "café 1 2 3 4",
    "the 9 9 9 9",
]


@pytest.fixture
def c06_file(tmp_path):
    path = tmp_path / "glove.c06.4d.txt"
    path.write_bytes(("\n".join(C06_LINES) + "\n").encode("utf-8"))
    return path


@pytest.mark.parametrize("dim", [4, None], ids=["dim=4", "inferred"])
def test_c06_parsing(c06_file, dim):
    glove = load_glove(c06_file, dim=dim)
    assert glove.dim == 4
    assert glove.words == ["the", DOTS, "a b", "café"]
    assert glove.vectors.dtype == np.float32 and glove.vectors.shape == (4, 4)
    np.testing.assert_array_equal(glove.get("the"), np.float32([0.1, 0.2, 0.3, 0.4]))  # first wins
    np.testing.assert_array_equal(glove.get(DOTS), np.float32([0.5, 0.6, 0.7, 0.8]))
    np.testing.assert_array_equal(glove.get("a b"), np.float32([1, 2, 3, 4]))
    np.testing.assert_array_equal(glove.get("café"), np.float32([1, 2, 3, 4]))
    report = glove.report
    assert report["lines"] == 6 and report["loaded"] == 4
    assert report["skipped_count"] == 1
    assert report["skipped"][0]["line"] == 4
    assert report["skipped"][0]["reason"] == "3 values after the token, expected 4 (fields 2-5)"
    assert report["duplicates"] == 1 and report["duplicate_lines"] == [6]
    assert report["tokens_with_spaces"] == 2


def test_c06_file_is_read_as_utf8_whatever_the_locale(c06_file, monkeypatch):
    import locale

    monkeypatch.setattr(locale, "getpreferredencoding", lambda *a, **k: "cp1252")
    assert "café" in load_glove(c06_file, dim=4)


def test_crlf_trailing_space_bad_bytes_and_non_numbers(tmp_path):
    path = tmp_path / "g.txt"
    path.write_bytes(b"x 1 2\r\ny 3 4 \r\n\xff\xfe 5 6\nz 7 eight\nw nan 1\n\nv 1 2 3\n")
    glove = load_glove(path, dim=2)
    assert glove.words == ["x", "y", "v 1"]  # "v 1 2 3" splits from the right
    np.testing.assert_array_equal(glove.get("y"), np.float32([3, 4]))
    reasons = {item["line"]: item["reason"] for item in glove.report["skipped"]}
    assert set(reasons) == {3, 4, 5, 6}
    assert "invalid UTF-8" in reasons[3]
    assert reasons[4] == "field 3 (value 2 of 2): 'eight' is not a number"
    assert reasons[5] == "field 2 (value 1 of 2): 'nan' is not a finite number"
    assert reasons[6] == "empty line"


def test_vocabulary_filter_keeps_only_its_words(c06_file):
    glove = load_glove(c06_file, dim=4, vocabulary={"café", "movie"})
    assert glove.words == ["café"]
    assert glove.report["not_in_vocabulary"] == 4  # the, dots, "a b", duplicate the
    assert glove.report["skipped_count"] == 1  # the short line is still reported


def test_embedding_matrix_rows_and_coverage(c06_file):
    # words by count: the 3, café 2, movie 1 -> indices 2, 3, 4; max_words 5 -> 7 rows
    vocab = build_vocabulary(count_words(["The café, the movie", "the Café"]), 5)
    assert vocab.words == ("the", "café", "movie")
    glove = load_glove(c06_file, dim=4, vocabulary=vocab)
    matrix, coverage = embedding_matrix(vocab, glove)
    assert matrix.dtype == np.float32 and matrix.shape == (7, 4)
    np.testing.assert_array_equal(matrix[vocab.lookup("the")], np.float32([0.1, 0.2, 0.3, 0.4]))
    np.testing.assert_array_equal(matrix[vocab.lookup("café")], [1, 2, 3, 4])
    assert not matrix[[0, 1, 4, 5, 6]].any()  # padding, OOV, movie, unused rows
    assert coverage == pytest.approx(2 / 3)


def test_embedding_matrix_of_empty_vocabulary(c06_file):
    matrix, coverage = embedding_matrix(Vocabulary((), 3), load_glove(c06_file, dim=4))
    assert matrix.shape == (5, 4) and not matrix.any() and coverage == 0.0


def test_errors(tmp_path, c06_file):
    with pytest.raises(FileNotFoundError, match="GloVe file not found"):
        load_glove(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match=r"`dim` must be a positive integer\. Received: dim=0"):
        load_glove(c06_file, dim=0)
    words_only = tmp_path / "words.txt"
    words_only.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(
        ValueError,
        match=r"words\.txt: lines 1-100: cannot infer the GloVe "
        r"dimension.*Pass `dim`",
    ):
        load_glove(words_only)
