"""Feature families: how one kind of frozen backbone is built, which layers it has, and how one pass yields them.

A family is chosen from the backbone key's architecture (``ViT-L-14@openai`` → ``vit``, ``RN50@openai`` →
``resnet``, ``srm@fixed`` → ``srm``), so every caller (extraction, predict, the benches, the contract tests) goes
through :func:`family_for` and never branches on a family name itself.

Adding a family is one new module under ``features/`` (it is imported automatically the first time the registry
is read) that subclasses :class:`FeatureFamily` and decorates it with :func:`register_family`::

    @register_family
    class SrmFamily(FeatureFamily):
        name = "srm"                        # stored as the layer group's "family"; decoders receive it
        default_recipe = "srm"              # a name in features.preprocess.RECIPES (register it there if new)
        test_keys = ("srm@fixed",)          # cheap backbone keys the contract tests build and run

        def handles(self, arch): return arch == "srm"
        def build(self, key): ...           # → frozen nn.Module (eval mode is set by load_backbone)
        def input_spec(self, visual): ...   # → (image_size, mean, std) of the model input
        def layer_names(self, backbone): ...
        def layer_info(self, backbone, layer): ...   # → LayerInfo, without running the model
        def forward_layers(self, backbone, images, layers): ...

The contract (checked for every registered family × every ``test_keys`` entry × every layer by
``tests/test_contracts.py``): ``forward_layers`` returns ``{layer: (features (B, C, H, W), class token (B, C) or
None)}`` for exactly the requested layers, with ``C``, ``(H, W)`` and the presence of the class token equal to
``layer_info``; ``images`` is the batch the family's recipe produced (B, 3, size, size). Weights the family cannot
obtain are a :class:`core.errors.DeclipError` naming the key and the fix, never a silent fallback.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from declip.core.errors import DeclipError
from declip.core.keys import BackboneKey
from declip.core.registry import Registry, import_submodules

if TYPE_CHECKING:
    from declip.features.backbones import Backbone

LayerOutputs = dict[str, tuple[torch.Tensor, "torch.Tensor | None"]]


@dataclass(frozen=True)
class LayerInfo:
    """What one cached layer holds: the store's array schema."""

    name: str
    index: int  # ViT block index, ResNet stage number (1-4), or the family's own ordinal
    channels: int
    grid: tuple[int, int]
    has_cls: bool
    semantics: str


