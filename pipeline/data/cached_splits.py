"""What the trainer reads: cached features of one or more sources, soft masks and labels, for chosen rows.

A source whose rows fit the memory budget (default: half the available RAM, shared by all sources) is loaded once
with contiguous reads; otherwise batches are streamed from the store with bounded prefetch, so peak memory does not
grow with the store (goal P6). When the training rows of every source also fit the *device* budget, they are copied
to the training device once (:mod:`declip.pipeline.data.resident_features`) and batches are cut there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from declip.features.prefetch import background_map
from declip.core.errors import DeclipError
from declip.core.keys import SourceKey
from declip.store.feature_store import FeatureStore
from declip.store.readers import FeatureSource
from declip.pipeline.data.resident_features import ResidentRows


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def select_rows(samples: pd.DataFrame, valid: np.ndarray, subsets: tuple[str, ...], split: str,
                mode: str) -> np.ndarray:
    """Rows of the given generators and split. Localization: inpainted fakes with masks. Detection: + the reals."""
    wanted = set(subsets)
    if "all" in wanted:
        wanted = set(samples.loc[samples["kind"] == "partial", "subset"])
    is_fake = samples["subset"].isin(wanted) & (samples["label"] == 1)
    if mode == "localization":
        keep = is_fake & (samples["kind"] == "partial") & (samples["mask_path"] != "")
    elif mode == "detection":
        keep = is_fake | (samples["label"] == 0)
    else:
        raise DeclipError(f"unknown training mode {mode!r}; use localization or detection")
    keep &= samples["split"] == split
    return np.flatnonzero(keep.to_numpy() & valid)


@dataclass
class Batch:
    rows: np.ndarray
    masks: torch.Tensor  # (B, 256, 256) float in [0, 1], 1 = fake
    labels: torch.Tensor  # (B,)
    features: dict[SourceKey, tuple[torch.Tensor, torch.Tensor | None]]


class CachedSplits:
    def __init__(self, store: FeatureStore, dataset: str, sources: dict[SourceKey, FeatureSource],
                 memory_budget: int):
        self.store, self.dataset, self.sources = store, dataset, sources
        self.samples = store.samples(dataset)
        self.labels = self.samples["label"].to_numpy().astype(np.int64)
        self.valid = np.ones(len(self.samples), dtype=bool)
        self.written = np.ones(len(self.samples), dtype=bool)  # False only in partially cached views
        for src in sources.values():
            self.valid &= src.valid()
            self.written &= src.written()
        self.memory_budget = memory_budget
        self._masks: dict[int, np.ndarray] | None = None
        self.streaming = True
        self.resident: ResidentRows | None = None

    @classmethod
    def open(cls, store_url: str, dataset: str, sources: list[SourceKey], memory_gb: float | None,
             partial: bool = False, share: int = 1) -> "CachedSplits":
        """``partial``: accept sources cached for some splits only (views); ``share``: the memory budget is split
        between this many CachedSplits open at once (the augmented copies of a training run)."""
        store = FeatureStore(store_url, mode="r")
        budget = int(memory_gb * 2**30) if memory_gb is not None else available_memory() // 2
        keys = [SourceKey.parse(s) for s in sources]
        return cls(store, dataset, {k: FeatureSource(store, k, dataset, partial) for k in keys},
                   budget // max(1, share))

    def require_written(self, rows: np.ndarray, what: str, fix: str) -> None:
        """Refuse to use rows whose features were never extracted (instead of silently dropping them)."""
        missing = np.asarray(rows)[~self.written[np.asarray(rows, dtype=np.int64)]]
        if len(missing):
            raise DeclipError(f"{len(missing)} rows of {what} in dataset {self.dataset!r} of store {self.store.url} "
                              f"have no cached features yet; {fix}")

    def warm(self, rows: np.ndarray, device: str = "cpu", device_budget: int = 0) -> None:
        """Put ``rows`` of every source on the device when they fit ``device_budget``; else load every source into
        RAM when all of them fit the memory budget; else stay streaming."""
        rows = np.unique(np.asarray(rows))
        if device_budget > 0 and ResidentRows.nbytes(self.sources, len(rows)) <= device_budget:
            self.resident = ResidentRows(self.sources, rows, self.store.soft_masks(self.dataset, rows),
                                         self.labels[rows], len(self.samples), device)
            self.streaming = False
            return
        need = sum(src.nbytes() for src in self.sources.values()) + len(rows) * 256 * 256
        if need <= self.memory_budget:
            for src in self.sources.values():
                src.load_into_memory()
            rows = np.sort(rows)
            self._masks = dict(zip(rows.tolist(), self.store.soft_masks(self.dataset, rows)))
            self.streaming = False

    def masks(self, rows: np.ndarray) -> np.ndarray:
        if self._masks is not None and all(int(r) in self._masks for r in rows):
            return np.stack([self._masks[int(r)] for r in rows])
        return self.store.soft_masks(self.dataset, rows)

    def load(self, rows: np.ndarray, sources: list[SourceKey]) -> Batch:
        if self.resident is not None and self.resident.holds(rows):
            idx = self.resident.index(rows)
            return Batch(rows, self.resident.soft_masks(idx), self.resident.labels.index_select(0, idx),
                         {s: self.resident.features(s, idx) for s in sources})
        masks = torch.from_numpy(self.masks(rows)).float() / 255.0  # the same op as on the device
        labels = torch.from_numpy(self.labels[rows])
        return Batch(rows, masks, labels, {s: self.sources[s].get(rows) for s in sources})

    def batches(self, rows: np.ndarray, batch_size: int, shuffle: bool, seed: int, sources: list[SourceKey]):
        order = np.random.default_rng(seed).permutation(rows) if shuffle else np.asarray(rows)
        chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if not self.streaming:
            for chunk in chunks:
                yield self.load(chunk, sources)
            return
        yield from background_map(lambda chunk: self.load(chunk, sources), chunks, depth=2)

    def native_mask(self, row: int) -> np.ndarray | None:
        rec = self.samples.iloc[int(row)]
        return self.store.native_mask(self.dataset, int(row), (int(rec["height"]), int(rec["width"])))


def memory_note(data: CachedSplits) -> str:
    mode = ("held on the device" if data.resident is not None else
            "streaming from the store" if data.streaming else "held in RAM")
    return f"features {mode} (budget {data.memory_budget / 2**30:.1f} GiB, pid {os.getpid()})"
