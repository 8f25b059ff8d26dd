"""A cooperative stop: Ctrl-C or SIGTERM asks long work to end at its next batch boundary, keeping what is finished.

Why cooperative: a grid trains in worker threads (or processes) that a signal never reaches; the main thread used to
take the KeyboardInterrupt and then wait for them (90 s and more), and SIGTERM ended the command with no word. Now
the CLI's handler only sets this flag (:func:`request_stop`); the training, extraction and evaluation loops call
:func:`check_stop` between batches and raise :class:`Interrupted`, after the last finished block or epoch was
written. A main thread that only waits for others (:func:`waiting`) is woken at once: nothing it does is half-done.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

_STOP = threading.Event()
_LOOP = threading.Event()  # set by the first check_stop: a batch loop runs, so a stop request will be seen
_REASON: list[str] = []
_WAITING = threading.local()


class Interrupted(KeyboardInterrupt):
    """Raised at a batch boundary after a stop was requested; a KeyboardInterrupt, so every layer treats it as the
    user's interrupt (Prefect records a crash, ``except Exception`` handlers let it pass)."""


def request_stop(reason: str = "interrupted") -> None:
    """Ask every loop of this process to stop at its next batch boundary (idempotent; the first reason is kept)."""
    if not _STOP.is_set():
        _REASON.append(reason)
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


def stop_reason() -> str:
    return _REASON[0] if _REASON else ""


def clear_stop() -> None:
    """Forget a stop request (a new command in the same process, or a test)."""
    _STOP.clear()
    _LOOP.clear()
    _REASON.clear()


def check_stop(where: str = "") -> None:
    """Raise :class:`Interrupted` if a stop was requested: call it where work can end cleanly (between batches);
    ``where`` (e.g. "epoch 4") goes into the message."""
    _LOOP.set()
    if _STOP.is_set():
        raise Interrupted(f"{stop_reason()} ({where})" if where else stop_reason())


@contextmanager
def waiting():
    """Mark this thread as only waiting for other threads or processes (e.g. a flow awaiting its tasks), so a stop
    request may interrupt it at once rather than at a batch boundary it never reaches."""
    before = getattr(_WAITING, "on", False)
    _WAITING.on = True
    try:
        yield
    finally:
        _WAITING.on = before


def is_waiting() -> bool:
    return getattr(_WAITING, "on", False)


def loop_running() -> bool:
    """Whether a batch loop has checked the flag yet: before that (a server starting, a store opening) nothing would
    see a request, so the handler stops at once."""
    return _LOOP.is_set()
