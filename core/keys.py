"""Typed keys: the backbone key and the feature-source key, parsed from text here and nowhere else.

A backbone key is ``ARCH@WEIGHTS[~RECIPE]``:

* ``ViT-L-14@openai`` -- a pretrained tag (open_clip downloads it when online or reads the Hugging Face cache);
* ``ViT-B-32@random-0`` -- explicit random initialisation with seed 0 (tests and the offline demo);
* ``ViT-B-32@/path/to/weights.pt`` -- a local file, keyed as ``ViT-B-32@file-<sha256[:16]>`` so a moved file keeps
  its cache and a changed file does not;
* ``srm@fixed`` -- any other registered feature family's architecture and weights name.

A feature source is what a decoder reads: one cached layer, or DeCLIP's ViT+RN50 fusion of two, seen through a
dataset *view* (``clean`` unless a perturbation is named)::

    ViT-L-14@openai/layer20
    ViT-L-14@openai/layer20+RN50@openai/layer3          fusion: ViT first, partner second
    ViT-L-14@openai/layer20[jpeg:75]                    a perturbed view of the dataset
    ViT-L-14@openai/layer20+RN50@openai/layer3[jpeg:75+resize:0.5]

``+`` inside brackets belongs to the view, not to fusion. Configs carry :class:`SourceKey` objects; files (run
configs, checkpoints, result tables) store ``str(key)``, which :meth:`SourceKey.parse` reads back unchanged.

Two more strings are keys and are split here too: a store dataset seen through a view, ``DATASET@VIEW``
(:class:`DatasetKey`; ``dolos@jpeg:75``, the clean copy is plain ``dolos``), and a view itself, a ``+``-chain of
``OP[:PARAMS]`` steps (:func:`split_view_chain`; what each operation means is ``features.views``'s business).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import total_ordering
from pathlib import Path

from declip.core.errors import DeclipError
from declip.core.io import file_sha256

DEFAULT_RECIPE = "declip"
CLEAN_VIEW = "clean"
_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

# DeCLIP's `--arch` values (after "CLIP:") mapped to backbone keys. A comma means the fused ViT+RN50 model.
DECLIP_ARCHES = {"ViT-L/14": "ViT-L-14@openai", "RN50": "RN50@openai"}
DECLIP_VIT = "ViT-L-14@openai"


@dataclass(frozen=True)
class BackboneKey:
    """Architecture + weights + preprocessing recipe: everything that determines the cached features."""

    arch: str
    weights: str
    recipe: str = DEFAULT_RECIPE
    weights_path: str | None = field(default=None, compare=False)  # where local weights were read; not identity

    def __str__(self) -> str:
        suffix = "" if self.recipe == DEFAULT_RECIPE else f"~{self.recipe}"
        return f"{self.arch}@{self.weights}{suffix}"

    @property
    def is_random(self) -> bool:
        return self.weights.startswith("random-")

    @property
    def seed(self) -> int | None:
        """The seed of random weights (``random-3`` → 3), else None."""
        return int(self.weights.removeprefix("random-")) if self.is_random else None

    @classmethod
    def parse(cls, text: "str | BackboneKey") -> "BackboneKey":
        """Parse ``ARCH@WEIGHTS[~RECIPE]``; a DeCLIP name such as ``CLIP:ViT-L/14`` is accepted too."""
        if isinstance(text, BackboneKey):
            return text
        text = text.strip()
        if text.startswith("CLIP:"):
            keys = parse_declip_arch(text)
            if len(keys) != 1:
                raise DeclipError(f"{text!r} names {len(keys)} backbones; use it where a fused backbone is allowed")
            return keys[0]
        arch, weights, recipe = split_backbone(text)
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


def split_backbone(text: str) -> tuple[str, str, str]:
    """``ARCH@WEIGHTS[~RECIPE]`` → (arch, weights, recipe) as written: no file is read, no name canonicalised.

    What :meth:`BackboneKey.parse` starts from, and enough where only the text matters (a readable run name).
    """
    body, _, recipe = text.strip().partition("~")
    arch, sep, weights = body.partition("@")
    if not sep or not arch or not weights:
        raise DeclipError(
            f"backbone {text!r} must look like ARCH@WEIGHTS, e.g. ViT-L-14@openai, ViT-B-32@random-0 "
            "or ViT-L-14@/path/to/ViT-L-14.pt"
        )
    return arch, weights, recipe or DEFAULT_RECIPE


def backbone_arch(text: "str | BackboneKey") -> str:
    """The architecture a backbone key names (``ViT-L-14@openai`` → ``ViT-L-14``; ``CLIP:ViT-L/14`` too), without
    reading weight files: safe on any configured text, e.g. for names people read."""
    if isinstance(text, BackboneKey):
        return text.arch
    if text.strip().startswith("CLIP:"):
        return "+".join(key.arch for key in parse_declip_arch(text.strip()))
    return split_backbone(text)[0]


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


@dataclass(frozen=True)
class LayerKey:
    """One cached layer of one backbone: a store group's name (``BACKBONE/LAYER``)."""

    backbone: BackboneKey
    layer: str

    def __str__(self) -> str:
        return f"{self.backbone}/{self.layer}"

    @classmethod
    def parse(cls, text: str) -> "LayerKey":
        backbone, sep, layer = text.strip().rpartition("/")
        if not sep or not backbone or not layer or any(c in layer for c in " []+"):
            raise DeclipError(f"feature layer {text!r} must be BACKBONE/LAYER, e.g. ViT-L-14@openai/layer20")
        return cls(BackboneKey.parse(backbone), layer)


