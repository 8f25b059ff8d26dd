"""Which SQLite database this command's temporary Prefect API uses, so several declip commands can run at once.

Why: with no ``PREFECT_API_URL`` every command starts its own temporary API server, and by default each one opens
``$PREFECT_HOME/prefect.db``. Two servers on one SQLite file race on its migrations and then on its write lock
(issue 21 item 8: "Timed out while attempting to connect to ephemeral Prefect API server", "database is locked").
The first command keeps the shared database (its runs stay in the history a later ``prefect server start`` shows);
a command that finds it held gets a private database beside it, says so in one line, and removes it at exit.

"Held" is an advisory ``flock`` on ``$PREFECT_HOME/declip-temporary-api.lock``, kept for the process's lifetime: the
kernel releases it when the process ends, however it ends, so a crashed command never blocks the next one.
"""
from __future__ import annotations

import atexit
import fcntl
import os
from pathlib import Path

LOCK_NAME = "declip-temporary-api.lock"
URL_VARIABLES = ("PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_DATABASE_CONNECTION_URL")
_HELD: list[int] = []  # the lock's file descriptor, open until the process ends


def choose_api_database(home: Path) -> str | None:
    """Take the shared database's lock, or point this process at a private SQLite file; returns the line to print
    when a private database was chosen (None otherwise, or when the user chose a database or a server)."""
    if _HELD or os.environ.get("PREFECT_API_URL") or any(os.environ.get(v) for v in URL_VARIABLES):
        return None
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        private = home / f"declip-api-{os.getpid()}.db"
        os.environ[URL_VARIABLES[0]] = f"sqlite+aiosqlite:///{private}"
        atexit.register(_remove_database, private)
        return (f"declip: another declip command's temporary Prefect API uses {home / 'prefect.db'}; this one uses "
                f"{private.name} (removed at exit; `prefect server start` + PREFECT_API_URL shares one for all)")
    _HELD.append(fd)
    return None


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            Path(f"{path}{suffix}").unlink()
        except FileNotFoundError:
            pass
