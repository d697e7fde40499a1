"""Issue 12, text: label cells as people type them (trimmed; case/spacing variants
refused with the list or merged), errors naming file, line and column, and data that
cannot teach named at prepare time. Every test writes its own files."""

import numpy as np
import pandas as pd
import pytest

from dlpipe.tasks.io.labels import label_key
from dlpipe.tasks.text.data import read_class_folders, read_text_table
from dlpipe.tasks.text.prepare import (
    SPLIT_CODES,
    TextDataSpec,
    TextSpec,
    TextSplitSpec,
    check_split_classes,
    prepare_text,
)

VARIANTS_CSV = (
    "text,label\n"
    "good film,positive\n"  # line 2
    "bad film, negative \n"  # line 3: trimmed
    "great,Positive\n"  # line 4: case variant
    "awful,neg ative\n"  # line 5: spacing variant
    "fine,positive\n"  # line 6
    "poor,negative\n"  # line 7
    "nice,positive\n"
)  # line 8


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def test_label_key_folds_case_and_spacing():
    assert label_key(" Very Good") == label_key("very  good") == label_key("VeryGood") == "verygood"
    assert label_key("good") != label_key("goods")


def test_label_cells_are_trimmed_and_counted(tmp_path):
    path = _write(tmp_path / "t.csv", "text,label\na, pos\nb,neg \nc,pos\nd,\tneg\n")
    corpus = read_text_table(path, "text", "label")
    assert corpus.class_names == ["neg", "pos"] and corpus.labels.tolist() == [1, 0, 1, 0]
    assert corpus.report["labels_trimmed"] == 3
    assert corpus.report["class_counts"] == {"neg": 2, "pos": 2}
    assert corpus.report["label_variants_merged"] == {}


def test_case_and_spacing_variants_are_refused_with_the_list(tmp_path):
    path = _write(tmp_path / "t.csv", VARIANTS_CSV)
    with pytest.raises(ValueError) as info:
        read_text_table(path, "text", "label")
    assert str(info.value) == (
        f"{path}: column `label`: labels differ only in letter case or spacing: "
        "'Positive' (1 document, first at line 4), 'positive' (3 documents, first at "
        "line 2); 'neg ative' (1 document, first at line 5), 'negative' (2 documents, "
        "first at line 3). Fix the spellings, or set `data.label_variants: merge` to "
        "train each group as one class"
    )


def test_variants_merge_into_the_most_frequent_spelling(tmp_path):
    path = _write(tmp_path / "t.csv", VARIANTS_CSV)
    corpus = read_text_table(path, "text", "label", label_variants="merge")
    assert corpus.class_names == ["negative", "positive"]
    assert corpus.labels.tolist() == [1, 0, 1, 0, 1, 0, 1]
    assert corpus.report["class_counts"] == {"negative": 3, "positive": 4}
    assert corpus.report["label_variants_merged"] == {
        "negative": {"neg ative": 1},
        "positive": {"Positive": 1},
    }
    # a spelling given in `classes` wins over the most frequent one
    fixed = read_text_table(
        path, "text", "label", label_variants="merge", class_names=["Positive", "negative"]
    )
    assert fixed.class_names == ["Positive", "negative"]
    assert fixed.labels.tolist() == [0, 1, 0, 1, 0, 1, 0]
    assert fixed.report["label_variants_merged"]["Positive"] == {"positive": 3}
    with pytest.raises(ValueError, match=r"`label_variants` must be one of"):
        read_text_table(path, "text", "label", label_variants="warn")
    with pytest.raises(ValueError, match=r"`label_variants` must be 'refuse' or 'merge'"):
        TextDataSpec(path="x.csv", label_variants="ignore")


def test_class_folder_names_differing_in_case_are_refused_or_merged(tmp_path):
    root = tmp_path / "tree"
    for folder, names in (("Pos", ["1.txt"]), ("pos", ["1.txt", "2.txt"]), ("neg", ["1.txt"])):
        for name in names:
            _write(root / folder / name, f"{folder} {name}")
    with pytest.raises(
        ValueError,
        match=r"tree: class folders: labels differ only in "
        r"letter case or spacing: 'Pos' \(1 document, "
        r"first at .*Pos/1\.txt\), 'pos' \(2 documents",
    ):
        read_class_folders(root)
    corpus = read_class_folders(root, label_variants="merge")
    assert corpus.class_names == ["neg", "pos"]
    assert corpus.labels.tolist() == [1, 0, 1, 1]  # Pos/1, neg/1, pos/1, pos/2
    assert corpus.report["class_counts"] == {"neg": 1, "pos": 3}
    assert corpus.report["label_variants_merged"] == {"pos": {"Pos": 1}}


