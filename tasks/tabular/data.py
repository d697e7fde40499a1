"""Prepare a tabular study's dataset (book ch. 3.5-3.6): read, check, split, normalize,
one-hot encode.

Plain functions, no Ray (:func:`dlpipe.tasks.remote.prepare_tabular_task` runs
:func:`prepare_tabular` as one Ray task). The steps:

1. Read the table (:mod:`dlpipe.tasks.tabular.read`): every feature column must be
   numeric unless declared in ``data.categorical``; a non-numeric column is refused
   naming it, a non-numeric cell naming the file, line and column.
2. Missing cells (counted per column): a row without a target is always dropped;
   ``data.missing: drop`` (the default) drops every row with a missing feature,
   ``mean`` fills a numeric feature with its training mean and leaves a categorical one
   an all-zero one-hot row.
3. The task: ``regression``, ``binary`` or ``multiclass``, given by the study or
   inferred from the target (:func:`infer_task`).
4. A seeded shuffle split into train/validation/test (stratified by class for
   classification).
5. Numeric features normalized with the mean and standard deviation of the TRAINING
   rows only (book 3.6.2); a constant column (std 0) is only centred, and named in a
   warning. Categorical features one-hot encoded with the training split's sorted
   categories; a category first seen in validation or test is an all-zero row, counted.

The target stays in its units (regression: the book's Boston housing keeps it raw, so
MAE is in the target's units); classes are int64 codes of the sorted class names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dlpipe.tasks.io.labels import LABEL_VARIANT_POLICIES, merge_label_variants
from dlpipe.tasks.tabular.header import require_file
from dlpipe.tasks.tabular.read import Table, cells, number_column, numbers, read_table_file
from dlpipe.tasks.training.classifier import SPLIT_CODES

TASKS = ("regression", "binary", "multiclass")
MISSING_POLICIES = ("drop", "mean")
#: a numeric target with at most this many distinct integer values is a classification
MAX_INFERRED_CLASSES = 10
DEMO_PREFIX = "demo:"
PREPARE_VERSION = 1


@dataclass(frozen=True)
class TabularDataSpec:
    """Where the table is and what to learn from it.

    Attributes:
        path: a ``.csv``/``.tsv``/``.parquet`` file, or ``demo:diabetes`` (also
            ``demo:wine``, ``demo:breast_cancer``: tables that ship with scikit-learn,
            written as a CSV under the run directory's ``artifacts/demo_source``).
        target: the column to predict.
        features: the input columns (default: every column but the target).
        categorical: feature columns one-hot encoded (their training categories).
        missing: ``drop`` rows with a missing feature, or fill with the training
            ``mean`` (categorical: an all-zero row).
        label_variants: classification target labels that differ only in letter case
            or spacing: ``refuse`` (the default) or ``merge`` into one class
            (:mod:`dlpipe.tasks.io.labels`).
    """

    path: str
    target: str
    features: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    missing: str = "drop"
    label_variants: str = "refuse"

    def __post_init__(self):
        if self.label_variants not in LABEL_VARIANT_POLICIES:
            raise ValueError(
                f"`label_variants` must be 'refuse' or 'merge'. Received: {self.label_variants!r}"
            )
        if self.missing not in MISSING_POLICIES:
            raise ValueError(
                f"`missing` must be one of {', '.join(MISSING_POLICIES)}. "
                f"Received: missing={self.missing!r}"
            )
        if self.target in self.features:
            raise ValueError(f"`features` must not hold the target `{self.target}`")
        for name in ("features", "categorical"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"`{name}` lists a column twice. Received: {list(values)}")
        outside = [c for c in self.categorical if self.features and c not in self.features]
        if outside or self.target in self.categorical:
            raise ValueError(
                f"`categorical` must name feature columns. Received: "
                f"{outside or [self.target]} (not in `features`)"
            )


@dataclass(frozen=True)
class TabularSplitSpec:
    """Seeded shuffle split of the rows (stratified by class for classification).

    Attributes:
        validation_fraction: share of the rows for validation.
        test_fraction: share of the rows for test; the rest is the training split.
        seed: shuffle seed.
    """

    validation_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 1337

    def __post_init__(self):
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"`{name}` must be in (0, 1). Received: {value!r}")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                "`validation_fraction + test_fraction` must be < 1 (the rest is the "
                f"training split). Received: {self.validation_fraction} + {self.test_fraction}"
            )


def feature_columns(spec: TabularDataSpec, columns: list[str], source) -> list[str]:
    """The feature columns of a table with ``columns`` (default: all but the target).

    Raises:
        ValueError: naming the file: the target or a feature is not a column, or no
            feature is left.
    """
    features = list(spec.features) or [c for c in columns if c != spec.target]
    absent = [c for c in [spec.target, *features, *spec.categorical] if c not in columns]
    if absent:
        raise ValueError(
            f"{source}: column(s) {sorted(set(absent))} not in the table; its columns are {columns}"
        )
    if not features:
        raise ValueError(f"{source}: no feature column besides the target `{spec.target}`")
    return features


def target_spellings(values: np.ndarray, spec: TabularDataSpec, task, source, locate):
    """``(values, merged)``: the target's text labels under the label-spelling rule
    (``data.label_variants``, :func:`dlpipe.tasks.io.labels.merge_label_variants`;
    cells are already trimmed); numbers, and a regression target, as they are.

    Args:
        values: the kept rows' target cells.
        task: the study's ``task`` (None: inferred afterwards).
        source: the file and column, for messages.
        locate: ``locate(positions) -> [str]``: where kept rows are (``line 7``).

    Raises:
        ValueError: labels that differ only in letter case or spacing, with
            ``label_variants: refuse``.
    """
    if task == "regression" or not numbers(values, np.zeros(len(values), bool))[1].any():
        return values, {}
    merged_values, merged = merge_label_variants(
        [str(v) for v in values], spec.label_variants, source=source, locate=locate, unit="row"
    )
    return np.array(merged_values, dtype=object), merged


def infer_task(values: np.ndarray, task: str | None) -> tuple[str, bool]:
    """``(task, inferred)``: the study's task, or the one the target's values suggest.

    Inference: a non-numeric target, or a numeric one with at most
    :data:`MAX_INFERRED_CLASSES` distinct integer values, is a classification (2
    classes: ``binary``, else ``multiclass``); anything else is ``regression``.

    Args:
        values: the target's present cells (strings or numbers).
        task: ``regression``, ``binary``, ``multiclass``, or None (infer).
    """
    if task is not None:
        return task, False
    nums, bad = numbers(values, np.zeros(len(values), dtype=bool))
    distinct = np.unique(nums) if not bad.any() else None
    if distinct is None or (
        np.all(distinct == np.round(distinct)) and len(distinct) <= MAX_INFERRED_CLASSES
    ):
        classes = len(set(map(str, values))) if distinct is None else len(distinct)
        return ("binary" if classes == 2 else "multiclass"), True
    return "regression", True


def encode_target(values: np.ndarray, task: str, column: str, where) -> tuple[np.ndarray, list]:
    """``(labels, class_names)``: float32 target values (regression) or int64 codes of
    the sorted class names (numeric order when every class is a number).

    Args:
        where: ``where(row) -> str``: the location of a row in the file, for errors.

    Raises:
        ValueError: a regression target cell that is not a number (file, line, column);
            a binary target without exactly 2 classes; fewer than 2 classes.
    """
    if task == "regression":
        nums, bad = numbers(values, np.zeros(len(values), dtype=bool))
        if bad.any() or not np.all(np.isfinite(nums)):
            row = int(np.flatnonzero(bad | ~np.isfinite(nums))[0])
            raise ValueError(
                f"{where(row)}: column `{column}`: {values[row]!r} is not a finite number "
                "(task: regression)"
            )
        return nums.astype(np.float32), []
    nums, bad = numbers(values, np.zeros(len(values), dtype=bool))
    keys = [format_class(v) for v in nums] if not bad.any() else [str(v) for v in values]
    names = sorted(set(keys), key=float) if not bad.any() else sorted(set(keys))
    if len(names) < 2 or (task == "binary" and len(names) != 2):
        raise ValueError(
            f"column `{column}`: task {task} needs "
            f"{'exactly 2' if task == 'binary' else '2 or more'} classes; the target has "
            f"{len(names)}: {names[:12]}"
        )
    code = {name: i for i, name in enumerate(names)}
    return np.array([code[k] for k in keys], dtype=np.int64), names


def format_class(value: float) -> str:
    """A numeric class as its name: ``1.0`` -> ``"1"``, ``0.5`` -> ``"0.5"``."""
    return str(int(value)) if float(value).is_integer() else str(value)


def split_rows(labels: np.ndarray | None, n: int, split: TabularSplitSpec) -> np.ndarray:
    """Split codes (:data:`SPLIT_CODES`) of ``n`` rows by a seeded shuffle: per class
    when ``labels`` are class codes (stratified), else over all rows; each group gives
    ``round(fraction * size)`` rows to validation and to test, the rest to train."""
    rng = np.random.default_rng(split.seed)
    codes = np.full(n, SPLIT_CODES["train"], dtype=np.int8)
    groups = (
        [np.arange(n)]
        if labels is None
        else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    )
    for rows in groups:
        rows = rows[rng.permutation(len(rows))]
        n_val = int(round(split.validation_fraction * len(rows)))
        n_test = int(round(split.test_fraction * len(rows)))
        codes[rows[:n_val]] = SPLIT_CODES["validation"]
        codes[rows[n_val : n_val + n_test]] = SPLIT_CODES["test"]
    return codes


def normalize(values: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(normalized, mean, std)`` of one numeric column with the training rows' mean and
    standard deviation (``ddof=0``, as the book's ``x.std(axis=0)``), missing cells
    (NaN) left out of both and then filled with the mean (normalized: 0). A constant
    column (std 0) is only centred."""
    mean = float(np.nanmean(values[train]))
    std = float(np.nanstd(values[train]))
    return scale(values, mean, std), mean, std


def scale(values: np.ndarray, mean: float, std: float) -> np.ndarray:
    """One numeric column centred and scaled with given statistics (a constant
    column, std 0, only centred), missing cells (NaN) filled with the mean
    (normalized: 0): how :func:`normalize` encodes every split and how new rows are
    encoded for prediction."""
    scaled = (values - mean) / (std if std > 0 else 1.0)
    return np.where(np.isnan(scaled), 0.0, scaled)


def one_hot(values: np.ndarray, missing: np.ndarray, train: np.ndarray):
    """``(matrix, categories, unseen)``: the one-hot float32 rows of a categorical
    column over the training split's sorted categories; a missing cell or a category
    not in the training split is an all-zero row (``unseen``: how many rows outside the
    training split hold an unseen category)."""
    names = np.array([str(v) for v in values], dtype=object)
    categories = sorted(set(names[train & ~missing]))
    matrix, unseen = one_hot_rows(values, missing, categories)
    return matrix, categories, unseen


def one_hot_rows(values: np.ndarray, missing: np.ndarray, categories: list[str]):
    """``(matrix, unseen)``: float32 ``(rows, len(categories))`` one-hot rows of a
    categorical column over ``categories`` (a missing cell or a category not among
    them: an all-zero row; ``unseen``: how many rows hold such a category); how
    :func:`one_hot` encodes every split and how new rows are encoded for prediction."""
    names = np.array([str(v) for v in values], dtype=object)
    position = {c: i for i, c in enumerate(categories)}
    matrix = np.zeros((len(values), len(categories)), dtype=np.float32)
    unseen = 0
    for row, name in enumerate(names):
        if missing[row]:
            continue
        if name in position:
            matrix[row, position[name]] = 1.0
        else:
            unseen += 1
    return matrix, unseen


def resolve_table_path(path: str, run_dir: str | Path | None = None) -> tuple[Path, str]:
    """``(file, source)``: the table of ``data.path``, writing a ``demo:<name>`` table
    under ``<run_dir>/artifacts/demo_source`` on first use.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown demo table; ``path`` is a directory.
        ImportError: the package that ships the demo table is not installed.
    """
    if path.startswith(DEMO_PREFIX):
        from dlpipe.tasks.tabular.demo import DEMO_TABLES, write_demo_table

        name = path[len(DEMO_PREFIX) :]
        folder = Path(run_dir or ".") / "artifacts" / "demo_source"
        return write_demo_table(name, folder), f"{path} ({DEMO_TABLES[name][0]})"
    file = Path(path).expanduser()
    if file.is_dir():
        require_file(file)  # names the directory
    if not file.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    return file, str(file)


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_key(digest: str, spec, split, task) -> str:
    """Key of a prepared dataset: the table's content and every setting that shapes it."""
    payload = {
        "version": PREPARE_VERSION,
        "content": digest,
        "data": {
            k: v
            for k, v in asdict(spec).items()
            # the default policy adds nothing (keys of studies from before it stay)
            if k != "path" and not (k == "label_variants" and v == "refuse")
        },
        "split": asdict(split),
        "task": task,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def read_columns(table: Table, spec: TabularDataSpec, features: list[str]) -> tuple[dict, dict]:
    """Every feature's values and missing mask: numeric columns as float64 (checked,
    :func:`dlpipe.tasks.tabular.read.number_column`; a non-finite number is missing),
    categorical ones as strings.

    Returns:
        ``(columns, nonfinite_counts)``: ``{column: (values, missing)}`` in feature
        order, and ``{column: non-finite cells}`` of the numeric columns that hold any
        (those cells are also in ``missing``).
    """
    out, nonfinite_counts = {}, {}
    for column in features:
        if column in spec.categorical:
            out[column] = cells(table, column)
            continue
        values, missing, nonfinite = number_column(table, column)
        out[column] = values, missing
        if nonfinite.any():
            nonfinite_counts[column] = int(nonfinite.sum())
    return out, nonfinite_counts


def kept_rows(table: Table, spec: TabularDataSpec, columns: dict):
    """``(target cells, keep mask, missing_counts)``: the rows the missing-value policy
    keeps (never a row without a target; with ``drop``, no row with a missing feature)
    and the missing cells per column (features, then the target).

    Raises:
        ValueError: fewer than 3 rows left (naming the file, the policy and the
            feature columns with no value in any row that has a target).
    """
    target, target_missing = cells(table, spec.target)
    missing_counts = {c: int(m.sum()) for c, (_, m) in columns.items()}
    missing_counts[spec.target] = int(target_missing.sum())
    keep = ~target_missing
    if spec.missing == "drop":
        for _, missing in columns.values():
            keep &= ~missing
    if keep.sum() < 3:
        empty = [c for c, (_, m) in columns.items() if m[~target_missing].all()]
        raise ValueError(
            f"{table.source}: {int(keep.sum())} row(s) left of {len(keep)} after dropping "
            f"missing values (data.missing: {spec.missing}); a study needs train, "
            "validation and test rows"
            + (f"; column(s) {empty} have no value in any row" if empty else "")
        )
    return target, keep, missing_counts


def prepare_tabular(
    spec: TabularDataSpec,
    split: TabularSplitSpec,
    task: str | None = None,
    run_dir: str | Path | None = None,
) -> tuple[dict, dict]:
    """Read, check, split, normalize and encode a table (module docstring).

    Args:
        spec: the study's ``data`` section.
        split: the study's ``split`` section.
        task: the study's ``task`` (None: inferred from the target).
        run_dir: the study's run directory (where a ``demo:`` table is written).

    Returns:
        ``(arrays, meta)``: arrays ``x`` float32 ``(rows, width)``, ``labels`` (float32
        target values, or int64 class codes), ``split`` int8 codes
        (:data:`SPLIT_CODES`), ``rows`` int64 (each row's 0-based data row in the
        table); meta: ``key``, ``source``, ``task``, ``class_names``, ``num_classes``,
        ``input_columns``, per numeric column ``mean``/``std``, per categorical column
        ``categories``, ``missing_counts`` (every missing cell, non-finite numbers
        included), ``nonfinite_counts`` (only when any), ``rows_dropped``, ``constant_features``,
        ``unseen_categories``, ``split_counts``, ``warnings``...

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file (and the line and column where one cell is at
            fault): a missing or non-numeric column, a bad target for the task (a
            regression target constant over the training rows), a split without rows,
            no row left after dropping missing values, a column with no value in the
            training rows.
    """
    r = read_split_rows(spec, split, task, run_dir)
    rows, labels, class_names, codes = r["rows"], r["labels"], r["class_names"], r["codes"]
    x, encoding = encode_features(r["columns"], rows, codes == SPLIT_CODES["train"], r["file"])
    meta = {
        "key": dataset_key(file_digest(r["file"]), spec, split, r["task"]),
        "source": r["source"],
        "target": spec.target,
        "task": r["task"],
        "task_inferred": r["inferred"],
        "class_names": class_names,
        "num_classes": len(class_names),
        "features": r["features"],
        "rows_read": int(len(r["keep"])),
        "rows": int(len(rows)),
        "rows_dropped": int(len(r["keep"]) - len(rows)),
        "missing_policy": spec.missing,
        "missing_counts": r["missing_counts"],
        **optional_meta(r),
        **encoding,
        **split_summary(codes, labels, class_names),
    }
    meta["warnings"] = dataset_warnings(meta)
    arrays = {"x": x, "labels": labels, "split": codes, "rows": rows.astype(np.int64)}
    return arrays, meta


def optional_meta(read: dict) -> dict:
    """The meta entries a table only has when they say something (so the datasets row
    of any other table stays as it was): ``nonfinite_counts`` (features holding
    ``inf``/``-inf``, read as missing) and ``label_variants_merged``."""
    keys = ("nonfinite_counts", "label_variants_merged")
    return {k: read[k] for k in keys if read[k]}


def read_split_rows(
    spec: TabularDataSpec,
    split: TabularSplitSpec,
    task: str | None = None,
    run_dir: str | Path | None = None,
) -> dict:
    """Steps 1-4 of :func:`prepare_tabular` (read, check, keep, task, split), before any
    encoding: what K-fold folds re-encode per fold (:mod:`dlpipe.tasks.tabular.folds`).

    Returns:
        ``file``, ``source``, ``target`` (its column), ``features``, ``columns``
        (:func:`read_columns`), ``rows`` (kept 0-based data rows), ``labels``,
        ``class_names``, ``codes`` (split codes of the kept rows), ``keep``,
        ``missing_counts``, ``nonfinite_counts`` (:func:`read_columns`), ``task``,
        ``inferred``, ``label_variants_merged``.

    Raises:
        As :func:`prepare_tabular`.
    """
    file, source = resolve_table_path(spec.path, run_dir)
    table = read_table_file(file)
    features = feature_columns(spec, [str(c) for c in table.frame.columns], file)
    columns, nonfinite_counts = read_columns(table, spec, features)
    target, keep, missing_counts = kept_rows(table, spec, columns)
    rows = np.flatnonzero(keep)
    values, merged = target_spellings(
        target[rows],
        spec,
        task,
        f"{file}: column `{spec.target}`",
        lambda found: [table.where(int(rows[r])) for r in found],
    )
    task, inferred = infer_task(values, task)
    try:
        labels, class_names = encode_target(
            values, task, spec.target, lambda r: table.where(int(rows[r]))
        )
    except ValueError as exc:
        raise ValueError(f"{file}: {exc}") from None
    codes = split_rows(labels if class_names else None, len(rows), split)
    check_splits(codes, labels, class_names, file)
    if not class_names:
        check_target_varies(labels, codes == SPLIT_CODES["train"], spec.target, file)
    return {
        "file": file,
        "source": source,
        "target": spec.target,
        "features": features,
        "columns": columns,
        "rows": rows,
        "labels": labels,
        "class_names": class_names,
        "codes": codes,
        "keep": keep,
        "missing_counts": missing_counts,
        "nonfinite_counts": nonfinite_counts,
        "task": task,
        "inferred": inferred,
        "label_variants_merged": merged,
    }


def encode_features(
    columns: dict, rows: np.ndarray, train: np.ndarray, source=None
) -> tuple[np.ndarray, dict]:
    """``(x, encoding)``: the float32 input rows of the kept ``rows`` (numeric columns
    normalized, categorical ones one-hot, in feature order) and what encoded them
    (``input_columns``, ``mean``, ``std``, ``categories``, ``constant_features``,
    ``unseen_categories``).

    Args:
        columns: :func:`read_columns`'s ``{column: (values, missing)}``.
        rows: the kept 0-based data rows.
        train: mask over ``rows`` of the training rows (their statistics encode all).
        source: the file, for messages.

    Raises:
        ValueError: a column with no value in the training rows (no mean to fill
            with, no category to encode), naming the file and the column.
    """
    check_training_values(columns, rows, train, source)
    blocks, names = [], []
    enc = {
        "mean": {},
        "std": {},
        "categories": {},
        "constant_features": [],
        "unseen_categories": {},
    }
    for column, (values, missing) in columns.items():
        if values.dtype == np.float64:
            scaled, mean, std = normalize(values[rows], train)
            blocks.append(scaled[:, None].astype(np.float32))
            names.append(column)
            enc["mean"][column], enc["std"][column] = mean, std
            if std == 0.0:
                enc["constant_features"].append(column)
            continue
        matrix, categories, unseen = one_hot(values[rows], missing[rows], train)
        blocks.append(matrix)
        names += [f"{column}={c}" for c in categories]
        enc["categories"][column] = categories
        enc["unseen_categories"][column] = unseen
    x = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(rows), 0), np.float32)
    enc["input_columns"] = names
    return np.ascontiguousarray(x, dtype=np.float32), enc


