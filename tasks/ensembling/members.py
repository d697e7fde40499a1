"""The ensemble stage (issue 4): weighted ensembles over the stored predictions of a study.

Flow, all plain functions (no Ray; they run in the driver in seconds)::

    load_member_predictions(run_dirs)   reports/{runs,predictions} -> MemberPredictions
    build_ensembles(members)            cross-fit on validation, refit, test once -> rows
    write_ensemble_report(run_dir, ...) reports/ensembles/part-<id>.parquet
                                        + plots/ensemble_weights.png

Guarding against validation overfitting (the book, ch. 7.3.3: weights are learned on
validation data): the method is chosen by cross-fitting on validation folds
(`dlpipe.ensembles.cross_fit_select`: fit on K-1 folds, score the held-out fold), every
method is then refitted on all validation samples, and the test split is scored once
per method, at the end, with those refitted weights. Test scores are reported, never
used to choose.

Members are aligned by ``sample_index`` (the row of the target in the dataset array),
never by row position: a member whose validation or test sample ids differ from the
others is an error naming the members (``align="exact"``, the default). Models with
other window geometries (the demo's convnet+GRU runs at ``step`` 1, so its first window
ends one row later) predict other sample ids; ``align="common"`` ensembles them on the
sample ids that every member predicts, with equal targets checked sample by sample.

Sources:
    F. Chollet, *Deep Learning with Python*, ch. 7.3.3 (model ensembling).
    R. Caruana, A. Niculescu-Mizil, G. Crew, A. Ksikes, "Ensemble selection from
        libraries of models", ICML 2004.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dlpipe.ensembles import (
    accuracy,
    cross_fit_select,
    default_candidates,
    get_loss,
    member_diversity,
)
from dlpipe.metrics import get_metric
from dlpipe.tasks.reports import tables as reports

SPLITS = ("validation", "test")
ALIGN_MODES = ("exact", "common")
BEST_SINGLE = "best_single"
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


# ----------------------------------------------------------------------------------
# Loading and alignment
# ----------------------------------------------------------------------------------


def _name_runs(run_ids, limit: int = _MAX_NAMED) -> str:
    run_ids = list(run_ids)
    named = ", ".join(run_ids[:limit])
    return named + (f", ... and {len(run_ids) - limit} more" if len(run_ids) > limit else "")


def _describe_ids(ids: np.ndarray) -> str:
    if ids.size == 0:
        return "0 samples"
    return f"{ids.size} samples, sample_index {int(ids[0])}..{int(ids[-1])}"


def _read_member_frames(run_dirs: list[Path]):
    """Reads runs + predictions of every directory; returns the member rows in order.

    Returns:
        ``(members, skipped)``: members is a list of ``(run_id, family, frame)`` with
        ``frame`` the member's prediction rows; skipped maps run id -> reason.
    """
    members, skipped, seen = [], {}, {}
    for run_dir in run_dirs:
        runs_folder = run_dir / "reports" / "runs"
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run directory not found: {run_dir}")
        if not runs_folder.is_dir() or not any(runs_folder.glob("part-*.parquet")):
            raise FileNotFoundError(
                f"no `runs` report in {run_dir} (expected part files in {runs_folder}); "
                "pass the run directory of a finished study (e.g. runs/weather-demo)"
            )
        runs = reports.read_table(run_dir, "runs")
        predictions = reports.read_table(run_dir, "predictions")
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

    frames, skipped = _read_member_frames(run_dirs)
    if len(frames) < min_members:
        detail = f"; not used: {skipped}" if skipped else ""
        raise ValueError(
            f"an ensemble needs at least {min_members} members (runs with status ok and "
            f"stored predictions). Received: {len(frames)} in "
            f"{', '.join(map(str, run_dirs))}{detail}"
        )
    run_ids = [run_id for run_id, _, _ in frames]
    families = [family for _, family, _ in frames]

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
    split_ids = {split: [ids for ids, _, _ in per_split[split]] for split in SPLITS}
    aligned_everywhere = all(
        np.array_equal(ids, split_ids[split][0]) for split in SPLITS for ids in split_ids[split]
    )
    if not aligned_everywhere and align == "exact":
        raise ValueError(_mismatch_message(split_ids, run_ids))

    out, dropped = {}, {}
    for split in SPLITS:
        members = per_split[split]
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
        dropped[split] = int(union.size - common.size)
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
        out[split] = (common, predictions, targets[0])

    return MemberPredictions(
        run_ids=tuple(run_ids),
        families=tuple(families),
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
    )


# ----------------------------------------------------------------------------------
# Building: cross-fitted choice, refit on validation, test scored once
# ----------------------------------------------------------------------------------


class BestSingleMember:
    """The member with the best loss on the fit data, as a one-hot "ensemble".

    The reference every ensemble must beat, in the estimator shape of
    `dlpipe.ensembles` so that `cross_fit_select` can cross-fit it like the others
    (on each fold it picks the best member of the training folds). Ties go to the
    lowest member index.

    Args:
        loss: loss name (see `dlpipe.ensembles.LOSSES`); accuracy is maximized.

    Attributes:
        weights_: (n_models,) one-hot.
        best_index_: index of the chosen member.
        member_scores_: (n_models,) loss of each member on the fit data.
        score_: loss of the chosen member on the fit data.
    """

    def __init__(self, loss: str = "mae"):
        self.loss = loss

    def fit(self, predictions, y_true) -> "BestSingleMember":
        """Scores every member and keeps the best.

        Args:
            predictions: (n_models, n_samples).
            y_true: (n_samples,).

        Returns:
            self.

        Raises:
            ValueError: on an unknown loss or mismatched shapes.
        """
        loss_function, _ = get_loss(self.loss)
        predictions = np.asarray(predictions, dtype=np.float64)
        scores = np.array([loss_function(y_true, member) for member in predictions])
        self.member_scores_ = scores
        best = get_metric(self.loss).best_index(scores)  # first best on ties
        if best is None:
            raise ValueError(f"no member has a finite {self.loss} on the validation split")
        self.best_index_ = best
        self.weights_ = np.zeros(predictions.shape[0])
        self.weights_[self.best_index_] = 1.0
        self.score_ = float(scores[self.best_index_])
        return self

    def predict(self, predictions) -> np.ndarray:
        """The chosen member's predictions: (n_models, n_samples) -> (n_samples,).

        Raises:
            ValueError: if called before ``fit`` or with another number of members.
        """
        if not hasattr(self, "weights_"):
            raise ValueError(
                "This BestSingleMember instance is not fitted yet. "
                "Call `fit(predictions, y_true)` first."
            )
        predictions = np.asarray(predictions, dtype=np.float64)
        if predictions.shape[0] != self.weights_.size:
            raise ValueError(
                f"`predictions` must hold {self.weights_.size} members as in "
                f"`fit`. Received: shape={predictions.shape}"
            )
        return predictions[self.best_index_]


def ensemble_candidates(loss: str = "mae", random_state: int = 0) -> dict:
    """The methods compared by the stage, simplest first (ties go to the first).

    Returns:
        Ordered dict name -> estimator factory: ``best_single``, ``simple_average``,
        ``weighted_nelder_mead``, ``weighted_slsqp``, ``greedy_selection``.
    """
    return {
        BEST_SINGLE: lambda: BestSingleMember(loss=loss),
        **default_candidates(loss=loss, random_state=random_state),
    }


def ensemble_key(members: MemberPredictions, *, loss: str, n_folds: int, random_state: int) -> str:
    """Key of one ensemble build: members, their aligned data and the settings.

    Returns:
        ``"ens-<12 hex>"``; the same members with the same predictions and settings give
        the same key (a rerun rewrites the same part with the same numbers).
    """
    digest = hashlib.sha256()
    digest.update(
        reports.dumps(
            {
                "members": list(members.run_ids),
                "loss": loss,
                "n_folds": n_folds,
                "random_state": random_state,
                "align": members.align,
            }
        ).encode()
    )
    for split in SPLITS:
        for array in (
            members.sample_index(split),
            members.predictions(split),
            members.targets(split),
        ):
            digest.update(np.ascontiguousarray(array).tobytes())
    return f"ens-{digest.hexdigest()[:12]}"


def _mean_pairwise_correlation(predictions: np.ndarray) -> float:
    """Mean off-diagonal Pearson correlation of (n_members, n_samples); NaN if < 2."""
    n = predictions.shape[0]
    if n < 2:
        return float("nan")
    correlation = member_diversity(predictions)
    off_diagonal = correlation[~np.eye(n, dtype=bool)]
    finite = off_diagonal[np.isfinite(off_diagonal)]
    return float(finite.mean()) if finite.size else float("nan")


def build_ensembles(
    members: MemberPredictions,
    *,
    loss: str = "mae",
    n_folds: int = 5,
    random_state: int = 0,
) -> list[dict]:
    """Chooses, refits and scores the ensembling methods; rows of the ``ensembles`` table.

    1. Cross-fitting on validation (`dlpipe.ensembles.cross_fit_select`): each method
       of `ensemble_candidates` is fitted on K-1 folds of the validation samples and
       scored on the held-out fold; the best mean wins (``chosen``; ties go to the
       simpler method, in the order best single, simple average, Nelder-Mead, SLSQP,
       greedy).
    2. Every method is refitted on all validation samples (``val_score`` is that
       in-sample score, optimistic for the fitted weights).
    3. Test is scored once per method with the refitted weights (``test_score``); it
       decides nothing.

    Args:
        members: aligned predictions (see `load_member_predictions`).
        loss: loss name (``mae``, ``mse``; ``log_loss``/``accuracy`` for
            probabilities of class 1), in the predictions' units.
        n_folds: cross-fitting folds K, 2 <= K <= n_val.
        random_state: seed of the folds and of the estimators.

    Returns:
        One row per method, in candidate order, in the ``ensembles`` schema of
        `dlpipe.tasks.reports.tables`: ``members`` (JSON list of all member run ids) and
        ``weights`` (JSON list aligned with it, >= 0, summing to 1); ``cv_score``,
        ``val_score``, ``test_score``, ``val_test_gap`` (test - val); the best single
        member (best validation loss over all validation samples) in
        ``best_single_val``/``best_single_test``; the mean pairwise correlation of the
        members' validation predictions; ``val_accuracy``/``test_accuracy`` of the
        combined probabilities for the classification losses (None otherwise);
        ``sources``. All rows share one
        ``ensemble_id`` (see `ensemble_key`).

    Raises:
        ValueError: unknown ``loss``, ``n_folds`` outside [2, n_val], or predictions
            the loss cannot score (see `dlpipe.ensembles.cross_fit_select`).
    """
    loss_function, greater_is_better = get_loss(loss)
    val_x, val_y = members.val_predictions, members.val_targets
    test_x, test_y = members.test_predictions, members.test_targets
    candidates = ensemble_candidates(loss, random_state)
    result = cross_fit_select(
        val_x, val_y, candidates, n_folds=n_folds, random_state=random_state, loss=loss
    )

    fitted = {
        name: (result.estimator if name == result.chosen else factory().fit(val_x, val_y))
        for name, factory in candidates.items()
    }
    best = fitted[BEST_SINGLE].best_index_
    best_val = loss_function(val_y, val_x[best])
    best_test = loss_function(test_y, test_x[best])  # test: once per method, below too
    correlation = _mean_pairwise_correlation(val_x)
    ensemble_id = ensemble_key(members, loss=loss, n_folds=n_folds, random_state=random_state)
    created = datetime.now(timezone.utc)
    classification = loss in ("log_loss", "accuracy")
    rows = []
    for name, estimator in fitted.items():
        weights = np.asarray(estimator.weights_, dtype=np.float64)
        val_pred, test_pred = estimator.predict(val_x), estimator.predict(test_x)
        val_score = loss_function(val_y, val_pred)
        test_score = best_test if name == BEST_SINGLE else loss_function(test_y, test_pred)
        rows.append(
            {
                "ensemble_id": ensemble_id,
                "method": name,
                "chosen": name == result.chosen,
                "loss": loss,
                "members": json.dumps(list(members.run_ids)),
                "weights": json.dumps([float(w) for w in weights]),
                "cv_score": result.scores[name],
                "val_score": val_score,
                "test_score": test_score,
                "val_test_gap": test_score - val_score,
                "best_single_val": best_val,
                "best_single_test": best_test,
                "mean_pairwise_correlation": correlation,
                # the accuracy of the combined probabilities, beside the fitted loss
                "val_accuracy": accuracy(val_y, val_pred) if classification else None,
                "test_accuracy": accuracy(test_y, test_pred) if classification else None,
                "sources": json.dumps(list(members.sources)),
                "created_at": created,
            }
        )
    return rows


# ----------------------------------------------------------------------------------
# Report: Parquet part + weights plot
# ----------------------------------------------------------------------------------


def plot_ensemble_weights(rows: list[dict], members: MemberPredictions, path: str | Path) -> Path:
    """Heat map of member weights per method (rows: methods, columns: members).

    Args:
        rows: rows of `build_ensembles` (``method``, ``chosen``, ``weights``,
            ``val_score``, ``test_score``).
        members: the members the weights are aligned with (labels: family + run id).
        path: PNG file to write (matplotlib Agg, no screen needed).

    Returns:
        ``path``.
    """
    from dlpipe.tasks.reports.plots import pyplot, save_figure

    plt = pyplot()
    weights = np.array([json.loads(row["weights"]) for row in rows])  # (methods, members)
    methods = [
        f"{'* ' if row['chosen'] else ''}{row['method']}\n"
        f"val {row['val_score']:.3f} / test {row['test_score']:.3f}"
        for row in rows
    ]
    labels = [
        f"{family} [{run_id[-6:]}]" for family, run_id in zip(members.families, members.run_ids)
    ]
    n_methods, n_members = weights.shape
    fig, ax = plt.subplots(
        figsize=(min(40.0, max(7.0, 3.0 + 0.75 * n_members)), 1.6 + 0.6 * n_methods)
    )
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(n_members), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_methods), methods, fontsize=8)
    if n_members <= 30:
        for i in range(n_methods):
            for j in range(n_members):
                if weights[i, j] >= 0.005:  # softmax weights are never exactly 0
                    ax.text(
                        j,
                        i,
                        f"{weights[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if weights[i, j] > 0.6 else "white",
                    )
    loss = rows[0]["loss"] if rows else ""
    ax.set_title(
        f"ensemble weights, loss {loss}\n(* = chosen by cross-fitting on "
        "validation; test scored once)",
        fontsize=10,
    )
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="weight")
    fig.tight_layout()
    return save_figure(fig, path)


def write_ensemble_report(run_dir, rows: list[dict], members: MemberPredictions) -> list[Path]:
    """Writes the ensemble rows (one Parquet part, atomic) and the weights plot.

    Args:
        run_dir: the run directory to write into.
        rows: rows of `build_ensembles` (one ``ensemble_id``).
        members: the members the rows' weights are aligned with.

    Returns:
        ``[<run_dir>/reports/ensembles/part-<ensemble_id>.parquet,
        <run_dir>/plots/ensemble_weights.png]``.

    Raises:
        ValueError: ``rows`` is empty, mixes several ensemble ids, or has weights that
            do not match the members.
    """
    if not rows:
        raise ValueError("`rows` must hold at least 1 ensemble row. Received: []")
    ids = {row["ensemble_id"] for row in rows}
    if len(ids) != 1:
        raise ValueError(f"`rows` must share one `ensemble_id`. Received: {sorted(ids)}")
    for row in rows:
        weights = json.loads(row["weights"])
        if len(weights) != members.n_members or not math.isclose(sum(weights), 1.0, abs_tol=1e-9):
            raise ValueError(
                f"`rows` method {row['method']!r} must have {members.n_members} weights "
                f"summing to 1 (one per member). Received: {weights}"
            )
    run_dir = Path(run_dir)
    part = reports.write_part(run_dir, "ensembles", ids.pop(), rows)
    plot = plot_ensemble_weights(rows, members, run_dir / "plots" / "ensemble_weights.png")
    return [part, plot]


__all__ = [
    "ALIGN_MODES",
    "BestSingleMember",
    "MemberPredictions",
    "build_ensembles",
    "ensemble_candidates",
    "ensemble_key",
    "load_member_predictions",
    "plot_ensemble_weights",
    "write_ensemble_report",
]
