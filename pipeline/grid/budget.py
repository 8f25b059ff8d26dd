"""Disk-budgeted grids: which layers are on disk together, and when each one is evicted.

The 24 layers of ViT-L/14 for Dolos (~40k images) take ~0.5 TB in float16; a 64 GiB disk holds a few at a time.
Sources (``BACKBONE/LAYER`` or fused pairs) are taken in the grid's order and packed greedily into groups whose
layers -- plus layers kept from earlier groups because a later source still needs them -- fit ``max_store_gb``.
Each group is extracted, all its cells trained and evaluated, then every layer no later group needs is evicted.
Re-running a grid re-plans the same groups (the plan is a pure function of the config and the layer sizes), skips
groups whose cells are all finished, and re-extracts only what a group still needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from declip.core.errors import DeclipError
from declip.core.keys import LayerKey, SourceKey
from declip.features.families import layer_shapes
from declip.store.quantize import bytes_per_sample


def source_layers(source: "SourceKey | str") -> list[LayerKey]:
    """``B/L`` or ``B1/L1+B2/L2`` (a :class:`core.keys.SourceKey` or its text) -> the cached layers it reads."""
    return list(SourceKey.parse(source).parts)


def layer_nbytes(layer: LayerKey, n_rows: int, storage_dtype: str) -> int:
    """Bytes one cached layer of ``n_rows`` images takes on disk (features, scales, class token, valid flags), from
    the layer's shape as its feature family states it (any family: CLIP towers, the SRM control, ...)."""
    shape = layer_shapes(layer.backbone.arch)[layer.layer]
    return n_rows * bytes_per_sample(storage_dtype, shape.channels, shape.grid, shape.has_cls)


@dataclass
class LayerGroup:
    sources: list[str]
    layers: list[LayerKey]  # everything the group's cells read (extract what is missing)
    held_bytes: int  # peak feature bytes on disk while the group runs
    evict_after: list[LayerKey] = field(default_factory=list)

    def extraction_jobs(self) -> dict[str, list[str]]:
        """{backbone key text: its layers}: one extraction pass per backbone."""
        jobs: dict[str, list[str]] = {}
        for key in self.layers:
            jobs.setdefault(str(key.backbone), []).append(key.layer)
        return jobs


def plan_groups(sources: list, nbytes: dict[LayerKey, int], budget_bytes: int | None) -> list[LayerGroup]:
    """Greedy packing of ``sources`` (in order) into groups that fit ``budget_bytes`` (None: one group)."""
    if budget_bytes is None:
        layers = _unique(k for s in sources for k in source_layers(s))
        return [LayerGroup(list(sources), layers, sum(nbytes[k] for k in layers), [])]
    groups: list[list] = []
    current: list = []
    for source in sources:
        trial = current + [source]
        if _footprint(groups, trial, sources, nbytes) <= budget_bytes:
            current = trial
            continue
        if current:
            groups.append(current)
        current = [source]
        need = _footprint(groups, current, sources, nbytes)
        if need > budget_bytes:
            raise DeclipError(
                f"max_store_gb = {budget_bytes / 2**30:.3g} cannot hold the features of {source} "
                f"({need / 2**30:.3g} GiB with what later groups still need); raise max_store_gb, or use "
                "storage_dtype = \"int8\" to halve the bytes"
            )
    if current:
        groups.append(current)
    return _finish(groups, sources, nbytes)


def _unique(items) -> list:
    seen: dict = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def _held(done: list[list[str]], group: list[str], sources: list[str]) -> list[LayerKey]:
    """Layers on disk while ``group`` runs: its own, and earlier groups' layers that it or a later source needs."""
    start = sum(len(g) for g in done)
    still_needed = {k for s in sources[start:] for k in source_layers(s)}
    earlier = [k for g in done for s in g for k in source_layers(s) if k in still_needed]
    return _unique(earlier + [k for s in group for k in source_layers(s)])


def _footprint(done: list[list[str]], group: list[str], sources: list[str], nbytes: dict[LayerKey, int]) -> int:
    return sum(nbytes[k] for k in _held(done, group, sources))


def _finish(groups: list[list[str]], sources: list[str], nbytes: dict[LayerKey, int]) -> list[LayerGroup]:
    out = []
    for i, group in enumerate(groups):
        held = _held(groups[:i], group, sources)
        later = {k for g in groups[i + 1:] for s in g for k in source_layers(s)}
        layers = _unique(k for s in group for k in source_layers(s))
        out.append(LayerGroup(list(group), layers, sum(nbytes[k] for k in held),
                              [k for k in held if k not in later]))
    return out
