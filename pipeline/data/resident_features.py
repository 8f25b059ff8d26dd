"""Training rows held on the training device: features (as stored), soft masks and labels, copied there once.

When a layer's train + validation rows fit the device memory budget, every epoch of every head then indexes device
tensors: no store reads, no host copies per batch (only the batch's row indices go over). Features stay in their
storage dtype on the device (float16, or int8/float8 with scales: half the memory) and are decoded per batch by
the same code the host path uses, so device-resident and streaming training give the same numbers.
"""
from __future__ import annotations

import numpy as np
import torch

from declip.store.readers import FeatureSource


class ResidentRows:
    """Rows ``rows`` of several sources, with their masks and labels, on ``device``."""

    def __init__(self, sources: dict[str, FeatureSource], rows: np.ndarray, masks: np.ndarray, labels: np.ndarray,
                 n_samples: int, device: str):
        self.device = torch.device(device)
        self.sources = sources
        rows = np.asarray(rows)
        self.position = np.full(n_samples, -1, dtype=np.int64)
        self.position[rows] = np.arange(len(rows))
        self.parts: dict[str, list[dict[str, torch.Tensor | None]]] = {}
        for name, src in sources.items():
            self.parts[name] = [
                {k: None if v is None else torch.as_tensor(np.ascontiguousarray(v)).to(self.device)
                 for k, v in (("feats", raw.feats), ("scales", raw.scales), ("cls", raw.cls))}
                for raw in src.read_raw(rows)
            ]
        self.masks = torch.as_tensor(masks).to(self.device)  # uint8, 1/4 of float32
        self.labels = torch.as_tensor(labels).to(self.device)

    @staticmethod
    def nbytes(sources: dict[str, FeatureSource], n_rows: int) -> int:
        return sum(src.nbytes(n_rows) for src in sources.values()) + n_rows * (256 * 256 + 8)

    def holds(self, rows: np.ndarray) -> bool:
        return bool(len(rows) == 0 or (self.position[np.asarray(rows)] >= 0).all())

    def index(self, rows: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.position[np.asarray(rows)]).to(self.device)

    def features(self, source: str, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        src = self.sources[source]
        decoded = []
        for reader, part in zip(src.readers, self.parts[source]):
            feats = part["feats"].index_select(0, idx)
            scales = None if part["scales"] is None else part["scales"].index_select(0, idx)
            cls = None if part["cls"] is None else part["cls"].index_select(0, idx)
            decoded.append(reader.decode_tensors(feats, scales, cls))
        return src.assemble(decoded)

    def soft_masks(self, idx: torch.Tensor) -> torch.Tensor:
        return self.masks.index_select(0, idx).float() / 255.0
