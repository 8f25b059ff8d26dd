"""Flow commands: one clean error line by default, and no Prefect server outlives a killed command (issue 10.6)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures import TINY_BACKBONE

from tests.fixtures import REPO  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.flow]  # CLI subprocesses that run Prefect flows


def _env(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PREFECT_HOME=str(tmp_path / "prefect"))
    env.pop("PREFECT_API_URL", None)
    return env


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_user_error_in_a_flow_is_one_line_and_debug_shows_the_trace(tmp_path, prefect_harness):
    """Against the session's API (the temporary-server path is the other tests' subject): the error raised inside the
    flow is one line after the line naming the API, and --debug shows its traceback."""
    cmd = [sys.executable, "-m", "declip.cli", "train", "--store", str(tmp_path / "none.zarr"), "--dataset", "d",
           "--source", "B@random-0/layer1", "--decoder", "linear", "--train", "a", "--out", str(tmp_path / "o")]
    env = dict(_env(tmp_path), PREFECT_API_URL=prefect_harness)
    plain = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 2
    lines = plain.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0] == f"declip: running as a Prefect flow, reporting to {prefect_harness}", lines
    assert lines[1].startswith("declip train: error: ") and "none.zarr" in lines[1], plain.stderr
    debug = subprocess.run(cmd[:3] + ["--debug"] + cmd[3:], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "DeclipError" in debug.stderr


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _is_server(pid: int) -> bool:
    try:
        return b"uvicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_killed_flow_commands_leave_no_server(tiny_store, tmp_path):
    dataset = next(p.name for p in (tiny_store / "datasets").iterdir())
    procs, logs = {}, {}
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        cmd = [sys.executable, "-m", "declip.cli", "train", "--store", str(tiny_store), "--dataset", dataset,
               "--source", f"{TINY_BACKBONE}/layer1", "--decoder", "linear", "--train", "tint",
               "--out", str(tmp_path / f"o{int(sig)}"), "--max-epochs", "100000", "--patience", "100000",
               "--no-progress"]
        logs[sig] = tmp_path / f"err{int(sig)}.txt"
        with open(logs[sig], "w") as err:
            procs[sig] = subprocess.Popen(cmd, cwd=REPO, env=_env(tmp_path / str(int(sig))),
                                          stdout=subprocess.DEVNULL, stderr=err)
    killed: dict[int, list[int]] = {}
    deadline = time.time() + 300
    while time.time() < deadline and len(killed) < len(procs):
        for sig, proc in procs.items():
            if sig in killed:
                continue
            assert proc.poll() is None, f"{sig!r}: command ended early: {logs[sig].read_text()[-1500:]}"
            family = _descendants(proc.pid)
            if any(_is_server(p) for p in family):
                time.sleep(1)  # let the server finish starting, as a user would kill it mid-run
                killed[sig] = _descendants(proc.pid)
                proc.send_signal(sig)
        time.sleep(0.2)
    assert len(killed) == len(procs), "the ephemeral server never started"
    for proc in procs.values():
        proc.wait(timeout=60)
    # the watchdog polls twice a second and gives the server 5 s to stop before SIGKILL: allow 8 s, no more
    deadline = time.time() + 8
    while time.time() < deadline and any(_alive(p) for pids in killed.values() for p in pids):
        time.sleep(0.2)
    left = {sig.name: [p for p in pids if _alive(p)] for sig, pids in killed.items()}
    try:
        assert not any(left.values()), f"processes outlived their command: {left}"
    finally:
        for pid in (p for pids in left.values() for p in pids):
            os.kill(pid, signal.SIGKILL)


def test_two_flow_commands_at_once_share_one_prefect_home(tiny_store, tmp_path):
    """Issue 21 item 8: two commands each starting a temporary API on one PREFECT_HOME raced on its SQLite file.
    The second starts once the first has announced its API (so it holds the shared database): it must get its own,
    both must finish, and no private database may be left behind."""
    dataset = next(p.name for p in (tiny_store / "datasets").iterdir())
    env = _env(tmp_path)

    def start(name: str) -> tuple[subprocess.Popen, Path]:
        err = tmp_path / f"{name}.err"
        cmd = [sys.executable, "-m", "declip.cli", "train", "--store", str(tiny_store), "--dataset", dataset,
               "--source", f"{TINY_BACKBONE}/layer1", "--decoder", "linear", "--train", "tint",
               "--out", str(tmp_path / name), "--max-epochs", "2", "--no-progress"]
        with open(err, "w") as stream:
            return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stream), err

    first, first_err = start("first")
    deadline = time.time() + 120
    while "temporary local Prefect API" not in first_err.read_text() and time.time() < deadline:
        assert first.poll() is None, first_err.read_text()[-1500:]
        time.sleep(0.1)
    second, second_err = start("second")
    assert first.wait(timeout=300) == 0, first_err.read_text()[-1500:]
    assert second.wait(timeout=300) == 0, second_err.read_text()[-1500:]
    assert "another declip command's temporary Prefect API" in second_err.read_text()
    assert "another declip command" not in first_err.read_text()
    assert not list((tmp_path / "prefect").glob("declip-api-*"))
    assert (tmp_path / "first" / "summary.json").exists() and (tmp_path / "second" / "summary.json").exists()