def test_error_lines_follow_quoted_cells_that_span_lines(tmp_path):
    # record 1 spans lines 2-3, line 5 is blank: the empty label is on line 6
    path = _write(tmp_path / "t.csv", 'text,label\n"two\nlines",a\nok,b\n\nnext,\nlast,a\n')
    with pytest.raises(ValueError, match=r"t\.csv: line 6: column `label`: empty cell$"):
        read_text_table(path, "text", "label")
    extra = _write(tmp_path / "e.csv", "text,label\nfine,a\nhello, world,b\n")
    with pytest.raises(ValueError) as info:
        read_text_table(extra, "text", "label")
    assert str(info.value) == (
        f"{extra}: line 3: column #3 (after `label`): 3 fields but "
        "the header has 2 (quote cells that hold a comma)"
    )
    empty = _write(tmp_path / "z.csv", "\n")
    with pytest.raises(ValueError, match=r"z\.csv: line 1: the file is empty"):
        read_text_table(empty, "text", "label")


def test_parquet_errors_name_the_row(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["a", "b", "c"], "y": ["p", " ", "n"]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"t\.parquet: row 1: column `y`: empty cell$"):
        read_text_table(path, "text", "y")
    broken = tmp_path / "b.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"b\.parquet: not a readable Parquet file \("):
        read_text_table(broken, "text", "y")


def test_check_split_classes_rules():
    names = ["a", "b", "c"]
    codes = np.array([0, 0, 0, 0, 1, 1, 2, 2], np.int8)
    # every class in every split but `c` missing from validation/test: warnings only
    labels = np.array([0, 1, 2, 0, 0, 1, 1, 0])
    assert check_split_classes(labels, codes, names, "d.csv") == [
        "split `validation` has no document of class(es) ['c']",
        "split `test` has no document of class(es) ['c']",
    ]
    with pytest.raises(
        ValueError,
        match=r"d\.csv: split `test`: all 2 documents have "
        r"class `a` \(classes \['a', 'b', 'c'\]\)",
    ):
        check_split_classes(np.array([0, 1, 2, 0, 0, 1, 0, 0]), codes, names, "d.csv")
    with pytest.raises(
        ValueError,
        match=r"d\.csv: split `train`: 4 documents in 4 classes "
        r"\(every label used once\)",
    ):
        check_split_classes(np.array([0, 1, 2, 3, 0, 1, 0, 1]), codes, names + ["d"], "d.csv")


def test_label_column_naming_an_id_column_is_refused_at_prepare(tmp_path):
    rows = ["id,text"] + [f"{i},document number {i}" for i in range(20)]
    path = _write(tmp_path / "ids.csv", "\n".join(rows) + "\n")
    with pytest.raises(
        ValueError,
        match=r"ids\.csv: split `train`: 12 documents in 12 "
        r"classes \(every label used once\)",
    ):
        prepare_text(
            TextDataSpec(path=str(path), label_column="id"),
            TextSplitSpec(),
            TextSpec(max_words=50, num_shards=1),
        )


def test_prepare_prints_classes_with_counts_and_merges(tmp_path, capsys):
    from dlpipe.pipelines.kinds.text import print_dataset

    rows = ["text,label"]
    for i in range(12):
        label = ["pos", "neg"][i % 2] if i != 5 else " Neg"
        rows.append(f"document {i} word{i},{label}")
    path = _write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    with pytest.raises(
        ValueError,
        match=r"'Neg' \(1 document, first at line 7\), 'neg' "
        r"\(5 documents, first at line 3\)",
    ):
        prepare_text(
            TextDataSpec(path=str(path)),
            TextSplitSpec(0.25, 0.25, seed=1),
            TextSpec(max_words=50, num_shards=1),
        )
    arrays, meta = prepare_text(
        TextDataSpec(path=str(path), label_variants="merge"),
        TextSplitSpec(0.25, 0.25, seed=1),
        TextSpec(max_words=50, num_shards=1),
    )
    assert meta["class_names"] == ["neg", "pos"]
    assert int((arrays["labels"] == 0).sum()) == 6
    per_split = {
        s: np.bincount(arrays["labels"][arrays["split"] == c], minlength=2).tolist()
        for s, c in SPLIT_CODES.items()
    }
    assert meta["class_counts"] == per_split
    print_dataset(meta)
    out = capsys.readouterr().out
    counts = [
        "/".join(str(per_split[s][i]) for s in ("train", "validation", "test")) for i in range(2)
    ]
    assert (f"classes (train/validation/test documents): neg {counts[0]}, pos {counts[1]}") in out
    assert (
        "labels: 1 cell(s) trimmed of surrounding spaces; spellings merged "
        "(data.label_variants: merge): 'Neg' -> 'neg'" in out
    )
