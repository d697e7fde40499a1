"""Members of an ensemble: read the stored validation/test predictions of run
directories and align them by sample id (`load_member_predictions` -> `MemberPredictions`).

Members are aligned by ``sample_index`` (the row of the target in the dataset array),
never by row position: a member whose validation or test sample ids differ from the
others is an error naming the members (``align="exact"``, the default). Models with
other window geometries (the demo's convnet+GRU runs at ``step`` 1, so its first window
ends one row later) predict other sample ids; ``align="common"`` ensembles them on the
sample ids that every member predicts, with equal targets checked sample by sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlpipe.tasks.reports import tables as reports

SPLITS = ("validation", "test")
ALIGN_MODES = ("exact", "common")
_TARGET_RTOL = 1e-6  # targets of one sample id may differ by float rounding only
_MAX_NAMED = 8  # run ids listed per group in an error message


@dataclass(frozen=True, eq=False)  # arrays: compare fields explicitly
class MemberPredictions:
    """Aligned validation/test predictions of the members of an ensemble.

    Attributes:
        run_ids: (n_members,) run ids, in load order (run directory order, then run id).
        families: (n_members,) model family of each member.
        val_predictions: float64 (n_members, n_val), in the target's units.
        val_targets: float64 (n_val,).
        test_predictions: float64 (n_members, n_test).
        test_targets: float64 (n_test,).
        val_sample_index: int64 (n_val,), ascending: the alignment key of the columns.
        test_sample_index: int64 (n_test,), ascending.
        sources: the run directories read, as given.
        align: ``"exact"`` or ``"common"`` (see `load_member_predictions`).
        dropped_samples: split -> number of sample ids predicted by some member but not
            by all (0 with ``align="exact"``).
        skipped: run id -> why a run of the directories is not a member (failed, no
            predictions, duplicate run id). Baseline rows are not listed.
        fit: K-fold studies only (:mod:`dlpipe.tasks.ensembling.oof`), what the
            validation predictions are: ``"oof"`` (out-of-fold, every non-test sample)
            or ``"holdout"`` (one fold's); None: a hold-out study's validation split.
    """

    run_ids: tuple[str, ...]
    families: tuple[str, ...]
    val_predictions: np.ndarray
    val_targets: np.ndarray
    test_predictions: np.ndarray
    test_targets: np.ndarray
    val_sample_index: np.ndarray
    test_sample_index: np.ndarray
    sources: tuple[str, ...] = ()
    align: str = "exact"
    dropped_samples: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    fit: str | None = None

    @property
    def n_members(self) -> int:
        """Number of members."""
        return len(self.run_ids)

    def predictions(self, split: str) -> np.ndarray:
        """(n_members, n_samples) predictions of ``split`` ("validation" or "test")."""
        return self.val_predictions if split == "validation" else self.test_predictions

    def targets(self, split: str) -> np.ndarray:
        """(n_samples,) targets of ``split``."""
        return self.val_targets if split == "validation" else self.test_targets

    def sample_index(self, split: str) -> np.ndarray:
        """(n_samples,) sample ids of ``split``."""
        return self.val_sample_index if split == "validation" else self.test_sample_index


def _name_runs(run_ids, limit: int = _MAX_NAMED) -> str:
    run_ids = list(run_ids)
    named = ", ".join(run_ids[:limit])
    return named + (f", ... and {len(run_ids) - limit} more" if len(run_ids) > limit else "")


def _describe_ids(ids: np.ndarray) -> str:
    if ids.size == 0:
        return "0 samples"
    return f"{ids.size} samples, sample_index {int(ids[0])}..{int(ids[-1])}"


def read_run_reports(run_dir: Path):
    """``(runs, predictions)`` reports of a run directory (pandas DataFrames).

    Raises:
        FileNotFoundError: the directory or its ``runs`` report does not exist.
    """
    runs_folder = run_dir / "reports" / "runs"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    if not runs_folder.is_dir() or not any(runs_folder.glob("part-*.parquet")):
        raise FileNotFoundError(
            f"no `runs` report in {run_dir} (expected part files in {runs_folder}); "
            "pass the run directory of a finished study (e.g. runs/weather-demo)"
        )
    return reports.read_table(run_dir, "runs"), reports.read_table(run_dir, "predictions")


def _read_member_frames(run_dirs: list[Path]):
    """Reads runs + predictions of every directory; returns the member rows in order.

    Returns:
        ``(members, skipped)``: members is a list of ``(run_id, family, frame)`` with
        ``frame`` the member's prediction rows; skipped maps run id -> reason.
    """
    members, skipped, seen = [], {}, {}
    for run_dir in run_dirs:
        runs, predictions = read_run_reports(run_dir)
        by_run = dict(tuple(predictions.groupby("run_id", sort=False)))
        runs = runs[runs["family"] != "baseline"].sort_values("run_id", kind="stable")
        for run in runs.itertuples(index=False):
            if run.status != "ok":
                skipped[run.run_id] = f"status {run.status}"
                continue
            if run.run_id not in by_run:
                skipped[run.run_id] = "no predictions"
                continue
            if not (by_run[run.run_id]["split"] == "test").any():
                # a sweep scores only its best `test_top_k` trials on test
                skipped[run.run_id] = "no test predictions (not among a sweep's best K)"
                continue
            if run.run_id in seen:  # same key = same model: keep the first directory's
                skipped.setdefault(run.run_id, f"duplicate of the run in {seen[run.run_id]}")
                continue
            seen[run.run_id] = str(run_dir)
            members.append((run.run_id, run.family, by_run[run.run_id]))
    return members, skipped


def _member_split(run_id: str, frame, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One member's (sample ids, predictions, targets) of ``split``, sorted by id."""
    rows = frame[frame["split"] == split]
    ids = rows["sample_index"].to_numpy(dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    if ids.size and np.any(ids[1:] == ids[:-1]):
        duplicate = int(ids[1:][ids[1:] == ids[:-1]][0])
        raise ValueError(
            f"member {run_id} has duplicate `sample_index` values in its {split} "
            f"predictions (e.g. {duplicate}): each sample must be predicted once."
        )
    if "probabilities" in rows and len(rows) and rows["probabilities"].notna().all():
        # multi-class members: (n, n_classes) probabilities, not the argmax class
        prediction = np.stack(rows["probabilities"].to_numpy()).astype(np.float64)[order]
    else:
        prediction = rows["prediction"].to_numpy(dtype=np.float64)[order]
    target = rows["target"].to_numpy(dtype=np.float64)[order]
    finite = np.isfinite(prediction).reshape(len(prediction), -1).all(axis=1)
    bad = ~(finite & np.isfinite(target))
    if bad.any():
        raise ValueError(
            f"member {run_id} has {int(bad.sum())} non-finite {split} prediction(s) or "
            f"target(s) (NaN or inf), e.g. at sample_index {int(ids[bad][0])}."
        )
    return ids, prediction, target


def _mismatch_message(split_ids: dict, run_ids: list[str]) -> str:
    """Describes the groups of members that share the same validation and test ids."""
    groups: dict[tuple, list[int]] = {}
    for j in range(len(run_ids)):
        key = tuple(split_ids[split][j].tobytes() for split in SPLITS)
        groups.setdefault(key, []).append(j)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0]))
    lines = [
        f"members have different sample ids: they form {len(ordered)} groups that do "
        "not predict the same validation/test samples (e.g. other window lookback, "
        "step or delay, other splits, or smoke-test caps):"
    ]
    reference = ordered[0][0]
    for number, group in enumerate(ordered, start=1):
        first = group[0]
        described = "; ".join(
            f"{split} {_describe_ids(split_ids[split][first])}" for split in SPLITS
        )
        line = (
            f"  group {number} ({len(group)} member(s): "
            f"{_name_runs(run_ids[j] for j in group)}): {described}"
        )
        if number > 1:
            differences = []
            for split in SPLITS:
                ours, theirs = split_ids[split][first], split_ids[split][reference]
                missing = np.setdiff1d(theirs, ours)
                extra = np.setdiff1d(ours, theirs)
                if missing.size:
                    differences.append(
                        f"lacks {missing.size} {split} id(s) of group 1 (e.g. {int(missing[0])})"
                    )
                if extra.size:
                    differences.append(
                        f"has {extra.size} {split} id(s) not in group 1 (e.g. {int(extra[0])})"
                    )
            line += "; vs group 1: " + ", ".join(differences)
        lines.append(line)
    lines.append(
        "Ensemble members of one group (e.g. one run directory per window geometry), "
        "or pass align='common' (CLI: --align common) to use only the sample ids that "
        "every member predicts."
    )
    return "\n".join(lines)


