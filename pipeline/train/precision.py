"""Accelerator settings for decoder training: bf16 autocast, channels_last for conv decoders, optional torch.compile,
and how much device memory cached features may occupy when they are kept on the device.

Each setting is a no-op where it does not help (channels_last and the device budget default to off on CPU), so the
same TrainConfig runs everywhere. bf16 changes the numbers slightly and is therefore part of a run's identity;
channels_last and compile are layout/scheduling choices and are not.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, ContextManager

from declip.core.errors import DeclipError

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads PRECISIONS to build its flags
    import torch
    from torch import nn

PRECISIONS = ("fp32", "bf16")


def device_type(device: str) -> str:
    import torch

    return torch.device(device).type


def autocast(device: str, precision: str) -> ContextManager:
    """bf16 autocast for the decoder forward (CUDA; also works on CPU for tests); fp32 = no autocast."""
    import torch

    if precision not in PRECISIONS:
        raise DeclipError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type(device), dtype=torch.bfloat16)


def use_channels_last(device: str, decoder_name: str, requested: bool | None) -> bool:
    """Default: on for conv decoders on CUDA (tensor-core convolutions want NHWC), off elsewhere."""
    if requested is not None:
        return bool(requested) and decoder_name.startswith("conv")
    return device_type(device) == "cuda" and decoder_name.startswith("conv")


def prepare_decoder(decoder: nn.Module, channels_last: bool, compile_model: bool) -> Callable:
    """Lay the decoder out for the device; return the callable to run (compiled or not).

    The decoder itself is left uncompiled so its state dict (saved every epoch) keeps its plain keys.
    """
    import torch

    if channels_last:
        decoder.to(memory_format=torch.channels_last)
    if compile_model:
        return torch.compile(decoder)
    return decoder


def decoder_input(feats: torch.Tensor, device: str, channels_last: bool) -> torch.Tensor:
    """Feature batch → float32 on the device (a no-op copy when it already lives there), NHWC when asked."""
    import torch

    x = feats.to(device, non_blocking=True).float()
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def device_budget_bytes(device: str, device_memory_gb: float | None) -> int:
    """Bytes of cached features that may live on the device. Default: 60 % of free CUDA memory; 0 (off) on CPU,
    where the in-RAM cache already avoids store reads. An explicit value is used as given, on any device."""
    import torch

    if device_memory_gb is not None:
        return int(device_memory_gb * 2**30)
    if device_type(device) == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(0.6 * free)
    return 0
