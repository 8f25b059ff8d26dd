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
from features.preprocess import Recipe, resize_for, to_tensor
from features.views import View


@dataclass
class ImageBatch:
    """One block of rows: the input tensor, which rows decoded, and why the others did not."""

    key: int
    rows: list[int]
    pixels: torch.Tensor
    ok: torch.Tensor  # bool (B,)
    problems: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def load_image(path: str, recipe: Recipe, view: View | None = None, image_id: str = "") -> torch.Tensor:
    """Decode, perturb by ``view`` (seeded by ``image_id``), preprocess: the model input of one cached row."""
    image = open_rgb(path)
    if view is not None and not view.is_clean:
        image = view.apply(image, image_id, lambda im: resize_for(recipe, im))
    return to_tensor(recipe, image)


def _load_one(path: str, recipe: Recipe, view: View | None = None,
              image_id: str = "") -> tuple[torch.Tensor | None, dict | None]:
    try:
        return load_image(path, recipe, view, image_id), None
    except ImageProblem as exc:
        return None, {"path": path, "reason": exc.reason, "detail": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a per-file problem, not a crash
        return None, {"path": path, "reason": "unreadable", "detail": f"{type(exc).__name__}: {exc}"}


def load_batch(key: int, rows: list[int], paths: list[str], recipe: Recipe, pool: ThreadPoolExecutor,
               view: View | None = None, ids: list[str] | None = None) -> ImageBatch:
    import time

    start = time.perf_counter()
    ids = ids or paths
    results = list(pool.map(lambda p: _load_one(p[0], recipe, view, p[1]), zip(paths, ids)))
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


def prefetch_batches(jobs: Iterable[tuple], recipe: Recipe, workers: int = 2, depth: int = 2,
                     view: View | None = None) -> Iterator[ImageBatch]:
    """Yield :class:`ImageBatch` for each ``(key, rows, paths[, image_ids])`` job, decoding ahead in threads.

    With a ``view``, each image is perturbed before preprocessing, seeded by its id (default: its path).
    """
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode")

    def load(job: tuple) -> ImageBatch:
        key, rows, paths, *ids = job
        return load_batch(key, rows, paths, recipe, pool, view, ids[0] if ids else None)

    yield from background_map(load, jobs, depth, on_exit=pool.shutdown)
