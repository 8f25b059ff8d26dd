"""Several extraction processes started together into one fresh store give the bytes of a single run (issue 10.1).

They start on a barrier right before the store's root is created (issue 21 item 3: the first open raced), so every
process takes the creation path and all but one find the root made by another: forced, not left to timing."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from tests.fixtures import TINY_BACKBONE
from declip.store.locks import StoreLock

from tests.fixtures import REPO  # noqa: E402

pytestmark = pytest.mark.slow  # extraction worker processes

_WORKER = """
import sys
from pathlib import Path
from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
from declip.store import base
from tests.store.store_fixtures import root_race_hook
base.BEFORE_ROOT_CREATION = root_race_hook(Path(sys.argv[3]), int(sys.argv[4]))
run_extraction(ExtractConfig(manifest=sys.argv[1], store=sys.argv[2], backbone=%r, layers="layer0",
                             batch_size=2, progress=False))
""" % TINY_BACKBONE


def _arrays(path: Path) -> dict[str, bytes]:
    """Every array of the store, by path, as bytes (metadata timestamps differ between runs and are not compared)."""
    out = {}
    root = zarr.open_group(str(path), mode="r")
    for name, arr in root.arrays():
        out[name] = arr[:].tobytes()
    for name, group in root.groups():
        for sub, arr in _walk(group, name):
            out[sub] = arr
    return out


def _walk(group, prefix):
    for name, arr in group.arrays():
        yield f"{prefix}/{name}", arr[:].tobytes()
    for name, sub in group.groups():
        yield from _walk(sub, f"{prefix}/{name}")


def _run_together(manifest: Path, store: Path, n: int, tmp: Path) -> None:
    meeting = tmp / f"meeting-{store.name}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(manifest), str(store), str(meeting), str(n)],
                              cwd=REPO, env=env, stderr=subprocess.PIPE) for _ in range(n)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    assert len(list(meeting.iterdir())) == n  # every process met at the root's creation: the race really ran


def test_concurrent_extractions_equal_a_single_run(tiny_manifest, tmp_path):
    single = tmp_path / "single.zarr"
    _run_together(tiny_manifest, single, 1, tmp_path)
    expected = _arrays(single)
    assert any(k.endswith("native_bits") for k in expected) and len(expected) >= 8
    for round_ in range(2):
        store = tmp_path / f"together-{round_}.zarr"
        _run_together(tiny_manifest, store, 3, tmp_path)
        got = _arrays(store)
        assert got.keys() == expected.keys()
        bad = [k for k in expected if got[k] != expected[k]]
        assert not bad, f"round {round_}: arrays differ from a single run: {bad}"
        assert not list((store / ".locks").glob("*.lock")), "a lock file outlived its holder"


def test_lock_is_exclusive_and_breaks_a_dead_holders_lock(tmp_path):
    path = tmp_path / "x.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.write_text('{"host": "%s", "pid": %s, "token": "dead"}' % (os.uname().nodename, dead.stdout.strip()))
    with StoreLock(path, timeout=5):  # the dead process's lock is broken at once
        assert "dead" not in path.read_text()
        other = StoreLock(path, timeout=0.3)
        try:
            other.acquire()
            raise AssertionError("a second holder got the lock")
        except Exception as exc:  # noqa: BLE001
            assert "waited" in str(exc)
    assert not path.exists()


def test_stale_lock_from_another_host_is_broken_after_its_heartbeat_stops(tmp_path):
    path = tmp_path / "y.lock"
    path.write_text('{"host": "elsewhere", "pid": 1, "token": "remote"}')
    old = time.time() - 120
    os.utime(path, (old, old))
    with StoreLock(path, stale_after=60, timeout=5):
        assert "remote" not in path.read_text()
    path.write_text('{"host": "elsewhere", "pid": 1, "token": "remote"}')  # fresh: must be waited for
    lock = StoreLock(path, stale_after=60, timeout=0.3)
    try:
        lock.acquire()
        raise AssertionError("a live remote lock was broken")
    except Exception as exc:  # noqa: BLE001
        assert "waited" in str(exc)
    np.testing.assert_equal(path.exists(), True)
