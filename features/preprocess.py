"""Named preprocessing recipes, recorded in the store next to the features they produced.

``declip`` is DeCLIP's (declip-method §2.1): squash-resize to the model's input size with bilinear interpolation
(PIL, hence antialiased), no crop, CLIP mean/std. ``openclip`` is open_clip's own: bicubic shorter-side resize and a
centre crop. Different recipes give different features, so the recipe is part of the backbone key.

Neither applies EXIF orientation: DeCLIP's loader (``Image.open(...).convert("RGB")``) reads pixels as stored, and
open_clip's transforms do not rotate either. ``declip+exif`` / ``openclip+exif`` turn images upright first; masks are
then read the same way (the store records which, per dataset), so a mask always lines up with its image.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from declip.core.registry import Registry, import_submodules


@dataclass(frozen=True)
class Recipe:
    """Everything that turns a decoded RGB image into the model's input tensor."""

    name: str
    size: int
    interpolation: str  # "bilinear" | "bicubic"
    crop: bool  # centre crop after a shorter-side resize (False: squash to size × size)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dtype: str = "float32"  # model input/compute dtype; "float16" only on CUDA
    exif_orientation: str = "ignore"  # "ignore": pixels as stored (DeCLIP); "apply": ImageOps.exif_transpose first

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def applies_exif(self) -> bool:
        return self.exif_orientation == "apply"

# name → builder(size, mean, std, dtype) -> Recipe. A new recipe is one decorated builder (in any features module).
RECIPES: Registry[Callable[..., Recipe]] = Registry("preprocessing recipe",
                                                    loader=lambda: import_submodules("declip.features"))


@RECIPES.register("declip")
def declip_recipe(size: int, mean, std, dtype: str = "float32") -> Recipe:
    """DeCLIP's: squash to size × size, bilinear (antialiased PIL), no crop, pixels as stored (no EXIF rotation)."""
    return Recipe("declip", size, "bilinear", False, tuple(mean), tuple(std), dtype)


@RECIPES.register("openclip")
def openclip_recipe(size: int, mean, std, dtype: str = "float32") -> Recipe:
    """open_clip's: bicubic shorter-side resize, centre crop (open_clip applies no EXIF rotation either)."""
    return Recipe("openclip", size, "bicubic", True, tuple(mean), tuple(std), dtype)


@RECIPES.register("declip+exif")
def declip_exif_recipe(size: int, mean, std, dtype: str = "float32") -> Recipe:
    """DeCLIP's recipe on upright images (EXIF orientation applied to images and masks)."""
    return replace(declip_recipe(size, mean, std, dtype), name="declip+exif", exif_orientation="apply")


@RECIPES.register("openclip+exif")
def openclip_exif_recipe(size: int, mean, std, dtype: str = "float32") -> Recipe:
    """open_clip's recipe on upright images (EXIF orientation applied to images and masks)."""
    return replace(openclip_recipe(size, mean, std, dtype), name="openclip+exif", exif_orientation="apply")


def make_recipe(name: str, size: int, mean, std, dtype: str = "float32") -> Recipe:
    return RECIPES.get(name)(size, mean, std, dtype)


def resize_for(recipe: Recipe, image: Image.Image) -> Image.Image:
    """torchvision's PIL resize, as both DeCLIP (``Resize((224, 224))``) and open_clip use it.

    torchvision is imported here, not with the module: importing it loads its models and ops (~1.3 s), which
    every command that reads the recipes (report, train, evaluate) would pay without resizing an image."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    mode = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}[recipe.interpolation]
    if not recipe.crop:
        return TF.resize(image, [recipe.size, recipe.size], interpolation=mode)
    return TF.center_crop(TF.resize(image, recipe.size, interpolation=mode), [recipe.size, recipe.size])


def to_tensor(recipe: Recipe, image: Image.Image) -> torch.Tensor:
    """RGB PIL image → normalised float32 CHW tensor: ``(pixel / 255 - mean) / std`` per channel, in float32."""
    return to_tensor_into(recipe, image, None)


def to_tensor_into(recipe: Recipe, image: Image.Image, out: torch.Tensor | None) -> torch.Tensor:
    """:func:`to_tensor`, written into ``out`` (a (3, S, S) float32 slot of a batch) when given: no extra copy.

    An 8-bit pixel has 256 values, so the float32 arithmetic is done once per value and channel (a lookup table of
    the same operations, hence the same bits) and the image is gathered through it -- ~3x faster than the
    arithmetic on every pixel, and the reader's workers do it for every image extraction encodes.
    """
    arr = np.asarray(resize_for(recipe, image))
    if arr.dtype != np.uint8 or arr.shape[2:] != (3,):
        raise ValueError(f"expected an 8-bit RGB image, got PIL mode {image.mode!r} (decode with open_rgb)")
    if out is None:
        out = torch.empty((3, arr.shape[0], arr.shape[1]), dtype=torch.float32)
    table, target = _normalise_table(recipe.mean, recipe.std), out.numpy()
    for channel in range(3):  # HWC pixels gathered into CHW planes, in RGB order
        np.take(table[channel], arr[:, :, channel], out=target[channel])
    return out


@lru_cache(maxsize=16)
def _normalise_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: ``(v / 255 - mean[c]) / std[c]`` for every 8-bit value ``v``, by float32 operations."""
    values = np.arange(256, dtype=np.float32)[:, None] / 255.0
    table = (values - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    table = np.ascontiguousarray(table.T)
    table.flags.writeable = False  # shared by every call (lru_cache)
    return table
