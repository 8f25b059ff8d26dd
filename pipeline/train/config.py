"""One decoder run: :class:`TrainConfig` = what it trains and where it is written, plus how (:class:`TrainOptions`).

Why this split: the fields here are the ones a grid varies from cell to cell (source, decoder, train set, seed) or
that say where the data and the run live (store, dataset, out); everything a grid holds fixed for all its cells is a
training option. A grid therefore builds each cell as ``TrainConfig(..., options=grid.options)``, and an option
added to :class:`TrainOptions` reaches ``train``, ``grid`` and the demo without another line.

Runs made before this split keep their identities and their config.json bytes: the options are written inline
(flat keys, in the order runs always had), ``train_sets`` is stored under its old key ``train_subsets``, and
:meth:`TrainConfig.from_json` reads the flat form and the nested one.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

from declip.core.configs import JsonConfig, from_json, leaves, nested, option, rules_of, to_json
from declip.core.keys import SourceKey
from declip.core.validation import check_config, whole
from declip.pipeline.train.options import LATER, NOT_RESULT, RESULT, SHORTHAND, TrainOptions


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """One decoder run; CLI flags map onto these fields and the options' (DeCLIP's names are aliases)."""

    WHAT = "training"
    #: config.json key order of every run written so far (a new option's key goes after these).
    JSON_ORDER = ("store", "source", "dataset", "train_subsets", "out", "decoder", "width", "faithful", "mode", "lr",
                  "batch_size", "max_epochs", "patience", "min_lr", "seed", "train_split", "valid_split", "device",
                  "memory_gb", "progress", "min_steps_per_epoch", "collapse_patience", "precision", "channels_last",
                  "compile", "device_memory_gb", "train_views")

    store: str = option(help="feature store written by `declip extract`", identity=RESULT)
    source: SourceKey = option(help="BACKBONE/LAYER, or two fused with +; text is parsed on construction",
                               identity=RESULT)
    dataset: str = option(help="cached dataset name", identity=RESULT)
    train_sets: tuple[str, ...] = option(help="training generators (subsets of the dataset), or all",
                                         identity=RESULT, json_key="train_subsets")
    out: str = option(help="run directory", identity=NOT_RESULT)
    decoder: str = option("conv-20", help="decoder name (decoders registry)", identity=RESULT)
    seed: int = option(0, help="seeds weight init and batch order", identity=RESULT, rule=whole(0))
    options: TrainOptions = nested(TrainOptions, help="how it is trained")

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", SourceKey.parse(self.source))
        object.__setattr__(self, "train_sets", tuple(self.train_sets))
        if not isinstance(self.options, TrainOptions):
            raise TypeError(f"options must be TrainOptions, got {type(self.options).__name__}")
        check_config(self, rules_of(TrainConfig), self.WHAT)
        object.__setattr__(self, "options", self.options.resolved())

    def with_options(self, **changes) -> "TrainConfig":
        """The same run with some training options changed (``cfg.with_options(max_epochs=3)``)."""
        return replace(self, options=replace(self.options, **changes))

    def to_json(self) -> dict:
        """Flat JSON-safe keys, as stored in config.json (the shorthand options are folded, never stored)."""
        return {k: v for k, v in to_json(self).items() if k not in _SHORTHANDS}

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        """From :meth:`to_json`'s form, a stored config.json (its ``identity`` key is ignored) or nested options."""
        return from_json(cls, data, ignore=("identity",))

    def identity(self) -> str:
        """Hash of everything that changes the result (not where it is written or how it is shown); each key enters
        as its identity kind says (see :mod:`declip.pipeline.train.options`)."""
        keep = {}
        for key, value in self.to_json().items():
            kind, neutral = _KINDS[key]
            if kind == NOT_RESULT or (kind == LATER and value == neutral):
                continue
            keep[key] = value
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _kinds() -> dict[str, tuple[str, object]]:
    from declip.core.configs import plain

    return {leaf.key: (leaf.meta.identity, plain(leaf.meta.neutral) if leaf.meta.identity == LATER else None)
            for leaf in leaves(TrainConfig)}


_KINDS = _kinds()
_SHORTHANDS = {key for key, (kind, _) in _KINDS.items() if kind == SHORTHAND}
