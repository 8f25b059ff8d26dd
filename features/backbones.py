"""Frozen image towers named by a backbone key, built by their feature family; open_clip's weight sources.

:func:`load_backbone` is family-generic (:mod:`features.families` picks the family from the architecture); the rest
of this module is how the open_clip families obtain weights. A backbone key (:class:`core.keys.BackboneKey`) is
``ARCH@WEIGHTS`` with an optional ``~RECIPE`` suffix when the preprocessing is not the family's default:

* ``ViT-L-14@openai`` -- an open_clip pretrained tag (downloaded by open_clip when online, or read from the
  Hugging Face cache);
* ``ViT-B-32@random-0`` -- explicit random initialisation with seed 0 (tests and the offline demo);
* ``ViT-B-32@/path/to/weights.pt`` -- a local file (state_dict, ``.safetensors`` or an OpenAI TorchScript archive),
  keyed in the store as ``ViT-B-32@file-<sha256[:16]>`` so a moved file keeps its cache and a changed file does not.

The MLP activation follows the weights, because the same weights give different features under exact GELU and
QuickGELU (x·sigmoid(1.702x), every OpenAI CLIP): a pretrained tag gets the activation open_clip records for it
(QuickGELU for ``openai``, hence for DeCLIP's ``CLIP:`` names), an OpenAI TorchScript archive is always rebuilt with
QuickGELU, and a plain local state dict states it in the architecture name: ``ViT-L-14-quickgelu@/path.pt`` (any
``ARCH-quickgelu``; plain ``ARCH`` means exact GELU). The built activation is recorded with every cached layer.

Architecture and weights vary independently (open_clip's config/pretrained split). We never fall back from one
weight source to another: a tag that cannot be fetched is an error that says how to supply a local file.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from declip.core.errors import DeclipError
from declip.core.keys import DECLIP_ARCHES, DEFAULT_RECIPE, BackboneKey, file_sha256, parse_declip_arch  # noqa: F401

if TYPE_CHECKING:
    from declip.features.families import FeatureFamily
    from declip.features.preprocess import Recipe

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("model_configs")
QUICKGELU_SUFFIX = "-quickgelu"  # open_clip's own naming for QuickGELU variants, accepted after any architecture

def _register_local_configs() -> None:
    import open_clip

    if str(CONFIG_DIR) not in getattr(open_clip.factory, "_MODEL_CONFIG_PATHS", []):
        open_clip.add_model_config(CONFIG_DIR)


def list_architectures() -> list[str]:
    import open_clip

    _register_local_configs()
    return open_clip.list_models()


def open_clip_config(arch: str) -> dict | None:
    """open_clip's model config for ``arch`` (our local test/demo configs included, ``X-quickgelu`` for any ``X``),
    or None if it has none."""
    import open_clip

    _register_local_configs()
    try:
        return open_clip.get_model_config(open_clip_arch(arch)[0])
    except DeclipError:
        return None


def open_clip_arch(arch: str) -> tuple[str, bool]:
    """(open_clip config name, force QuickGELU): ``X-quickgelu`` works for every ``X``, not just open_clip's own."""
    known = list_architectures()
    if arch in known:
        return arch, False
    base = arch.removesuffix(QUICKGELU_SUFFIX)
    if base != arch and base in known:
        return base, True
    raise DeclipError(
        f"unknown open_clip architecture {arch!r}; see `python -c \"import open_clip; print(open_clip.list_models())\"`"
        f" (local test/demo configs live in {CONFIG_DIR}; append {QUICKGELU_SUFFIX} to any of them for QuickGELU)"
    )


@dataclass(frozen=True)
class ArchLayers:
    """What each ``layerK`` of an image tower holds, read from its open_clip config (no weights built)."""

    family: str  # "vit" or "resnet"
    channels: dict[str, int]
    grids: dict[str, tuple[int, int]]


