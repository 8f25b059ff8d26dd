"""Feature families: how one kind of frozen backbone is built, which layers it has, and how one pass yields them.

A family is chosen from the backbone key's architecture (``ViT-L-14@openai`` → ``vit``, ``RN50@openai`` →
``resnet``, ``srm@fixed`` → ``srm``), so every caller (extraction, predict, the planners, the benches, the contract
tests) goes through :func:`family_for` and never branches on a family name itself.

Adding a family is one new module under ``features/`` (it is imported automatically the first time the registry
is read) that subclasses :class:`FeatureFamily` and decorates it with :func:`register_family`, as
``features/open_clip.py`` (ViT, ResNet) and ``features/srm.py`` do::

    @register_family
    class SrmFamily(FeatureFamily):
        name = "srm"                        # stored as the layer group's "family"; decoders receive it
        default_recipe = "srm"              # a name in features.preprocess.RECIPES (register it there if new)
        test_keys = ("srm@fixed",)          # cheap backbone keys the contract tests build and run

        def handles(self, arch): return arch == "srm"
        def offline_key(self, arch): ...    # → a key of ``arch`` that builds with nothing downloaded
        def build(self, key): ...           # → frozen nn.Module (eval mode is set by load_backbone); under
                                            #   ``torch.device("meta")`` an offline key builds without memory
        def input_spec(self, visual): ...   # → (image_size, mean, std) of the model input
        def layer_names(self, backbone): ...
        def layer_info(self, backbone, layer): ...   # → LayerInfo, without running the model
        def layer_shapes(self, arch): ...   # → TowerShapes from the architecture's config alone (no model built)
        def forward_layers(self, backbone, images, layers): ...

The contract (checked for every registered family × every ``test_keys`` entry × every layer by
``tests/test_contracts.py``): ``forward_layers`` returns ``{layer: (features (B, C, H, W), class token (B, C) or
None)}`` for exactly the requested layers, with ``C``, ``(H, W)`` and the presence of the class token equal to
``layer_info``; ``layer_shapes(arch)`` lists exactly ``layer_names`` and equals ``layer_info`` on the built model
layer for layer; ``images`` is the batch the family's recipe produced (B, 3, size, size). Weights the family cannot
obtain are a :class:`core.errors.DeclipError` naming the key and the fix, never a silent fallback.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
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


@dataclass(frozen=True)
class TowerShapes:
    """Every layer of one architecture's tower, from its config alone: what the planners (disk budget, cost plan,
    FLOP counts, checkpoint import) need on a machine that may hold neither the weights nor the memory to build it."""

    arch: str
    family: str
    layers: tuple[LayerInfo, ...]  # in depth order

    @property
    def depth(self) -> int:
        """Layers of the tower (ViT blocks, ResNet stages, 1 for SRM)."""
        return len(self.layers)

    @property
    def names(self) -> list[str]:
        return [info.name for info in self.layers]

    def __contains__(self, layer: object) -> bool:
        return layer in self.names

    def __getitem__(self, layer: str) -> LayerInfo:
        for info in self.layers:
            if info.name == layer:
                return info
        raise DeclipError(f"{self.arch} has no {layer}; its layers are {self.names[0]}..{self.names[-1]} "
                          f"({self.family})")

    def deepest(self, layers: list[str]) -> str:
        """The layer of ``layers`` a forward pass reaches last (where an early-stopped pass ends)."""
        order = {name: i for i, name in enumerate(self.names)}
        for layer in layers:
            self[layer]  # an unknown layer fails with the tower's layer list
        return max(layers, key=order.__getitem__)


class FeatureFamily:
    """One kind of backbone. Subclasses set the class attributes and implement every method (see module doc)."""

    name: str = ""
    default_recipe: str = "declip"
    test_keys: tuple[str, ...] = ()
    #: A positive control (features known to carry the signal, e.g. SRM residuals): reports check that it beats the
    #: baselines and never crown it as the study's best model (it checks the pipeline; it is not a result).
    positive_control: bool = False

    def handles(self, arch: str) -> bool:
        raise NotImplementedError

    def offline_key(self, arch: str) -> str:
        """A backbone key of ``arch`` that builds with nothing downloaded (random or fixed weights): what the cost
        plan times and counts when the grid's own weights are not at hand."""
        raise NotImplementedError

    def build(self, key: BackboneKey) -> nn.Module:
        raise NotImplementedError

    def input_spec(self, visual: nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
        raise NotImplementedError

    def layer_names(self, backbone: "Backbone") -> list[str]:
        raise NotImplementedError

    def layer_info(self, backbone: "Backbone", layer: str) -> LayerInfo:
        raise NotImplementedError

    def layer_shapes(self, arch: str) -> TowerShapes:
        """Every layer of ``arch`` from its config alone (no model built, no weights read), equal to ``layer_info``
        on the built model: the planners size stores and models this machine may not be able to build."""
        raise NotImplementedError

    def forward_layers(self, backbone: "Backbone", images: torch.Tensor, layers: list[str]) -> LayerOutputs:
        raise NotImplementedError

    def activation(self, visual: nn.Module) -> str:
        """The activation built into the tower, recorded with every cached layer as part of its identity: the kinds
        of ``torch.nn`` activation modules found (``relu``, ``gelu``, ``a+b`` when mixed, ``none`` without any).
        A family with activations of its own (open_clip's QuickGELU) names them."""
        kinds = {"gelu" if isinstance(m, nn.GELU) else "relu" for m in visual.modules()
                 if isinstance(m, (nn.GELU, nn.ReLU))}
        return "+".join(sorted(kinds)) or "none"


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


@lru_cache(maxsize=None)
def layer_shapes(arch: str) -> TowerShapes:
    """``arch``'s layers from its config alone, answered by the family that builds it (memoised: configs are fixed)."""
    return family_for(arch).layer_shapes(arch)
