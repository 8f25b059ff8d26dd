"""The store lock on object storage: an object only one holder can create (fsspec's exclusive ``mode="create"``;
fsspec's in-memory filesystem here, S3 through moto in tests/cluster/test_s3_store.py), broken when its holder died
or stopped its heartbeat, kept while the heartbeat runs."""
from __future__ import annotations

import json
import os
import uuid

import fsspec
import pytest

from declip.core.errors import DeclipError
from declip.store.locks import _NoLock, store_lock
from declip.store.object_lock import ObjectStoreLock


@pytest.fixture
def fs_and_path():
    fs = fsspec.filesystem("memory")
    path = f"/locks-{uuid.uuid4().hex}/x.lock"
    yield fs, path
    fs.rm(path.rsplit("/", 1)[0], recursive=True) if fs.exists(path.rsplit("/", 1)[0]) else None


def test_one_holder_at_a_time_and_release_frees_it(fs_and_path):
    fs, path = fs_and_path
    with ObjectStoreLock(fs, path, timeout=5) as lock:
        assert json.loads(fs.cat_file(path))["token"] == lock.token
        with pytest.raises(DeclipError, match="waited"):
            ObjectStoreLock(fs, path, timeout=0.3).acquire()
    assert not fs.exists(path)
    with ObjectStoreLock(fs, path, timeout=1):
        pass


def _unused_pid() -> int:
    """A process id no process has (no subprocess needed: the fast lane starts none)."""
    pid = int(open("/proc/sys/kernel/pid_max").read()) - 1
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_a_dead_holder_on_this_host_is_broken_at_once(fs_and_path):
    fs, path = fs_and_path
    fs.pipe_file(path, json.dumps({"host": os.uname().nodename, "pid": _unused_pid(), "token": "dead"}).encode())
    with ObjectStoreLock(fs, path, stale_after=3600, timeout=5):
        assert json.loads(fs.cat_file(path))["token"] != "dead"


def test_a_remote_holder_is_broken_only_after_its_heartbeat_stops(fs_and_path):
    fs, path = fs_and_path
    fs.pipe_file(path, json.dumps({"host": "elsewhere", "pid": 1, "token": "remote"}).encode())
    with pytest.raises(DeclipError, match="waited"):  # fresh: waited for, not broken
        ObjectStoreLock(fs, path, stale_after=60, timeout=0.3).acquire()
    with ObjectStoreLock(fs, path, stale_after=0.2, timeout=10):  # silent for longer than stale_after: broken
        assert json.loads(fs.cat_file(path))["token"] != "remote"


def test_a_live_holders_heartbeat_keeps_its_lock(fs_and_path):
    fs, path = fs_and_path
    with ObjectStoreLock(fs, path, stale_after=2.0, timeout=5) as holder:
        other = ObjectStoreLock(fs, path, stale_after=2.0, timeout=4.0)  # waits twice stale_after
        with pytest.raises(DeclipError, match="waited"):
            other.acquire()
        assert json.loads(fs.cat_file(path))["token"] == holder.token


def test_store_lock_picks_the_lock_for_the_storage(tmp_path):
    from declip.store.locks import StoreLock

    assert isinstance(store_lock(str(tmp_path / "s.zarr"), "dataset-d"), StoreLock)
    fs = fsspec.filesystem("memory")
    lock = store_lock("s3://bucket/s.zarr", "layer-b/l/d", fs, "bucket/s.zarr")
    assert isinstance(lock, ObjectStoreLock) and lock.path == "bucket/s.zarr/.locks/layer-b_l_d.lock"
    assert isinstance(store_lock("s3://bucket/s.zarr", "x"), _NoLock)  # no filesystem given: nothing to lock with
