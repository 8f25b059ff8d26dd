"""Infrastructure failures as one line each, with the fix: what Prefect, its SQLite database or a Dask scheduler
raise when the machinery around declip (not declip's work, not the user's input) fails.

Before, each was a traceback of 8 to 444 lines (issue 19 items 7 and 21 item 10). The exception is recognised by its
type and message anywhere in its chain (``__cause__`` / ``__context__``): Prefect and Dask wrap what went wrong.
``--debug`` keeps the traceback.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

#: The fixes the lines offer, said the same way everywhere.
NO_FLOW = "`--no-flow` (train/evaluate/extract) runs without Prefect"
SERVER = "`prefect server start` in another terminal and PREFECT_API_URL=http://127.0.0.1:4200/api"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__name__}: {exc}"


def infrastructure_line(exc: BaseException) -> str | None:
    """The one line (problem; fix) for an infrastructure failure anywhere in ``exc``'s chain, or None."""
    texts = [_describe(e) for e in _chain(exc)]
    every = "\n".join(texts)
    home = os.environ.get("PREFECT_HOME", "~/.prefect")
    url = os.environ.get("PREFECT_API_URL")
    if "attempting to connect to ephemeral Prefect API server" in every:
        return ("the temporary local Prefect API did not start in time (a loaded machine, or several declip commands "
                f"sharing PREFECT_HOME={home}); re-run, give each command its own PREFECT_HOME, start one server "
                f"({SERVER}), or use {NO_FLOW}")
    if "database is locked" in every:
        return (f"Prefect's SQLite database under PREFECT_HOME={home} is locked by another command; give each "
                f"command its own PREFECT_HOME, start one server ({SERVER}), or use {NO_FLOW}; finished work is kept")
    if "disk I/O error" in every or "database or disk is full" in every:
        return (f"Prefect's SQLite database under PREFECT_HOME={home} could not be written ({_sqlite_reason(every)}: "
                "a full disk or a file-size limit, `ulimit -f`); free space or lift the limit, set PREFECT_HOME to "
                f"another disk, or use {NO_FLOW}; finished work is kept")
    if "Failed to reach API at" in every or (url and any(t.startswith(("httpx.ConnectError", "httpx.ConnectTimeout"))
                                                           for t in texts)):
        return (f"no Prefect server answers at PREFECT_API_URL={url or '(unset)'}; start it ({SERVER}), unset "
                f"PREFECT_API_URL for a temporary local API, or use {NO_FLOW}")
    if any(t.startswith("distributed.") or "Timed out trying to connect to tcp://" in t
           or "FutureCancelledError" in t or "scheduler" in t.lower() and "dask" in t.lower() for t in texts):
        return ("the Dask scheduler or its workers went away; finished cells are kept and a re-run resumes from them "
                "(restart the scheduler at --dask-address, or drop it for a local cluster)")
    if "Cannot close a running event loop" in every:
        return ("Prefect failed while shutting down after the work (what was written is complete); harmless, and "
                f"avoided with a running server ({SERVER})")
    return None


def _sqlite_reason(every: str) -> str:
    for reason in ("disk I/O error", "database or disk is full"):
        if reason in every:
            return reason
    return "error"
