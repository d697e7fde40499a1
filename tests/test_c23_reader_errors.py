"""C23: every malformed input the text, GloVe and image readers' tests build gives one
line naming the file, the line (or entry: a data row, an image file) and the column
(or field); no bare pandas, numpy or TensorFlow message reaches the user.

Format (one line): ``<file>: line <n>: column `<name>`: <what>`` for tables
(``row <n>`` for Parquet), ``<file>: line <n>: field <k> ...`` for GloVe lines,
``<image file>: <reason>`` for image files (the entry is the file, the reason names
the part of it that is wrong: header, marker, chunk, pixels), and
``<folder>: split `<s>`, class `<c>` ...`` for an image class folder (C22)."""

import re

import numpy as np
import pandas as pd
import pytest

from dlpipe.tasks.text.data import read_aclimdb, read_class_folders, read_text_table
from dlpipe.tasks.text.glove import load_glove
from dlpipe.tasks.text.prepare import check_glove_report

from image_files import cut, encode, jpeg, pixels, rgba_png, write

#: fragments of messages that come from the libraries, not from dlpipe
LIBRARY_NOISE = (
    "Traceback",
    "pandas",
    "numpy",
    "tensorflow",
    "{{function_node",
    "[Op:",
    "Error tokenizing",
    "C error",
    "dtype",
    "ParserError",
    "could not convert",
    "InvalidArgumentError",
    "pyarrow",
)


def assert_one_line(message: str, path, *patterns: str) -> None:
    """One line, starting with the file, matching every pattern, no library noise."""
    assert "\n" not in message, message
    assert message.startswith(f"{path}: "), message
    for pattern in patterns:
        assert re.search(pattern, message), (pattern, message)
    for noise in LIBRARY_NOISE:
        assert noise not in message, (noise, message)


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


TABLE_CASES = {
    # name: (file content, text column, label column, kwargs, line, column)
    "missing column": ("label,body\npos,fine\n", "text", "label", {}, 1, None),
    "empty text cell": ("label,body\npos,fine\nneg,\n", "body", "label", {}, 3, "body"),
    "empty label cell": ("label,body\npos,fine\n,no label\n", "body", "label", {}, 3, "label"),
    "blank label cell": ("label,body\npos,a\n   ,b\n", "body", "label", {}, 3, "label"),
    "label not in classes": (
        "label\ttext\n10\ta\n2\tb\n1\tc\n",
        "text",
        "label",
        {"class_names": ["10", "2"]},
        4,
        "label",
    ),
    "extra field": ("text,label\nfine,a\nhello, world,b\n", "text", "label", {}, 3, "#3"),
    "label variants": ("text,label\na,pos\nb,Pos\nc,neg\n", "text", "label", {}, 2, "label"),
    "empty file": ("", "text", "label", {}, 1, None),
    "invalid utf-8 then empty label": (
        b"label,text\npos,caf\xe9\n,ok\n",
        "text",
        "label",
        {},
        3,
        "label",
    ),
}


@pytest.mark.parametrize("name", list(TABLE_CASES))
def test_c23_table_errors_name_file_line_and_column(tmp_path, name):
    content, text_column, label_column, kwargs, line, column = TABLE_CASES[name]
    suffix = ".tsv" if "\t" in str(content) else ".csv"
    path = _write(tmp_path / f"t{suffix}", content)
    with pytest.raises(ValueError) as info:
        read_text_table(path, text_column, label_column, **kwargs)
    patterns = [rf"line {line}\b"]
    if column is not None:
        patterns.append(
            rf"column `{re.escape(column)}`"
            if not column.startswith("#")
            else rf"column {column}\b"
        )
    assert_one_line(str(info.value), path, *patterns)


def test_c23_parquet_errors_name_the_row_and_column(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["a", ""], "y": ["p", "n"]}).to_parquet(path)
    with pytest.raises(ValueError) as info:
        read_text_table(path, "text", "y")
    assert_one_line(str(info.value), path, r"row 1\b", r"column `text`")
    broken = _write(tmp_path / "b.parquet", "not parquet")
    with pytest.raises(ValueError) as info:
        read_text_table(broken, "text", "y")
    assert_one_line(str(info.value), broken, r"not a readable Parquet file")


def test_c23_folder_readers_name_the_folder(tmp_path):
    (tmp_path / "acl" / "train" / "pos").mkdir(parents=True)
    _write(tmp_path / "acl" / "train" / "pos" / "0_9.txt", "ok")
    with pytest.raises(ValueError) as info:
        read_aclimdb(tmp_path / "acl", "train")
    assert_one_line(str(info.value), tmp_path / "acl" / "train" / "neg", r"is missing")
    _write(tmp_path / "t" / "a" / "x.csv", "not a txt")
    with pytest.raises(ValueError) as info:
        read_class_folders(tmp_path / "t")
    assert_one_line(str(info.value), tmp_path / "t" / "a", r"holds no document")


