"""open_clip's image towers as feature families (ViT, ResNet): their weights, layers, shapes and taps.

Weights come from the backbone key (:class:`core.keys.BackboneKey`, ``ARCH@WEIGHTS[~RECIPE]``):

* ``ViT-L-14@openai`` -- an open_clip pretrained tag (downloaded by open_clip when online, or read from the
  Hugging Face cache; an unreachable hub is detected in seconds and the cache used offline);
* ``ViT-B-32@random-0`` -- explicit random initialisation with seed 0 (tests, the offline demo, the cost plan);
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
import copy
import importlib.util
import json
import logging
import os
import socket
import sys
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from declip.core.errors import DeclipError
from declip.core.io import is_torchscript
from declip.core.keys import BackboneKey
from declip.features.families import FeatureFamily, LayerInfo, LayerOutputs, TowerShapes, register_family

if TYPE_CHECKING:
    from declip.features.backbones import Backbone

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("model_configs")
QUICKGELU_SUFFIX = "-quickgelu"  # open_clip's own naming for QuickGELU variants, accepted after any architecture
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


# ---- architectures -----------------------------------------------------------------------------------------------

def register_local_configs() -> None:
    """Make open_clip see our test/demo configs (``features/model_configs``); idempotent."""
    import open_clip

    if str(CONFIG_DIR) not in getattr(open_clip.factory, "_MODEL_CONFIG_PATHS", []):
        open_clip.add_model_config(CONFIG_DIR)


@lru_cache(maxsize=1)
def _configs_on_disk() -> dict[str, dict]:
    """The model configs open_clip lists (its own and our local ones), read from its JSON files without importing
    it: the import loads torchvision's models and ops (~1.8 s), which a report or a dry run would pay only to ask
    what an architecture is. Same files and rule as open_clip's ``_rescan_model_configs`` (a test compares them)."""
    spec = importlib.util.find_spec("open_clip")
    folders = [Path(spec.origin).parent / "model_configs"] if spec is not None and spec.origin else []
    configs = {}
    for folder in (*folders, CONFIG_DIR):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            cfg = json.loads(path.read_text(encoding="utf-8"))
            if all(key in cfg for key in ("embed_dim", "vision_cfg", "text_cfg")):
                configs[path.stem] = cfg
    return configs


def list_architectures() -> list[str]:
    if "open_clip" not in sys.modules:  # once imported (to build a model), ask it: it may know configs added since
        return list(_configs_on_disk())
    import open_clip

    register_local_configs()
    return open_clip.list_models()


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


def open_clip_config(arch: str) -> dict | None:
    """open_clip's model config for ``arch`` (our local test/demo configs included, ``X-quickgelu`` for any ``X``),
    or None if it has none."""
    try:
        name = open_clip_arch(arch)[0]
    except DeclipError:
        return None
    if "open_clip" not in sys.modules:
        return copy.deepcopy(_configs_on_disk().get(name))
    import open_clip

    return open_clip.get_model_config(name)


def vision_config(arch: str) -> dict | None:
    """The image tower's config of an open_clip architecture with its own tower (not a timm one), else None."""
    vision = (open_clip_config(arch) or {}).get("vision_cfg")
    return None if not vision or vision.get("timm_model_name") else vision


def _side(size) -> int:
    return int(size[0] if isinstance(size, (tuple, list)) else size)


# ---- weights -----------------------------------------------------------------------------------------------------

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


@contextlib.contextmanager
def _without_random_init_warning():
    """open_clip warns "No pretrained weights loaded" on the root logger; random weights are what the key asked for."""
    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


#: Held while a random-weight model is seeded and built: two threads seeding and drawing from the one generator at
#: once would each get weights that belong to neither seed.
_RANDOM_INIT = threading.Lock()


def create_open_clip(key: BackboneKey) -> nn.Module:
    """The whole open_clip model for ``key`` (random seed, local file or pretrained tag; never a fallback), with the
    activation its weights were trained with. Random weights are built on torch's default device, so under
    ``torch.device("meta")`` the model has shapes and no memory (FLOP counting)."""
    import open_clip

    arch, quick_gelu = open_clip_arch(key.arch)
    if key.is_random:  # one at a time: torch's generator is per process, and threads (tasks) build backbones too
        with _RANDOM_INIT, torch.random.fork_rng(devices=[]), _without_random_init_warning():
            torch.manual_seed(key.seed)
            return open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu,
                                          device=torch.get_default_device())
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


def _create_from_file(key: BackboneKey) -> nn.Module:
    """Local weights. OpenAI JIT archives are rebuilt as eager QuickGELU models (open_clip.load_openai_model)."""
    import open_clip

    path = key.weights_path
    assert path is not None
    arch, quick_gelu = open_clip_arch(key.arch)
    try:
        if is_torchscript(path):
            log.info("%s is a TorchScript archive; rebuilding an eager QuickGELU model from its state_dict", path)
            model = open_clip.load_openai_model(path, precision="fp32", device="cpu")
            _check_archive_arch(model, arch, path)
            return model
        config_quick = bool((open_clip_config(arch) or {}).get("quick_gelu"))  # e.g. open_clip's ViT-L-14-quickgelu
        if not (quick_gelu or config_quick) and isinstance((vision_config(arch) or {}).get("layers"), int):
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