class FeatureFamily:
    """One kind of backbone. Subclasses set the class attributes and implement every method (see module doc)."""

    name: str = ""
    default_recipe: str = "declip"
    test_keys: tuple[str, ...] = ()

    def handles(self, arch: str) -> bool:
        raise NotImplementedError

    def build(self, key: BackboneKey) -> nn.Module:
        raise NotImplementedError

    def input_spec(self, visual: nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
        raise NotImplementedError

    def layer_names(self, backbone: "Backbone") -> list[str]:
        raise NotImplementedError

    def layer_info(self, backbone: "Backbone", layer: str) -> LayerInfo:
        raise NotImplementedError

    def forward_layers(self, backbone: "Backbone", images: torch.Tensor, layers: list[str]) -> LayerOutputs:
        raise NotImplementedError


FAMILIES: Registry[FeatureFamily] = Registry("feature family", loader=lambda: import_submodules("declip.features"))


def register_family(cls: type[FeatureFamily]) -> type[FeatureFamily]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    FAMILIES.add(cls.name, cls())
    return cls


def family_for(arch: str) -> FeatureFamily:
    """The registered family that builds ``arch``; a clear error when none does."""
    for _, family in FAMILIES.items():
        if family.handles(arch):
            return family
    raise DeclipError(
        f"no feature family builds architecture {arch!r} (families: {', '.join(FAMILIES.names())}); for open_clip "
        "see `python -c \"import open_clip; print(open_clip.list_models())\"` (local test/demo configs live in "
        "features/model_configs)"
    )


# ---- open_clip: the two image towers CLIP ships (VisionTransformer, ModifiedResNet) -------------------------------

_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _open_clip_vision_layers(arch: str):
    """open_clip's vision ``layers`` for ``arch`` (int: ViT blocks; list: ResNet stages), or None if not open_clip."""
    from declip.features.backbones import open_clip_config

    cfg = open_clip_config(arch)
    if cfg is None:
        return None
    vision = cfg.get("vision_cfg", {})
    return None if vision.get("timm_model_name") else vision.get("layers")


class _OpenClipFamily(FeatureFamily):
    def build(self, key: BackboneKey) -> nn.Module:
        from declip.features.backbones import create_open_clip

        model = create_open_clip(key)
        visual = model.visual
        del model  # the text tower is never used
        return visual

    def input_spec(self, visual: nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
        size = visual.image_size
        size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean = tuple(float(v) for v in getattr(visual, "image_mean", None) or _OPENAI_MEAN)
        std = tuple(float(v) for v in getattr(visual, "image_std", None) or _OPENAI_STD)
        return size, mean, std


@register_family
class OpenClipViT(_OpenClipFamily):
    """``layerK`` is the residual stream after block K (0-based), no LayerNorm (DeCLIP never applies ``ln_post``),
    class token split off, patch tokens as a row-major (C, H, W) grid (declip-method §2.2)."""

    name = "vit"
    test_keys = ("test-vit-tiny@random-0",)

    def handles(self, arch: str) -> bool:
        return isinstance(_open_clip_vision_layers(arch), int)

    def layer_names(self, backbone: "Backbone") -> list[str]:
        return [f"layer{k}" for k in range(len(backbone.visual.transformer.resblocks))]

    def layer_info(self, backbone: "Backbone", layer: str) -> LayerInfo:
        v, k = backbone.visual, int(layer.removeprefix("layer"))
        ph, pw = v.patch_size if isinstance(v.patch_size, tuple) else (v.patch_size, v.patch_size)
        grid = (backbone.image_size // ph, backbone.image_size // pw)
        return LayerInfo(layer, k, v.transformer.width, grid, True,
                         f"residual stream after block {k} (0-based), no LayerNorm, class token stored apart")

    @torch.no_grad()
    def forward_layers(self, backbone: "Backbone", images: torch.Tensor, layers: list[str]) -> LayerOutputs:
        indices = sorted(int(name.removeprefix("layer")) for name in layers)
        out = backbone.visual.forward_intermediates(
            images, indices=indices, stop_early=True, intermediates_only=True,
            output_fmt="NCHW", output_extra_tokens=True,
        )
        feats, prefix = out["image_intermediates"], out["image_intermediates_prefix"]
        return {f"layer{k}": (f, p[:, 0]) for k, f, p in zip(indices, feats, prefix)}


@register_family
class OpenClipResNet(_OpenClipFamily):
    """``layer1..layer4`` are the stage outputs (declip-method §2.3). open_clip's
    ``ModifiedResNet.forward_intermediates`` has an inverted ``stop_early`` test (stack-notes §4.1), so the stages
    run here, stopping after the deepest requested one."""

    name = "resnet"
    test_keys = ("test-rn-tiny@random-0",)
    stages = ("layer1", "layer2", "layer3", "layer4")

    def handles(self, arch: str) -> bool:
        return isinstance(_open_clip_vision_layers(arch), (list, tuple))

    def layer_names(self, backbone: "Backbone") -> list[str]:
        return list(self.stages)

    def layer_info(self, backbone: "Backbone", layer: str) -> LayerInfo:
        k = int(layer.removeprefix("layer"))
        stage = getattr(backbone.visual, layer)
        channels = stage[-1].bn3.num_features if hasattr(stage[-1], "bn3") else stage[-1].conv3.out_channels
        side = backbone.image_size // (4 * 2 ** (k - 1))
        return LayerInfo(layer, k, channels, (side, side), False, f"output of ResNet stage {k}")

    @torch.no_grad()
    def forward_layers(self, backbone: "Backbone", images: torch.Tensor, layers: list[str]) -> LayerOutputs:
        indices = sorted(int(name.removeprefix("layer")) for name in layers)
        v = backbone.visual
        x = v.stem(images)
        result = {}
        for k in range(1, max(indices) + 1):
            x = getattr(v, f"layer{k}")(x)
            if k in indices:
                result[f"layer{k}"] = (x, None)
        return result
