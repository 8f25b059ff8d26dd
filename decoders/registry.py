"""Decoder base class and a timm-style registry: ``@register_decoder`` on small factories, fnmatch listing.

The registry holds names only; geometry (channels, grid, family, layer) is passed explicitly to
:func:`build_decoder` instead of being parsed out of the name, as DeCLIP does with ``re.search``. Every module of
the ``decoders`` package is imported the first time the registry is read, so a new decoder is one new file.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from declip.core.errors import DeclipError
from declip.core.registry import Registry, import_submodules

# What a decoder's ``family`` says: the kind of features it reads, which picks DeCLIP's per-input defaults. DeCLIP's
# three are always accepted, and so is any registered feature family (``features.families.FAMILIES``).
DECLIP_INPUT_FAMILIES = ("vit", "resnet", "fused")
OUTPUT_SIZE = 256
CONFIG_KEYS = ("name", "in_channels", "grid", "family", "layer", "width", "faithful")

_REGISTRY: Registry[Callable[..., "Decoder"]] = Registry("decoder", loader=lambda: import_submodules("declip.decoders"))


class Decoder(nn.Module):
    """Maps a ``[B, C, H, W]`` feature map (plus optional CLS token) to ``[B, 1, 256, 256]`` logits.

    ``config`` holds every argument of :func:`build_decoder` except the seed, so a saved decoder is rebuilt
    from its config and state dict alone.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        self.name = str(config["name"])

    @property
    def faithful(self) -> bool:
        return bool(self.config["faithful"])

    #: True when ``forward`` is exactly :func:`decoders.linear.scores_to_logits` of :meth:`token_scores`: training
    #: can then upsample many heads in one batched call and fuse their losses (pipeline/train/fused_loss.py).
    scores_then_upsample = False

    def forward(self, feats: Tensor, cls_token: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def token_scores(self, feats: Tensor, cls_token: Tensor | None = None) -> Tensor:
        """``[B, H*W]`` scores on the feature grid, before the bicubic upsampling (``scores_then_upsample`` only)."""
        raise NotImplementedError(f"decoder {self.name!r} does not end in an upsampling of token scores")

    def trainable_names(self) -> list[str]:
        """Names of the parameters the optimiser gets.

        Faithful mode applies DeCLIP's own rule (``"fc" in name and "resblock" not in name``) to our parameter
        names, which equal DeCLIP's, so its accidental attention-decoder subset is reproduced by construction.
        """
        names = [n for n, _ in self.named_parameters()]
        if self.faithful:
            return [n for n in names if "fc" in n and "resblock" not in n]
        return names

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters to optimise; also freezes the rest so gradients are not computed for them."""
        keep = set(self.trainable_names())
        params = []
        for n, p in self.named_parameters():
            p.requires_grad_(n in keep)
            if n in keep:
                params.append(p)
        return params

    def check_input(self, feats: Tensor) -> None:
        """Fail early with the geometry the decoder was built for (a mismatch is a wrong layer or store)."""
        want = (self.config["in_channels"], *self.config["grid"])
        if feats.ndim != 4 or tuple(feats.shape[1:]) != want:
            raise DeclipError(
                f"decoder {self.name!r} was built for features [B, {want[0]}, {want[1]}, {want[2]}] "
                f"(layer {self.config['layer']!r}), got {list(feats.shape)}; rebuild it for this layer's geometry"
            )


def canonical_name(name: str) -> str:
    """``conv_20`` and ``conv-20`` are the same decoder; the hyphen form is DeCLIP's ``--decoder_type``."""
    return name.strip().lower().replace("_", "-")


def register_decoder(name: str) -> Callable[[Callable[..., Decoder]], Callable[..., Decoder]]:
    """Decorator: register a factory ``fn(*, in_channels, grid, family, layer, width, faithful) -> Decoder``."""
    key = canonical_name(name)

    return _REGISTRY.register(key)


def list_decoders(pattern: str = "*") -> list[str]:
    """Registered decoder names matching an fnmatch pattern (``conv_*`` works like ``conv-*``)."""
    pat = canonical_name(pattern)
    return sorted(_REGISTRY.names(pat), key=_natural_key)


def _natural_key(name: str) -> tuple:
    head, _, tail = name.partition("-")
    return (head, int(tail) if tail.isdigit() else 0, tail)


def build_decoder(
        name: str,
        *,
        in_channels: int,
        grid: tuple[int, int],
        family: str,
        layer: str,
        width: float = 1.0,
        faithful: bool = False,
        seed: int | None = None,
) -> Decoder:
    """Build a registered decoder; ``seed`` makes its initialisation reproducible without touching global RNG."""
    key = canonical_name(name)
    if key not in _REGISTRY:
        raise DeclipError(f"unknown decoder {name!r}; choose one of {', '.join(list_decoders())}")
    if family not in input_families():
        raise DeclipError(f"unknown input family {family!r} for decoder {name!r}; choose one of {input_families()}")
    if width <= 0:
        raise DeclipError(f"decoder width must be > 0, got {width}")
    kwargs = dict(
        in_channels=int(in_channels), grid=(int(grid[0]), int(grid[1])), family=family, layer=str(layer),
        width=float(width), faithful=bool(faithful),
    )
    if seed is None:
        return _REGISTRY.get(key)(**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _REGISTRY.get(key)(**kwargs)


def input_families() -> tuple[str, ...]:
    """The ``family`` values a decoder accepts: DeCLIP's three plus every registered feature family (a new family
    needs no edit here)."""
    from declip.features.families import FAMILIES as FEATURE_FAMILIES

    return tuple(dict.fromkeys((*DECLIP_INPUT_FAMILIES, *FEATURE_FAMILIES.names())))


def decoder_from_config(config: dict[str, Any], *, seed: int | None = None) -> Decoder:
    """Rebuild a decoder from its ``config`` (e.g. read back from JSON, where the grid is a list)."""
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise DeclipError(f"decoder config lacks {missing}; it must hold {list(CONFIG_KEYS)}")
    kwargs = {k: config[k] for k in CONFIG_KEYS if k != "name"}
    kwargs["grid"] = tuple(kwargs["grid"])
    return build_decoder(config["name"], seed=seed, **kwargs)


def make_config(name: str, **kwargs: Any) -> dict[str, Any]:
    """The config dict every decoder stores (used by the factories)."""
    return {"name": canonical_name(name), **{k: kwargs[k] for k in CONFIG_KEYS if k != "name"}}
