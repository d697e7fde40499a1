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

import json
import sys
from dataclasses import asdict
from pathlib import Path

from dlpipe.pipelines import study
from dlpipe.pipelines.config import TextStudyConfig
from dlpipe.tasks import reports

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

    from dlpipe.tasks.text_prepare import prepare_text

    arrays, meta = prepare_text(cfg.data, cfg.split, cfg.text, run_dir / "artifacts",
                                map_fn=ray_map)
    reports.write_part(run_dir, "datasets", meta["key"], [{
        "dataset_key": meta["key"], "source": meta["source"], "rows": meta["documents"],
        "columns": meta["class_names"], "target": "label", "splits": meta["split_counts"],
        "sentinel_counts": {}, "quality": {
            k: meta[k] for k in ("class_counts", "vocabulary_size", "distinct_train_words",
                                 "oov_rate", "glove_coverage", "report", "documents_read",
                                 "vocabulary_path") if k in meta}}])
    print_dataset(meta)
    return ray.put(arrays), meta


def write_baseline(run_dir: Path, cfg: TextStudyConfig, data: dict, meta: dict) -> dict:
    """The majority-class baseline as a row of ``runs`` (family ``baseline``)."""
    from dlpipe.tasks.text_train import baseline_scores

    run_id = f"baseline-{meta['key']}"
    if reports.part_exists(run_dir, "runs", run_id):  # written once, never rewritten
        return reports.read_part(run_dir, "runs", run_id)[0]
    scores = baseline_scores(data, meta["num_classes"])
    majority = meta["class_names"][scores.pop("majority_class")]
    run = {"run_id": run_id, "family": "baseline",
           "hyperparameters": {"rule": f"majority class of the training split ({majority})",
                               "frequencies": scores.pop("frequencies")},
           "seed": cfg.seed, "epochs_run": 0, "params": 0, "metric": "accuracy", **scores,
           "wall_time_s": 0.0, "resources": {}, "devices": "", "status": "ok"}
    return study.write_result(run_dir, cfg, meta, {"run": run, "history": [],
                                                    "predictions": []})


def run_study(cfg: TextStudyConfig, *, progress: bool = True) -> Path:
    """Run a text study end to end on the connected Ray (call ``init_ray`` first).

    Returns:
        The run directory (``reports/``, ``plots/``, ``artifacts/``, ``study.json``).

    Raises:
        FileNotFoundError, ValueError: bad data or settings, raised before any model
        is trained.
    """
    import ray

    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    reports.atomic_write_bytes(run_dir / "study.json",
                               json.dumps(asdict(cfg), indent=1, default=str).encode())
    data_ref, meta = prepare_dataset(cfg, run_dir)
    baseline = write_baseline(run_dir, cfg, ray.get(data_ref), meta)
    study.train_models(cfg, run_dir, data_ref, meta, baseline, progress=progress)
    study.write_plots(run_dir)
    if cfg.ensemble.enabled:
        from dlpipe.pipelines.ensemble import run_ensemble_stage

        run_ensemble_stage(run_dir, cfg.ensemble)
    return run_dir


def print_dataset(meta: dict) -> None:
    """A few lines on what was read, split and tokenized."""
    report = meta["report"]
    split = ", ".join(f"{k} {v}" for k, v in meta["split_counts"].items())
    print(f"dataset {meta['key']}{' (cached)' if meta.get('cached') else ''}: "
          f"{meta['documents']} documents, classes {meta['class_names']} from "
          f"{meta['source']}; splits: {split}")
    dropped = report.get("duplicates_dropped", 0) + report.get("conflicting_dropped", 0)
    bad = report.get("invalid_utf8_lines") or report.get("invalid_utf8") or []
    print(f"  {dropped} repeated documents dropped "
          f"({report.get('conflicting_dropped', 0)} with conflicting labels); "
          f"{len(bad)} line(s)/file(s) with invalid UTF-8 (replaced with U+FFFD)")
    glove = (f"; GloVe coverage {meta['glove_coverage']:.1%}"
             if meta.get("glove_coverage") is not None else "")
    print(f"  vocabulary: {meta['vocabulary_size'] - 2} words of "
          f"{meta['distinct_train_words']} distinct training words; OOV share "
          f"{meta['oov_rate']:.1%}{glove}")


def main(argv: list[str] | None = None) -> int:
    """Script entry point (``ray submit cluster.yaml pipelines/text.py -- --config X``)."""
    from dlpipe.pipelines.cli import script_main

    return script_main("run", "Run a text classification study (book ch. 6.1).", argv)


if __name__ == "__main__":
    sys.exit(main())
