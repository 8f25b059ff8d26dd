"""Keeps Prefect's ephemeral API server from outliving the command that started it.

Prefect starts the server as a child process and stops it from an ``atexit`` hook, which never runs when the command
is killed (SIGKILL, or SIGTERM with Python's default handler): each orphan kept ~230 MB. This script sits between the
command and the server: ``python server_watchdog.py PARENT_PID -- python -m uvicorn ...``. It stops the server when
the parent is gone (polled twice a second), when it is itself terminated (Prefect's normal stop), and the server
also dies with it if the watchdog is killed (``PR_SET_PDEATHSIG`` on Linux). Standard library only, so it starts in
milliseconds and costs a few MB.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

POLL_S = 0.5


def _die_with_parent() -> None:
    """In the server child: ask Linux to SIGTERM it when the watchdog dies (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(child: subprocess.Popen) -> int:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return child.returncode or 0


def main(argv: list[str]) -> int:
    parent, command = int(argv[0]), argv[argv.index("--") + 1:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    child = subprocess.Popen(command, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(_stop(child)))
    if os.getppid() != parent:  # the parent died while we started
        return _stop(child)
    while child.poll() is None:
        if os.getppid() != parent:
            return _stop(child)
        time.sleep(POLL_S)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
