"""DeCLIP's released ``.pth`` checkpoints (method §8): import into our decoders, and export back.

DeCLIP saves ``{"model": state_dict, "optimizer", "total_steps", "feature_layer", "decoder_type"}`` where the
state dict holds the decoder under ``fc.*`` (and ``att1.*``/``att2.*``) and, for ViT-only and RN50-only runs, the
whole frozen CLIP under ``model.*``. Our decoders use the same key names, so import is a strict
``load_state_dict`` of the decoder keys; the architecture (family, channels, grid) is inferred by checking the
stored shapes against candidate decoders built on the meta device (no memory, no init cost).
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import torch

from declip.decoders.conv import BASE_FILTERS
from declip.decoders.registry import CONFIG_KEYS, Decoder, canonical_name, decoder_from_config, list_decoders
from declip.core.errors import DeclipError
from declip.core.io import is_torchscript
from declip.decoders.checkpoint_io import atomic_torch_save

REQUIRED_KEYS = ("model", "feature_layer", "decoder_type")
DECODER_PREFIXES = ("fc.", "att1.", "att2.")
RN50_GRIDS = {"layer1": (56, 56), "layer2": (28, 28), "layer3": (14, 14), "layer4": (7, 7)}
VIT_GRID = (16, 16)


# ----------------------------------------------------------------------------------------------- DeCLIP .pth


def load_declip_checkpoint(
        path: str | os.PathLike,
        *,
        family: str | None = None,
        grid: tuple[int, int] | None = None,
        in_channels: int | None = None,
        faithful: bool | None = None,
) -> tuple[Decoder, dict[str, Any]]:
    """Load a DeCLIP checkpoint's decoder into our module (eval mode, outputs identical to DeCLIP's decoder).

    Args:
        path: a DeCLIP ``.pth`` (read with ``weights_only=True``; the embedded CLIP weights are ignored).
        family: "vit", "resnet" or "fused"; inferred from the backbone keys and the decoder layout if None.
        grid: feature grid; 16x16 for ViT and ViT+RN50, by ``feature_layer`` for RN50 if None.
        in_channels: checked against ``fc.0.weight`` if given.
        faithful: None means True for the attention decoder (DeCLIP trained it with its causal mask, so outputs
            only match with it) and False otherwise (no effect on conv/linear, so configs equal our defaults).

    Returns:
        The decoder and an info dict (feature_layer, decoder_type, family, in_channels, grid, total_steps,
        ignored_keys, num_params).
    """
    path = Path(path)
    ckpt = _read_declip(path)
    name = _decoder_name(ckpt["decoder_type"], path)
    layer = str(ckpt["feature_layer"])
    state = OrderedDict((k, v) for k, v in ckpt["model"].items() if k.startswith(DECODER_PREFIXES))
    _refuse_non_finite(state, path)
    ignored = len(ckpt["model"]) - len(state)
    c_in, width = _infer_channels(state, name, path, in_channels)
    faithful = name == "attention" if faithful is None else faithful
    base = dict(name=name, in_channels=c_in, layer=layer, width=width, faithful=faithful)
    config = _match_config(state, base, _candidate_geometries(ckpt["model"], name, layer, family, grid), path)
    decoder = decoder_from_config(config)
    decoder.load_state_dict(state, strict=True)
    decoder.eval()
    info = {
        "feature_layer": layer, "decoder_type": name, "family": config["family"], "in_channels": c_in,
        "grid": tuple(config["grid"]), "total_steps": _as_int(ckpt.get("total_steps", 0)), "ignored_keys": ignored,
        "num_params": sum(p.numel() for p in decoder.parameters()),
        "embedded_family": _backbone_family(ckpt["model"]),  # what the embedded backbone says (None: nothing)
    }
    return decoder, info


def save_declip_checkpoint(
        decoder: Decoder,
        path: str | os.PathLike,
        *,
        feature_layer: str,
        decoder_type: str | None = None,
        total_steps: int = 0,
        include_backbone_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``decoder`` in DeCLIP's checkpoint layout so its ``validate.py`` (or our importer) can read it.

    ``include_backbone_state`` (CLIP state-dict keys, with or without the ``model.`` prefix) is stored first under
    ``model.*``, as DeCLIP's ViT-only checkpoints do; ViT+RN50 checkpoints have none.
    """
    model: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in (include_backbone_state or {}).items():
        model[key if key.startswith("model.") else f"model.{key}"] = value
    for key, value in decoder.state_dict().items():
        model[key] = value.detach().cpu().clone()
    ckpt = {
        "model": model, "optimizer": {"state": {}, "param_groups": []}, "total_steps": int(total_steps),
        "feature_layer": str(feature_layer), "decoder_type": decoder_type or decoder.name,
    }
    return atomic_torch_save(ckpt, Path(path))


