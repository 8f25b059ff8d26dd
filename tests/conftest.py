"""Shared test settings: offline, quiet, deterministic; tiny random-weight models only."""
from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="declip-prefect-"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


#: (height, width) of every tiny image and mask: not square, so a swapped (W, H) anywhere shows up.
TINY_SIZE = (48, 80)


def _write_tiny_dolos(root, seed: int = 0, size: tuple[int, int] = TINY_SIZE) -> None:
    """A small Dolos-layout tree: two "generators" that tint or brighten a box, plus reals. Masks: black = fake.

    The edits shift the region's colour so that even random-weight features carry a learnable signal. Images are
    ``size`` = (height, width), 48×80 by default, so every path that could swap height and width is exercised.
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    tree = root / "celebahq"
    counts = {"train": 16, "valid": 4, "test": 4}
    height, width = size

    def photo() -> Image.Image:
        base = rng.normal(128, 40, (height // 8, width // 8, 3))
        img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
        noise = rng.normal(0, 25, (height, width, 3))
        return Image.fromarray(np.clip(np.asarray(img, float) + noise, 0, 255).astype(np.uint8))

    for split, n in counts.items():
        (tree / "real" / split).mkdir(parents=True)
        for i in range(n // 2):
            photo().save(tree / "real" / split / f"r{split}{i:02d}.png")
        for gen in ("tint", "bright"):
            img_dir, mask_dir = tree / "fake" / gen / "images" / split, tree / "fake" / gen / "masks" / split
            img_dir.mkdir(parents=True)
            mask_dir.mkdir(parents=True)
            for i in range(n):
                img = photo()
                x0, y0 = int(rng.integers(4, width // 2)), int(rng.integers(4, height // 2))
                w, h = int(rng.integers(width // 6, width // 2)), int(rng.integers(height // 6, height // 2))
                box = (x0, y0, min(width, x0 + w), min(height, y0 + h))
                region = np.asarray(img.crop(box), dtype=float)
                shift = (70, -30, -30) if gen == "tint" else (60, 60, 60)
                img.paste(Image.fromarray(np.clip(region + shift, 0, 255).astype(np.uint8)), box[:2])
                mask = Image.new("L", (width, height), 255)
                mask.paste(0, box)
                img.save(img_dir / f"{gen}{split}{i:02d}.png")
                mask.save(mask_dir / f"{gen}{split}{i:02d}.png")


#: The mutation check (tests/mutation/run.py) sets this to build the tiny fixtures once with unmutated code and reuse
#: them for every mutant that cannot change them; a normal test run never sets it.
_CACHE = os.environ.get("DECLIP_TEST_CACHE")


def _cached(name: str, tmp_path_factory, build):
    """``build(dir)`` into a fresh temp dir, or (with DECLIP_TEST_CACHE) once into the cache, renamed when complete."""
    from pathlib import Path

    if not _CACHE:
        path = tmp_path_factory.mktemp(name)
        build(path)
        return path
    final = Path(_CACHE) / name
    if not final.exists():
        partial = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_CACHE))
        build(partial)
        partial.rename(final)
    return final


@pytest.fixture(scope="session")
def tiny_dolos(tmp_path_factory):
    return _cached("tiny-dolos", tmp_path_factory, _write_tiny_dolos)


@pytest.fixture(scope="session")
def tiny_manifest(tiny_dolos, tmp_path_factory):
    from pipeline.data.manifest import scan_dataset, write_manifest

    def build(path):
        result = scan_dataset(tiny_dolos, "dolos", progress=False)
        assert result.problems.empty, result.problems
        write_manifest(result.manifest, path / "manifest.parquet", tiny_dolos, "dolos")

    return _cached("manifest", tmp_path_factory, build) / "manifest.parquet"


TINY_BACKBONE = "test-vit-tiny@random-0"


@pytest.fixture(scope="session")
def tiny_store(tiny_manifest, tmp_path_factory):
    """The tiny dataset extracted once with a random-weight tiny ViT, every layer."""
    from pipeline.runs.extraction import ExtractConfig, run_extraction

    def build(path):
        run_extraction(ExtractConfig(manifest=str(tiny_manifest), store=str(path / "features.zarr"),
                                     backbone=TINY_BACKBONE, layers="all", batch_size=8, progress=False))

    return _cached("store", tmp_path_factory, build) / "features.zarr"
