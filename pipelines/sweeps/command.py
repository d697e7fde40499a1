"""``dlpipe sweep``: validate, run, resume or extend a sweep, print the best trials;
on SIGINT/SIGTERM, what is left and the command that resumes it."""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path

from dlpipe.pipelines.config import ConfigError
from dlpipe.pipelines.interrupt import (
    TuneStop,
    exit_code,
    quiet_exit,
    signal_name,
    signum_of,
)
from dlpipe.pipelines.sections import StudyCommon
from dlpipe.pipelines.sweeps.recorder import last_lines, outstanding_trials, recorded_trials
from dlpipe.pipelines.sweeps.run import SweepError, run_sweep
from dlpipe.pipelines.sweeps.stamp import sweep_dir_of
from dlpipe.pipelines.sweeps.summary import sweep_summary
from dlpipe.tasks.reports import tables as reports

EXIT_TRIALS_FAILED = 3  # `dlpipe sweep` exit code: finished, but some trials failed


def smoke_sweep(cfg: StudyCommon) -> StudyCommon:
    """Smoke mode for a sweep: the study's smoke settings and at most 4 trials."""
    from dlpipe.pipelines.config import smoke_test

    cfg = smoke_test(cfg)
    return replace(
        cfg,
        sweep=replace(
            cfg.sweep,
            num_trials=min(cfg.sweep.num_trials, 4),
            n_initial_points=min(cfg.sweep.n_initial_points, 4),
        ),
    )


def sweep_command(
    config: str | Path,
    *,
    smoke: bool = False,
    address: str | None = None,
    output_dir: str | None = None,
    num_cpus: int | None = None,
    num_trials: int | None = None,
    resume: bool = False,
    score_partial: bool = False,
) -> int:
    """``dlpipe sweep``: validate, run, resume or extend the sweep, print the best trials.

    ``resume=True`` insists on an existing sweep (an error when there is none to
    resume); without it an existing sweep is resumed all the same. ``num_trials``
    larger than the stored sweep's extends it. SIGINT/SIGTERM: the finished trials are
    printed with the outstanding ones and the command that resumes the sweep, and the
    process exits 130 / 143 (:func:`dlpipe.pipelines.interrupt.quiet_exit`); the test
    split is scored only with ``score_partial``.

    Returns the exit code: 0 every trial ok (or reused, or stopped by the scheduler);
    :data:`EXIT_TRIALS_FAILED` (3) some trials failed (after every report and plot is
    written; the failed trials and their errors are printed last); 1 no trial
    finished; 2 a bad study file, data or setting."""
    from dlpipe.pipelines.command import prepare_command
    from dlpipe.pipelines.console import print_frame

    cfg = prepare_command(
        config,
        smoke_mode=smoke_sweep if smoke else None,
        output_dir=output_dir,
        address=address,
        num_cpus=num_cpus,
        run_dir_of=sweep_dir_of,
        same_study=False,
    )
    if cfg is None:
        return 2
    if num_trials:
        cfg = replace(cfg, sweep=replace(cfg.sweep, num_trials=num_trials))
    if resume and not (sweep_dir_of(cfg) / "sweep.json").is_file():
        print(
            f"error: --resume: no sweep to resume in {sweep_dir_of(cfg)}; run without "
            "--resume to start it",
            file=sys.stderr,
        )
        return 2
    stop = TuneStop()
    stop.install()  # after ray.init (in prepare_command), which sets its own SIGTERM handler
    try:
        sweep_dir = run_sweep(cfg, score_partial=score_partial, stop=stop)
    except (ConfigError, SweepError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, SweepError) else 2
    except KeyboardInterrupt as exc:  # SIGINT/SIGTERM: say what is left, leave quietly
        signum = signum_of(exc)
        again = resume_command(
            config,
            smoke=smoke,
            address=address,
            output_dir=output_dir,
            num_cpus=num_cpus,
            num_trials=num_trials,
        )
        quiet_exit(
            exit_code(signum),
            interrupted_message(
                cfg,
                signum,
                again,
                scored=getattr(exc, "scored", False),
                printed=lambda: print_partial(cfg, print_frame),
            ),
        )
    print_frame(*sweep_summary(sweep_dir))
    print(
        f"\ntrials:  {sweep_dir / 'reports' / 'trials'}\nplots:   {sweep_dir / 'plots'}\n"
        f"runs:    {sweep_dir / 'reports' / 'runs'} (history, predictions beside it)\n"
        f"curves:  dlpipe tensorboard {sweep_dir}  (HParams tab: every trial)\n"
        f"html:    {sweep_dir / 'reports' / 'index.html'}"
    )
    trials = reports.read_table(sweep_dir, "trials")
    failed = trials[trials["status"] == "failed"].sort_values("trial")
    if len(failed):  # Tune reports trial errors instead of raising them: say which
        print(
            f"\nerror: {len(failed)} of {len(trials)} trial(s) failed (the sweep went on; "
            f"exit code {EXIT_TRIALS_FAILED}):",
            file=sys.stderr,
        )
        for row in failed.itertuples():
            print(
                f"  trial {row.trial} ({row.family}): {last_lines(row.error, 1)}", file=sys.stderr
            )
        return EXIT_TRIALS_FAILED
    return 0


def resume_command(
    config: str | Path,
    *,
    smoke: bool = False,
    address: str | None = None,
    output_dir: str | None = None,
    num_cpus: int | None = None,
    num_trials: int | None = None,
) -> str:
    """The shell command that resumes a sweep started with these arguments."""
    args = ["dlpipe", "sweep", str(config), "--resume"]
    if num_trials:
        args += ["--num-trials", str(num_trials)]
    if smoke:
        args.append("--smoke-test")
    if address:
        args += ["--address", address]
    if output_dir:
        args += ["--output-dir", str(output_dir)]
    if num_cpus:
        args += ["--num-cpus", str(num_cpus)]
    return shlex.join(args)


def print_partial(cfg: StudyCommon, print_frame) -> None:
    """The summary table of the trials that finished before a signal (if any)."""
    sweep_dir = sweep_dir_of(cfg)
    if recorded_trials(sweep_dir):
        try:
            print_frame(*sweep_summary(sweep_dir))
        except Exception as exc:  # a summary must not hide the resume command
            print(f"(no summary: {exc})", file=sys.stderr)


def interrupted_message(
    cfg: StudyCommon, signum: int, again: str, *, scored: bool = False, printed=None
) -> str:
    """What an interrupted sweep tells its user (returned for stderr): how many trials
    finished, which are outstanding, whether the test split was scored, and the
    command that resumes the sweep. ``printed`` (a function) prints to stdout first."""
    if printed is not None:
        printed()
    sweep_dir = sweep_dir_of(cfg)
    done = recorded_trials(sweep_dir)
    left = outstanding_trials(sweep_dir, cfg.sweep.num_trials)
    test = (
        "the best finished trials were scored on the test split (--score-partial)"
        if scored
        else "nothing was scored on the test split (a partial sweep is "
        "scored only with --score-partial, or when a resumed run completes)"
    )
    return (
        f"\ninterrupted by {signal_name(signum)}: {len(done)} of {cfg.sweep.num_trials} "
        f"trial(s) recorded in {sweep_dir / 'reports' / 'trials'}; outstanding: "
        f"{ranges(left) or 'none'}; {test}\nresume with: {again}"
    )


def ranges(numbers: list[int]) -> str:
    """``[2, 3, 4, 7]`` -> ``"trials 2-4, 7"``."""
    if not numbers:
        return ""
    parts, start, prev = [], numbers[0], numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ("trial " if len(numbers) == 1 else "trials ") + ", ".join(parts)
