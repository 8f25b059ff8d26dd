"""What a grid extracts before it trains: one extraction job per (view, backbone), each only for the rows it needs.

* clean features: every row (training, validation and test all read them);
* each test view (``test_views``): the test split only, the one its evaluations read (model selection on the
  valid split stays clean);
* each training view (``train_views`` / ``augment_copies``): the train split only.

The store decides what is already done, so a job whose blocks are cached encodes nothing.
"""
from __future__ import annotations

from dataclasses import replace

from declip.core.keys import CLEAN_VIEW
from declip.pipeline.extract.extraction import ExtractConfig
from declip.pipeline.grid.config import GridConfig, resolved_test_views, resolved_train_views


def view_splits(g: GridConfig) -> list[tuple[str, tuple[str, ...]]]:
    """(view, splits to encode; () = every row) for every view the grid reads, clean first."""
    plan = [(CLEAN_VIEW, ())] + [(view, ("test",)) for view in resolved_test_views(g)]
    return plan + [(view, ("train",)) for view in resolved_train_views(g) if view != CLEAN_VIEW]


def extraction_configs(g: GridConfig, jobs: dict[str, list[str]]) -> list[ExtractConfig]:
    """The extraction runs that make ``jobs`` ({backbone: layers}) available under every view the grid reads; none
    when the grid has no manifest (its features must be in the store already)."""
    if not g.manifest:
        return []
    base = ExtractConfig(manifest=g.manifest, store=g.store, backbone="", dataset=g.dataset,
                         batch_size=g.extract_batch_size, device=g.options.device, storage_dtype=g.storage_dtype,
                         shards=g.extract_shards, progress=g.options.progress)  # a bar per pass: hours
    return [replace(base, backbone=backbone, layers=",".join(sorted(set(layers))), view=view, splits=splits)
            for view, splits in view_splits(g) for backbone, layers in jobs.items()]
