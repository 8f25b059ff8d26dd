"""How the report names and orders feature sources, and the random-weights note every figure carries.

Every source string is read through :class:`declip.core.keys.SourceKey` (the only parser of keys); a cell that names
no source (a baseline's ``-``, a bare layer name in a table written before sources were recorded) is shown as is.
"""
from __future__ import annotations

import textwrap
from functools import lru_cache

from declip.core.errors import DeclipError
from declip.core.keys import CLEAN_VIEW, layer_depth, source_or_none

RANDOM_NOTE = "Backbone weights are RANDOM — these numbers show the pipeline works, not what CLIP features can do"

#: The one meaning of "collapsed" (:mod:`declip.pipeline.metrics.collapse`), said the same way in every table and figure.
COLLAPSED = ("collapsed = the evaluation's maps were near-constant (almost all fake, almost none, pixel AUC within "
             "0.02 of 0.5, or one map for every image)")
#: Why a model with good test numbers may still not be chosen: the choice is made on validation.
NOT_CHOSEN_RULE = ("a model whose in-domain VALIDATION evaluations collapsed for half or more of its training "
                   "generators is never chosen, even where its TEST evaluations did not collapse (validation decides, "
                   "test reports)")


def collapsed_count(k: int, n: int, split: str = "test") -> str:
    """'2 of 8 test evaluations collapsed': how every table and figure counts collapse."""
    return f"{k} of {n} {split} evaluations collapsed"


def note_text(fig, text: str, y: float = 0.005, fontsize: int = 8):
    """``text`` along the figure's bottom edge, wrapped until its rendered width fits the figure (never clipped)."""
    renderer = fig.canvas.get_renderer()
    chars = max(20, int(fig.get_figwidth() * 72 / (fontsize * 0.55)))
    while True:
        note = fig.text(0.5, y, "\n".join(textwrap.wrap(text, chars)), ha="center", va="bottom",
                        fontsize=fontsize, color="crimson")
        if chars <= 20 or note.get_window_extent(renderer).width <= 0.98 * fig.bbox.width:
            return note
        note.remove()
        chars = int(chars * 0.9)


def note_height(fig, note) -> float:
    """The fraction of the figure's height a note takes (the bottom of ``tight_layout``'s rect)."""
    lines = note.get_text().count("\n") + 1
    return min(0.3, 0.01 + lines * note.get_fontsize() * 1.35 / 72 / fig.get_figheight())


def decorate(fig, random_weights: bool) -> float:
    """The random-weights note along a figure's bottom edge, wrapped to its width, when it applies; returns the
    fraction of the figure's height it takes (the bottom of ``tight_layout``'s rect)."""
    if not random_weights:
        return 0.02
    return note_height(fig, note_text(fig, RANDOM_NOTE))


@lru_cache(maxsize=None)
def _arch_is_control(arch: str) -> bool:
    from declip.features.families import family_for

    try:
        return bool(family_for(arch).positive_control)
    except DeclipError:
        return False


def is_control(source: object) -> bool:
    """A positive-control source (its feature family says so, e.g. ``srm@fixed/layer0``): checked against the
    baselines, never crowned best."""
    key = source_or_none(source)
    return key is not None and _arch_is_control(key.backbone.arch)


def is_random_source(source: object) -> bool:
    """Every backbone of the source has random weights (``@random-N``)."""
    key = source_or_none(source)
    return key is not None and all(part.backbone.is_random for part in key.parts)


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
