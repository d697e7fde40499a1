"""Ctrl-C (SIGINT) and SIGTERM of a ``dlpipe`` driver: a clean stop, exit 130 / 143.

The shell convention is ``128 + signal number``: 130 for SIGINT, 143 for SIGTERM.

* :class:`Interrupted` is raised in the driver's main thread by the handlers that
  :func:`install_handlers` puts in place (a ``KeyboardInterrupt``, so code that already
  cleans up on Ctrl-C does so for SIGTERM too). ``ray.init`` replaces the SIGTERM
  handler with ``sys.exit(15)`` (exit code 15), so install the handlers after it.
* :class:`TuneStop` is the sweep's variant: while Ray Tune's loop runs, the first
  signal asks Tune to stop gracefully (Tune's own SIGUSR1 handler: the loop ends, the
  experiment state is saved, the trials are stopped) and is remembered; a second one,
  or one outside the loop, raises :class:`Interrupted` at once.
* Ray's ``ray.get`` turns any exception raised by a signal handler while it waits into
  a plain ``KeyboardInterrupt``: :func:`last_signal` tells which signal it was.
* :func:`quiet_exit` ends the process after the one-line message: the console is closed
  first, so no Ray worker log or native stack dump of a worker being stopped is
  forwarded after it, and the process leaves with ``os._exit`` (no interpreter
  teardown, where TensorFlow and pyarrow native libraries loaded in one process have
  been seen to abort).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

#: the signals a driver stops cleanly on
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """``128 + signum``: 130 for SIGINT, 143 for SIGTERM (the shell's convention)."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    """``"SIGINT"`` / ``"SIGTERM"``."""
    return signal.Signals(signum).name


class Interrupted(KeyboardInterrupt):
    """The driver received SIGINT or SIGTERM.

    Attributes:
        signum: the signal number; :attr:`exit_code` is ``128 + signum``.
    """

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal_name(signum))
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        """130 (SIGINT) or 143 (SIGTERM)."""
        return exit_code(self.signum)


_received: list[int] = []


def last_signal(default: int = signal.SIGINT) -> int:
    """The last signal the handlers of this module received (``default`` if none)."""
    return _received[-1] if _received else int(default)


def signum_of(exc: BaseException) -> int:
    """The signal behind a ``KeyboardInterrupt``: its own, else :func:`last_signal`
    (``ray.get`` re-raises a handler's exception as a plain ``KeyboardInterrupt``)."""
    return getattr(exc, "signum", None) or last_signal()


def _raise(signum, frame):
    _received.append(int(signum))
    raise Interrupted(signum)


def install_handlers() -> bool:
    """Make SIGINT and SIGTERM raise :class:`Interrupted` in the main thread.

    Returns:
        False (nothing installed) when called outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    for signum in SIGNALS:
        signal.signal(signum, _raise)
    return True


class TuneStop:
    """Signal handling around Ray Tune's loop (see the module docstring).

    Use :meth:`tune_loop` around ``Tuner.fit()``; afterwards :attr:`signum` holds the
    first signal received (None when none came). Set ``TUNE_DISABLE_SIGINT_HANDLER=1``
    before the loop starts, so that Tune leaves SIGINT to this class.
    """

    def __init__(self):
        self.signum: int | None = None
        self._in_loop = False

    def _handler(self, signum, frame):
        _received.append(int(signum))
        tune_handler = signal.getsignal(signal.SIGUSR1)
        if self.signum is None and self._in_loop and callable(tune_handler):
            self.signum = int(signum)
            print(
                f"\n{signal_name(signum)} received: stopping the sweep (the finished "
                "trials are kept; send it again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
            tune_handler(signal.SIGUSR1, frame)  # Tune ends its loop and saves its state
            return
        self.signum = self.signum or int(signum)
        raise Interrupted(signum)

    def install(self) -> None:
        """Install the handlers for SIGINT and SIGTERM (main thread only)."""
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                signal.signal(signum, self._handler)

    @contextlib.contextmanager
    def tune_loop(self):
        """Context of one ``Tuner.fit()``: a signal stops Tune gracefully."""
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        if hasattr(signal, "SIGUSR1") and threading.current_thread() is threading.main_thread():
            # a handler left by an earlier loop would swallow the stop request
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        self.install()
        self._in_loop = True
        try:
            yield self
        finally:
            self._in_loop = False


def quiet_exit(code: int, message: str | None = None) -> None:
    """Print ``message`` (one line, stderr), close the console, stop Ray, and leave
    with ``os._exit(code)``.

    Args:
        code: the exit status (130, 143...).
        message: printed before the console is closed; None prints nothing.
    """
    if message:
        print(message, file=sys.stderr)
    with contextlib.suppress(BaseException):  # os._exit skips atexit: free the run dir
        from dlpipe.pipelines.rundir import release_all

        release_all()
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    for signum in SIGNALS:  # a second Ctrl-C while Ray stops changes nothing
        with contextlib.suppress(ValueError):
            signal.signal(signum, signal.SIG_IGN)
    with contextlib.suppress(BaseException):
        import ray

        if ray.is_initialized():
            ray.shutdown()
    os._exit(code)


__all__ = [
    "Interrupted",
    "SIGNALS",
    "TuneStop",
    "exit_code",
    "install_handlers",
    "last_signal",
    "quiet_exit",
    "signal_name",
    "signum_of",
]
