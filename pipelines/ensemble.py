"""Ensemble stage (issue 4): weighted ensembles from the stored predictions of studies.

Reads the ``runs`` and ``predictions`` reports of one or several finished run
directories, chooses the ensembling method by cross-fitting on validation data, refits
it on all validation samples, scores every method once on test, writes the
``ensembles`` Parquet report and ``plots/ensemble_weights.png``, and prints the methods
side by side (see `dlpipe.tasks.ensembling.build`). K-fold studies are ensembled twice,
weights fitted on the out-of-fold predictions of every non-test sample and on fold 0
alone, both scored with the final models' test predictions
(`dlpipe.tasks.ensembling.oof`).

``dlpipe ensemble RUN_DIR [RUN_DIR ...]`` runs it; ``dlpipe run`` ends with it when the
study file has ``ensemble: {enabled: true}``. Runs as a script too::

    python pipelines/ensemble.py runs/weather-demo [--loss mae] [--align common]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the stage itself is imported on use: `dlpipe --help` stays fast
    from dlpipe.tasks.ensembling.members import MemberPredictions

ALIGN_CHOICES = ("exact", "common")  # = dlpipe.tasks.ensembling.members.ALIGN_MODES (tested)
LOSS_CHOICES = ("mae", "mse", "log_loss", "accuracy")  # = dlpipe.ensembles.LOSSES (tested)

#: a K-fold build's fit (``MemberPredictions.fit``), as its table's title names it
FIT_TITLES = {
    "holdout": "holdout (fold 0 of repeat 0's validation predictions)",
    "oof": "oof (out-of-fold predictions of every non-test sample)",
}

MIN_SHOWN_WEIGHT = 0.001
"""Members below this weight are not counted as used (softmax weights are never 0)."""


def default_loss(run_dir) -> str:
    """``mae`` for a weather (MAE) study, ``log_loss`` for a classification study."""
    from dlpipe.tasks.reports import tables as reports

    try:
        metric = reports.read_table(run_dir, "runs")["metric"].dropna()
    except (OSError, ValueError):
        return "mae"
    return "log_loss" if len(metric) and metric.iloc[-1] == "accuracy" else "mae"


def run_ensemble(
    run_dirs,
    *,
    out_dir=None,
    loss: str = "mae",
    n_folds: int = 5,
    align: str = "exact",
    random_state: int = 0,
    progress: bool = True,
) -> Path:
    """Builds, writes and prints the ensembles of the members of ``run_dirs``.

    K-fold studies get two builds, both scored on the test split with the final models'
    predictions: weights fitted on fold 0 of repeat 0 only (``fit`` = ``holdout``, what
    a hold-out study would have) and on the out-of-fold predictions of every non-test
    sample (``fit`` = ``oof``); the console shows both, then their test scores side by
    side.

    Args:
        run_dirs: one or several run directories of finished studies or sweeps.
        out_dir: run directory the report and plot go to (default: the first of
            ``run_dirs``).
        loss: loss the methods are fitted and compared with (``mae``, ``mse``, ...), in
            the target's units.
        n_folds: cross-fitting folds on the validation samples.
        align: ``"exact"`` (members must predict the same sample ids) or ``"common"``
            (use the sample ids all members predict).
        random_state: seed of the folds and estimators.
        progress: print the side-by-side table and the written paths.

    Returns:
        The directory written to.

    Raises:
        FileNotFoundError: a run directory or its ``runs`` report is missing.
        ValueError: too few members, misaligned members (the message names them), or
            bad settings.
    """
    from dlpipe.tasks.ensembling.oof import kfold_run_dirs

    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    run_dirs = [Path(d) for d in run_dirs]
    out = Path(out_dir) if out_dir is not None else run_dirs[0]
    settings = dict(loss=loss, n_folds=n_folds, random_state=random_state)
    builds = []
    for members in load_members(run_dirs, align, kfold_run_dirs(run_dirs)):
        rows, paths = build_or_reuse(out, members, settings, progress)
        builds.append((rows, members, paths))
    if progress:
        for rows, members, paths in builds:
            print_ensembles(rows, members)
            print(f"ensembles report: {paths[0]}\nweights plot:     {paths[1]}")
        if len(builds) > 1:
            print_fit_comparison([rows for rows, _, _ in builds])
    return out


def load_members(run_dirs: list[Path], align: str, kfold: bool) -> list["MemberPredictions"]:
    """The members of each build: hold-out studies one; K-fold studies two, the
    hold-out fit (fold 0 of repeat 0) then the out-of-fold fit
    (:mod:`dlpipe.tasks.ensembling.oof`)."""
    if not kfold:
        from dlpipe.tasks.ensembling.members import load_member_predictions

        return [load_member_predictions(run_dirs, align=align)]
    from dlpipe.tasks.ensembling.oof import FITS, load_kfold_members

    return [load_kfold_members(run_dirs, fit=fit, align=align) for fit in FITS]


def build_or_reuse(out: Path, members: "MemberPredictions", settings: dict, progress: bool):
    """``(rows, [report part, weights plot])`` of one build: read back when the same
    members, predictions and settings were built before, else built and written."""
    from dlpipe.tasks.ensembling.build import build_ensembles, ensemble_key
    from dlpipe.tasks.ensembling.report import weights_plot_name, write_ensemble_report
    from dlpipe.tasks.reports import tables as reports

    key = ensemble_key(members, **settings)
    paths = [
        out / "reports" / "ensembles" / f"part-{key}.parquet",
        out / "plots" / weights_plot_name(members),
    ]
    if all(p.is_file() for p in paths):  # same members, predictions and settings: done
        if progress:
            print(
                f"ensembles {key}: already built from these members and settings "
                "(kept, not refitted)"
            )
        return reports.read_part(out, "ensembles", key), paths
    rows = build_ensembles(members, **settings)
    return rows, write_ensemble_report(out, rows, members)


def run_ensemble_stage(run_dir, spec) -> Path | None:
    """The last stage of ``dlpipe run`` when the study file enables it.

    Training is finished and reported when this runs, so a failure here (e.g. fewer than
    2 models finished) is printed to stderr and does not fail the study.

    Args:
        run_dir: the study's run directory.
        spec: the study's ``ensemble`` section (`dlpipe.pipelines.config.EnsembleSpec`).

    Returns:
        The run directory, or None when the ensemble could not be built.
    """
    try:
        return run_ensemble([run_dir], loss=spec.loss, n_folds=spec.n_folds, align=spec.align)
    except (ValueError, FileNotFoundError) as exc:
        print(f"ensemble skipped: {exc}", file=sys.stderr)
        return None


def print_ensembles(rows: list[dict], members: "MemberPredictions") -> None:
    """Prints the methods side by side: cross-fitted, validation and test loss.

    Args:
        rows: rows of `dlpipe.tasks.ensembling.build.build_ensembles`.
        members: their members (for the title).
    """
    from rich.console import Console
    from rich.table import Table

    first = rows[0]
    best_single = next((r for r in rows if r["method"] == "best_single"), None)
    best_name = ""
    if best_single is not None:
        index = json.loads(best_single["weights"]).index(1.0)
        best_name = f"{members.families[index]} {members.run_ids[index]}"
    dropped = {k: v for k, v in members.dropped_samples.items() if v}
    fit = f"fit {FIT_TITLES[members.fit]}: " if members.fit else ""
    title = (
        f"{fit}ensembles {first['ensemble_id']}: {members.n_members} members, "
        f"{members.val_targets.size} validation / {members.test_targets.size} test "
        f"samples, loss {first['loss']}; best single {best_name} val "
        f"{first['best_single_val']:.4f} test {first['best_single_test']:.4f}; mean "
        f"pairwise correlation {first['mean_pairwise_correlation']:.3f}"
        + (f"; samples not shared by all members, left out: {dropped}" if dropped else "")
    )
    table = Table(title=title, title_justify="left")
    accuracy = [r.get("val_accuracy") for r in rows]
    with_accuracy = all(a is not None and a == a for a in accuracy)  # classification
    for name in (
        "method",
        "chosen",
        "cv val",
        "val",
        "test",
        "gap (test-val)",
        f"members w>={MIN_SHOWN_WEIGHT}",
        "val vs best single",
        "test vs best single",
    ) + (("val accuracy", "test accuracy") if with_accuracy else ()):
        table.add_column(name, justify="left" if name in ("method", "chosen") else "right")
    for row in rows:
        weights = json.loads(row["weights"])
        table.add_row(
            row["method"],
            "*" if row["chosen"] else "",
            f"{row['cv_score']:.4f}",
            f"{row['val_score']:.4f}",
            f"{row['test_score']:.4f}",
            f"{row['val_test_gap']:+.4f}",
            f"{sum(w >= MIN_SHOWN_WEIGHT for w in weights)}/{len(weights)}",
            f"{row['val_score'] - row['best_single_val']:+.4f}",
            f"{row['test_score'] - row['best_single_test']:+.4f}",
            *(
                (f"{row['val_accuracy']:.4f}", f"{row['test_accuracy']:.4f}")
                if with_accuracy
                else ()
            ),
        )
    Console(width=160).print(table)
    if members.skipped:
        by_reason: dict[str, list[str]] = {}
        for run_id, reason in members.skipped.items():
            by_reason.setdefault(reason, []).append(run_id)
        for reason, run_ids in by_reason.items():
            shown = ", ".join(run_ids[:3]) + (
                f" and {len(run_ids) - 3} more" if len(run_ids) > 3 else ""
            )
            print(f"not used ({len(run_ids)}): {reason}: {shown}")


def print_fit_comparison(builds: list[list[dict]]) -> None:
    """A K-fold study's fits side by side: per method, each fit's choice and test score,
    and the test difference (oof - holdout).

    Args:
        builds: the rows of the hold-out fit's build, then the out-of-fold fit's.
    """
    from rich.console import Console
    from rich.table import Table

    holdout, oof = ({row["method"]: row for row in rows} for rows in builds)
    table = Table(
        title=f"fit holdout vs oof: test {builds[0][0]['loss']} of the same final models' "
        "predictions, weights fitted on one fold vs on every non-test sample",
        title_justify="left",
    )
    for name in ("method", "holdout chosen", "holdout test", "oof chosen", "oof test"):
        table.add_column(name, justify="left" if name == "method" else "right")
    table.add_column("test oof - holdout", justify="right")
    for method, row in holdout.items():
        other = oof[method]
        table.add_row(
            method,
            "*" if row["chosen"] else "",
            f"{row['test_score']:.4f}",
            "*" if other["chosen"] else "",
            f"{other['test_score']:.4f}",
            f"{other['test_score'] - row['test_score']:+.4f}",
        )
    Console(width=160).print(table)


def main(argv: list[str] | None = None) -> int:
    """Script entry point (``python pipelines/ensemble.py RUN_DIR [RUN_DIR ...]``)."""
    parser = argparse.ArgumentParser(
        prog="ensemble.py",
        description="Weighted ensembles (book ch. 7.3.3) of the models of finished run "
        "directories.",
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dlpipe ensemble`` (shared by the CLI and the script)."""
    parser.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directories of finished studies or sweeps (several are combined)",
    )
    parser.add_argument(
        "--out-dir",
        default=None,
        help="run directory the ensembles report and plot go to (default: the first RUN_DIR)",
    )
    parser.add_argument(
        "--loss",
        default=None,
        choices=LOSS_CHOICES,
        help="loss the weights are fitted and the methods compared with "
        "(default: mae for weather studies, log_loss for "
        "classification)",
    )
    parser.add_argument(
        "--n-folds",
        type=int,
        default=5,
        help="cross-fitting folds on the validation samples (default: 5)",
    )
    parser.add_argument(
        "--align",
        default="exact",
        choices=ALIGN_CHOICES,
        help="exact: all members must predict the same sample ids "
        "(default); common: use the sample ids all members predict",
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Runs the stage from parsed arguments; 2 with ``error: ...`` on bad input."""
    try:
        run_ensemble(
            args.run_dirs,
            out_dir=args.out_dir,
            loss=args.loss or default_loss(args.run_dirs[0]),
            n_folds=args.n_folds,
            align=args.align,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