#: torch.save's legacy (pre-zip) format: pickle protocol 2 starting with its magic number, a 10-byte LONG1.
_TORCH_LEGACY_HEAD = b"\x80\x02\x8a\x0a"


def is_plain_pickle(path: Path) -> bool:
    """A pickle that is neither torch.save's zip archive nor its legacy format (``pickle.dump(checkpoint, f)``)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head[:1] == b"\x80" and not head.startswith(_TORCH_LEGACY_HEAD) and not zipfile.is_zipfile(path)


def _read_declip(path: Path) -> dict[str, Any]:
    """``torch.load`` with weights_only, turning every way a file can be wrong into an actionable DeclipError."""
    if not path.is_file():
        raise DeclipError(f"{path}: no such checkpoint file; pass the path to a DeCLIP .pth")
    if is_torchscript(path):
        raise DeclipError(
            f"{path} is a TorchScript archive, not a DeCLIP training checkpoint; convert it once with "
            f"m = torch.jit.load(PATH, map_location='cpu'); torch.save({{'model': m.state_dict(), "
            f"'feature_layer': 'layer20', 'decoder_type': 'conv-20'}}, 'converted.pth') (use your layer/decoder)"
        )
    if is_plain_pickle(path):
        raise DeclipError(
            f"{path} is a plain Python pickle (written with pickle.dump, not torch.save), which safe (weights_only) "
            "loading cannot read; the file is probably intact. If you trust where it came from, convert it once: "
            "import pickle, torch; c = pickle.load(open(PATH, 'rb')); torch.save({k: c[k] for k in ('model', "
            "'feature_layer', 'decoder_type')}, 'converted.pth'), then import converted.pth"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"unsupported GLOBAL (\S+) whose module (\S+) is blocked", str(exc), re.IGNORECASE)
        if blocked:  # torch ≥ 2.6 wording for a global from a module that can run code (os, posix, subprocess, …)
            raise DeclipError(
                f"{path} refuses to load safely: unpickling it would call {blocked.group(1)} (module "
                f"{blocked.group(2)} can run code on this machine). Do not load it with weights_only=False unless "
                "you fully trust where it came from; get the checkpoint from its original source"
            ) from None
        if "unsupported global" not in str(exc).lower():  # weights_only refuses garbage with the same exception type
            raise DeclipError(f"{path} is not a readable PyTorch checkpoint ({str(exc).splitlines()[0][:200]}); "
                              f"re-download it or check the path") from exc
        raise DeclipError(
            f"{path} contains pickled Python objects that weights_only loading refuses ({str(exc).splitlines()[0]}). "
            f"If you trust the file, convert it once: c = torch.load(PATH, map_location='cpu', weights_only=False); "
            f"torch.save({{k: c[k] for k in ('model', 'feature_layer', 'decoder_type')}}, 'converted.pth')"
        ) from exc
    except Exception as exc:  # truncated download, not a torch file, ...
        raise DeclipError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc}); "
                          f"re-download it or check the path") from exc
    _check_layout(ckpt, path)
    return ckpt


def _check_layout(ckpt: Any, path: Path) -> None:
    if not isinstance(ckpt, dict):
        raise DeclipError(f"{path} holds a {type(ckpt).__name__}, expected DeCLIP's checkpoint dict with keys "
                          f"{list(REQUIRED_KEYS)}; a bare state dict must be wrapped in {{'model': ...}} first")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise DeclipError(f"{path} lacks top-level keys {missing} (has {sorted(map(str, ckpt))}); DeCLIP checkpoints "
                          f"hold {list(REQUIRED_KEYS)}: add the missing entries (e.g. feature_layer='layer20')")
    if not isinstance(ckpt["model"], dict):
        raise DeclipError(f"{path}: 'model' is a {type(ckpt['model']).__name__}, expected a state dict")


def _refuse_non_finite(state: dict[str, Any], path: Path) -> None:
    """A diverged run saves NaN/inf weights that predict NaN everywhere; refuse them at import, not at scoring."""
    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise DeclipError(f"{path}: decoder weights contain NaN or inf ({bad[0]!r}" + (f" and {len(bad) - 1} more"
                          if len(bad) > 1 else "") + "); the run that wrote it diverged: use another checkpoint")


def declip_feature_layer(path: str | os.PathLike) -> str:
    """The ``feature_layer`` a DeCLIP checkpoint was trained on (memory-mapped read: cheap even for 1.7 GB)."""
    return str(_read_declip(Path(path))["feature_layer"])


def embedded_backbone_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The CLIP weights a ViT-only or RN50-only checkpoint carries under ``model.*`` (prefix removed); {} if none.

    RN50-only training leaves the frozen RN50's BatchNorm in train mode, so these running statistics drifted from
    OpenAI's and only this copy reproduces DeCLIP's features for that checkpoint (method §5.2, §8).
    """
    path = Path(path)
    ckpt = _read_declip(path)
    state = {k.removeprefix("model."): v for k, v in ckpt["model"].items() if k.startswith("model.")}
    _refuse_non_finite(state, path)
    return state


