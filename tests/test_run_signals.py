"""Ctrl-C (SIGINT) and SIGTERM of a driver (issue 11, section 2): ``dlpipe run`` ends
with 130 / 143 and one line, no traceback or native dump after it; the handlers of
:mod:`dlpipe.pipelines.interrupt` tested in this process without Ray."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dlpipe.pipelines import interrupt

BIN = Path(sys.executable).parent


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_exit_codes_follow_the_shell_convention():
    assert interrupt.exit_code(signal.SIGINT) == 130
    assert interrupt.exit_code(signal.SIGTERM) == 143
    assert interrupt.Interrupted(signal.SIGTERM).exit_code == 143
    assert isinstance(interrupt.Interrupted(), KeyboardInterrupt)  # Ctrl-C clean-ups apply


def test_sigterm_raises_interrupted_in_the_main_thread(restore_signals):
    assert interrupt.install_handlers()
    with pytest.raises(interrupt.Interrupted) as caught:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs between bytecodes
    assert caught.value.signum == signal.SIGTERM and caught.value.exit_code == 143


def test_tune_stop_asks_tune_once_then_raises(restore_signals):
    """In Tune's loop the first signal goes to Tune's SIGUSR1 handler (graceful stop)
    and is remembered; a second one raises; outside the loop the first one raises."""
    stop = interrupt.TuneStop()
    calls = []
    with stop.tune_loop():
        signal.signal(signal.SIGUSR1, lambda s, f: calls.append(s))  # what Tune installs
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
        assert calls == [signal.SIGUSR1] and stop.signum == signal.SIGINT
        with pytest.raises(interrupt.Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
    after = interrupt.TuneStop()
    after.install()
    with pytest.raises(interrupt.Interrupted) as caught:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert caught.value.exit_code == 143 and after.signum == signal.SIGTERM


STUDY = """
study: sig
output_dir: out
data: {format: tmy3, path: "pvlib:723170TYA.CSV"}
split: {train_fraction: 0.6, validation_fraction: 0.2, blocks: 4}
windows: {lookback: 48, step: 2, delay: 24, batch_size: 32}
training: {epochs: 50, max_batches_per_epoch: 200}
resources: {num_cpus: 1}
models: [{family: dense}]
"""

#: what must not reach the console after a signal
DUMPS = (
    "Traceback",
    "*** SIG",
    "Fatal Python error",
    "Mutex",
    "PC: @",
    "core dumped",
    "Check failure stack trace",
)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_stopped_by_a_signal_exits_130_or_143_with_one_line(tmp_path, signum):
    path = tmp_path / "sig.yaml"
    path.write_text(textwrap.dedent(STUDY))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [str(BIN / "dlpipe"), "run", str(path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = tmp_path / "out" / "sig" / "reports" / "runs"
    deadline = time.time() + 300
    while time.time() < deadline and not list(runs.glob("part-baseline*")) and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    time.sleep(8)  # the training task has started (50 epochs: far from done)
    assert proc.poll() is None
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, out[-2000:] + err[-2000:]
    name = signal.Signals(signum).name
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith(f"interrupted by {name}: finished runs and trials are kept")
    assert sum("interrupted by" in line for line in lines) == 1
    for text in DUMPS:
        assert text not in out + err, (text, err[-3000:])
