"""The text kind: text classification studies (book ch. 3.4 and 6.1-6.3).

DAG: read + split (driver) -> word counts, one Ray task per shard of the training
documents -> vocabulary (driver, train split only) -> encoding, one Ray task per shard
-> (GloVe matrix) -> majority-class baseline -> training tasks.

The prepared dataset is cached in ``<run_dir>/artifacts`` under a key of the data, split
and text settings (and the source files' sizes and times), with its vocabulary
(``<key>.vocabulary.json``, reusable to encode new text); a rerun skips preparation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from dlpipe.pipelines.kinds.base import PredictInputs, StudyKind
from dlpipe.pipelines.kinds.classification import majority_baseline, put_fold_datasets
from dlpipe.pipelines.sections import ConfigError, ModelSpec, StudyCommon
from dlpipe.tasks.text.prepare import TextDataSpec, TextSpec, TextSplitSpec, resolve_text_path
from dlpipe.tasks.training.records import FoldDataset, PreparedDataset, RunResult


@dataclass(frozen=True)
class TextStudyConfig(StudyCommon):
    """A text classification study (see ``configs/demo_text.yaml``, ``configs/imdb.yaml``)."""

    study: str
    data: TextDataSpec
    models: tuple[ModelSpec, ...]
    split: TextSplitSpec = field(default_factory=TextSplitSpec)
    text: TextSpec = field(default_factory=TextSpec)

    def model_inputs(self, model: ModelSpec) -> TextSpec:
        """What one model sees: the ``text`` settings (same for every model)."""
        return self.text

    @property
    def inputs(self) -> TextSpec:
        """The study's input geometry (what sweep trials see): ``text``."""
        return self.text


