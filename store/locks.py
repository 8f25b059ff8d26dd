"""A cross-process, cross-machine lock for the few store writes that several extractions share.

Why not ``fcntl``/``flock``: those locks are per machine on many network file systems. An ``O_CREAT | O_EXCL``
create is atomic on local disks and on NFSv3+/SMB/Lustre, so the lock is a file that only one process can create.
The holder refreshes its mtime while it holds it (a heartbeat thread), so a lock whose holder was killed is
recognised as stale — at once on the same host (its pid is gone), after ``stale_after`` seconds elsewhere — and
broken. Locks live in ``<store>/.locks/``. On object stores (``s3://``) the same lock is an object created with a
conditional write (:mod:`store.object_lock`): two extraction runs started on one bucket at once need it for the
metadata they both write.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from declip.store.lock_base import HeartbeatLock

LOCK_DIR = ".locks"


class StoreLock(HeartbeatLock):
    """``with StoreLock(path):`` — exclusive across processes and hosts; stale locks of dead holders are broken."""

    leftover = "the file"

    def __init__(self, path: str | os.PathLike, stale_after: float = 60.0, timeout: float = 3600.0,
                 poll: float = 0.02):
        super().__init__(Path(path), stale_after, timeout, poll)

    def _create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.payload())
        return True

    def _read(self) -> bytes:
        return self.path.read_bytes()

    def _refresh(self) -> bool:
        try:
            os.utime(self.path)
        except FileNotFoundError:
            return False
        return True

    def _remove(self) -> None:
        self.path.unlink()

    def _break_if_stale(self) -> None:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return
        holder = self._holder()
        if not holder and age < self.stale_after:
            return  # being written right now
        same_host_dead = self.holder_is_dead_here(holder)
        if same_host_dead or age > self.stale_after:
            # rename first: of several processes breaking the same stale lock, exactly one rename succeeds
            grave = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
            try:
                os.rename(self.path, grave)
            except FileNotFoundError:
                return
            try:
                stolen = json.loads(grave.read_text() or "{}")
            except ValueError:
                stolen = {}
            if stolen.get("token") != holder.get("token"):
                # the lock changed hands between our look and the rename: give the live holder's file back
                os.replace(grave, self.path)
                return
            grave.unlink(missing_ok=True)


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def local_root(url: str) -> Path | None:
    """The directory of a store on a (local or network-mounted) file system, or None for object stores."""
    if url.startswith("file://"):
        return Path(url[len("file://"):])
    if "://" in url:
        return None
    return Path(url)


def store_lock(url: str, name: str, fs=None, fs_root: str | None = None, **kw):
    """The lock ``name`` of the store at ``url``: a lock file on a file system; on object storage an object created
    exclusively through ``fs`` (the store's fsspec filesystem, ``fs_root`` its path there); without ``fs`` there,
    none."""
    safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name)
    root = local_root(url)
    if root is not None:
        return StoreLock(root / LOCK_DIR / f"{safe}.lock", **kw)
    if fs is None or fs_root is None:
        return _NoLock()
    from declip.store.object_lock import ObjectStoreLock

    return ObjectStoreLock(fs, f"{fs_root.rstrip('/')}/{LOCK_DIR}/{safe}.lock", **kw)