GLOVE_LINES = {  # line content -> (line number, field pattern) in the file below
    "bad 0.1 0.2 0.3": (2, r"fields 2-5"),
    "z 7 eight 1 2": (3, r"field 3 \(value 2 of 4\): 'eight' is not a number"),
    "w nan 1 2 3": (4, r"field 2 \(value 1 of 4\): 'nan' is not a finite number"),
}


def test_c23_glove_lines_name_line_and_field(tmp_path):
    path = _write(
        tmp_path / "g.txt",
        ("the 0.1 0.2 0.3 0.4\n" + "\n".join(GLOVE_LINES) + "\n").encode("utf-8")
        + b"x\xff 1 2 3 4\n",
    )
    glove = load_glove(path, dim=4)
    reasons = {item["line"]: item["reason"] for item in glove.report["skipped"]}
    for line, pattern in GLOVE_LINES.values():
        assert re.search(pattern, reasons[line]), reasons[line]
    assert reasons[5].startswith("invalid UTF-8 at byte 1")
    with pytest.raises(ValueError) as info:  # 4 of 5 lines bad: not a GloVe file
        check_glove_report(str(path), glove.report)
    assert_one_line(
        str(info.value),
        path,
        r"line 2: 3 values after the token, expected 4 "
        r"\(fields 2-5\)",
        r"4 of 5 lines",
    )
    words = _write(tmp_path / "words.txt", "a\nb\n")
    with pytest.raises(ValueError) as info:
        load_glove(words)
    assert_one_line(str(info.value), words, r"lines 1-100")


def test_c23_bad_image_files_are_one_line_each(tmp_path, capsys):
    from dlpipe.pipelines.kinds.images import print_dataset
    from dlpipe.tasks.images.decode import load_image
    from dlpipe.tasks.images.validate import check_images

    files = {
        "empty.jpg": b"",
        "cut.jpg": cut(jpeg(60, 40, seed=1)),
        "html.jpg": b"<html>404 Not Found</html>",
        "cut.png": rgba_png()[:-12],
        "gif.jpg": b"GIF89a" + b"\x00" * 20,  # passes the structure check, TF refuses it
    }
    paths = {name: write(tmp_path / "c" / name, data) for name, data in files.items()}
    paths["missing.jpg"] = tmp_path / "c" / "missing.jpg"
    check = check_images(
        list(paths.values()) + [write(tmp_path / "c" / "ok.png", encode(pixels(), "PNG"))]
    )
    assert len(check.bad) == 6 and len(check.ok) == 1
    meta = {
        "key": "images-x",
        "images": 1,
        "num_classes": 2,
        "class_names": ["c", "d"],
        "source": str(tmp_path),
        "split_counts": {"train": 1, "validation": 0, "test": 0},
        "split": {"already_split": True, "root": str(tmp_path)},
        "bad_files": check.bad,
        "rotated": [],
        "format_mismatch": [],
    }
    print_dataset(meta)
    lines = [
        line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("    ")
    ]
    assert len(lines) == 6
    for line, bad in zip(lines, check.bad):
        assert_one_line(line, bad["path"], r"\S")
    reasons = {b["path"].rsplit("/", 1)[1]: b["reason"] for b in check.bad}
    assert reasons["gif.jpg"].startswith("decode error: ")
    with pytest.raises(ValueError) as info:
        load_image(paths["gif.jpg"], (8, 8))
    assert_one_line(str(info.value), paths["gif.jpg"], r"image does not decode")


def test_c23_c22_class_errors_name_split_class_and_reason(tmp_path):
    from dlpipe.tasks.images.prepare import ImageDataSpec, ImageSpec, prepare_images

    root = tmp_path / "base"
    for split in ("train", "validation", "test"):
        for c, cls in enumerate(("cat", "dog")):
            (root / split / cls).mkdir(parents=True)
            if (split, cls) != ("test", "dog"):
                for i in range(2):
                    write(
                        root / split / cls / f"{cls}.{i}.png",
                        encode(np.full((40, 40, 3), 50 + 100 * c + i, np.uint8), "PNG"),
                    )
    write(root / "train" / "cat" / "cat.0.png", b"")  # one bad file is fine
    with pytest.raises(ValueError) as info:
        prepare_images(
            ImageDataSpec(path=str(root)),
            ImageSpec(size=(32, 32), weights="none", validation_shards=1),
            tmp_path / "run",
        )
    assert_one_line(
        str(info.value),
        root / "test" / "dog",
        r"split `test`, class `dog` has no usable image: empty folder",
    )