class TextKind(StudyKind):
    """Text classification: documents to token sequences or multi-hot rows; accuracy."""

    name = "text"
    evaluations = ("holdout", "kfold", "iterated_kfold")
    config_class = TextStudyConfig
    inputs_name = "text"
    headline = "accuracy"
    baseline_name = "majority-class"
    loss_label = "crossentropy"
    shard_inputs = 65536  # table rows: cheap per row, so large shards

    @property
    def train(self):
        from dlpipe.tasks.text.train import train_text_model

        return train_text_model

    def sample_length(self, inputs) -> int:
        """The padded sequence length (``maxlen``)."""
        return inputs.maxlen

    @property
    def cost_model(self):
        from dlpipe.tasks.text.train import cost_model

        return cost_model

    @property
    def evaluate(self):
        from dlpipe.tasks.text.train import evaluate_saved_text_model

        return evaluate_saved_text_model

    def resolve_paths(self, cfg, base_dir: Path | None):
        """``data.path`` (a file, a folder, or a packaged ``module:file`` source) and
        ``text.glove`` resolved against the study file's folder; both must exist."""
        data = cfg.data
        packaged = (
            ":" in data.path
            and not Path(data.path).exists()
            and len(data.path.split(":", 1)[0]) > 1
        )
        if base_dir is not None and not packaged and not Path(data.path).expanduser().is_absolute():
            data = replace(data, path=str((base_dir / data.path).resolve()))
        try:
            resolve_text_path(data.path)
        except FileNotFoundError as exc:
            raise ConfigError(f"`data.path`: {exc}") from exc
        text = cfg.text
        if text.glove:
            glove = text.glove
            if base_dir is not None and not Path(glove).expanduser().is_absolute():
                glove = str((base_dir / glove).resolve())
            if not Path(glove).expanduser().is_file():
                raise ConfigError(
                    f"`text.glove`: GloVe file not found: {text.glove} (resolved to {glove})"
                )
            text = replace(text, glove=glove)
        return replace(cfg, data=data, text=text)

    def check_model(self, cfg, index: int, model: ModelSpec) -> None:
        """``glove_dense`` needs ``text.glove``, and its ``embedding_dim`` follows the file."""
        super().check_model(cfg, index, model)
        if model.family != "glove_dense":
            return
        if not cfg.text.glove:
            raise ConfigError(
                f"`models[{index}]`: family `glove_dense` needs `text.glove` (a "
                "GloVe text file such as glove.6B.100d.txt)"
            )
        if "embedding_dim" in model.hp:
            from dlpipe.tasks.text.glove import infer_dim

            try:
                dim = infer_dim(Path(cfg.text.glove))
            except ValueError as exc:
                raise ConfigError(f"`text.glove`: {exc}") from None
            if model.hp["embedding_dim"] != dim:
                raise ConfigError(
                    f"`models[{index}].hp.embedding_dim` is {model.hp['embedding_dim']!r} but "
                    f"the GloVe file {cfg.text.glove} holds {dim}-dimensional vectors; "
                    "leave it out (it follows the file)"
                )

    def input_length(self, cfg, model: ModelSpec) -> tuple[int, str]:
        return cfg.text.maxlen, "`text.maxlen`"

    def prepare(self, cfg, run_dir: Path) -> PreparedDataset:
        """Tokenization shards as Ray tasks; the arrays put in the object store once
        (passed to training tasks by reference, case C14).

        Raises:
            FileNotFoundError, ValueError: unreadable source, empty split, bad GloVe file.
        """
        import ray

        from dlpipe.tasks.text.prepare import prepare_text

        arrays, meta = prepare_text(
            cfg.data, cfg.split, cfg.text, run_dir / "artifacts", map_fn=ray_map
        )
        quality = (
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
        row = {
            "dataset_key": meta["key"],
            "source": meta["source"],
            "rows": meta["documents"],
            "columns": meta["class_names"],
            "target": "label",
            "splits": meta["split_counts"],
            "sentinel_counts": {},
            "quality": {k: meta[k] for k in quality if k in meta},
        }
        self.print_dataset(meta)
        return PreparedDataset(ray.put(arrays), meta, dataset_row=row)

    def fold_datasets(self, cfg, prepared: PreparedDataset) -> list[FoldDataset]:
        """Every fold's documents encoded with a vocabulary of its own training
        documents only (:func:`dlpipe.tasks.text.folds.fold_arrays`; counting and
        encoding shards as Ray tasks, as the hold-out prepare), put in the object store
        once each; the final model's vocabulary (every non-test document) is saved
        next to the dataset's (``<key>.<evaluation>.final.vocabulary.json``) and named
        in its meta (``vocabulary_path``)."""
        from dlpipe.tasks.text.folds import fold_arrays

        entries = fold_arrays(
            cfg.data, cfg.split, cfg.text, cfg.evaluation, cfg.seed, map_fn=ray_map
        )
        *_, (_, final_info, vocab) = entries
        for _, info, _ in entries[:-1]:
            info["vocabulary_path"] = None  # a fold's vocabulary is not kept
        final_info["vocabulary_path"] = save_final_vocabulary(cfg, prepared, vocab)
        sizes = [info["distinct_train_words"] for _, info, _ in entries[:-1]]
        print(
            f"K-fold: {len(sizes)} fold vocabularies from each fold's training documents "
            f"only ({min(sizes)}-{max(sizes)} distinct words); final model: "
            f"{final_info['distinct_train_words']} distinct words of the non-test documents"
        )
        return put_fold_datasets(prepared, [(arrays, info) for arrays, info, _ in entries])

    def baseline(self, cfg, prepared: PreparedDataset, data) -> RunResult:
        return majority_baseline(self.baseline_id(cfg, prepared), cfg, prepared, data)

    def print_dataset(self, meta: dict) -> None:
        print_dataset(meta)

    def predict_state(self, cfg, meta: dict) -> dict:
        """The ``data`` section, class names and the training vocabulary
        (:func:`dlpipe.tasks.text.predict.predict_state`)."""
        from dlpipe.tasks.text.predict import predict_state
        from dlpipe.tasks.text.prepare import load_vocabulary

        return predict_state(cfg.data, meta, load_vocabulary(meta))

    def predict_shards(self, path, folder: Path, size: int) -> list[dict] | None:
        """A table: Parquet files of ``size`` rows each, offset by their first row; a
        folder or a file of lines runs in-process."""
        from dlpipe.tasks.tabular.predict import write_table_shards
        from dlpipe.tasks.text.predict import TABLE_SUFFIXES

        if Path(path).suffix.lower() not in TABLE_SUFFIXES:
            return None
        return write_table_shards(path, folder, size)

    def predict_inputs(self, state, run, path, *, last=False, batch_size=32) -> PredictInputs:
        """Documents of a folder, a table or a file of lines, as the run's sequences or
        multi-hot rows (:mod:`dlpipe.tasks.text.predict`)."""
        from dlpipe.tasks.text.predict import read_documents, text_inputs

        texts, ids = read_documents(state, path)
        return PredictInputs(text_inputs(state, texts, run["family"], run["inputs"]), ids)


def save_final_vocabulary(cfg, prepared: PreparedDataset, vocab) -> str:
    """Write the K-fold final model's vocabulary under ``<run_dir>/artifacts`` (named by
    the dataset key and the evaluation settings) and return its absolute path."""
    import hashlib

    from dlpipe.tasks.reports import tables as reports

    payload = reports.dumps(cfg.evaluation.key_payload()).encode()
    name = f"{prepared.key}.{hashlib.sha256(payload).hexdigest()[:8]}.final.vocabulary.json"
    path = Path(cfg.run_dir) / "artifacts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    reports.atomic_write_bytes(path, vocab.to_json().encode())
    return str(path.resolve())


def ray_map(function, args_list):
    """``starmap`` over Ray tasks: one :func:`dlpipe.tasks.remote.text_shard_task` per
    argument tuple, results in order."""
    import ray

    from dlpipe.tasks.remote import text_shard_task

    return ray.get([text_shard_task.remote(function.__name__, *args) for args in args_list])


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
