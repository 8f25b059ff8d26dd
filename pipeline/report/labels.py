"""How the report names and orders feature sources, and the random-weights note every figure carries.

Every source string is read through :class:`declip.core.keys.SourceKey` (the only parser of keys); a cell that names
no source (a baseline's ``-``, a bare layer name in a table written before sources were recorded) is shown as is.
"""
from __future__ import annotations

from declip.core.keys import CLEAN_VIEW, layer_depth, source_or_none

RANDOM_NOTE = "Backbone weights are RANDOM — these numbers show the pipeline works, not what CLIP features can do"


def decorate(fig, random_weights: bool) -> None:
    """The random-weights note along a figure's bottom edge, when it applies."""
    if random_weights:
        fig.text(0.5, 0.005, RANDOM_NOTE, ha="center", va="bottom", fontsize=8, color="crimson")


def short_source(source: object) -> str:
    """``demo-vit-small@random-0/layer4`` → ``demo-vit-small/layer4`` for axis labels (the banner says random)."""
    key = source_or_none(source)
    if key is None:
        return str(source)
    text = "+".join(f"{part.backbone.arch}/{part.layer}" for part in key.parts)
    return text if key.view == CLEAN_VIEW else f"{text}[{key.view}]"


def source_order(source: object) -> tuple:
    """Backbone, then layer depth (layer2 before layer10), then the text."""
    key = source_or_none(source)
    if key is None:
        return "", layer_depth(str(source)), str(source)
    return str(key.backbone), layer_depth(key.layer), str(source)


def curve_name(source: object) -> str:
    """What one line of the by-layer figure follows across layers: the backbone's architecture, plus the fusion
    partner of a fused source (``ViT-L-14+RN50/layer3``)."""
    key = source_or_none(source)
    if key is None:
        return ""
    return key.backbone.arch + "".join(f"+{part.backbone.arch}/{part.layer}" for part in key.parts[1:])
