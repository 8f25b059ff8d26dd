"""Ctrl-C and SIGTERM for every ``declip`` command: the first asks the work to stop at the next batch boundary
(:mod:`declip.core.stop`), keeping finished work; a second one stops at once.

SIGTERM matters as much as Ctrl-C: schedulers (SLURM's ``scancel``, ``timeout``, Kubernetes) send it, and Python's
default action ended the command with no word about what was kept.
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

from declip.core.stop import Interrupted, clear_stop, is_waiting, loop_running, request_stop, stop_requested

#: What the user reads when a command stopped early.
INTERRUPTED_LINE = "interrupted; finished work is kept and a re-run resumes from it"

#: Exit status per signal, as shells report a command ended by it (128 + signal number).
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _handler(signum: int, frame) -> None:
    name = signal.Signals(signum).name
    if stop_requested():  # the second signal: stop now
        raise Interrupted(name)
    request_stop(name)
    if not loop_running():  # nothing checks the flag yet (the Prefect API starting, a store opening): stop now
        raise Interrupted(name)
    print(f"declip: {name} received: stopping at the next batch boundary (again to stop now); finished work is kept",
          file=sys.stderr, flush=True)
    if is_waiting():  # the main thread only waits for workers, which see the flag themselves
        raise Interrupted(name)


@contextmanager
def stop_on_signals():
    """Install the handlers for the duration of a command (the main thread only; the previous ones come back)."""
    clear_stop()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _handler) for sig in EXIT_CODES}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def exit_code() -> int:
    """130 after Ctrl-C, 143 after SIGTERM (130 when the stop came from elsewhere)."""
    from declip.core.stop import stop_reason

    return next((code for sig, code in EXIT_CODES.items() if sig.name == stop_reason()), 130)