# DeCLIP's fusion partner (declip-method §2.4): RN50 layer3, resized to the ViT grid. Defined here only.
DECLIP_FUSION_PARTNER = LayerKey(BackboneKey("RN50", "openai"), "layer3")


@total_ordering
@dataclass(frozen=True)
class SourceKey:
    """What a decoder reads: one layer or a fused pair (ViT first, partner second), under a dataset view."""

    parts: tuple[LayerKey, ...]
    view: str = CLEAN_VIEW

    def __post_init__(self) -> None:
        if not 1 <= len(self.parts) <= 2:
            raise DeclipError(f"a feature source has one layer or two fused ones, got {len(self.parts)}")

    def __str__(self) -> str:
        text = "+".join(str(p) for p in self.parts)
        return text if self.view == CLEAN_VIEW else f"{text}[{self.view}]"

    def __lt__(self, other: "SourceKey") -> bool:
        return str(self) < str(other)

    @classmethod
    def parse(cls, text: "str | SourceKey") -> "SourceKey":
        """``BACKBONE/LAYER[+BACKBONE/LAYER][[VIEW]]``; an already parsed key is returned as is."""
        if isinstance(text, SourceKey):
            return text
        if not isinstance(text, str):
            raise DeclipError(f"a feature source must be text like ViT-L-14@openai/layer20, got {text!r}")
        pieces = _split_top_level(text.strip(), "+", text)
        if len(pieces) > 2:
            raise DeclipError(f"feature source {text!r}: at most two layers can be fused (ViT + partner)")
        parts, views = [], set()
        for piece in pieces:
            body, view = _split_view(piece, text)
            if view is not None:
                views.add(view)
            try:
                parts.append(LayerKey.parse(body))
            except DeclipError:
                raise DeclipError(f"feature source {text!r} must be BACKBONE/LAYER or BACKBONE/LAYER+BACKBONE/LAYER, "
                                  "optionally with a [view], e.g. ViT-L-14@openai/layer20[jpeg:75]") from None
        if len(views) > 1:
            raise DeclipError(f"feature source {text!r}: fused layers must share one view, got {sorted(views)}")
        return cls(tuple(parts), views.pop() if views else CLEAN_VIEW)

    @classmethod
    def single(cls, backbone: "BackboneKey | str", layer: str, view: str = CLEAN_VIEW) -> "SourceKey":
        return cls((LayerKey(BackboneKey.parse(backbone), layer),), view)

    @classmethod
    def declip_fused(cls, vit: "BackboneKey | str", layer: str, view: str = CLEAN_VIEW) -> "SourceKey":
        """DeCLIP's fused model: the ViT layer plus :data:`DECLIP_FUSION_PARTNER`."""
        return cls((LayerKey(BackboneKey.parse(vit), layer), DECLIP_FUSION_PARTNER), view)

    @property
    def fused(self) -> bool:
        return len(self.parts) == 2

    @property
    def layer(self) -> str:
        """The primary (ViT) layer name: DeCLIP's ``feature_layer``."""
        return self.parts[0].layer

    @property
    def backbone(self) -> BackboneKey:
        return self.parts[0].backbone

    def with_view(self, view: str) -> "SourceKey":
        return replace(self, view=view)


def source_or_none(text: object) -> SourceKey | None:
    """The source a results-table cell names, or None where it names none (a baseline's ``-``, a bare layer name in
    tables written before sources were recorded): for readers that show such cells as they are."""
    if not isinstance(text, (str, SourceKey)):
        return None
    try:
        return SourceKey.parse(text)
    except DeclipError:
        return None


BASELINE_MODEL = "baseline"  # ``baseline:NAME`` names a feature-free baseline where a model is expected


def split_model_ref(text: str) -> tuple[str, str]:
    """``SOURCE:DECODER`` (a model of a grid, as ``declip compare`` takes it) -> (source text, decoder).

    The decoder follows the last ``:`` outside brackets (a view ``[jpeg:75]`` keeps its colon); ``baseline:NAME``
    names a feature-free baseline and gives (``baseline``, ``baseline:NAME``).
    """
    text = text.strip()
    if text.startswith(f"{BASELINE_MODEL}:"):
        return BASELINE_MODEL, text
    depth, cut = 0, -1
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if ch == ":" and depth == 0:
            cut = i
    if cut <= 0 or cut == len(text) - 1:
        raise DeclipError(f"model {text!r} must be SOURCE:DECODER, e.g. ViT-L-14@openai/layer20:conv-20 or "
                          "layer20:linear (a baseline: baseline:all-fake)")
    return text[:cut], text[cut + 1:]


