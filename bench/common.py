"""Shared set-up for the bench scripts: a folder of real-photo JPEGs and its manifest, timing helpers.

Benchmarks print both sides of each ratio measured in the same run (design §5); they are not tests.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


def photo_sources() -> list[np.ndarray]:
    """Real photos that ship inside scikit-image and scikit-learn (never downloaded)."""
    import skimage
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)
    data_dir = Path(skimage.__file__).parent / "data"
    for name in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png"):
        if (data_dir / name).exists():
            photos.append(np.asarray(Image.open(data_dir / name).convert("RGB")))
    return photos


def make_jpeg_manifest(n: int, root: Path, size: int = 256, seed: int = 0) -> Path:
    """``n`` JPEG crops of real photos as a real-only Dolos-style tree, and its manifest."""
    from PIL import Image

    from declip.pipeline.data.manifest import write_manifest

    rng = np.random.default_rng(seed)
    photos = photo_sources()
    folder = root / "bench" / "real" / "train"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        src = photos[i % len(photos)]
        y, x = rng.integers(0, src.shape[0] - size), rng.integers(0, src.shape[1] - size)
        path = folder / f"img{i:05d}.jpg"
        Image.fromarray(src[y:y + size, x:x + size]).save(path, quality=90)
        rows.append({"dataset": "bench", "subset": "real", "split": "train", "group_id": f"img{i:05d}",
                     "image_path": str(path.relative_to(root)), "mask_path": "", "label": 0, "kind": "real",
                     "mask_polarity": "fake_is_black", "variant": "", "width": size, "height": size,
                     "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    manifest = root / "manifest.parquet"
    write_manifest(pd.DataFrame(rows), manifest, root, "dolos")
    return manifest


def workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"declip-bench-{prefix}-"))


@contextmanager
def timed(results: dict, key: str):
    start = time.perf_counter()
    yield
    results[key] = time.perf_counter() - start


def report(title: str, lhs: tuple[str, float], rhs: tuple[str, float], ratio: float, target: str) -> None:
    print(f"{title}\n  {lhs[0]:<48s} {lhs[1]:10.3f}\n  {rhs[0]:<48s} {rhs[1]:10.3f}\n  ratio {ratio:.3f}  (target {target})")
