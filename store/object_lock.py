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
import json
import logging
import os
import socket
import threading
import time
import uuid

from declip.core.errors import DeclipError

log = logging.getLogger(__name__)


class ObjectStoreLock:
    """``with ObjectStoreLock(fs, path):`` — exclusive across processes and hosts sharing an object store."""

    def __init__(self, fs, path: str, stale_after: float = 60.0, timeout: float = 3600.0, poll: float = 0.05):
        self.fs, self.path = fs, path
        self.stale_after, self.timeout, self.poll = stale_after, timeout, poll
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> "ObjectStoreLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _payload(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token}).encode()

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.fs.pipe_file(self.path, self._payload(), mode="create")
                break
            except FileExistsError:
                self._break_if_stale()
                if time.monotonic() > deadline:
                    raise DeclipError(f"waited {self.timeout:.0f}s for lock {self.path} (held by {self._holder()}); "
                                      "if no other declip process uses this store, delete that object") from None
                time.sleep(self.poll)
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="store-object-lock", daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self._holder().get("token") == self.token:
            try:
                self.fs.rm_file(self.path)
            except FileNotFoundError:
                pass

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.stale_after / 4):
            if self._holder().get("token") != self.token:
                return  # broken by someone who judged us dead: do not write over their lock
            self.fs.pipe_file(self.path, self._payload())

    def _holder(self) -> dict:
        try:
            return json.loads(self.fs.cat_file(self.path) or b"{}")
        except (FileNotFoundError, ValueError):
            return {}

    def _break_if_stale(self) -> None:
        try:
            info = self.fs.info(self.path)
        except FileNotFoundError:
            return
        holder = self._holder()
        modified = info.get("LastModified") or info.get("mtime") or info.get("created")
        age = (dt.datetime.now(dt.timezone.utc) - modified).total_seconds() if isinstance(modified, dt.datetime) \
            else 0.0
        same_host_dead = holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid", -1)))
        if not (same_host_dead or age > self.stale_after):
            return
        try:  # only the lock judged stale: if it changed hands since (a new ETag), leave it
            if self.fs.info(self.path).get("ETag") != info.get("ETag"):
                return
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            return
        log.warning("broke the stale store lock %s of %s", self.path, holder or "an unknown holder")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

