"""Members of a K-fold study's ensembles (issue 14): out-of-fold (OOF) validation
predictions, or one fold's, with the final models' test predictions.

Under K-fold every non-test sample is validated by the fold model that did not train on
it (book ch. 3.6.4), so the fold runs' ``validation`` prediction rows cover each
non-test sample exactly once per repeat; their ``sample_index`` is the table row, so
the folds line up by sample id. A member is one model of the study (family,
hyperparameters, seed): its validation predictions are

- ``fit="oof"``: the out-of-fold predictions of all its folds. Under iterated K-fold a
  sample has one per repeat; they are averaged (probabilities, for classification), so
  each sample's prediction still comes only from models that never saw it, and the
  weights are fitted on every repeat's evidence rather than on one partition's (the
  same reason the study reports the mean over repeats);
- ``fit="holdout"``: fold 0 of repeat 0 only (what a hold-out study would have had:
  one validation split, about ``1/k`` of the non-test samples);

and its test predictions are those of its ``final`` model (every non-test row trained
it), named by the final model's run id. Both fits are scored on the same test samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlpipe.tasks.ensembling.members import (
    MemberPredictions,
    align_member_frames,
    check_load_arguments,
    read_run_reports,
)
from dlpipe.tasks.reports import tables as reports

#: where a K-fold ensemble's weights are fitted (the ``ensembles.fit`` column)
FITS = ("holdout", "oof")
MODEL_COLUMNS = ["family", "hyperparameters", "seed"]


def is_kfold_run_dir(run_dir) -> bool:
    """Whether ``run_dir``'s ``runs`` report holds K-fold fold runs (False when it has no
    ``runs`` report: the loaders then raise their own message)."""
    folder = Path(run_dir) / "reports" / "runs"
    if not folder.is_dir() or not any(folder.glob("part-*.parquet")):
        return False
    runs = reports.read_table(run_dir, "runs")
    return "evaluation" in runs and bool((runs["evaluation"] == "fold").any())


def kfold_run_dirs(run_dirs) -> bool:
    """Whether the run directories are K-fold studies (all of them) or not (none).

    Raises:
        ValueError: some are and some are not (naming them).
    """
    flags = {str(d): is_kfold_run_dir(d) for d in run_dirs}
    if len(set(flags.values())) > 1:
        kfold = [d for d, f in flags.items() if f]
        other = [d for d, f in flags.items() if not f]
        raise ValueError(
            "cannot ensemble K-fold and hold-out studies together (their validation "
            f"predictions differ in kind): K-fold: {', '.join(kfold)}; hold-out: "
            f"{', '.join(other)}"
        )
    return any(flags.values())


def model_runs(runs) -> list[tuple[object, object]]:
    """Per model of a K-fold ``runs`` table: ``(final row or None, its fold rows)``.

    A model is a (family, hyperparameters, seed). A run directory rerun with other
    training settings holds older runs of the same model too: the latest final row and,
    per (repeat, fold), the latest fold row (``finished_at``) are kept.
    """
    kfold = runs[runs["evaluation"].isin(["fold", "final"])]
    out = []
    for _, group in kfold.groupby(MODEL_COLUMNS, sort=False, dropna=False):
        group = group.sort_values("finished_at", kind="stable")
        finals = group[group["evaluation"] == "final"]
        folds = group[group["evaluation"] == "fold"]
        folds = folds.drop_duplicates(["repeat", "fold"], keep="last")
        out.append((finals.iloc[-1] if len(finals) else None, folds))
    return out


def average_over_repeats(rows):
    """One validation row per sample: the mean of its rows' predictions (one per repeat;
    multi-class: the mean probabilities and their argmax class).

    Args:
        rows: ``predictions`` rows of one split (``sample_index``, ``prediction``,
            ``target``, ``probabilities``).

    Returns:
        A DataFrame sorted by ``sample_index``.
    """
    import pandas as pd

    rows = rows.sort_values("sample_index", kind="stable")
    ids = rows["sample_index"].to_numpy(np.int64)
    unique, start = np.unique(ids, return_index=True)
    counts = np.diff(np.append(start, len(ids)))
    out = {
        "split": "validation",
        "sample_index": unique,
        "target": rows["target"].to_numpy(np.float64)[start],
        "probabilities": None,
    }
    multiclass = "probabilities" in rows and len(rows) and rows["probabilities"].notna().all()
    if multiclass:
        probabilities = np.stack(rows["probabilities"].to_numpy()).astype(np.float64)
        mean = np.add.reduceat(probabilities, start, axis=0) / counts[:, None]
        out.update(prediction=mean.argmax(axis=1).astype(np.float64), probabilities=list(mean))
    else:
        predictions = rows["prediction"].to_numpy(np.float64)
        out["prediction"] = np.add.reduceat(predictions, start) / counts
    return pd.DataFrame(out)


def validation_rows(predictions, folds, fit: str):
    """A member's validation rows under ``fit`` (module docstring) from its fold runs'
    ``validation`` prediction rows.

    Args:
        predictions: the run directory's ``predictions`` report.
        folds: the member's fold rows of ``runs`` (``run_id``, ``repeat``, ``fold``).
        fit: ``"oof"`` or ``"holdout"``.

    Returns:
        The rows (``split`` = ``validation``), None when ``fit="holdout"`` finds no
        fold 0 of repeat 0.

    Raises:
        ValueError: a sample validated twice within one repeat (the folds of a repeat
            must partition the samples).
    """
    place = {r.run_id: (int(r.repeat), int(r.fold)) for r in folds.itertuples()}
    if fit == "holdout":
        place = {k: v for k, v in place.items() if v == (0, 0)}
        if not place:
            return None
    rows = predictions[
        predictions["run_id"].isin(list(place)) & (predictions["split"] == "validation")
    ]
    repeats = rows["run_id"].map(lambda run_id: place[run_id][0])
    twice = rows.assign(repeat_of=repeats).duplicated(["repeat_of", "sample_index"])
    if twice.any():
        sample = int(rows.loc[twice, "sample_index"].iloc[0])
        raise ValueError(
            f"fold runs {', '.join(sorted(place))} validate sample_index {sample} twice "
            "within one repeat: their folds do not partition the samples"
        )
    return rows if fit == "holdout" else average_over_repeats(rows)


def member_frame(final, folds, by_run: dict, predictions, fit: str):
    """``(frame, None)``: one member's validation (``fit``) and test rows, or
    ``(None, reason)`` when the model cannot be a member."""
    import pandas as pd

    if final is None or final.status != "ok":
        return None, "no final model with status ok"
    bad = int((folds["status"] != "ok").sum())
    if bad:
        return None, f"{bad} of {len(folds)} fold run(s) failed"
    test = by_run.get(final.run_id)
    test = None if test is None else test[test["split"] == "test"]
    if test is None or test.empty:
        return None, "no test predictions of its final model"
    validation = validation_rows(predictions, folds, fit)
    if validation is None:
        return None, "no fold 0 of repeat 0 (the hold-out fit's validation rows)"
    return pd.concat([validation, test], ignore_index=True), None


def kfold_member_frames(run_dirs: list[Path], fit: str):
    """``(members, skipped)`` as the hold-out loader's: ``members`` =
    ``[(final run id, family, frame)]`` in run directory order, then run id."""
    members, skipped, seen = [], {}, {}
    for run_dir in run_dirs:
        runs, predictions = read_run_reports(run_dir)
        runs = runs[runs["family"] != "baseline"]
        by_run = dict(tuple(predictions.groupby("run_id", sort=False)))
        found = []
        for final, folds in model_runs(runs):
            run_id = final.run_id if final is not None else folds["run_id"].iloc[0]
            frame, reason = member_frame(final, folds, by_run, predictions, fit)
            if frame is None:
                skipped[run_id] = reason
            elif run_id in seen:
                skipped.setdefault(run_id, f"duplicate of the run in {seen[run_id]}")
            else:
                seen[run_id] = str(run_dir)
                found.append((run_id, final.family, frame))
        members += sorted(found, key=lambda member: member[0])
    return members, skipped


def load_kfold_members(
    run_dirs, *, fit: str, min_members: int = 2, align: str = "exact"
) -> MemberPredictions:
    """Reads and aligns the members of K-fold run directories (module docstring).

    Args:
        run_dirs: run directories of K-fold studies.
        fit: ``"oof"`` (out-of-fold validation predictions of every non-test sample,
            averaged over repeats) or ``"holdout"`` (fold 0 of repeat 0 only).
        min_members, align: as
            :func:`~dlpipe.tasks.ensembling.members.load_member_predictions`.

    Returns:
        `MemberPredictions` with ``fit`` set; test predictions of the final models.

    Raises:
        FileNotFoundError, ValueError: as ``load_member_predictions``; an unknown
            ``fit``; folds that validate a sample twice within one repeat.
    """
    if fit not in FITS:
        raise ValueError(f"`fit` must be one of {FITS}. Received: fit={fit!r}")
    run_dirs = check_load_arguments(run_dirs, min_members, align)
    frames, skipped = kfold_member_frames(run_dirs, fit)
    return align_member_frames(
        frames, skipped, run_dirs, min_members=min_members, align=align, fit=fit
    )


__all__ = [
    "FITS",
    "average_over_repeats",
    "is_kfold_run_dir",
    "kfold_run_dirs",
    "load_kfold_members",
]
