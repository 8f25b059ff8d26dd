"""Reading cached features as the trainer does: a whole layer into RAM when it fits, else shuffled streaming.

A feature source is a :class:`core.keys.SourceKey`: one cached layer (``ViT-L-14@openai/layer20``) or, for
DeCLIP's fused model, two (``ViT-L-14@openai/layer20+RN50@openai/layer3``), fused at read time.
Reads use contiguous slices or per-index loops into preallocated buffers, never fancy indexing of a sharded
array (10× slower, stack-notes §2.3).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from features.fusion import fuse
from features.prefetch import background_map
from core.errors import DeclipError
from core.keys import CLEAN_VIEW, SourceKey
from store.fastpath import RowReader
from store.feature_store import FeatureStore, LayerArrays, block_sums
from store.verify import damaged_valid_blocks


class LayerReader:
    """One cached (backbone, layer, dataset) group."""

    def __init__(self, store: FeatureStore, backbone: str, layer: str, dataset: str):
        self.arrays: LayerArrays = store.open_layer(backbone, layer, dataset)
        if not self.arrays.complete:
            missing = len(self.arrays.pending_blocks())
            raise DeclipError(
                f"{self.arrays.path} in {store.url} is incomplete ({missing} blocks missing); re-run "
                "`declip extract` with the same arguments to finish it"
            )
        bad = damaged_valid_blocks(self.arrays)
        if bad:
            raise DeclipError(
                f"{self.arrays.path} in {store.url}: blocks {bad} no longer match their checksums (a chunk was "
                f"deleted or changed); run `declip store verify --store {store.url}` to mark them, then re-run "
                "`declip extract` with the same arguments to redo them"
            )
        self.store_url = store.url
        self.meta = self.arrays.meta
        self.shape = tuple(self.arrays.feats.shape[1:])
        self.rows = RowReader(self.arrays.feats, required=self.arrays.valid[:].astype(bool))

    def nbytes(self, n_rows: int | None = None) -> int:
        n = self.arrays.n_rows if n_rows is None else n_rows
        return int(n * np.prod(self.shape) * 2)

    def read_all(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The whole layer; through zarr (no chunk-file check) every block is checked against its checksums."""
        cls = self.arrays.cls[:] if self.arrays.cls is not None else None
        feats = self.rows.read_all()
        if not self.rows.direct and self.arrays.sums is not None:
            self._check_sums(feats, cls)
        return feats, cls

    def _check_sums(self, feats: np.ndarray, cls: np.ndarray | None) -> None:
        sums, valid = self.arrays.sums[:], self.arrays.valid[:]
        for block in range(len(sums)):
            lo, hi = self.arrays.block_range(block)
            got = block_sums(feats[lo:hi], None if cls is None else cls[lo:hi], valid[lo:hi])
            if [int(x) for x in got] != [int(x) for x in sums[block]]:
                raise DeclipError(
                    f"{self.arrays.path} in {self.store_url}: block {block} (rows {lo}-{hi - 1}) does not match its "
                    f"checksums; run `declip store verify --store {self.store_url}`, then re-run `declip extract`")

    def read_rows(self, rows: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-index reads into a (reusable) buffer; the class tokens (small, block-chunked) via one slice."""
        feats = self.rows.read(rows, out)
        cls = None
        if self.arrays.cls is not None and len(rows):
            lo, hi = int(rows.min()), int(rows.max()) + 1
            cls = self.arrays.cls[lo:hi][np.asarray(rows) - lo]
        return feats, cls

    def valid(self) -> np.ndarray:
        return self.arrays.valid[:].astype(bool)


class FeatureSource:
    """Cached features for one dataset, possibly fused, returned as float32 torch tensors."""

    def __init__(self, store: FeatureStore, spec: SourceKey | str, dataset: str):
        self.spec = SourceKey.parse(spec)
        if self.spec.view != CLEAN_VIEW:
            raise DeclipError(f"{self.spec}: the store {store.url} holds no perturbed views yet; use the clean source "
                              f"{self.spec.with_view(CLEAN_VIEW)}")
        self.readers = [LayerReader(store, str(p.backbone), p.layer, dataset) for p in self.spec.parts]
        self.dataset = dataset
        self._cache: list[tuple[np.ndarray, np.ndarray | None]] | None = None

    @property
    def meta(self) -> dict:
        return self.readers[0].meta

    @property
    def channels(self) -> int:
        return sum(r.shape[0] for r in self.readers)

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.readers[0].shape[1:])

    @property
    def family(self) -> str:
        return "fused" if self.spec.fused else self.meta["family"]

    def valid(self) -> np.ndarray:
        ok = self.readers[0].valid()
        for r in self.readers[1:]:
            ok &= r.valid()
        return ok

    def nbytes(self, n_rows: int | None = None) -> int:
        return sum(r.nbytes(n_rows) for r in self.readers)

    def load_into_memory(self) -> None:
        """Hold every layer of the source in RAM (the common case: 9k ViT-L rows are 4.4 GiB)."""
        if self._cache is None:
            self._cache = [r.read_all() for r in self.readers]

    def get(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features (B, C, H, W) and the class token (B, C) or None, for the given rows, in their order.

        Single sources come back as float16 (cast on the device, after the copy: half the bytes to move);
        fused sources are resized and concatenated in float32.
        """
        parts = []
        for i, reader in enumerate(self.readers):
            if self._cache is not None:
                feats, cls = self._cache[i]
                parts.append((np.take(feats, rows, axis=0), cls[rows] if cls is not None else None))
            else:
                parts.append(reader.read_rows(rows))
        feats = [torch.from_numpy(f) for f, _ in parts]
        if self.spec.fused:
            return fuse(feats[0], feats[1]), None
        cls = parts[0][1]
        return feats[0], (torch.from_numpy(np.ascontiguousarray(cls)) if cls is not None else None)

    def iter_batches(self, rows: np.ndarray, batch_size: int, shuffle: bool, seed: int,
                     prefetch: int = 2) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor | None]]:
        """Batches of (rows, feats, cls); streaming reads happen in a background thread, bounded by ``prefetch``."""
        order = np.random.default_rng(seed).permutation(rows) if shuffle else np.asarray(rows)
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if self._cache is not None:
            for b in batches:
                yield (b, *self.get(b))
            return
        yield from background_map(lambda b: (b, *self.get(b)), batches, prefetch)
