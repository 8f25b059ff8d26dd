"""Predicted probability maps at each image's native size: the one path from a decoder's output to a map.

Evaluation (cached rows), ``predict`` (images encoded on the fly) and the report (overlays recomputed from a
checkpoint and the store when a grid saved no maps) all call this module, so a map is computed one way everywhere:
the sigmoid of the decoder's first output channel at 256×256, resized to the image's (height, width) with
antialiased bilinear interpolation (DeCLIP's protocol, declip-method §6). Why one module: the report used to
re-run models with its own copy of these lines, and its copy had drifted (it indexed the cached sources by text).

A fused source (ViT + RN50) reaches the decoder already fused and without a class token, whether it was read from
the store (:class:`declip.store.readers.FeatureSource`) or encoded now (:func:`decoder_inputs`).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from declip.core.keys import SourceKey
from declip.decoders import Decoder
from declip.decoders.bicubic import matrix_logits
from declip.features.fusion import fuse
from declip.pipeline.data.cached_splits import CachedSplits
from declip.pipeline.metrics.resize import to_native

Size = tuple[int, int]  # (height, width), numpy's order


def decoder_inputs(parts: Sequence[tuple[torch.Tensor, torch.Tensor | None]], fused: bool
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Freshly encoded layers → what the decoder reads: the one layer with its class token, or the two fused ones
    (ViT first) without one, exactly as the store's reader assembles cached layers."""
    if fused:
        return fuse(parts[0][0], parts[1][0]), None
    return parts[0]


@torch.no_grad()
def probabilities(decoder: Decoder, feats: torch.Tensor, cls: torch.Tensor | None, device: str = "cpu",
                  matrix_upsample: bool = False) -> np.ndarray:
    """(B, 256, 256) manipulation probabilities of one batch of decoder inputs.

    ``matrix_upsample`` (per-epoch validation): a decoder that upsamples its token scores does so as training does,
    by :func:`declip.decoders.bicubic.matrix_logits` (BLAS, ~10x faster on the CPU, equal to the decoder's own
    ``F.interpolate`` up to float rounding); evaluation and prediction keep the decoder's forward, DeCLIP's call."""
    feats, cls = feats.to(device).float(), None if cls is None else cls.to(device).float()
    if matrix_upsample and decoder.scores_then_upsample:
        logits = matrix_logits(decoder, feats, cls)
    else:
        logits = decoder(feats, cls)
    return torch.sigmoid(logits[:, 0].float()).cpu().numpy()


def native_maps(decoder: Decoder, feats: torch.Tensor, cls: torch.Tensor | None, sizes: Sequence[Size],
                device: str = "cpu", matrix_upsample: bool = False) -> list[np.ndarray]:
    """One float32 probability map per input, each resized to its image's (height, width)."""
    probs = probabilities(decoder, feats, cls, device, matrix_upsample)
    return [to_native(prob, size) for prob, size in zip(probs, sizes)]


def native_size(samples: pd.DataFrame, row: int) -> Size:
    """(height, width) of a dataset row: the size its map is resized to and its mask is scored at."""
    rec = samples.iloc[int(row)]
    return int(rec["height"]), int(rec["width"])


def maps_of_rows(decoder: Decoder, data: CachedSplits, source: SourceKey | str, rows: Sequence[int], *,
                 batch_size: int = 64, device: str = "cpu") -> Iterator[tuple[int, np.ndarray]]:
    """(row, native-size map) for each of ``rows``, in order, from the cached features of ``source``."""
    source = SourceKey.parse(source)
    decoder.eval()
    for batch in data.batches(np.asarray(rows, dtype=np.int64), batch_size, shuffle=False, seed=0, sources=[source]):
        sizes = [native_size(data.samples, row) for row in batch.rows]
        yield from zip(batch.rows.tolist(), native_maps(decoder, *batch.features[source], sizes, device))
