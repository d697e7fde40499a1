"""Text classification study (book ch. 3.4 and 6.1-6.3) as a Ray pipeline.

DAG: read + split (driver) -> word counts, one Ray task per shard of the training
documents -> vocabulary (driver, train split only) -> encoding, one Ray task per shard
-> (GloVe matrix) -> majority-class baseline -> one Ray training task per configured
model, in parallel -> Parquet reports (``runs``, ``history``, ``predictions``,
``datasets``) and plots -> optional ensemble stage.

The prepared dataset is cached in ``<run_dir>/artifacts`` under a key of the data, split
and text settings (and the source files' sizes and times), with its vocabulary
(``<key>.vocabulary.json``, reusable to encode new text); a rerun skips preparation and
every finished run.

Runs as a script for ``ray submit``::

    python pipelines/text.py --config configs/imdb.yaml [--smoke-test]
"""

from __future__ import annotations

import sys
from pathlib import Path

from dlpipe.pipelines import study
from dlpipe.pipelines.config import TextStudyConfig
from dlpipe.tasks.reports import tables as reports

PIPELINE = "text"


def ray_map(function, args_list):
    """``starmap`` over Ray tasks: one :func:`dlpipe.tasks.remote.text_shard_task` per
    argument tuple, results in order."""
    import ray

    from dlpipe.tasks.remote import text_shard_task

    return ray.get([text_shard_task.remote(function.__name__, *args) for args in args_list])


def prepare_dataset(cfg: TextStudyConfig, run_dir: Path):
    """Prepare the documents (tokenization shards as Ray tasks), write the ``datasets``
    row, print a summary.

    Returns:
        ``(data_ref, meta)``: an ObjectRef of the prepared arrays (passed to training
        tasks by reference, case C14) and the dataset description.

    Raises:
        FileNotFoundError, ValueError: unreadable source, empty split, bad GloVe file.
    """
    import ray

    from dlpipe.tasks.text.prepare import prepare_text

    arrays, meta = prepare_text(
        cfg.data, cfg.split, cfg.text, run_dir / "artifacts", map_fn=ray_map
    )
    reports.write_part(
        run_dir,
        "datasets",
        meta["key"],
        [
            {
                "dataset_key": meta["key"],
                "source": meta["source"],
                "rows": meta["documents"],
                "columns": meta["class_names"],
                "target": "label",
                "splits": meta["split_counts"],
                "sentinel_counts": {},
                "quality": {
                    k: meta[k]
                    for k in (
                        "class_counts",
                        "vocabulary_size",
                        "distinct_train_words",
                        "oov_rate",
                        "glove_coverage",
                        "report",
                        "documents_read",
                        "vocabulary_path",
                        "warnings",
                    )
                    if k in meta
                },
            }
        ],
    )
    print_dataset(meta)
    return ray.put(arrays), meta


#: the majority-class baseline row (:func:`dlpipe.pipelines.study.write_majority_baseline`)
write_baseline = study.write_majority_baseline


def run_study(cfg: TextStudyConfig, *, progress: bool = True) -> Path:
    """Run a text study end to end on the connected Ray (call ``init_ray`` first).

    Returns:
        The run directory (``reports/``, ``plots/``, ``artifacts/``, ``study.json``).

    Raises:
        FileNotFoundError, ValueError: bad data or settings, raised before any model
        is trained.
    """
    return study.run_stages(cfg, prepare_dataset, write_baseline, progress=progress)


def print_dataset(meta: dict) -> None:
    """A few lines on what was read, split and tokenized."""
    report = meta["report"]
    split = ", ".join(f"{k} {meta['split_counts'][k]}" for k in ("train", "validation", "test"))
    print(
        f"dataset {meta['key']}{' (cached)' if meta.get('cached') else ''}: "
        f"{meta['documents']} documents, classes {meta['class_names']} from "
        f"{meta['source']}; splits: {split}"
    )
    per_class = meta["class_counts"]
    print(
        "  classes (train/validation/test documents): "
        + ", ".join(
            f"{name} {'/'.join(str(per_class[s][i]) for s in ('train', 'validation', 'test'))}"
            for i, name in enumerate(meta["class_names"])
        )
    )
    trimmed = report.get("labels_trimmed", 0)
    merged = report.get("label_variants_merged") or {}
    if trimmed or merged:
        spelled = "; ".join(
            f"{', '.join(repr(v) for v in group)} -> {keep!r}" for keep, group in merged.items()
        )
        print(
            f"  labels: {trimmed} cell(s) trimmed of surrounding spaces"
            + (f"; spellings merged (data.label_variants: merge): {spelled}" if merged else "")
        )
    for line in meta.get("warnings") or []:
        print(f"  warning: {line}")
    dropped = report.get("duplicates_dropped", 0) + report.get("conflicting_dropped", 0)
    bad = report.get("invalid_utf8_lines") or report.get("invalid_utf8") or []
    print(
        f"  {dropped} repeated documents dropped "
        f"({report.get('conflicting_dropped', 0)} with conflicting labels); "
        f"{len(bad)} line(s)/file(s) with invalid UTF-8 (replaced with U+FFFD)"
    )
    glove = (
        f"; GloVe coverage {meta['glove_coverage']:.1%}"
        if meta.get("glove_coverage") is not None
        else ""
    )
    skipped = report.get("glove", {}).get("skipped") or []
    if skipped:
        glove += (
            f"; GloVe: {report['glove']['skipped_count']} malformed line(s) skipped "
            f"(first: line {skipped[0]['line']}: {skipped[0]['reason']})"
        )
    words = min(meta["vocabulary_size"] - 2, meta["distinct_train_words"])
    print(
        f"  vocabulary: {words} words (max_words {meta['vocabulary_size'] - 2}) of "
        f"{meta['distinct_train_words']} distinct training words; OOV share "
        f"{meta['oov_rate']:.1%}{glove}"
    )


def main(argv: list[str] | None = None) -> int:
    """Script entry point (``ray submit cluster.yaml pipelines/text.py -- --config X``)."""
    from dlpipe.pipelines.cli import script_main

    return script_main("run", "Run a text classification study (book ch. 6.1).", argv)


if __name__ == "__main__":
    sys.exit(main())