def load_member_predictions(
    run_dirs, *, min_members: int = 2, align: str = "exact"
) -> MemberPredictions:
    """Reads and aligns the members' validation/test predictions of run directories.

    A member is a run of the ``runs`` report with status ``ok``, a family other than
    ``baseline``, and rows in the ``predictions`` report. A run id found in several
    directories is used once (the first directory's). Each member's rows are sorted by
    ``sample_index``, so the row order of the part files does not matter.

    Args:
        run_dirs: one or several run directories (``<output_dir>/<study>``), each with
            ``reports/runs`` and ``reports/predictions``.
        min_members: the fewest members accepted (>= 1).
        align: ``"exact"``: every member must predict exactly the same sample ids in
            each split, else ValueError; ``"common"``: keep the sample ids that every
            member predicts (their count is in ``dropped_samples``).

    Returns:
        `MemberPredictions`: predictions (n_members, n_samples) and targets (n_samples,)
        per split, in the target's units, columns ordered by ascending sample id.

    Raises:
        FileNotFoundError: a run directory, or its ``runs`` report, does not exist.
        ValueError: bad ``run_dirs``, ``min_members`` or ``align``; fewer than
            ``min_members`` members; a member with duplicate sample ids or non-finite
            values; members whose sample ids differ (``align="exact"``: the message
            lists the groups of run ids that share the same ids and what differs) or
            that share no sample id (``align="common"``); members whose targets differ
            at the same sample id (other dataset or target column). Every message
            names the members involved.
    """
    run_dirs = check_load_arguments(run_dirs, min_members, align)
    frames, skipped = _read_member_frames(run_dirs)
    return align_member_frames(frames, skipped, run_dirs, min_members=min_members, align=align)