def check_training_values(columns: dict, rows: np.ndarray, train: np.ndarray, source) -> None:
    """Every feature column has a value in the training rows (with ``data.missing:
    mean`` a column missing in every training row would be filled with the mean of
    nothing: NaN).

    Raises:
        ValueError: ``<source>: column `x2` has no value in the training rows``.
    """
    for column, (_, missing) in columns.items():
        if missing[rows][train].all():
            raise ValueError(
                f"{source}: column `{column}` has no value in the training rows "
                f"({int(train.sum())} rows); leave it out of `data.features`"
            )


def check_splits(codes: np.ndarray, labels: np.ndarray, class_names: list, source) -> None:
    """Every split has rows, and (classification) the training split every class.

    Raises:
        ValueError: naming the file, the split (and the class).
    """
    for name, code in SPLIT_CODES.items():
        if not (codes == code).any():
            raise ValueError(
                f"{source}: the {name} split has no row ({len(codes)} rows; raise the "
                "split fractions or use a larger table)"
            )
    train = labels[codes == SPLIT_CODES["train"]]
    for i, name in enumerate(class_names):
        if not (train == i).any():
            raise ValueError(f"{source}: class {name!r} has no row in the training split")


def check_target_varies(labels: np.ndarray, train: np.ndarray, column: str, source) -> None:
    """A regression target takes more than one value in the training rows (the
    weather kind's rule: a constant target leaves nothing to predict, and the mean
    predictor's MAE of 0 no model can beat).

    Raises:
        ValueError: ``<source>: column `y` (the target) holds the same value 5.0 in
            every training row: there is nothing to predict``.
    """
    values = labels[train]
    if len(values) and np.all(values == values[0]):
        raise ValueError(
            f"{source}: column `{column}` (the target) holds the same value "
            f"{values[0]} in every training row: there is nothing to predict"
        )