def layer_depth(layer: str) -> int:
    """The block or stage number of a layer name (``layer20`` → 20; ``layer0`` of a non-CLIP family → 0), for
    ordering layers by depth; -1 for a name without one."""
    digits = str(layer).removeprefix("layer")
    return int(digits) if digits.isdigit() else -1


def _split_top_level(text: str, sep: str, whole: str) -> list[str]:
    """Split on ``sep`` outside square brackets."""
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                break
        elif ch == sep and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise DeclipError(f"feature source {whole!r} has unbalanced [ ] around its view")
    return pieces + [text[start:]]


def _split_view(piece: str, whole: str) -> tuple[str, str | None]:
    """``BACKBONE/LAYER[view]`` → (``BACKBONE/LAYER``, ``view``); no brackets → (piece, None)."""
    if "[" not in piece:
        if "]" in piece:
            raise DeclipError(f"feature source {whole!r} has unbalanced [ ] around its view")
        return piece, None
    body, _, rest = piece.partition("[")
    if not rest.endswith("]") or not rest[:-1].strip():
        raise DeclipError(f"feature source {whole!r}: a view is written last, e.g. ViT-L-14@openai/layer20[jpeg:75]")
    return body, rest[:-1].strip()


def parse_store_key(text: str) -> tuple[LayerKey, str]:
    """``BACKBONE/LAYER/DATASET`` (a store group, as ``declip store ls`` lists it) → (layer key, dataset)."""
    layer_text, sep, dataset = text.strip().rpartition("/")
    try:
        if not sep or not dataset:
            raise DeclipError(text)
        return LayerKey.parse(layer_text), dataset
    except DeclipError:
        raise DeclipError(f"store key {text!r} must be BACKBONE/LAYER/DATASET (see `declip store ls`)") from None


#: A view's cached copy of dataset D is the store dataset ``D@VIEW`` (``dolos@jpeg:75``); the clean copy stays ``D``.
VIEW_SEP = "@"


@dataclass(frozen=True)
class DatasetKey:
    """A store dataset: a registered dataset seen through a view (``clean``: the dataset itself).

    Dataset names come from manifests and may hold anything but ``@``; a view (canonical, see ``features.views``)
    may hold ``@`` nowhere either, so the first ``@`` separates them.
    """

    dataset: str
    view: str = CLEAN_VIEW

    def __str__(self) -> str:
        return self.dataset if self.view in ("", CLEAN_VIEW) else f"{self.dataset}{VIEW_SEP}{self.view}"

    @classmethod
    def parse(cls, text: "str | DatasetKey") -> "DatasetKey":
        if isinstance(text, DatasetKey):
            return text
        base, sep, view = str(text).strip().partition(VIEW_SEP)
        if not base or (sep and not view):
            raise DeclipError(f"store dataset {text!r} must be DATASET or DATASET@VIEW, e.g. dolos@jpeg:75")
        return cls(base, view or CLEAN_VIEW)

    @property
    def is_clean(self) -> bool:
        return self.view in ("", CLEAN_VIEW)

    def with_view(self, view: str) -> "DatasetKey":
        return replace(self, view=view or CLEAN_VIEW)


def view_dataset_key(dataset: str, view: str = CLEAN_VIEW) -> str:
    """Store key of ``dataset`` seen through ``view`` (a canonical view name); ``clean`` is the dataset itself."""
    return str(DatasetKey(dataset, view or CLEAN_VIEW))


def split_view_key(key: str) -> tuple[str, str]:
    """(dataset, view) of a store dataset key; inverse of :func:`view_dataset_key`."""
    parsed = DatasetKey.parse(key)
    return parsed.dataset, parsed.view


#: Steps of a view compose with ``+``; an operation's parameters follow a ``:``.
VIEW_CHAIN_SEP, VIEW_PARAM_SEP = "+", ":"


def split_view_chain(text: str) -> list[tuple[str, str]]:
    """A view's text → its steps as (operation, parameters) pairs: ``jpeg:75+resize:0.5`` →
    ``[("jpeg", "75"), ("resize", "0.5")]``; ``jitter`` → ``[("jitter", "")]``. Only the syntax: which operations
    exist and what their parameters mean is checked by ``features.views``."""
    steps = []
    for piece in str(text).split(VIEW_CHAIN_SEP):
        name, _, params = piece.strip().partition(VIEW_PARAM_SEP)
        steps.append((name.strip(), params.strip()))
    return steps
