"""Infrastructure failures are one line with the fix (issue 19 item 7, issue 21 item 10), never a traceback."""
import os
import sqlite3
import subprocess
import sys

import pytest

from declip.cli.infra_errors import infrastructure_line
from tests.fixtures import REPO, TINY_BACKBONE


def _wrapped(inner: BaseException, outer: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as caught:
        return caught


class FutureCancelledError(Exception):
    pass


FutureCancelledError.__module__ = "distributed.client"


@pytest.mark.parametrize("exc, says", [
    (_wrapped(ConnectionRefusedError(111, "Connection refused"), RuntimeError("Failed to reach API at http://h/api/")),
     "no Prefect server answers at PREFECT_API_URL=http://127.0.0.1:9/api; start it"),
    (RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server."),
     "the temporary local Prefect API did not start in time"),
    (_wrapped(sqlite3.OperationalError("disk I/O error"), RuntimeError("(sqlite3.OperationalError) disk I/O error")),
     "could not be written (disk I/O error: a full disk or a file-size limit"),
    (sqlite3.OperationalError("database is locked"), "is locked by another command; give each command its own"),
    (FutureCancelledError("cell-3 cancelled for reason: scheduler-connection-lost."),
     "finished cells are kept and a re-run resumes from them"),
    (OSError("Timed out trying to connect to tcp://10.0.0.1:8786 after 30 s"), "the Dask scheduler"),
    (RuntimeError("Cannot close a running event loop"), "Prefect failed while shutting down after the work"),
])
def test_each_failure_is_one_line_with_its_fix(exc, says, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    line = infrastructure_line(exc)
    assert line is not None and says in line and "\n" not in line


@pytest.mark.parametrize("exc", [ValueError("a bug"), RuntimeError("shape mismatch"), KeyError("x")])
def test_other_errors_are_left_alone(exc):
    assert infrastructure_line(exc) is None  # a bug keeps its traceback


@pytest.mark.slow  # a CLI subprocess
def test_a_prefect_server_that_is_not_up_is_one_line(tiny_store, tmp_path):
    env = dict(os.environ, PREFECT_API_URL="http://127.0.0.1:9/api")  # nothing listens on the discard port
    proc = subprocess.run(
        [sys.executable, "-m", "declip.cli", "train", "--store", str(tiny_store), "--dataset", "dolos-celebahq",
         "--source", f"{TINY_BACKBONE}/layer1", "--decoders", "linear", "--train-sets", "tint", "--max-epochs", "1",
         "--out", str(tmp_path / "run"), "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "no Prefect server answers at PREFECT_API_URL" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "error" in line]) == 1, proc.stderr
