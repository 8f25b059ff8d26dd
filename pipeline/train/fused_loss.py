"""The localization loss of many heads from one batch: shared targets, matrix upsampling, fused losses, one backward.

Why: in a multi-head group (a linear or attention head on every layer) the per-head work after the head itself
dominates -- the bicubic upsampling of the grid scores to 256², its backward, and the BCE against the 256² soft
masks (a profile of one grouped grid run: backward 16.3 s, BCE 10.7 s, upsampling 5.9 s of 44 s; issue 23). Here:

* the soft targets are the batch's, converted once and shared by every head;
* the grid scores of up to :data:`MAX_HEADS_PER_CALL` heads come out of one concatenated forward and are upsampled
  head by head as ``Wh · s · Wwᵀ`` (:func:`upsample`: the bicubic weights as matrices, BLAS instead of ATen's
  bicubic kernel, equal up to float rounding; head by head so that the matrix shapes, hence the bits, never depend
  on how many heads share the call). Validation and evaluation keep ``F.interpolate`` (pipeline/evaluate/maps.py);
* each head's loss is computed on its own contiguous slice (:func:`mean_bce`: softplus and a dot product, the
  BCE-with-logits mean up to float rounding, 3.5x cheaper than ATen's composite kernel);
* the backward is written out: ``(sigmoid(u) - y) · g / N`` per head, then the adjoint of the upsampling as two
  small matrix products per head, ``Wh^T · d · Ww`` with the bicubic weights as matrices -- 3x cheaper than ATen's
  scatter-add backward here. These gradients equal autograd's up to float rounding (tests hold them to 1e-5).

A head's computation never depends on which other heads share its call, so a head trained in a group gets the
bits of the same head trained alone (tests/pipeline/grid/test_grid_groups.py holds this exactly): one-head runs
take this path too. Decoders qualify when ``scores_then_upsample`` is set (linear, attention); others, detection
mode and compiled decoders keep the per-head loss of :mod:`pipeline.train.training`.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, ContextManager

import torch

OUTPUT = 256  # decoders.registry.OUTPUT_SIZE: DeCLIP's 256² logits
MAX_HEADS_PER_CALL = 16  # bounds the 256² logits held for the backward (16 heads × batch 64: 268 MB in float32)
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


def bicubic_matrix(n_in: int, device: torch.device | str = "cpu", n_out: int = OUTPUT) -> torch.Tensor:
    """The float32 ``[n_out, n_in]`` resampling matrix on ``device``."""
    return _bicubic_weights(int(n_in), int(n_out)).to(device=device, dtype=torch.float32)


def upsample(scores: torch.Tensor, wh: torch.Tensor, ww: torch.Tensor) -> torch.Tensor:
    """``[B, h, w]`` float32 grid scores → ``[B, 256, 256]``: ``Wh · s · Wwᵀ``, PyTorch's bicubic upsampling up to
    float rounding, as two small matrix products (BLAS: ~10x faster than ATen's bicubic kernel on the CPU)."""
    return torch.matmul(wh, torch.matmul(scores, ww.T))


def mean_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``F.binary_cross_entropy_with_logits(logits, targets)`` (mean) as ``mean(softplus(u)) - mean(y·u)``, with
    ``softplus(u) = relu(u) - log(sigmoid(|u|))``: ATen's CPU softplus (like ``log1p``) is a scalar loop, 4.4x slower
    than these three vectorised passes on 64×256² (it took 37 % of a grouped linear-head run). Equal up to float
    rounding (|u| > 17 drops a term below 4e-8); only the reported training loss reads it -- the gradient is
    :class:`UpsampledBCE`'s."""
    u = logits.reshape(-1)
    softplus = torch.relu(u).sub_(torch.log(torch.sigmoid(u.abs())))
    return (softplus.sum() - torch.dot(u, targets.reshape(-1))) / u.numel()


class UpsampledBCE(torch.autograd.Function):
    """``maps`` ``[K·B, 1, h, w]`` (K heads' grid scores, head-major) and ``targets`` ``[B, 256, 256]`` → the K
    heads' mean BCE-with-logits losses ``[K]``."""

    @staticmethod
    def forward(ctx, maps: torch.Tensor, targets: torch.Tensor, heads: int) -> torch.Tensor:
        rows, (h, w) = targets.shape[0], maps.shape[2:]
        wh, ww = bicubic_matrix(h, maps.device), bicubic_matrix(w, maps.device)
        with torch.autocast(maps.device.type, enabled=False):  # the loss in float32, as the per-head path does
            logits = [upsample(maps[k * rows:(k + 1) * rows, 0].float(), wh, ww) for k in range(heads)]
            losses = torch.stack([mean_bce(u, targets) for u in logits])
        ctx.save_for_backward(targets, *logits)
        ctx.grid, ctx.map_dtype = (h, w), maps.dtype
        return losses

    @staticmethod
    def backward(ctx, grad_losses: torch.Tensor):
        targets, *logits = ctx.saved_tensors
        (h, w) = ctx.grid
        wh, ww = bicubic_matrix(h, targets.device), bicubic_matrix(w, targets.device)
        grads = []
        for k, u in enumerate(logits):
            d = (torch.sigmoid(u) - targets).mul_(grad_losses[k] / u.numel())
            grads.append(torch.matmul(wh.T, torch.matmul(d, ww)).unsqueeze(1))
        return torch.cat(grads).to(ctx.map_dtype), None, None


def fused_steps(items: list[tuple], targets: torch.Tensor, autocast: Callable[[], ContextManager]) -> torch.Tensor:
    """One optimizer step for each ``(decoder, features, class token or None, optimizer)`` of ``items`` (decoders
    with ``scores_then_upsample`` on one feature grid) on the batch's soft ``targets``; returns the losses ``[K]``.

    Heads go in calls of at most :data:`MAX_HEADS_PER_CALL`, each one forward (the heads, then one upsampling), one
    backward of the summed losses, then each head's optimizer step: a call's activations are freed before the next.
    """
    rows = targets.shape[0]
    losses = []
    for lo in range(0, len(items), MAX_HEADS_PER_CALL):
        chunk = items[lo:lo + MAX_HEADS_PER_CALL]
        for *_, optimizer in chunk:
            optimizer.zero_grad(set_to_none=True)
        with autocast():
            maps = torch.cat([decoder.token_scores(x, cls).reshape(rows, 1, *decoder.config["grid"])
                              for decoder, x, cls, _ in chunk])
            part = UpsampledBCE.apply(maps, targets, len(chunk))
        part.sum().backward()
        for *_, optimizer in chunk:
            optimizer.step()
        losses.append(part.detach())
    return torch.cat(losses)
