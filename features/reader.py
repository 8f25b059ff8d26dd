"""Decoded, preprocessed image batches, produced ahead of the forward pass.

Decoding and resizing run in a small thread pool (PIL releases the GIL for both), and whole batches are queued a
few deep, so the model never waits on JPEG decoding (goal P1: full extraction ≥ 0.8 × forward alone).
A file that cannot be decoded becomes a zero tensor plus a problem record; the caller decides whether that is fatal.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

from features.images import ImageProblem, open_rgb
from features.prefetch import background_map
from features.preprocess import Recipe, to_tensor


@dataclass
class ImageBatch:
    """One block of rows: the input tensor, which rows decoded, and why the others did not."""

    key: int
    rows: list[int]
    pixels: torch.Tensor
    ok: torch.Tensor  # bool (B,)
    problems: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _load_one(path: str, recipe: Recipe) -> tuple[torch.Tensor | None, dict | None]:
    try:
        return to_tensor(recipe, open_rgb(path, exif=recipe.applies_exif)), None
    except ImageProblem as exc:
        return None, {"path": path, "reason": exc.reason, "detail": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a per-file problem, not a crash
        return None, {"path": path, "reason": "unreadable", "detail": f"{type(exc).__name__}: {exc}"}


def load_batch(key: int, rows: list[int], paths: list[str], recipe: Recipe, pool: ThreadPoolExecutor) -> ImageBatch:
    import time

    start = time.perf_counter()
    results = list(pool.map(lambda p: _load_one(p, recipe), paths))
    pixels = torch.zeros((len(rows), 3, recipe.size, recipe.size), dtype=torch.float32)
    ok = torch.zeros(len(rows), dtype=torch.bool)
    problems = []
    for i, (tensor, problem) in enumerate(results):
        if tensor is not None:
            pixels[i] = tensor
            ok[i] = True
        else:
            problems.append(dict(problem, row=rows[i]))
    return ImageBatch(key, rows, pixels, ok, problems, time.perf_counter() - start)


def prefetch_batches(jobs: Iterable[tuple[int, list[int], list[str]]], recipe: Recipe, workers: int = 2,
                     depth: int = 2) -> Iterator[ImageBatch]:
    """Yield :class:`ImageBatch` for each ``(key, rows, paths)`` job, decoding ahead in background threads."""
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode")
    yield from background_map(lambda job: load_batch(*job, recipe, pool), jobs, depth, on_exit=pool.shutdown)
