"""PyTorch's bicubic upsampling of a decoder's grid scores to 256², as two small matrix products.

Why: ``F.interpolate(mode="bicubic")`` on the CPU is a per-pixel kernel that took the largest share of a grouped
multi-head training run (issue 23); ``Wh · s · Wwᵀ`` with the same cubic-convolution weights as matrices runs on BLAS,
~10x faster, and equals it up to float rounding (tests hold both to 1e-5). Training's fused loss
(:mod:`declip.pipeline.train.fused_loss`) and per-epoch validation (:mod:`declip.pipeline.evaluate.maps`) upsample
this way; evaluation and prediction keep the decoder's own ``F.interpolate``, DeCLIP's call, so reported numbers
are computed exactly as DeCLIP computes them.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from declip.decoders.registry import OUTPUT_SIZE, Decoder

BICUBIC_A = -0.75  # PyTorch's (and OpenCV's) cubic convolution coefficient


@lru_cache(maxsize=32)
def _bicubic_weights(n_in: int, n_out: int) -> torch.Tensor:
    """``[n_out, n_in]`` float64: PyTorch's bicubic resampling along one axis (align_corners=False, border samples
    clamped), so that ``F.interpolate(s)`` equals ``Wh @ s @ Ww.T`` up to rounding."""
    scale = n_in / n_out
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    for out in range(n_out):
        src = scale * (out + 0.5) - 0.5
        first = math.floor(src)
        t = src - first
        a = BICUBIC_A
        taps = (((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
                ((a + 2) * t - (a + 3)) * t * t + 1,
                ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
                ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a)
        for k, w in enumerate(taps):
            weights[out, min(max(first - 1 + k, 0), n_in - 1)] += w
    return weights


def bicubic_matrix(n_in: int, device: torch.device | str = "cpu", n_out: int = OUTPUT_SIZE) -> torch.Tensor:
    """The float32 ``[n_out, n_in]`` resampling matrix on ``device``."""
    return _bicubic_weights(int(n_in), int(n_out)).to(device=device, dtype=torch.float32)


def upsample(scores: torch.Tensor, wh: torch.Tensor, ww: torch.Tensor) -> torch.Tensor:
    """``[B, h, w]`` float32 grid scores → ``[B, 256, 256]``: ``Wh · s · Wwᵀ``, PyTorch's bicubic upsampling up to
    float rounding, as two small matrix products (BLAS: ~10x faster than ATen's bicubic kernel on the CPU)."""
    return torch.matmul(wh, torch.matmul(scores, ww.T))


def matrix_logits(decoder: Decoder, feats: torch.Tensor, cls: torch.Tensor | None) -> torch.Tensor:
    """``[B, 1, 256, 256]`` float32 logits of a ``scores_then_upsample`` decoder, its token scores upsampled by
    :func:`upsample` (outside autocast: the upsampling stays in float32, as training's)."""
    h, w = decoder.config["grid"]
    scores = decoder.token_scores(feats, cls).reshape(-1, h, w)
    with torch.autocast(scores.device.type, enabled=False):
        return upsample(scores.float(), bicubic_matrix(h, scores.device), bicubic_matrix(w, scores.device))[:, None]