def align_member_frames(
    frames, skipped: dict, run_dirs, *, min_members: int, align: str, fit: str | None = None
) -> MemberPredictions:
    """Aligns the members' prediction rows by sample id (the second half of
    `load_member_predictions`; K-fold studies pass their out-of-fold rows).

    Args:
        frames: ``[(run_id, family, frame)]``: each member's ``predictions`` rows
            (``split``, ``sample_index``, ``prediction``, ``target``, ``probabilities``).
        skipped: run id -> why it is not a member.
        run_dirs: the run directories read (``sources``).
        min_members, align: as `load_member_predictions`.
        fit: ``MemberPredictions.fit``.

    Returns:
        `MemberPredictions`.

    Raises:
        ValueError: as `load_member_predictions`.
    """
    if len(frames) < min_members:
        detail = f"; not used: {skipped}" if skipped else ""
        raise ValueError(
            f"an ensemble needs at least {min_members} members (runs with status ok and "
            f"stored predictions). Received: {len(frames)} in "
            f"{', '.join(map(str, run_dirs))}{detail}"
        )
    run_ids = [run_id for run_id, _, _ in frames]
    per_split = _member_splits(frames)
    split_ids = {split: [ids for ids, _, _ in per_split[split]] for split in SPLITS}
    aligned_everywhere = all(
        np.array_equal(ids, split_ids[split][0]) for split in SPLITS for ids in split_ids[split]
    )
    if not aligned_everywhere and align == "exact":
        raise ValueError(_mismatch_message(split_ids, run_ids))

    out, dropped = {}, {}
    for split in SPLITS:
        out[split], dropped[split] = _align_split(split, per_split[split], split_ids, run_ids)

    return MemberPredictions(
        run_ids=tuple(run_ids),
        families=tuple(family for _, family, _ in frames),
        val_predictions=out["validation"][1],
        val_targets=out["validation"][2],
        test_predictions=out["test"][1],
        test_targets=out["test"][2],
        val_sample_index=out["validation"][0],
        test_sample_index=out["test"][0],
        sources=tuple(str(d) for d in run_dirs),
        align=align,
        dropped_samples=dropped,
        skipped=skipped,
        fit=fit,
    )


