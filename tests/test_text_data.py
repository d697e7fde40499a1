"""Text readers: the aclImdb tree (C04), decoding policy and markup (C05), class
folders, CSV/TSV/Parquet tables. Every test writes its own files."""

import numpy as np
import pandas as pd
import pytest

from dlpipe.tasks.text.data import (
    decode_bytes,
    read_aclimdb,
    read_class_folders,
    read_text_table,
)
from dlpipe.tasks.text.tokenize import build_vocabulary, count_words, texts_to_sequences, tokenize


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


@pytest.fixture
def c04_tree(tmp_path):
    """Case C04 exactly: pos/0_9.txt, neg/1_2.txt, unsup/0_0.txt, top-level urls_pos.txt."""
    train = tmp_path / "aclImdb" / "train"
    _write(train / "pos" / "0_9.txt", "A wonderful movie")
    _write(train / "neg" / "1_2.txt", "A dreadful movie")
    _write(train / "unsup" / "0_0.txt", "Some movie")
    _write(train / "urls_pos.txt", "http://www.imdb.com/title/tt0453418/usercomments\n")
    return tmp_path / "aclImdb"


def test_c04_unsup_is_not_a_class(c04_tree):
    corpus = read_aclimdb(c04_tree, "train")
    assert corpus.class_names == ["neg", "pos"]
    assert corpus.texts == ["A dreadful movie", "A wonderful movie"]
    assert corpus.labels.dtype == np.int64 and corpus.labels.tolist() == [0, 1]
    assert corpus.paths[0].endswith("neg/1_2.txt") and corpus.paths[1].endswith("pos/0_9.txt")
    assert corpus.report["class_counts"] == {"neg": 1, "pos": 1}
    assert corpus.report["documents"] == 2 and corpus.report["unlabelled"] == 0
    assert corpus.unlabelled_texts == []
    assert [p.rsplit("/", 1)[-1] for p in corpus.report["ignored"]] == ["urls_pos.txt"]


def test_c04_unsup_only_when_asked(c04_tree):
    corpus = read_aclimdb(c04_tree, "train", include_unsup=True)
    assert corpus.labels.tolist() == [0, 1] and corpus.class_names == ["neg", "pos"]
    assert corpus.unlabelled_texts == ["Some movie"]
    assert corpus.unlabelled_paths[0].endswith("unsup/0_0.txt")
    assert corpus.report["unlabelled"] == 1


def test_c04_generic_loader_would_see_three_classes_unless_excluded(c04_tree):
    generic = read_class_folders(c04_tree / "train")
    assert generic.class_names == ["neg", "pos", "unsup"]  # the stock-loader mistake
    fixed = read_class_folders(c04_tree / "train", exclude=("unsup",))
    assert fixed.class_names == ["neg", "pos"] and fixed.labels.tolist() == [0, 1]
    assert any(p.endswith("urls_pos.txt") for p in fixed.report["ignored"])


def test_aclimdb_order_is_numeric_review_id_then_rating(tmp_path):
    test = tmp_path / "aclImdb" / "test"
    for name in ("10_7.txt", "2_8.txt", "1_9.txt", "2_10.txt"):
        _write(test / "pos" / name, name)
    _write(test / "neg" / "3_1.txt", "3_1")
    _write(test / "neg" / "notes.md", "stray")
    corpus = read_aclimdb(tmp_path / "aclImdb", "test")
    assert corpus.texts == ["3_1", "1_9.txt", "2_8.txt", "2_10.txt", "10_7.txt"]
    assert corpus.labels.tolist() == [0, 1, 1, 1, 1]
    assert corpus.report["class_counts"] == {"neg": 1, "pos": 4}
    assert any(p.endswith("neg/notes.md") for p in corpus.report["ignored"])


def test_aclimdb_errors_name_the_folder(tmp_path):
    message = r'`split` must be "train" or "test"\. Received: split=\'val\''
    with pytest.raises(ValueError, match=message):
        read_aclimdb(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="train"):
        read_aclimdb(tmp_path, "train")
    _write(tmp_path / "train" / "pos" / "0_9.txt", "ok")
    with pytest.raises(ValueError, match=r"train/neg: the aclImdb class folder `neg` is missing"):
        read_aclimdb(tmp_path, "train")
    (tmp_path / "train" / "neg").mkdir()
    with pytest.raises(
        ValueError, match=r"train/neg: the aclImdb class folder holds no review file"
    ):
        read_aclimdb(tmp_path, "train")


@pytest.fixture
def c05_tree(tmp_path):
    """Case C05 exactly: HTML line breaks in pos/0_9.txt, a Latin-1 byte in neg/1_2.txt."""
    train = tmp_path / "aclImdb" / "train"
    _write(train / "pos" / "0_9.txt", "Great film.<br /><br />Loved it")
    _write(train / "neg" / "1_2.txt", b"The caf\xe9 scene was dull")
    return tmp_path / "aclImdb"


def test_c05_invalid_utf8_is_replaced_counted_and_named(c05_tree):
    corpus = read_aclimdb(c05_tree)
    assert corpus.texts[0] == "The caf\ufffd scene was dull"
    assert corpus.report["invalid_utf8_count"] == 1
    assert len(corpus.report["invalid_utf8"]) == 1
    assert corpus.report["invalid_utf8"][0].endswith("neg/1_2.txt")
    assert "utf-8" in corpus.report["decoding"]


