"""Decoded, preprocessed image batches, produced ahead of the forward pass.

Decoding and resizing run in a small thread pool (PIL releases the GIL for both), and whole batches are queued a
few deep, so the model never waits on JPEG decoding (goal P1: full extraction ≥ 0.8 × forward alone).
A file that cannot be decoded becomes a zero tensor plus a problem record; the caller decides whether that is fatal.
"""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

from declip.features.images import ImageProblem, decode_rgb, open_rgb, read_file_bytes
from declip.features.prefetch import background_map
from declip.features.preprocess import Recipe, resize_for, to_tensor_into
from declip.features.views import View


@dataclass
class ImageBatch:
    """One block of rows: the input tensor, which rows decoded, and why the others did not."""

    key: int
    rows: list[int]
    pixels: torch.Tensor
    ok: torch.Tensor  # bool (B,)
    problems: list[dict] = field(default_factory=list)
    seconds: float = 0.0


class ChangedSinceScan(Exception):
    """The file's bytes differ from the manifest's sha256."""

    def __init__(self, path: str, got: str, want: str):
        super().__init__(f"{path}: sha256 {got[:12]} differs from the manifest's {want[:12]}; "
                         "re-run `declip data scan` if the new file is intended")


def load_image(path: str, recipe: Recipe, view: View | None = None, image_id: str = "",
               sha256: str | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Decode (EXIF orientation as the recipe says), perturb by ``view`` (seeded by ``image_id``), preprocess: the
    model input of one cached row, written into ``out`` (a batch slot) when given.

    With ``sha256`` (the manifest's), the original file bytes are checked first: a file changed since the scan
    raises :class:`ChangedSinceScan`. The bytes are read once, hashed and decoded from memory, in the reader's
    worker thread; hashing costs ~2 ms per MB, next to tens of ms to encode the image.
    """
    if sha256:
        data = read_file_bytes(path)
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise ChangedSinceScan(path, got, sha256)
        image = decode_rgb(data, path, exif=recipe.applies_exif)
    else:
        image = open_rgb(path, exif=recipe.applies_exif)
    if view is not None and not view.is_clean:
        image = view.apply(image, image_id, lambda im: resize_for(recipe, im))
    return to_tensor_into(recipe, image, out)


def _load_one(path: str, recipe: Recipe, sha256: str | None, view: View | None, image_id: str,
              out: torch.Tensor) -> dict | None:
    """Decode one file into its batch slot ``out``; a problem record (and a zeroed slot) for a bad file, never a
    raise."""
    try:
        load_image(path, recipe, view, image_id, sha256, out)
        return None
    except ChangedSinceScan as exc:
        problem = {"path": path, "reason": "changed-since-scan", "detail": str(exc)}
    except ImageProblem as exc:
        problem = {"path": path, "reason": exc.reason, "detail": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a per-file problem, not a crash
        problem = {"path": path, "reason": "unreadable", "detail": f"{type(exc).__name__}: {exc}"}
    out.zero_()
    return problem


def load_batch(key: int, rows: list[int], paths: list[str], recipe: Recipe, pool: ThreadPoolExecutor,
               sha256s: list[str] | None = None, view: View | None = None,
               ids: list[str] | None = None, pin: bool = False) -> ImageBatch:
    """Decode one block in ``pool``'s workers, each image straight into its slot of the batch tensor (page-locked
    with ``pin``, so a CUDA forward copies it asynchronously without another host copy)."""
    start = time.perf_counter()
    hashes = sha256s or [None] * len(paths)
    ids = ids or paths
    pixels = torch.zeros((len(rows), 3, recipe.size, recipe.size), dtype=torch.float32, pin_memory=pin)
    jobs = zip(paths, hashes, ids, pixels)
    results = list(pool.map(lambda job: _load_one(job[0], recipe, job[1], view, job[2], job[3]), jobs))
    ok = torch.tensor([problem is None for problem in results], dtype=torch.bool)
    problems = [dict(problem, row=rows[i]) for i, problem in enumerate(results) if problem is not None]
    return ImageBatch(key, rows, pixels, ok, problems, time.perf_counter() - start)


def prefetch_batches(jobs: Iterable[tuple], recipe: Recipe, workers: int = 2, depth: int = 2,
                     view: View | None = None, pin: bool = False) -> Iterator[ImageBatch]:
    """Yield :class:`ImageBatch` for each ``(key, rows, paths[, sha256s[, image_ids]])`` job, decoding ahead in
    background threads.

    ``sha256s`` (or None) are checked on the original file bytes; with a ``view``, each image is perturbed after
    decoding and before preprocessing, seeded by its id (default: its path). ``pin``: batches in page-locked
    memory (for a CUDA forward).
    """
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode")

    def load(job: tuple) -> ImageBatch:
        key, rows, paths, *rest = job
        hashes = rest[0] if rest else None
        ids = rest[1] if len(rest) > 1 else None
        return load_batch(key, rows, paths, recipe, pool, hashes, view, ids, pin)

    yield from background_map(load, jobs, depth, on_exit=pool.shutdown)
