"""Shared test helpers (constants, data builders, config builders), imported by tests as ``tests.fixtures``; the
pytest fixtures that use them live in ``tests/conftest.py``."""
from __future__ import annotations

from pathlib import Path

#: The repository root (subprocess CLI tests run there).
REPO = Path(__file__).resolve().parents[1]

#: A random-weight ViT with ViT-L/14's token grid at a tiny width (features/model_configs/test-vit-tiny.json).
TINY_BACKBONE = "test-vit-tiny@random-0"


#: The tiny Dolos tree's dataset name once scanned (``dolos`` layout, ``celebahq`` root).
TINY_DATASET = "dolos-celebahq"

#: Training options every config builder pins to the values the tests were written against (one pass per epoch, no
#: collapse stop, full width, the CPU), so a test's numbers do not move when a command's default does.
PINNED_OPTIONS = dict(width=1.0, device="cpu", min_steps_per_epoch=0, collapse_patience=0, progress=False)


def train_config(store, out="", **kw):
    """A :class:`TrainConfig` on the tiny store: a linear head on the tiny ViT's layer1, trained on ``tint``. ``kw``:
    any TrainConfig field or training option, flat (as config.json spells them), e.g. ``max_epochs=3``."""
    from declip.pipeline.train.config import TrainConfig

    base = dict(store=str(store), source=f"{TINY_BACKBONE}/layer1", dataset=TINY_DATASET, train_sets=("tint",),
                out=str(out), decoder="linear", **PINNED_OPTIONS)
    return TrainConfig.from_json({**base, **kw})


def grid_json(store, out, **kw) -> dict:
    """A grid on the tiny store, as the grid flow takes it (:meth:`GridConfig.to_json`): linear heads on layer0 of the
    tiny ViT, trained and tested on ``tint``, one epoch. ``kw``: any grid key (training options flat)."""
    from declip.pipeline.grid.config import GridConfig

    base = dict(store=str(store), dataset=TINY_DATASET, out=str(out), backbones=[TINY_BACKBONE], layers=["layer0"],
                decoders=["linear"], train_sets=["tint"], test_sets=["tint"], max_epochs=1, batch_size=8,
                **PINNED_OPTIONS)
    return GridConfig.from_dict({**base, **kw}).to_json()


def extract_config(manifest, store, **kw):
    """An :class:`ExtractConfig` of the tiny ViT's layer0, 8 images a batch, no progress bar; ``kw`` overrides."""
    from declip.pipeline.extract.extraction import ExtractConfig

    base = dict(manifest=str(manifest), store=str(store), backbone=TINY_BACKBONE, layers="layer0", batch_size=8,
                progress=False)
    return ExtractConfig.from_json({**base, **kw})


#: (height, width) of every tiny image and mask: not square, so a swapped (W, H) anywhere shows up.
TINY_SIZE = (48, 80)


def write_tiny_dolos(root, seed: int = 0, size: tuple[int, int] = TINY_SIZE) -> None:
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


# ---- the two ``library_versions`` copies core.versions replaced, verbatim (store/feature_store.py and
# features/views.py before issue 18): what stores written before hold, so the oracle for "old stores still open".
def legacy_store_library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("declip", "torch", "open_clip_torch", "zarr", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "unknown"
    return out


def legacy_view_library_versions(names) -> dict[str, str]:
    import importlib.metadata as md

    from PIL import features

    out: dict[str, str] = {}
    for name in sorted(set(names)):
        if name == "libjpeg":
            out[name] = str(features.version("jpg"))
        elif name == "libjpeg_turbo":
            out[name] = str(features.version_feature("libjpeg_turbo")) if features.check_feature(
                "libjpeg_turbo") else "no"
        else:
            try:
                out[name] = md.version(name)
            except md.PackageNotFoundError:
                out[name] = "unknown"
    return out



def flip_bytes(path, offset: int | None = None, count: int = 8) -> None:
    """Invert ``count`` bytes of a file in place (same length: only a checksum can tell), at ``offset`` or mid-file."""
    from pathlib import Path

    data = bytearray(Path(path).read_bytes())
    start = len(data) // 2 if offset is None else offset
    for i in range(start, min(start + count, len(data))):
        data[i] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def store_bytes(url, storage_options: dict | None = None) -> dict[str, bytes]:
    """Every array of a feature store (local path or URL) by path, as bytes, plus each dataset's ``samples.parquet``
    and each layer's identity record without its creation time and versions: what "byte-identical stores" compares.
    Read through zarr and fsspec only, never through declip's store classes."""
    import json
    import warnings

    import fsspec
    import zarr

    root = zarr.open_group(str(url), mode="r", storage_options=storage_options)
    out: dict[str, bytes] = {}

    def walk(group, prefix: str) -> None:
        for name, arr in group.arrays():
            out[f"{prefix}{name}"] = arr[:].tobytes()
        for name, sub in group.groups():
            meta = dict(sub.attrs).get("meta")
            if isinstance(meta, dict):
                out[f"{prefix}{name}/meta"] = json.dumps({k: v for k, v in meta.items()
                                                          if k not in ("created", "versions")}, sort_keys=True).encode()
            walk(sub, f"{prefix}{name}/")

    with warnings.catch_warnings():  # .locks/ and samples.parquet are not zarr nodes, as intended
        warnings.simplefilter("ignore")
        walk(root, "")
    fs, base = fsspec.core.url_to_fs(str(url), **(storage_options or {}))
    for path in fs.glob(f"{base.rstrip('/')}/datasets/*/samples.parquet"):
        out[path[len(base.rstrip("/")) + 1:]] = fs.cat_file(path)
    return out