def split_summary(codes: np.ndarray, labels: np.ndarray, class_names: list) -> dict:
    """``split_counts`` (rows per split) and, for classification, ``class_counts``
    (per split, rows per class)."""
    out = {"split_counts": {s: int((codes == c).sum()) for s, c in SPLIT_CODES.items()}}
    if class_names:
        out["class_counts"] = {
            s: np.bincount(labels[codes == c], minlength=len(class_names)).tolist()
            for s, c in SPLIT_CODES.items()
        }
    return out


def dataset_warnings(meta: dict) -> list[str]:
    """Warnings on a prepared table: constant columns, unseen categories, classes
    missing from validation or test."""
    out = []
    if meta["constant_features"]:
        out.append(
            f"constant over the training rows (std 0: centred, not scaled; they carry no "
            f"information): {meta['constant_features']}"
        )
    unseen = {c: n for c, n in meta["unseen_categories"].items() if n}
    if unseen:
        out.append(
            f"categories not in the training split (all-zero one-hot rows in validation/test): "
            f"{unseen}"
        )
    for split, counts in meta.get("class_counts", {}).items():
        absent = [n for n, k in zip(meta["class_names"], counts) if k == 0]
        if absent and split != "train":
            out.append(f"class(es) {absent} have no row in the {split} split")
    return out
