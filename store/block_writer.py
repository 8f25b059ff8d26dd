"""Extraction's writer: finished blocks go into the store in a background thread, behind the forward pass.

Why a thread: zarr writes (compression, file renames) would otherwise stall the model between blocks. Why a unit of
its own: a new kind of producer (perturbed views, another feature family) reuses it unchanged. A failed write stops
the run at the next ``put`` instead of losing data silently.
"""
from __future__ import annotations

import queue
import threading
import time

import numpy as np

from declip.store.feature_store import FeatureStore, LayerArrays


class BlockWriter:
    """``put(block, outputs, valid, problems)`` queues one block for every layer in ``outputs``; ``close`` drains."""

    def __init__(self, store: FeatureStore, arrays: dict[str, LayerArrays], depth: int = 2):
        self.store, self.arrays = store, arrays
        self.seconds = 0.0
        self.q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)
        self.thread.start()

    def put(self, block: int, outputs: dict[str, tuple], valid: np.ndarray, problems: list[dict]) -> None:
        """``outputs``: layer → ``(feats, cls)``, or ``(feats, cls, scales)`` for quantized storage dtypes."""
        if self.error:
            raise self.error
        self.q.put((block, outputs, valid, problems))

    def _loop(self) -> None:
        while (item := self.q.get()) is not None:
            if self.error:
                continue
            block, outputs, valid, problems = item
            t0 = time.perf_counter()
            try:
                for layer, (feats, cls, *rest) in outputs.items():
                    scales = rest[0] if rest else None
                    self.store.write_block(self.arrays[layer], block, feats, cls, valid, problems, scales)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self.error = exc
            self.seconds += time.perf_counter() - t0

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error:
            raise self.error
