"""The store lock on object storage (``s3://``): an object that only one writer can create.

Why it is needed: an extraction's setup is the only writer of a store's metadata within one run, but two runs
started on one store at once (two ``declip extract`` commands, two grids) each have a setup. On an object store
without a lock their dataset registrations collide (measured on the local S3 endpoint: one of two concurrent runs
failed with ``ContainsGroupError`` in each of 4 tries), and the masks' ``native_bits`` chunks, which span blocks,
would be read-modified-written by both. Feature blocks need no lock: each is owned by one task and written whole.

How: S3's conditional write (``If-None-Match: *``, s3fs ``pipe_file(mode="create")``; also honoured by moto and
MinIO) creates ``<store>/.locks/<name>.lock`` only if it does not exist. The holder rewrites it while it holds it
(a heartbeat), so a lock whose holder died is broken: at once when the holder was a dead process on this host,
after ``stale_after`` seconds without a heartbeat otherwise (the object's LastModified, by the storage's clock
compared with ours: keep clocks in sync, as any cluster does).
"""
from __future__ import annotations

import datetime as dt
import logging

from declip.store.lock_base import HeartbeatLock

log = logging.getLogger(__name__)


class ObjectStoreLock(HeartbeatLock):
    """``with ObjectStoreLock(fs, path):`` — exclusive across processes and hosts sharing an object store."""

    leftover = "that object"

    def __init__(self, fs, path: str, stale_after: float = 60.0, timeout: float = 3600.0, poll: float = 0.05):
        super().__init__(path, stale_after, timeout, poll)
        self.fs = fs

    def _create(self) -> bool:
        try:
            self.fs.pipe_file(self.path, self.payload(), mode="create")
        except FileExistsError:
            return False
        return True

    def _read(self) -> bytes:
        return self.fs.cat_file(self.path)

    def _refresh(self) -> bool:
        if self._holder().get("token") != self.token:
            return False  # broken by someone who judged us dead: do not write over their lock
        self.fs.pipe_file(self.path, self.payload())
        return True

    def _remove(self) -> None:
        self.fs.rm_file(self.path)

    def _break_if_stale(self) -> None:
        try:
            info = self.fs.info(self.path)
        except FileNotFoundError:
            return
        holder = self._holder()
        modified = info.get("LastModified") or info.get("mtime") or info.get("created")
        age = (dt.datetime.now(dt.timezone.utc) - modified).total_seconds() if isinstance(modified, dt.datetime) \
            else 0.0
        if not (self.holder_is_dead_here(holder) or age > self.stale_after):
            return
        try:  # only the lock judged stale: if it changed hands since (a new ETag), leave it
            if self.fs.info(self.path).get("ETag") != info.get("ETag"):
                return
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            return
        log.warning("broke the stale store lock %s of %s", self.path, holder or "an unknown holder")
