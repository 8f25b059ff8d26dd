"""What the store's two locks share (a lock file on a file system, :mod:`store.locks`; an object on object storage,
:mod:`store.object_lock`): the holder record, waiting with a timeout while stale holders are broken, the heartbeat
thread, and release only by the holder. Each backend says how to create, read, refresh, remove and judge its lock.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from declip.core.errors import DeclipError


class HeartbeatLock:
    """``with lock:`` — exclusive across processes and hosts; a holder that stops refreshing its lock loses it."""

    #: what to delete by hand when a lock outlived every declip process (for the timeout message)
    leftover = "the lock"

    def __init__(self, path, stale_after: float = 60.0, timeout: float = 3600.0, poll: float = 0.02):
        self.path = path
        self.stale_after, self.timeout, self.poll = stale_after, timeout, poll
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def payload(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token}).encode()

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._create():
            self._break_if_stale()
            if time.monotonic() > deadline:
                raise DeclipError(f"waited {self.timeout:.0f}s for lock {self.path} (held by {self._holder()}); "
                                  f"if no other declip process uses this store, delete {self.leftover}")
            time.sleep(self.poll)
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="store-lock", daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self._holder().get("token") == self.token:
            try:
                self._remove()
            except FileNotFoundError:
                pass

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.stale_after / 4):
            if not self._refresh():
                return

    def _holder(self) -> dict:
        try:
            return json.loads(self._read() or b"{}")
        except (FileNotFoundError, ValueError):
            return {}

    def holder_is_dead_here(self, holder: dict) -> bool:
        """The holder ran on this host and its process is gone: its lock can be broken at once."""
        return holder.get("host") == socket.gethostname() and not pid_alive(int(holder.get("pid", -1)))

    # ---- the backend
    def _create(self) -> bool:
        """Create the lock holding :meth:`payload` if it does not exist; False if it does."""
        raise NotImplementedError

    def _read(self) -> bytes:
        raise NotImplementedError

    def _refresh(self) -> bool:
        """One heartbeat; False when the lock is no longer ours (stop beating)."""
        raise NotImplementedError

    def _remove(self) -> None:
        raise NotImplementedError

    def _break_if_stale(self) -> None:
        raise NotImplementedError


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
