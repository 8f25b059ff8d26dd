"""Frozen CLIP image towers from open_clip, named by a backbone key.

A backbone key is ``ARCH@WEIGHTS`` with an optional ``~RECIPE`` suffix when the preprocessing is not DeCLIP's:

* ``ViT-L-14@openai`` -- an open_clip pretrained tag (downloaded by open_clip when online, or read from the
  Hugging Face cache);
* ``ViT-B-32@random-0`` -- explicit random initialisation with seed 0 (tests and the offline demo);
* ``ViT-B-32@/path/to/weights.pt`` -- a local file (state_dict, ``.safetensors`` or an OpenAI TorchScript archive),
  keyed in the store as ``ViT-B-32@file-<sha256[:16]>`` so a moved file keeps its cache and a changed file does not.

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
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from core.errors import DeclipError

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("model_configs")
DEFAULT_RECIPE = "declip"
_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

# DeCLIP's `--arch` values (after "CLIP:") mapped to our backbone keys. A comma means the fused ViT+RN50 model.
DECLIP_ARCHES = {"ViT-L/14": "ViT-L-14@openai", "RN50": "RN50@openai"}


@dataclass(frozen=True)
class BackboneKey:
    """Architecture + weights + preprocessing recipe: everything that determines the cached features."""

    arch: str
    weights: str
    recipe: str = DEFAULT_RECIPE
    weights_path: str | None = None

    def __str__(self) -> str:
        suffix = "" if self.recipe == DEFAULT_RECIPE else f"~{self.recipe}"
        return f"{self.arch}@{self.weights}{suffix}"

    @property
    def is_random(self) -> bool:
        return self.weights.startswith("random-")

    @classmethod
    def parse(cls, text: str) -> "BackboneKey":
        """Parse ``ARCH@WEIGHTS[~RECIPE]``; a DeCLIP name such as ``CLIP:ViT-L/14`` is accepted too."""
        text = text.strip()
        if text.startswith("CLIP:"):
            keys = parse_declip_arch(text)
            if len(keys) != 1:
                raise DeclipError(f"{text!r} names {len(keys)} backbones; use it where a fused backbone is allowed")
            return keys[0]
        body, _, recipe = text.partition("~")
        arch, sep, weights = body.partition("@")
        if not sep or not arch or not weights:
            raise DeclipError(
                f"backbone {text!r} must look like ARCH@WEIGHTS, e.g. ViT-L-14@openai, ViT-B-32@random-0 "
                "or ViT-L-14@/path/to/ViT-L-14.pt"
            )
        recipe = recipe or DEFAULT_RECIPE
        if _looks_like_path(weights):
            path = Path(weights).expanduser()
            if not path.is_file():
                raise DeclipError(f"weights file {path} does not exist; give an existing state_dict/.safetensors file")
            return cls(arch, f"file-{file_sha256(str(path.resolve()))[:16]}", recipe, str(path.resolve()))
        if weights.startswith("random"):
            seed = weights.removeprefix("random").lstrip("-") or "0"
            if not seed.isdigit():
                raise DeclipError(f"random weights need an integer seed, e.g. {arch}@random-0 (got {weights!r})")
            weights = f"random-{int(seed)}"
        return cls(arch, weights, recipe)


def parse_declip_arch(text: str) -> list[BackboneKey]:
    """``CLIP:ViT-L/14`` → [ViT-L-14@openai]; ``CLIP:ViT-L/14,RN50`` → [ViT-L-14@openai, RN50@openai] (fused)."""
    names = text.removeprefix("CLIP:").split(",")
    unknown = [n for n in names if n not in DECLIP_ARCHES]
    if unknown:
        raise DeclipError(
            f"unknown DeCLIP arch {text!r}; DeCLIP accepts CLIP:ViT-L/14, CLIP:RN50 and CLIP:ViT-L/14,RN50"
        )
    return [BackboneKey.parse(DECLIP_ARCHES[n]) for n in names]


def _looks_like_path(weights: str) -> bool:
    return os.sep in weights or weights.startswith(("~", ".")) or weights.lower().endswith(_FILE_SUFFIXES)


@lru_cache(maxsize=16)
def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _register_local_configs() -> None:
    import open_clip

    if str(CONFIG_DIR) not in getattr(open_clip.factory, "_MODEL_CONFIG_PATHS", []):
        open_clip.add_model_config(CONFIG_DIR)


def list_architectures() -> list[str]:
    import open_clip

    _register_local_configs()
    return open_clip.list_models()


def _check_arch(arch: str) -> None:
    if arch not in list_architectures():
        raise DeclipError(
            f"unknown open_clip architecture {arch!r}; see `python -c \"import open_clip; print(open_clip.list_models())\"`"
            f" (local test/demo configs live in {CONFIG_DIR})"
        )


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


def _create_clip(key: BackboneKey) -> nn.Module:
    import open_clip

    if key.is_random:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(key.weights.split("-", 1)[1]))
            return open_clip.create_model(key.arch, pretrained=None)
    if key.weights_path:
        return _create_from_file(key)
    tags = open_clip.list_pretrained_tags_by_model(key.arch)
    if key.weights not in tags:
        raise DeclipError(
            f"open_clip has no pretrained tag {key.weights!r} for {key.arch}; known tags: {', '.join(tags) or 'none'}"
        )
    online = _hub_reachable()
    try:
        with contextlib.nullcontext() if online else _hub_offline():
            return open_clip.create_model(key.arch, pretrained=key.weights, require_pretrained=True)
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
    """Local weights. OpenAI JIT archives are rebuilt as eager models (open_clip.load_openai_model)."""
    import open_clip

    path = key.weights_path
    assert path is not None
    try:
        if _is_torchscript(path):
            log.warning("%s is a TorchScript archive; rebuilding an eager model from its state_dict", path)
            return open_clip.load_openai_model(path, device="cpu", jit=False)
        return open_clip.create_model(key.arch, pretrained=path)
    except Exception as exc:  # noqa: BLE001
        raise DeclipError(
            f"could not load weights file {path} into {key.arch} ({type(exc).__name__}: {exc}); the file must be a "
            "CLIP state_dict (or .safetensors) for that architecture"
        ) from exc


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
    family: str  # "vit" or "resnet"
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_checksum: str

    @property
    def num_blocks(self) -> int:
        if self.family == "vit":
            return len(self.visual.transformer.resblocks)
        return 4

    def to(self, device: str | torch.device, dtype: torch.dtype = torch.float32) -> "Backbone":
        self.visual.to(device=device, dtype=dtype)
        return self


def load_backbone(key: BackboneKey | str, device: str = "cpu") -> Backbone:
    """Build the image tower for ``key``, frozen and in eval mode (DeCLIP runs its backbone in fp32 eval mode)."""
    if isinstance(key, str):
        key = BackboneKey.parse(key)
    _check_arch(key.arch)
    model = _create_clip(key)
    visual = model.visual
    del model  # the text tower is never used
    visual.eval().requires_grad_(False)
    family = _family(visual, key.arch)
    size = visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = tuple(float(v) for v in getattr(visual, "image_mean", None) or _OPENAI_MEAN)
    std = tuple(float(v) for v in getattr(visual, "image_std", None) or _OPENAI_STD)
    backbone = Backbone(key, visual, family, size, mean, std, state_checksum(visual))
    return backbone.to(device)


_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _family(visual: nn.Module, arch: str) -> str:
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    if isinstance(visual, VisionTransformer):
        return "vit"
    if isinstance(visual, ModifiedResNet):
        return "resnet"
    raise DeclipError(f"{arch} is neither an open_clip VisionTransformer nor a ModifiedResNet; layer taps need one")
