"""Run a producer a bounded number of items ahead of its consumer, in a background thread.

Used to overlap image decoding with the forward pass and store reads with training steps.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator


def background_map(fn: Callable, items: Iterable, depth: int = 2, on_exit: Callable[[], None] = lambda: None) -> Iterator:
    """``map(fn, items)`` computed in a background thread, at most ``depth`` results ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                if stop.is_set():
                    break
                q.put(fn(item))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)
        q.put(StopIteration)

    thread = threading.Thread(target=produce, name="batch-reader", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not StopIteration:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
        on_exit()