def test_c05_markup_never_becomes_br_and_tokenizer_never_crashes(c05_tree):
    corpus = read_aclimdb(c05_tree)
    assert tokenize(corpus.texts[1]) == ["great", "film", "loved", "it"]
    assert tokenize(corpus.texts[0]) == ["the", "caf", "scene", "was", "dull"]
    counts = count_words(corpus.texts)
    assert "br" not in counts and "\ufffd" not in "".join(counts)
    vocab = build_vocabulary(counts, 20)
    sequences = texts_to_sequences(corpus.texts, vocab)
    assert [len(s) for s in sequences] == [5, 4]


def test_c05_valid_utf8_decodes_the_same_on_every_platform(tmp_path, monkeypatch):
    # A platform default such as cp1252 would read these bytes as "cafÃ©".
    import locale

    monkeypatch.setattr(locale, "getpreferredencoding", lambda *a, **k: "cp1252")
    _write(tmp_path / "docs" / "a" / "1.txt", "café\r\n")
    corpus = read_class_folders(tmp_path / "docs")
    assert corpus.texts == ["café\r\n"] and corpus.report["invalid_utf8"] == []


def test_decode_bytes_policy():
    assert decode_bytes(b"\xef\xbb\xbfhello") == ("hello", False)  # BOM dropped
    assert decode_bytes(b"ok \xff\xfe") == ("ok \ufffd\ufffd", True)
    assert decode_bytes("é".encode("utf-8")) == ("é", False)


def test_class_folders_sorted_classes_natural_file_order_and_ignored(tmp_path):
    root = tmp_path / "tree"
    for name in ("10.txt", "2.txt", "1.txt"):
        _write(root / "sports" / name, f"s{name}")
    _write(root / "arts" / "a.txt", "arts")
    _write(root / "arts" / "image.png", b"\x89PNG")
    _write(root / ".cache" / "x.txt", "hidden")
    _write(root / "README.txt", "top level")
    corpus = read_class_folders(root)
    assert corpus.class_names == ["arts", "sports"]
    assert corpus.texts == ["arts", "s1.txt", "s2.txt", "s10.txt"]
    assert corpus.labels.tolist() == [0, 1, 1, 1]
    assert corpus.report["class_counts"] == {"arts": 1, "sports": 3}
    ignored = {p.rsplit("/", 1)[-1] for p in corpus.report["ignored"]}
    assert ignored == {"image.png", ".cache", "README.txt"}


def test_class_folders_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_class_folders(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no class folder"):
        read_class_folders(tmp_path / "empty")
    _write(tmp_path / "t" / "a" / "x.csv", "not a txt")
    with pytest.raises(ValueError, match=r"t/a: the class folder holds no document"):
        read_class_folders(tmp_path / "t")


def test_csv_table_labels_sorted_and_rows_named(tmp_path):
    path = _write(
        tmp_path / "t.csv", 'sentiment,text\npositive,Good\nnegative,NA\nneutral,"So, so"\n'
    )
    corpus = read_text_table(path, "text", "sentiment")
    assert corpus.class_names == ["negative", "neutral", "positive"]
    assert corpus.labels.tolist() == [2, 0, 1]
    assert corpus.texts == ["Good", "NA", "So, so"]  # "NA" stays text
    assert corpus.paths[1] == f"{path}#1"
    assert corpus.report["class_counts"] == {"negative": 1, "neutral": 1, "positive": 1}


def test_table_numeric_labels_sort_as_numbers_and_fixed_order(tmp_path):
    path = _write(tmp_path / "t.tsv", "label\ttext\n10\ta\n2\tb\n1\tc\n")
    assert read_text_table(path, "text", "label").class_names == ["1", "2", "10"]
    corpus = read_text_table(path, "text", "label", class_names=[10, 2, 1])
    assert corpus.labels.tolist() == [0, 1, 2]
    with pytest.raises(
        ValueError,
        match=r"t\.tsv: line 4: column `label`: label '1' is "
        r"not in `classes` \['10', '2'\]",
    ):
        read_text_table(path, "text", "label", class_names=["10", "2"])


def test_table_errors_name_columns_and_rows(tmp_path):
    path = _write(tmp_path / "t.csv", "label,body\npos,fine\n,no label\nneg,\n")
    message = r"t\.csv: line 1: missing column\(s\) \['text'\]; the header has \['label', 'body'\]"
    with pytest.raises(ValueError, match=message):
        read_text_table(path, "text", "label")
    with pytest.raises(ValueError, match=r"t\.csv: line 4: column `body`: empty cell$"):
        read_text_table(path, "body", "label")
    blank = _write(tmp_path / "b.csv", "label,body\npos,fine\n  ,no label\nneg,x\n")
    with pytest.raises(ValueError, match=r"b\.csv: line 3: column `label`: empty cell$"):
        read_text_table(blank, "body", "label")  # a label of spaces is empty once trimmed
    with pytest.raises(ValueError, match=r"`path` must end with one of"):
        read_text_table(tmp_path / "t.json", "text", "label")
    with pytest.raises(FileNotFoundError):
        read_text_table(tmp_path / "none.csv", "text", "label")


def test_c05_csv_invalid_utf8_lines_reported(tmp_path):
    path = _write(tmp_path / "t.csv", b"label,text\npos,ok\nneg,caf\xe9\n")
    corpus = read_text_table(path, "text", "label")
    assert corpus.texts == ["ok", "caf\ufffd"]
    assert corpus.report["invalid_utf8"] == [str(path)]
    assert corpus.report["invalid_utf8_lines"] == [3]


def test_parquet_table(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["x y", "z"], "y": [1, 0]}).to_parquet(path)
    corpus = read_text_table(path, "text", "y")
    assert corpus.texts == ["x y", "z"] and corpus.labels.tolist() == [1, 0]
    assert corpus.class_names == ["0", "1"] and corpus.report["invalid_utf8"] == []
