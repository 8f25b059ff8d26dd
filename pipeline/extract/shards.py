"""A sharded extraction: the setup's block list cut into contiguous ranges, one task each, and their statistics merged.

Why contiguous ranges: a block is the unit of ownership (whole chunks, or one zarr shard), so tasks with disjoint
block sets never write the same chunk and need no lock; contiguous ranges keep each task's reads of the image folder
sequential. The ranges are balanced by block count (rows per block are equal but the last), so with N tasks on N GPUs
they finish together. Nothing here imports Prefect; ``flows/extract.py`` submits one task per range.
"""
from __future__ import annotations

from declip.core.errors import DeclipError


def shard_ranges(blocks, shards: int) -> list[list[int]]:
    """``blocks`` (ascending, the setup's pending blocks) cut into at most ``shards`` contiguous, balanced, non-empty
    ranges; [] when nothing is pending."""
    if shards < 1:
        raise DeclipError(f"shards must be at least 1, got {shards}")
    todo = sorted(int(b) for b in blocks)
    n = min(shards, len(todo))
    bounds = [round(i * len(todo) / n) for i in range(n + 1)] if n else []
    return [todo[lo:hi] for lo, hi in zip(bounds, bounds[1:])]


def merge_stats(setup: dict, shards: list[dict], wall: float) -> dict:
    """One extraction's statistics from its block-range tasks' (``ExtractStats.to_dict`` each): counts and stage
    seconds summed, ``wall`` the whole flow's, and ``shards`` listing each task's blocks and where it ran."""
    seconds: dict[str, float] = {}
    for s in shards:
        for stage, value in s["seconds"].items():
            seconds[stage] = seconds.get(stage, 0.0) + value
    encoded = sum(s["images_encoded"] for s in shards)
    return {
        "backbone": setup["backbone"], "dataset": setup["dataset"], "layers": list(setup["layers"]),
        "rows": setup["rows"], "blocks_total": setup["blocks_total"],
        "blocks_run": sum(s["blocks_run"] for s in shards), "images_encoded": encoded,
        "bad_images": sum(s["bad_images"] for s in shards), "seconds": seconds or {"decode": 0.0, "forward": 0.0,
                                                                                  "write": 0.0},
        "wall": wall, "images_per_s": encoded / wall if wall else 0.0,
        "shards": [{"blocks": s.get("blocks", []), "blocks_run": s["blocks_run"], "where": s.get("where", {})}
                   for s in shards],
    }
