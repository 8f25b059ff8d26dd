"""Reading cached features as the trainer does: a whole layer into RAM when it fits, else shuffled streaming.

A feature source is a :class:`core.keys.SourceKey`: one cached layer (``ViT-L-14@openai/layer20``) or, for
DeCLIP's fused model, two (``ViT-L-14@openai/layer20+RN50@openai/layer3``), fused at read time.
Reads use contiguous slices or per-index loops into preallocated buffers, never fancy indexing of a sharded
array (10× slower, stack-notes §2.3). Quantized layers (int8/float8) stay quantized in RAM and are decoded per batch
(:mod:`store.quantize`), so callers never see the storage format.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from declip.features.fusion import fuse
from declip.features.prefetch import background_map
from declip.core.errors import DeclipError
from declip.core.keys import CLEAN_VIEW, DatasetKey, SourceKey
from declip.store.fastpath import DamagedChunk, RowReader
from declip.store.feature_store import FeatureStore, LayerArrays
from declip.store.integrity import Blocks, LayerCheck, zero_crc
from declip.store.quantize import compute_dtype, decode, is_quantized


@dataclass
class RawRows:
    """Rows as stored: features (float16/float32, or int8/float8 bits), their scales when quantized, class tokens."""

    feats: np.ndarray
    scales: np.ndarray | None
    cls: np.ndarray | None

    def take(self, rows: np.ndarray) -> "RawRows":
        return RawRows(np.take(self.feats, rows, axis=0), None if self.scales is None else self.scales[rows],
                       None if self.cls is None else self.cls[rows])


class LayerReader:
    """One cached (backbone, layer, dataset) group; every read is checked against the sums written with it."""

    def __init__(self, store: FeatureStore, backbone: str, layer: str, dataset: str, partial: bool = False,
                 verify: bool = True):
        """``partial``: accept a group whose extraction covered only some blocks (a view cached for one split);
        the caller must then check :meth:`written` for the rows it uses. ``verify=False`` skips the checksum checks
        (only the P3 bench, to state what they cost)."""
        self.arrays: LayerArrays = store.open_layer(backbone, layer, dataset)
        self.store_url = store.url
        self.blocks = Blocks(store.url, self.arrays.path, self.arrays.block_rows, self.arrays.n_rows)
        self.check = LayerCheck(self.blocks, self.arrays, self._read_block) if verify else None
        done = self.check.done if self.check else self.arrays.done[:]
        if not partial and not done.all():
            raise DeclipError(
                f"{self.arrays.path} in {store.url} is incomplete ({int((~done).sum())} blocks missing); re-run "
                "`declip extract` with the same arguments to finish it"
            )
        self._valid = self.blocks.read(self.arrays.valid, "valid").astype(bool)
        bad = self.check.valid_blocks(self._valid) if self.check is not None else []
        if bad:
            raise DeclipError(
                f"{self.arrays.path} in {store.url}: blocks {bad} no longer match their checksums (a chunk was "
                f"deleted or changed); run `declip store verify --store {store.url}` to mark them, then re-run "
                "`declip extract` with the same arguments to redo them"
            )
        self.meta = self.arrays.meta
        self.storage_dtype = self.arrays.storage_dtype
        self.shape = tuple(self.arrays.feats.shape[1:])
        required = self._valid
        if self.check is not None:
            required = self.check.required(self._valid, zero_crc(self.shape, self.arrays.feats.dtype))
        self.rows = RowReader(self.arrays.feats, required=required,
                              check=self.check.feats if self.check and self.check.per_row else None)

    def nbytes(self, n_rows: int | None = None) -> int:
        """Bytes ``n_rows`` rows take in memory as read (quantized rows stay quantized, plus their scales)."""
        n = self.arrays.n_rows if n_rows is None else n_rows
        per_row = np.prod(self.shape) * self.arrays.feats.dtype.itemsize
        if self.arrays.scales is not None:
            per_row += self.shape[0] * 4
        return int(n * per_row)

    def read_all(self) -> "RawRows":
        """The whole layer as stored, every done block checked (per row in the reading threads where the group has
        row sums, else each block against its block sums)."""
        cls = self._small(self.arrays.cls, "cls")
        scales = self._small(self.arrays.scales, "scales")
        if self.rows.direct:
            feats = self._feats(np.arange(self.arrays.n_rows))
        else:
            feats = self.blocks.read(self.arrays.feats, "feats")
            if self.check is not None and self.check.per_row:
                for row in range(len(feats)):
                    self.check.feats(row, feats[row])
        if self.check is not None:
            if self.check.per_row:
                self.check.small(np.arange(self.arrays.n_rows), cls, scales)
            else:
                self.check.whole(feats, cls, self._valid, scales)
        return RawRows(feats, scales, cls)

    def read_rows(self, rows: np.ndarray, out: np.ndarray | None = None) -> "RawRows":
        """Per-index reads into a (reusable) buffer; class tokens and scales (small, block-chunked) via one slice."""
        rows = np.asarray(rows)
        if self.check is not None:
            self.check.blocks_of(rows)  # groups without row sums: each block checked whole, once
        feats = self._feats(rows, out)
        cls, scales = self._small(self.arrays.cls, "cls", rows), self._small(self.arrays.scales, "scales", rows)
        if self.check is not None:
            self.check.small(rows, cls, scales)
        return RawRows(feats, scales, cls)

    def _feats(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        try:
            return self.rows.read(rows, out)
        except DamagedChunk as exc:
            raise self.blocks.damaged("feats", self.blocks.of(exc.row), f"chunk {exc.key} {exc.what}") from None

    def _read_block(self, block: int) -> tuple:
        """One block as stored (feats, cls, valid, scales): what its block sums cover."""
        lo, hi = self.blocks.rows(block)
        rows = np.arange(lo, hi)
        return (self._feats(rows), self._small(self.arrays.cls, "cls", rows),
                self.blocks.read(self.arrays.valid, "valid", lo, hi), self._small(self.arrays.scales, "scales", rows))

    def _small(self, array, name: str, rows: np.ndarray | None = None) -> np.ndarray | None:
        """Rows of a small block-chunked array (class tokens, scales) via one slice; all of it without ``rows``."""
        if array is None or (rows is not None and not len(rows)):
            return None
        if rows is None:
            return self.blocks.read(array, name)
        lo, hi = int(rows.min()), int(rows.max()) + 1
        return self.blocks.read(array, name, lo, hi)[rows - lo]

    def decode(self, raw: "RawRows", device: torch.device | str | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Stored rows -> (features in the compute dtype, class token or None), decoded on ``device``."""
        feats = torch.as_tensor(raw.feats, device=device)
        scales = None if raw.scales is None else torch.as_tensor(raw.scales, device=device)
        cls = None if raw.cls is None else torch.as_tensor(np.ascontiguousarray(raw.cls), device=device)
        return self.decode_tensors(feats, scales, cls)

    def decode_tensors(self, feats: torch.Tensor, scales: torch.Tensor | None, cls: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The same, for stored rows already in tensors (e.g. held on the training device)."""
        if not is_quantized(self.storage_dtype):
            return feats, cls  # already in the compute dtype: no copy
        return decode(feats, scales, self.storage_dtype), cls

    def valid(self) -> np.ndarray:
        return self._valid.copy()

    def written(self) -> np.ndarray:
        """(N,) bool: the row's block is done (its features, or its unreadable-image record, are in the store)."""
        done = self.check.done if self.check is not None else self.arrays.done[:]
        return np.repeat(done, self.arrays.block_rows)[: self.arrays.n_rows]


class FeatureSource:
    """Cached features for one dataset, possibly fused, returned as float32 torch tensors."""

    def __init__(self, store: FeatureStore, spec: SourceKey | str, dataset: str, partial: bool = False,
                 verify: bool = True):
        self.spec = SourceKey.parse(spec)
        if self.spec.view != CLEAN_VIEW:  # a source seen through a view reads that view's cached copy
            from declip.features.views import View

            base = DatasetKey.parse(dataset).dataset
            dataset = str(DatasetKey(base, View.parse(self.spec.view).name))
            missing = [p for p in self.spec.parts if not store.has_layer(str(p.backbone), p.layer, dataset)]
            if missing:
                raise DeclipError(f"{self.spec}: store {store.url} holds no view {self.spec.view!r} of {base!r} for "
                                  f"{missing[0]}; cache it with `declip extract --view {self.spec.view} --split test` "
                                  f"(or evaluate the clean source {self.spec.with_view(CLEAN_VIEW)})")
        self.readers = [LayerReader(store, str(p.backbone), p.layer, dataset, partial, verify) for p in self.spec.parts]
        self.dataset = dataset
        self._cache: list[RawRows] | None = None

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
    def compute_dtype(self) -> torch.dtype:
        return torch.float32 if self.spec.fused else compute_dtype(self.readers[0].storage_dtype)

    @property
    def family(self) -> str:
        return "fused" if self.spec.fused else self.meta["family"]

    def valid(self) -> np.ndarray:
        ok = self.readers[0].valid()
        for r in self.readers[1:]:
            ok &= r.valid()
        return ok

    def written(self) -> np.ndarray:
        ok = self.readers[0].written()
        for r in self.readers[1:]:
            ok &= r.written()
        return ok

    def nbytes(self, n_rows: int | None = None) -> int:
        return sum(r.nbytes(n_rows) for r in self.readers)

    def load_into_memory(self) -> None:
        """Hold every layer of the source in RAM (the common case: 9k ViT-L rows are 4.4 GiB)."""
        if self._cache is None:
            self._cache = [r.read_all() for r in self.readers]

    def get(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features (B, C, H, W) and the class token (B, C) or None, for the given rows, in their order.

        Single sources come back in their compute dtype (float16, or float32 for float32 storage; cast to float32
        on the device, after the copy: half the bytes to move); fused sources are resized and concatenated in float32.
        """
        raws = [self._cache[i].take(rows) if self._cache is not None else reader.read_rows(rows)
                for i, reader in enumerate(self.readers)]
        return self.assemble([reader.decode(raw) for reader, raw in zip(self.readers, raws)])

    def assemble(self, decoded: list[tuple[torch.Tensor, torch.Tensor | None]]
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decoded parts -> what a decoder reads: the single part, or the two parts fused (float32)."""
        if self.spec.fused:
            return fuse(decoded[0][0], decoded[1][0]), None
        return decoded[0]

    def read_raw(self, rows: np.ndarray) -> list[RawRows]:
        """Stored rows of every part, for callers that keep them elsewhere (e.g. on the training device)."""
        return [reader.read_rows(np.asarray(rows)) for reader in self.readers]

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