def arch_layers(arch: str) -> ArchLayers:
    """Layer names, channels and grids of ``arch`` from its config: lets an imported checkpoint be checked offline."""
    open_clip_arch(arch)  # an unknown architecture fails here with the list of known ones
    cfg = (open_clip_config(arch) or {}).get("vision_cfg", {})
    size = _side(cfg.get("image_size", 224))
    layers = cfg.get("layers")
    if isinstance(layers, int):
        patch = int(cfg["patch_size"])
        names = [f"layer{k}" for k in range(layers)]
        return ArchLayers("vit", {n: int(cfg["width"]) for n in names}, {n: (size // patch,) * 2 for n in names})
    if isinstance(layers, (list, tuple)) and len(layers) == 4:
        width = int(cfg.get("width", 64))
        return ArchLayers("resnet", {f"layer{k}": width * 4 * 2 ** (k - 1) for k in range(1, 5)},
                          {f"layer{k}": (size // (4 * 2 ** (k - 1)),) * 2 for k in range(1, 5)})
    raise DeclipError(f"{arch} is neither an open_clip ViT nor a ModifiedResNet; layer taps need one")


def _tag_quick_gelu(arch: str, tag: str) -> bool:
    """Whether open_clip records the tag's weights as trained with QuickGELU (every ``openai`` tag is)."""
    import open_clip

    return bool(open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", False))


def _hub_reachable(timeout: float = 2.0) -> bool:
    """A quick TCP probe so an offline machine fails in seconds instead of waiting on hub retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline():
    """Force huggingface_hub's offline mode (it reads the env once at import, so patch the constant too)."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hf_constants
    except ImportError:  # pragma: no cover - open_clip depends on huggingface_hub
        hf_constants = None
    old_const = getattr(hf_constants, "HF_HUB_OFFLINE", None)
    if hf_constants is not None:
        hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if hf_constants is not None:
            hf_constants.HF_HUB_OFFLINE = old_const
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def create_open_clip(key: BackboneKey) -> nn.Module:
    """The whole open_clip model for ``key`` (random seed, local file or pretrained tag; never a fallback), with the
    activation its weights were trained with."""
    import open_clip

    arch, quick_gelu = open_clip_arch(key.arch)
    if key.is_random:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(key.weights.split("-", 1)[1]))
            return open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu)
    if key.weights_path:
        return _create_from_file(key)
    tag_arch = key.arch if key.arch in list_architectures() else arch
    tags = open_clip.list_pretrained_tags_by_model(tag_arch)
    if key.weights not in tags:
        raise DeclipError(
            f"open_clip has no pretrained tag {key.weights!r} for {key.arch}; known tags: {', '.join(tags) or 'none'}"
        )
    quick_gelu = quick_gelu or _tag_quick_gelu(tag_arch, key.weights)
    online = _hub_reachable()
    try:
        with contextlib.nullcontext() if online else _hub_offline():
            return open_clip.create_model(tag_arch, pretrained=key.weights, require_pretrained=True,
                                          force_quick_gelu=quick_gelu)
    except Exception as exc:  # noqa: BLE001 - any download/cache failure gets the same actionable message
        where = "could not be downloaded" if online else "are not in the local cache and the hub is unreachable"
        raise DeclipError(
            f"weights {key.arch}@{key.weights} {where} ({type(exc).__name__}: {exc}). Supply a local file instead: "
            f"--backbone {key.arch}@/path/to/weights.pt (a state_dict, .safetensors, or OpenAI's JIT archive such "
            f"as ~/.cache/clip/{key.arch}.pt), or pre-fill the Hugging Face cache on a machine with network access."
        ) from exc


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("constants.pkl") for name in zf.namelist())


def _create_from_file(key: BackboneKey) -> nn.Module:
    """Local weights. OpenAI JIT archives are rebuilt as eager QuickGELU models (open_clip.load_openai_model)."""
    import open_clip

    path = key.weights_path
    assert path is not None
    arch, quick_gelu = open_clip_arch(key.arch)
    try:
        if _is_torchscript(path):
            log.info("%s is a TorchScript archive; rebuilding an eager QuickGELU model from its state_dict", path)
            model = open_clip.load_openai_model(path, precision="fp32", device="cpu")
            _check_archive_arch(model, arch, path)
            return model
        if not quick_gelu and _is_vit_config(arch):
            log.warning("%s: building %s with exact GELU; if these are OpenAI-trained weights, name the architecture "
                        "%s%s for QuickGELU", path, arch, arch, QUICKGELU_SUFFIX)
        return open_clip.create_model(arch, pretrained=path, force_quick_gelu=quick_gelu)
    except DeclipError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DeclipError(
            f"could not load weights file {path} into {key.arch} ({type(exc).__name__}: {exc}); the file must be a "
            "CLIP state_dict (or .safetensors) for that architecture, or OpenAI's TorchScript archive"
        ) from exc


def _is_vit_config(arch: str) -> bool:
    layers = (open_clip_config(arch) or {}).get("vision_cfg", {}).get("layers")
    return isinstance(layers, int)


def _check_archive_arch(model: nn.Module, arch: str, path: str) -> None:
    """An archive carries its own architecture; refuse one that is not the architecture the key names."""
    cfg = (open_clip_config(arch) or {}).get("vision_cfg", {})
    v = model.visual
    if hasattr(v, "transformer"):
        patch = v.conv1.kernel_size[0]
        got = {"layers": len(v.transformer.resblocks), "width": v.transformer.width, "patch_size": patch,
               "image_size": _side(v.image_size), "heads": v.transformer.resblocks[0].attn.num_heads}
    else:
        got = {"layers": [len(getattr(v, f"layer{k}")) for k in range(1, 5)], "width": v.conv1.out_channels * 2,
               "image_size": _side(v.image_size)}
    wanted = {k: (list(cfg[k]) if isinstance(cfg.get(k), (list, tuple)) else cfg.get(k)) for k in got}
    if "heads" in got:  # OpenAI's archives imply width // 64 heads; open_clip configs state a head width
        wanted["heads"] = cfg.get("width", 0) // cfg.get("head_width", 64)
    if got != wanted:
        raise DeclipError(
            f"{path} is a TorchScript archive of a different architecture than {arch}: it holds {got}, {arch} is "
            f"{wanted}; name the architecture the archive was made for"
        )


def _side(size) -> int:
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def activation_of(visual: nn.Module) -> str:
    """The MLP activation actually built into a ViT tower (``quick_gelu`` or ``gelu``), or ``relu`` for a ResNet."""
    from open_clip.transformer import QuickGELU

    kinds = {"quick_gelu" if isinstance(m, QuickGELU) else "gelu" if isinstance(m, nn.GELU) else "relu"
             for m in visual.modules() if isinstance(m, (QuickGELU, nn.GELU, nn.ReLU))}
    if len(kinds) != 1:
        return "+".join(sorted(kinds)) or "none"
    return kinds.pop()


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
    activation: str = ""  # what activation_of() found in the built tower; part of the cached features' identity

    @property
    def feature_family(self) -> "FeatureFamily":
        from declip.features.families import FAMILIES

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
    """Build the image tower for ``key`` with its family, frozen and in eval mode (DeCLIP runs fp32 eval mode)."""
    from declip.features.families import family_for

    key = BackboneKey.parse(key)
    family = family_for(key.arch)
    visual = family.build(key)
    visual.eval().requires_grad_(False)
    size, mean, std = family.input_spec(visual)
    backbone = Backbone(key, visual, family.name, size, mean, std, state_checksum(visual), activation_of(visual))
    return backbone.to(device)
