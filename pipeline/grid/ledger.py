"""The eviction ledger of a disk-budgeted grid: which layers the grid extracted itself, and the eviction of a group's.

Under ``max_store_gb`` a grid extracts a group of layers, trains and evaluates the group's cells, then deletes the
group's layers. It may delete only what it made: ``<out>/created_layers.json`` lists the (store, dataset, backbone,
layer) the grid found missing when it first needed them. A layer already in the store (complete or not) was put
there by someone else and is never evicted.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from declip.core.io import atomic_write_text
from declip.core.keys import LayerKey
from declip.pipeline.grid.config import GridConfig
from declip.store.feature_store import FeatureStore

#: Layers this grid extracted itself (``<out>/created_layers.json``); only these are evicted under ``max_store_gb``.
CREATED_LAYERS = "created_layers.json"

LOG = logging.getLogger("declip.grid")

LayerPair = tuple[str, str]  # (backbone, layer), as the budget planner names a cached layer


def ledger_path(g: GridConfig) -> Path:
    return Path(g.out) / CREATED_LAYERS


def created_layers(g: GridConfig) -> set[LayerPair]:
    """(backbone, layer) pairs the grid at ``g.out`` created in ``g.store`` / ``g.dataset`` (across resumed runs)."""
    path = ledger_path(g)
    if not path.exists():
        return set()
    record = json.loads(path.read_text())
    return {(e["backbone"], e["layer"]) for e in record.get("layers", [])
            if e.get("store") == g.store and e.get("dataset") == g.dataset}


def record_created_layers(g: GridConfig, jobs: dict[str, list[str]]) -> set[LayerPair]:
    """Before extracting ``jobs`` ({backbone: layers}): add the layers the store does not hold yet to the grid's
    record; returns the record.

    Why before: a run killed mid-extraction leaves a partial layer the grid made; the resumed run must still know
    it is the grid's to evict. Layers already in the store (complete or not) when the grid first needed them were put
    there by someone else and are never evicted.
    """
    mine = created_layers(g)
    if not g.manifest or not jobs:
        return mine
    fs = FeatureStore(g.store)
    new = {(b, layer) for b, layers in jobs.items() for layer in layers
           if (b, layer) not in mine and fs.layer_path(b, layer, g.dataset) not in fs.root}
    if new:
        path = ledger_path(g)
        old = json.loads(path.read_text()).get("layers", []) if path.exists() else []
        entries = old + [{"store": g.store, "dataset": g.dataset, "backbone": b, "layer": layer}
                         for b, layer in sorted(new)]
        atomic_write_text(path, json.dumps({"layers": entries}, indent=2))
    return mine | new


def evict_group(g: GridConfig, evict_after: list[LayerKey],
                log: logging.Logger | logging.LoggerAdapter = LOG) -> list[str]:
    """Delete the layers of a finished group that the grid created (``evict_after`` as the budget planner lists
    them); the others are kept and named in the log. Returns ``BACKBONE/LAYER`` of each layer deleted (a layer is
    re-extracted if a later run needs it)."""
    created = created_layers(g)  # also for a finished group skipped on resume
    pairs = [(str(key.backbone), key.layer) for key in evict_after]
    ours = [(b, layer) for b, layer in pairs if (b, layer) in created]
    kept = [f"{b}/{layer}" for b, layer in pairs if (b, layer) not in created]
    if kept:
        log.info("keeping %s: in the store before this grid needed them (only layers it extracted are evicted)",
                 ", ".join(kept))
    fs = FeatureStore(g.store)
    gone = []
    for backbone, layer in ours:
        if fs.has_layer(backbone, layer, g.dataset) or fs.layer_path(backbone, layer, g.dataset) in fs.root:
            fs.delete_layer(backbone, layer, g.dataset)
            gone.append(f"{backbone}/{layer}")
    return gone
