"""The localization loss of many heads from one batch: shared targets, matrix upsampling, fused losses, one backward.

Why: in a multi-head group (a linear or attention head on every layer) the per-head work after the head itself
dominates -- the bicubic upsampling of the grid scores to 256², its backward, and the BCE against the 256² soft
masks (a profile of one grouped grid run: backward 16.3 s, BCE 10.7 s, upsampling 5.9 s of 44 s; issue 23). Here:

* the soft targets are the batch's, converted once and shared by every head;
* the grid scores of up to :data:`MAX_HEADS_PER_CALL` heads come out of one concatenated forward and are upsampled
  head by head as ``Wh · s · Wwᵀ`` (:func:`declip.decoders.bicubic.upsample`: the bicubic weights as matrices, BLAS
  instead of ATen's bicubic kernel, equal up to float rounding; head by head so that the matrix shapes, hence the
  bits, never depend on how many heads share the call). Validation upsamples the same way; evaluation keeps the
  decoder's own ``F.interpolate`` (pipeline/evaluate/maps.py);
* each head's loss is computed on its own contiguous slice (:func:`bce_sum`: softplus and a dot product, the
  BCE-with-logits up to float rounding, 3.5x cheaper than ATen's composite kernel);
* the gradient is written out: ``(sigmoid(u) - y) / N`` per head, then the adjoint of the upsampling as two small
  matrix products, ``Wh^T · d · Ww`` -- 3x cheaper than ATen's scatter-add backward here -- computed in the forward
  a few rows at a time, while those rows' logits are still in the CPU's cache (the backward scales it by the
  upstream gradient). These gradients equal autograd's up to float rounding (tests hold them to 1e-5).

A head's computation never depends on which other heads share its call, so a head trained in a group gets the
bits of the same head trained alone (tests/pipeline/grid/test_grid_groups.py holds this exactly): one-head runs
take this path too. Decoders qualify when ``scores_then_upsample`` is set (linear, attention); others, detection
mode and compiled decoders keep the per-head loss of :mod:`pipeline.train.training`.
"""
from __future__ import annotations

from typing import Callable, ContextManager

import torch

from declip.decoders.bicubic import bicubic_matrix, upsample
from declip.decoders.registry import OUTPUT_SIZE

MAX_HEADS_PER_CALL = 16  # bounds the heads' activations held for one backward (an attention head keeps its blocks')


#: ``sigmoid(|u|)`` lies in [0.5, 1], so a product of 32 of them stays above 0.5³² ≈ 2.3e-10, far from float32's
#: underflow: one log per 32 logits instead of one per logit.
LOG_BLOCK = 32
#: Rows of 256² logits handled at a time on the CPU: 8 × 256² float32 = 2 MiB, so a chunk's logits, its sigmoid and
#: its gradient stay in the cache between the passes over them (each pass over a whole 64-row batch went to memory).
CPU_ROWS_PER_CHUNK = 8


def bce_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")`` as ``Σ softplus(u) - Σ y·u``, with
    ``softplus(u) = relu(u) - log(sigmoid(|u|))``. Why not ATen's: its CPU softplus (like ``log1p``) is a scalar loop,
    4.4x slower on 64×256² (it took 37 % of a grouped linear-head run); and the log, the costliest pass left, is taken
    of products of :data:`LOG_BLOCK` sigmoids (``Σ log pᵢ = log Π pᵢ``), 32x fewer logs. Equal up to float rounding
    (the float64 oracle test holds the mean to 1e-6 relative); only the reported training loss reads it -- the
    gradient is :class:`UpsampledBCE`'s."""
    u = logits.reshape(-1)
    whole = u.numel() - u.numel() % LOG_BLOCK
    p = torch.sigmoid(u.abs())
    log_p = torch.log(p[:whole].view(-1, LOG_BLOCK).prod(dim=1)).sum() + torch.log(p[whole:]).sum()
    return torch.relu(u).sum() - log_p - torch.dot(u, targets.reshape(-1))


class UpsampledBCE(torch.autograd.Function):
    """``maps`` ``[K·B, 1, h, w]`` (K heads' grid scores, head-major) and ``targets`` ``[B, 256, 256]`` → the K
    heads' mean BCE-with-logits losses ``[K]``.

    The forward also computes each head's gradient for a unit upstream gradient, ``Wh^T · (sigmoid(u) - y) · Ww / N``
    (the adjoint of the upsampling), chunk of rows by chunk of rows (:data:`CPU_ROWS_PER_CHUNK`; the whole batch on
    a GPU), while the chunk's logits are in the cache; the backward only scales it. No 256² logits are kept."""

    @staticmethod
    def forward(ctx, maps: torch.Tensor, targets: torch.Tensor, heads: int) -> torch.Tensor:
        rows, (h, w) = targets.shape[0], maps.shape[2:]
        wh, ww = bicubic_matrix(h, maps.device), bicubic_matrix(w, maps.device)
        step = rows if maps.device.type != "cpu" else CPU_ROWS_PER_CHUNK
        with torch.autocast(maps.device.type, enabled=False):  # the loss in float32, as the per-head path does
            scores = maps[:, 0].float()
            grads = torch.empty_like(scores)
            sums = []
            for k in range(heads):
                total = torch.zeros((), dtype=torch.float64, device=maps.device)
                for lo in range(0, rows, step):
                    at = slice(k * rows + lo, k * rows + min(lo + step, rows))
                    u, y = upsample(scores[at], wh, ww), targets[lo:lo + step]
                    total += bce_sum(u, y)
                    grads[at] = torch.matmul(wh.T, torch.matmul(torch.sigmoid(u).sub_(y), ww))
                sums.append(total)
        count = rows * OUTPUT_SIZE * OUTPUT_SIZE
        ctx.save_for_backward(grads)
        ctx.rows, ctx.count, ctx.map_dtype = rows, count, maps.dtype
        return (torch.stack(sums) / count).float()

    @staticmethod
    def backward(ctx, grad_losses: torch.Tensor):
        (grads,) = ctx.saved_tensors
        scale = (grad_losses / ctx.count).repeat_interleave(ctx.rows)
        return (grads * scale[:, None, None]).unsqueeze(1).to(ctx.map_dtype), None, None


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
