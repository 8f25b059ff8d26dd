"""A cooperative stop flag that every floor can read: long loops check it at safe boundaries and stop cleanly.

The CLI (or a signal handler) calls :func:`request_stop`; the training loop calls :func:`check` at each batch
boundary and raises :class:`StopRequested`, leaving the run directory at its last finished epoch (every epoch writes
a resumable state file, so running the same command again continues from there). :func:`clear` resets the flag for
the next piece of work in the same process.
"""
from __future__ import annotations

import threading

_FLAG = threading.Event()


class StopRequested(BaseException):
    """Raised where a loop saw the stop flag; the work it interrupted resumes from its last checkpoint.

    A ``BaseException`` like ``KeyboardInterrupt``: the ``except Exception`` that keeps one broken grid cell from
    stopping the others must not record a requested stop as a failed cell."""


def request_stop() -> None:
    """Ask every cooperative loop in this process to stop at its next safe boundary (thread- and signal-safe)."""
    _FLAG.set()


def stop_requested() -> bool:
    return _FLAG.is_set()


def clear() -> None:
    _FLAG.clear()


def check(where: str = "") -> None:
    """Raise :class:`StopRequested` when a stop was requested."""
    if _FLAG.is_set():
        raise StopRequested(f"stop requested{f' ({where})' if where else ''}; the last finished epoch is kept")
