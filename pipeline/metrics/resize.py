"""Bring a 256×256 probability map to the ground-truth mask's native size, as DeCLIP's ``validate.py`` does.

DeCLIP calls ``torchvision.transforms.functional.resize(pred, mask_size)`` on the float sigmoid map. For float
tensors torchvision (v1 and v2 functional alike) forwards to
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=True)``; ``antialias=True`` has
been the tensor default since torchvision 0.17, the version DeCLIP pins. We call ``interpolate`` directly with
those arguments (``tests/test_resize.py`` checks equality with torchvision), which avoids torchvision's
per-call dispatch. Antialiasing only changes results when a side shrinks; upsampling is plain bilinear.

Order matters: metrics binarise **after** resizing (``to_native(prob) > 0.5``). Resizing a binarised map gives
different masks wherever the interpolated value crosses 0.5 between samples.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_native(prob: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Resize an (h, w) probability map to ``size`` = (H, W) the way DeCLIP's evaluation does.

    Args:
        prob: (h, w) probabilities in [0, 1], numpy or torch (any device).
        size: target (H, W), the native mask size.

    Returns:
        (H, W) float32 numpy array. When the sizes already match and ``prob`` is a float32 numpy array it is
        returned as is (no copy), so callers must not mutate it.
    """
    if prob.ndim != 2:
        raise ValueError(f"to_native expects an (h, w) map, got shape {tuple(prob.shape)}")
    target = (int(size[0]), int(size[1]))
    if tuple(prob.shape) == target:
        return _as_float32_numpy(prob)
    t = torch.as_tensor(prob).detach().to(dtype=torch.float32)
    out = F.interpolate(t[None, None], size=target, mode="bilinear", align_corners=False, antialias=True)
    return out[0, 0].cpu().numpy()


def _as_float32_numpy(prob: np.ndarray | torch.Tensor) -> np.ndarray:
    """float32 numpy view of ``prob``; copies only when the dtype or device forces it."""
    if isinstance(prob, torch.Tensor):
        prob = prob.detach().to(dtype=torch.float32).cpu().numpy()
    return np.asarray(prob, dtype=np.float32)
