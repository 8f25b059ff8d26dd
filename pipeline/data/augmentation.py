"""Training augmentation from cached copies: each epoch, every training row reads one of K cached views of itself.

DeCLIP's ``--data_aug`` draws a fresh perturbation of every image at every step, which needs the backbone in the
loop. With a feature cache, K perturbed copies (``augment:all+copy:0`` ... ``copy:K-1``, see :mod:`features.views`)
are encoded once and the trainer samples among them: an approximation whose diversity is K draws per image.

The choice of copy is a pure function of (seed, epoch, row), so a run resumed at epoch e reads exactly the copies
the uninterrupted run would have read, and two runs with one seed read the same copies.
"""
from __future__ import annotations

import numpy as np
import torch

from declip.core.errors import DeclipError
from declip.core.keys import DatasetKey, view_dataset_key
from declip.features.prefetch import background_map
from declip.pipeline.data.cached_splits import Batch, CachedSplits


class ViewSampler:
    """Which of ``n_views`` cached copies each row reads in a given epoch."""

    def __init__(self, n_views: int, n_rows: int, seed: int):
        if n_views < 1:
            raise DeclipError("the augmentation sampler needs at least one view")
        self.n_views, self.n_rows, self.seed = n_views, n_rows, seed

    def assign(self, epoch: int, rows: np.ndarray) -> np.ndarray:
        """View index per row: drawn for every row of the dataset from (seed, epoch), then indexed by ``rows``,
        so the choice for a row does not depend on which other rows are in its batch or in what order."""
        rng = np.random.default_rng([self.seed, epoch, 0x5EED])
        return rng.integers(self.n_views, size=self.n_rows)[np.asarray(rows, dtype=np.int64)]


class AugmentedSplits:
    """Training batches whose features (and, for geometric views, soft masks) come from the sampled copies."""

    def __init__(self, copies: list[CachedSplits], seed: int):
        n = {len(c.samples) for c in copies}
        if len(n) != 1:
            raise DeclipError("augmented copies must be aligned row for row with the clean dataset")
        self.copies = copies
        self.sampler = ViewSampler(len(copies), n.pop(), seed)

    @classmethod
    def open(cls, store: str, dataset: str, views: list[str], sources: list[str], memory_gb: float | None,
             seed: int) -> "AugmentedSplits":
        copies = [CachedSplits.open(store, view_dataset_key(dataset, v), sources, memory_gb, partial=v != "clean",
                                    share=len(views) + 1) for v in views]
        return cls(copies, seed)

    @property
    def valid(self) -> np.ndarray:
        ok = self.copies[0].valid.copy()
        for c in self.copies[1:]:
            ok &= c.valid
        return ok

    def require_written(self, rows: np.ndarray, split: str) -> None:
        for c in self.copies:
            view = DatasetKey.parse(c.dataset).view
            c.require_written(rows, f"the {split} split",
                              f"run `declip extract --view {view} --split {split}` first")

    def warm(self, rows: np.ndarray, device: str = "cpu", device_budget: int = 0) -> None:
        """Each copy on the device (an equal share of ``device_budget``), in RAM or streaming, as it fits."""
        for c in self.copies:
            c.warm(rows, device, device_budget // len(self.copies))

    def load(self, rows: np.ndarray, choice: np.ndarray, sources: list[str]) -> Batch:
        parts = {k: self.copies[k].load(rows[choice == k], sources) for k in np.unique(choice)}
        first = next(iter(parts.values()))
        # assembled where the copies' rows already are (the host, or the training device when held there)
        masks = torch.empty((len(rows), *first.masks.shape[1:]), dtype=first.masks.dtype, device=first.masks.device)
        features = {}
        for src in sources:
            f0, c0 = first.features[src]
            feats = torch.empty((len(rows), *f0.shape[1:]), dtype=f0.dtype, device=f0.device)
            cls = None if c0 is None else torch.empty((len(rows), *c0.shape[1:]), dtype=c0.dtype, device=c0.device)
            for k, part in parts.items():
                idx = torch.from_numpy(np.flatnonzero(choice == k)).to(f0.device)
                feats[idx] = part.features[src][0]
                if cls is not None:
                    cls[idx] = part.features[src][1]
            features[src] = (feats, cls)
        for k, part in parts.items():
            masks[torch.from_numpy(np.flatnonzero(choice == k)).to(masks.device)] = part.masks
        labels = torch.from_numpy(self.copies[0].labels[rows])
        return Batch(rows, masks, labels, features)

    def batches(self, rows: np.ndarray, batch_size: int, shuffle: bool, seed: int, sources: list[str], epoch: int):
        """Same row order as :meth:`CachedSplits.batches` with the same seed; copies chosen per (epoch, row)."""
        order = np.random.default_rng(seed).permutation(rows) if shuffle else np.asarray(rows)
        chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        choice = self.sampler.assign(epoch, order)
        jobs = [(chunk, choice[i:i + batch_size]) for chunk, i in zip(chunks, range(0, len(order), batch_size))]
        if all(not c.streaming for c in self.copies):
            for chunk, ch in jobs:
                yield self.load(chunk, ch, sources)
            return
        yield from background_map(lambda job: self.load(job[0], job[1], sources), jobs, depth=2)