def check_load_arguments(run_dirs, min_members, align: str) -> list[Path]:
    """Checks the arguments of `load_member_predictions`; returns the run directories.

    Raises:
        ValueError: no run directory, ``min_members`` not an integer >= 1, or an
            unknown ``align``.
    """
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise ValueError("`run_dirs` must name at least 1 run directory. Received: []")
    if (
        isinstance(min_members, bool)
        or not isinstance(min_members, (int, np.integer))
        or min_members < 1
    ):
        raise ValueError(
            f"`min_members` must be an integer >= 1. Received: min_members={min_members!r}"
        )
    if align not in ALIGN_MODES:
        raise ValueError(f"`align` must be one of {ALIGN_MODES}. Received: align={align!r}")
    return run_dirs


def _member_splits(frames) -> dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Split -> each member's (sample ids, predictions, targets), sorted by sample id.

    Raises:
        ValueError: a member without predictions of a split (or see `_member_split`).
    """
    run_ids = [run_id for run_id, _, _ in frames]
    per_split = {
        split: [_member_split(run_id, frame, split) for run_id, _, frame in frames]
        for split in SPLITS
    }
    for split in SPLITS:
        empty = [run_ids[j] for j, (ids, _, _) in enumerate(per_split[split]) if not ids.size]
        if empty:
            raise ValueError(
                f"member(s) {_name_runs(empty)} have no {split} predictions; "
                "every member needs validation and test predictions."
            )
    return per_split


def _align_split(split: str, members: list, split_ids: dict, run_ids: list[str]):
    """Keeps the sample ids of ``split`` that every member predicts.

    Args:
        split: ``"validation"`` or ``"test"``.
        members: each member's (sample ids, predictions, targets) of ``split``.
        split_ids: split -> each member's sample ids (for the mismatch message).
        run_ids: the members' run ids, in ``members`` order.

    Returns:
        ``((common ids (n,), predictions (n_members, n, ...), targets (n,)), dropped)``
        with ``dropped`` the number of ids predicted by some member but not by all.

    Raises:
        ValueError: no common sample id, other prediction shapes per sample, or other
            targets at the same sample id.
    """
    common = members[0][0]
    union = members[0][0]
    for ids, _, _ in members[1:]:
        common = np.intersect1d(common, ids, assume_unique=True)
        union = np.union1d(union, ids)
    if common.size == 0:
        raise ValueError(
            f"members share no {split} sample id; nothing to ensemble.\n"
            + _mismatch_message(split_ids, run_ids)
        )
    shapes = {member[1].shape[1:] for member in members}
    if len(shapes) > 1:
        raise ValueError(
            f"members predict different {split} shapes per sample "
            f"{sorted(shapes)} (binary vs multi-class, or other classes)"
        )
    predictions = np.empty((len(members), common.size) + shapes.pop())
    targets = np.empty((len(members), common.size))
    for j, (ids, prediction, target) in enumerate(members):
        keep = np.searchsorted(ids, common)  # common is a subset of ids, both sorted
        predictions[j], targets[j] = prediction[keep], target[keep]
    _check_targets(split, targets, common, run_ids)
    return (common, predictions, targets[0]), int(union.size - common.size)


def _check_targets(split: str, targets: np.ndarray, common: np.ndarray, run_ids) -> None:
    """Raises ValueError if a member's (n_members, n) aligned targets differ from the
    first member's beyond float rounding."""
    scale = max(1.0, float(np.max(np.abs(targets[0]))))
    disagree = np.max(np.abs(targets - targets[0]), axis=1) > _TARGET_RTOL * scale
    if disagree.any():
        j = int(np.flatnonzero(disagree)[0])
        where = int(np.argmax(np.abs(targets[j] - targets[0])))
        raise ValueError(
            f"members have different {split} targets at the same sample ids, so they "
            "did not predict the same dataset/target: "
            f"{_name_runs(run_ids[k] for k in np.flatnonzero(disagree))} differ from "
            f"{run_ids[0]} (e.g. sample_index {int(common[where])}: "
            f"{targets[j, where]!r} vs {targets[0, where]!r})."
        )


__all__ = [
    "ALIGN_MODES",
    "SPLITS",
    "MemberPredictions",
    "align_member_frames",
    "check_load_arguments",
    "load_member_predictions",
    "read_run_reports",
]
