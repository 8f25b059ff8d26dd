"""Frozen image towers named by a backbone key, built by their feature family: the family-generic front.

:func:`load_backbone` picks the family from the key's architecture (:func:`features.families.family_for`) and asks
it to build, describe and later run the tower; how a family obtains its weights lives in the family's own module
(``features/open_clip.py`` for CLIP's ViT and ResNet towers, ``features/srm.py`` for the SRM control). A backbone key
(:class:`core.keys.BackboneKey`) is ``ARCH@WEIGHTS`` with an optional ``~RECIPE`` suffix when the preprocessing is
not the family's default.
"""
from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from declip.core.keys import DEFAULT_RECIPE, BackboneKey
from declip.features.families import FAMILIES, family_for

if TYPE_CHECKING:
    from declip.features.families import FeatureFamily
    from declip.features.preprocess import Recipe


def state_checksum(module: nn.Module) -> str:
    """sha256 over the tensors of a module, in key order: identifies the weights whatever file they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class Backbone:
    """A loaded, frozen, eval-mode image tower and what it is."""

    key: BackboneKey
    visual: nn.Module
    family: str  # the feature family's name (features.families): "vit", "resnet", ...
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_checksum: str
    activation: str = ""  # the family's FeatureFamily.activation() of the built tower; part of the features' identity

    @property
    def feature_family(self) -> "FeatureFamily":
        return FAMILIES.get(self.family)

    @property
    def num_blocks(self) -> int:
        return len(self.feature_family.layer_names(self))

    @property
    def recipe_name(self) -> str:
        """The key's recipe, or the family's own default when the key names none."""
        return self.feature_family.default_recipe if self.key.recipe == DEFAULT_RECIPE else self.key.recipe

    def recipe(self, dtype: str = "float32") -> "Recipe":
        """The preprocessing that produces this backbone's input (recorded in the store beside the features)."""
        from declip.features.preprocess import make_recipe

        return make_recipe(self.recipe_name, self.image_size, self.mean, self.std, dtype)

    def to(self, device: str | torch.device, dtype: torch.dtype = torch.float32) -> "Backbone":
        self.visual.to(device=device, dtype=dtype)
        return self


def load_backbone(key: BackboneKey | str, device: str = "cpu") -> Backbone:
    """Build the image tower for ``key`` with its family, frozen and in eval mode (DeCLIP runs fp32 eval mode).

    ``device="meta"`` builds shapes without memory or weights (give a key that builds offline, e.g. the family's
    ``offline_key``): FLOP counts of models this machine could not hold. Its weights checksum is empty."""
    key = BackboneKey.parse(key)
    family = family_for(key.arch)
    meta = torch.device(device).type == "meta"
    with torch.device("meta") if meta else contextlib.nullcontext():
        visual = family.build(key)
    visual.eval().requires_grad_(False)
    size, mean, std = family.input_spec(visual)
    checksum = "" if meta else state_checksum(visual)
    backbone = Backbone(key, visual, family.name, size, mean, std, checksum, family.activation(visual))
    return backbone if meta else backbone.to(device)