def _decoder_name(decoder_type: Any, path: Path) -> str:
    name = canonical_name(str(decoder_type))
    if name not in list_decoders():
        raise DeclipError(f"{path}: unknown decoder_type {decoder_type!r}; known: {', '.join(list_decoders())}")
    return name


def _infer_channels(state: dict[str, torch.Tensor], name: str, path: Path, want: int | None) -> tuple[int, float]:
    """Input channels from ``fc.0.weight`` ([512, C, 5, 5] for conv, [1, C] for the token head); conv width too."""
    if "fc.0.weight" not in state:
        raise DeclipError(f"{path}: no decoder weights (model['fc.0.weight'] is missing); is this a DeCLIP "
                          f"localisation checkpoint?")
    weight = state["fc.0.weight"]
    c_in = int(weight.shape[1])
    if want is not None and want != c_in:
        raise DeclipError(f"{path}: shape mismatch at 'fc.0.weight' {list(weight.shape)}: the decoder takes {c_in} "
                          f"input channels, not the {want} requested; pick the matching backbone/layer")
    width = float(weight.shape[0]) / BASE_FILTERS[0] if name.startswith("conv") else 1.0
    return c_in, width


def _backbone_family(model_state: dict[str, Any]) -> str | None:
    """ViT-only checkpoints embed ``model.visual.transformer``, RN50-only ``model.visual.layer*``; fused, none."""
    if any(k.startswith(("model.visual.transformer.", "model.visual.class_embedding")) for k in model_state):
        return "vit"
    if any(k.startswith("model.visual.layer") for k in model_state):
        return "resnet"
    return None


def _candidate_geometries(
        model_state: dict[str, Any], name: str, layer: str, family: str | None, grid: tuple[int, int] | None,
) -> Iterator[tuple[str, tuple[int, int]]]:
    """(family, grid) pairs to try, most likely first; the stored shapes and indices decide among them."""
    if family is not None:
        families = [family]
    elif not name.startswith("conv"):
        families = ["vit"]
    else:
        families = [_backbone_family(model_state)] if _backbone_family(model_state) else ["fused", "vit", "resnet"]
    for fam in families:
        fam_grid = grid or (RN50_GRIDS.get(layer) if fam == "resnet" else VIT_GRID)
        if fam_grid is not None:
            yield fam, tuple(fam_grid)


def _match_config(
        state: dict[str, torch.Tensor], base: dict[str, Any], geometries: Iterator[tuple[str, tuple[int, int]]],
        path: Path,
) -> dict[str, Any]:
    found = {k: tuple(v.shape) for k, v in state.items()}
    problems = []
    for fam, fam_grid in geometries:
        config = {**base, "family": fam, "grid": fam_grid}
        problem = _layout_difference(found, _expected_shapes(config))
        if problem is None:
            return config
        problems.append(f"as {fam} {fam_grid[0]}x{fam_grid[1]}: {problem}")
    raise DeclipError(f"{path}: decoder weights do not fit a {base['name']} decoder on layer {base['layer']!r} "
                      f"({'; '.join(problems) or 'no candidate geometry'}); pass family=/grid= explicitly "
                      f"or check that the file is a DeCLIP checkpoint")


def _expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        decoder = decoder_from_config(config)
    return {k: tuple(v.shape) for k, v in decoder.state_dict().items()}


def _layout_difference(found: dict[str, tuple], expected: dict[str, tuple]) -> str | None:
    """The first difference between stored and expected keys/shapes, phrased for an error message."""
    missing = [k for k in expected if k not in found]
    if missing:
        return f"missing key {missing[0]!r}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")
    extra = [k for k in found if k not in expected]
    if extra:
        return f"unexpected key {extra[0]!r}" + (f" (+{len(extra) - 1} more)" if len(extra) > 1 else "")
    for key, shape in expected.items():
        if found[key] != shape:
            return f"shape mismatch at {key!r}: file has {list(found[key])}, expected {list(shape)}"
    return None


def _as_int(value: Any) -> int:
    return int(value.item()) if isinstance(value, torch.Tensor) else int(value)