def _check_archive_arch(model: nn.Module, arch: str, path: str) -> None:
    """An archive carries its own architecture; refuse one that is not the architecture the key names."""
    cfg = vision_config(arch) or {}
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


def activation_of(visual: nn.Module) -> str:
    """The MLP activation actually built into a ViT tower (``quick_gelu`` or ``gelu``), or ``relu`` for a ResNet."""
    from open_clip.transformer import QuickGELU

    kinds = {"quick_gelu" if isinstance(m, QuickGELU) else "gelu" if isinstance(m, nn.GELU) else "relu"
             for m in visual.modules() if isinstance(m, (QuickGELU, nn.GELU, nn.ReLU))}
    return "+".join(sorted(kinds)) or "none"


# ---- the two families --------------------------------------------------------------------------------------------

class _OpenClipFamily(FeatureFamily):
    def offline_key(self, arch: str) -> str:
        return f"{arch}@random-0"

    def build(self, key: BackboneKey) -> nn.Module:
        model = create_open_clip(key)
        visual = model.visual
        del model  # the text tower is never used
        return visual

    def input_spec(self, visual: nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
        size = _side(visual.image_size)
        mean = tuple(float(v) for v in getattr(visual, "image_mean", None) or _OPENAI_MEAN)
        std = tuple(float(v) for v in getattr(visual, "image_std", None) or _OPENAI_STD)
        return size, mean, std

    def activation(self, visual: nn.Module) -> str:
        return activation_of(visual)


@register_family
class OpenClipViT(_OpenClipFamily):
    """``layerK`` is the residual stream after block K (0-based), no LayerNorm (DeCLIP never applies ``ln_post``),
    class token split off, patch tokens as a row-major (C, H, W) grid (declip-method §2.2)."""

    name = "vit"
    test_keys = ("test-vit-tiny@random-0",)

    def handles(self, arch: str) -> bool:
        return isinstance((vision_config(arch) or {}).get("layers"), int)

    def layer_names(self, backbone: "Backbone") -> list[str]:
        return [f"layer{k}" for k in range(len(backbone.visual.transformer.resblocks))]

    def layer_info(self, backbone: "Backbone", layer: str) -> LayerInfo:
        v, k = backbone.visual, int(layer.removeprefix("layer"))
        ph, pw = v.patch_size if isinstance(v.patch_size, tuple) else (v.patch_size, v.patch_size)
        return self._info(k, v.transformer.width, (backbone.image_size // ph, backbone.image_size // pw))

    def layer_shapes(self, arch: str) -> TowerShapes:
        v = vision_config(arch) or {}
        if not self.handles(arch):
            raise DeclipError(f"{arch} is not an open_clip ViT")
        size, patch = _side(v.get("image_size", 224)), _side(v["patch_size"])
        return TowerShapes(arch, self.name, tuple(self._info(k, int(v["width"]), (size // patch, size // patch))
                                                  for k in range(int(v["layers"]))))

    @staticmethod
    def _info(k: int, width: int, grid: tuple[int, int]) -> LayerInfo:
        return LayerInfo(f"layer{k}", k, width, grid, True,
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
        return isinstance((vision_config(arch) or {}).get("layers"), (list, tuple))

    def layer_names(self, backbone: "Backbone") -> list[str]:
        return list(self.stages)

    def layer_info(self, backbone: "Backbone", layer: str) -> LayerInfo:
        k = int(layer.removeprefix("layer"))
        stage = getattr(backbone.visual, layer)
        channels = stage[-1].bn3.num_features if hasattr(stage[-1], "bn3") else stage[-1].conv3.out_channels
        side = backbone.image_size // (4 * 2 ** (k - 1))
        return self._info(k, channels, side)

    def layer_shapes(self, arch: str) -> TowerShapes:
        """Bottleneck stages (expansion 4) after a stride-4 stem: stage k has 4·width·2^(k-1) channels on a grid
        of size / (4·2^(k-1))."""
        v = vision_config(arch) or {}
        if not self.handles(arch) or len(v["layers"]) != len(self.stages):
            raise DeclipError(f"{arch} is not an open_clip ModifiedResNet with {len(self.stages)} stages")
        size, width = _side(v.get("image_size", 224)), int(v.get("width", 64))
        return TowerShapes(arch, self.name, tuple(self._info(k, 4 * width * 2 ** (k - 1), size // (4 * 2 ** (k - 1)))
                                                  for k in range(1, len(self.stages) + 1)))

    @staticmethod
    def _info(k: int, channels: int, side: int) -> LayerInfo:
        return LayerInfo(f"layer{k}", k, channels, (side, side), False, f"output of ResNet stage {k}")

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
