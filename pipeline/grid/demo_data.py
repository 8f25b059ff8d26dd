"""The embedded demo dataset (``design.md`` §4): real photos shipped inside PyPI packages, classically inpainted.

Sources are the photos in scikit-image's ``skimage/data`` folder and scikit-learn's sample images, read from disk
(never downloaded; missing files are skipped). Photos are assigned to splits **by source** (:data:`SOURCE_SPLITS`),
so train, valid and test never share a crop of one photo. Random 256×256 crops get random masks (strokes, blobs or
boxes covering 5–35 %), filled by four classical "generators": OpenCV Telea, OpenCV Navier–Stokes, scikit-image
biharmonic (run at half resolution: 6× faster, still a smooth fill) and a splice from another crop with a feathered
edge. These are not deep generators; the demo exercises the pipeline, it does not measure deepfake detection.

Written in the Dolos layout and polarity (masks black = fake) under ``OUT/demo/``, so ``declip data scan OUT`` reads
it as dataset ``dolos-demo``. Same seed, same bytes: per-item seeded RNGs and PNGs without metadata.
"""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from declip.core.errors import DeclipError

TREE = "demo"
TILE = 256
METHODS = ("telea", "ns", "biharmonic", "splice")
SPLITS = ("train", "valid", "test")
COVERAGE = (0.05, 0.35)
README_MARKER = "declip demo dataset"
PNG_COMPRESSION = 1
SOURCE_SPLITS = {
    "astronaut.png": "train", "coffee.png": "train", "rocket.jpg": "train", "motorcycle_left.png": "train",
    "motorcycle_right.png": "train", "hubble_deep_field.jpg": "train", "camera.png": "train", "grass.png": "train",
    "brick.png": "train", "moon.png": "train",
    "chelsea.png": "valid", "ihc.png": "valid", "gravel.png": "valid", "coins.png": "valid",
    "china.jpg": "test", "flower.jpg": "test", "retina.jpg": "test", "clock_motion.png": "test",
}


def split_counts(n: int) -> dict[str, int]:
    """About 60/20/20 % of ``n`` items over train/valid/test (at least one each)."""
    held = max(1, round(0.2 * n))
    return {"train": n - 2 * held, "valid": held, "test": held}


def _real_count(size: int) -> int:
    return max(3, size // 2)


def demo_counts(size: int = 60) -> pd.DataFrame:
    """The counts table (as :func:`pipeline.data.manifest.counts_table` prints it) that ``build_demo_dataset`` yields."""
    from declip.pipeline.data.manifest import counts_table

    rows = [(m, s) for m in METHODS for s, k in split_counts(size).items() for _ in range(k)]
    rows += [("real", s) for s, k in split_counts(_real_count(size)).items() for _ in range(k)]
    return counts_table(pd.DataFrame(rows, columns=["subset", "split"]).assign(dataset=f"dolos-{TREE}"))


def source_files() -> dict[str, Path]:
    """The photos present on disk, by file name (skimage data folder and sklearn sample images)."""
    import importlib.util

    def package_dir(name: str) -> Path:  # find_spec: importing sklearn.datasets alone costs about a second
        spec = importlib.util.find_spec(name)
        return Path(spec.origin).parent if spec and spec.origin else Path("/nonexistent")

    folders = [package_dir("skimage") / "data", package_dir("sklearn") / "datasets" / "images"]
    found = {p.name: p for folder in folders for p in sorted(folder.glob("*")) if p.name in SOURCE_SPLITS}
    return dict(sorted(found.items()))


def _scaled_versions(photo: np.ndarray) -> list[np.ndarray]:
    """Three scales with the short side between 256 and ~700 px: more distinct crops, some whole-scene views."""
    from PIL import Image

    short = min(photo.shape[:2])
    lo, hi = TILE / short, min(1.0, 700 / short)
    out = []
    for scale in np.linspace(min(lo, hi), hi, 3):
        h, w = (max(TILE, round(d * scale)) for d in photo.shape[:2])
        out.append(np.asarray(Image.fromarray(photo).resize((w, h), Image.Resampling.BILINEAR)))
    return out


def load_sources() -> dict[str, list[list[np.ndarray]]]:
    """Per split, a list of photos, each as its scaled RGB versions."""
    from declip.features.images import open_rgb

    by_split: dict[str, list[list[np.ndarray]]] = {s: [] for s in SPLITS}
    for name, path in source_files().items():
        by_split[SOURCE_SPLITS[name]].append(_scaled_versions(np.asarray(open_rgb(path))))  # grey sources → RGB
    empty = [s for s, photos in by_split.items() if not photos]
    if empty:
        raise DeclipError(f"no demo source photos for split(s) {empty}; reinstall scikit-image and scikit-learn")
    return by_split


class TileSampler:
    """Seeded random crops from one split's photos, never the same (photo, scale, y, x) twice."""

    def __init__(self, photos: list[list[np.ndarray]]) -> None:
        self.photos = photos
        self.used: set[tuple[int, ...]] = set()

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One new 256×256 RGB crop."""
        while True:
            p = int(rng.integers(len(self.photos)))
            s = int(rng.integers(len(self.photos[p])))
            img = self.photos[p][s]
            y, x = (int(rng.integers(d - TILE + 1)) for d in img.shape[:2])
            if (p, s, y, x) not in self.used:
                self.used.add((p, s, y, x))
                return np.ascontiguousarray(img[y:y + TILE, x:x + TILE])


def _strokes(rng: np.random.Generator, mask: np.ndarray) -> None:
    import cv2

    for _ in range(int(rng.integers(1, 4))):
        pts = rng.integers(0, TILE, size=(int(rng.integers(3, 7)), 2)).astype(np.int32)
        cv2.polylines(mask, [pts], False, 255, int(rng.integers(8, 29)), cv2.LINE_8)


def _blobs(rng: np.random.Generator, mask: np.ndarray) -> None:
    import cv2

    for _ in range(int(rng.integers(1, 5))):
        center = tuple(int(v) for v in rng.integers(20, TILE - 20, size=2))
        axes = tuple(int(v) for v in rng.integers(15, 71, size=2))
        cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_8)


def _boxes(rng: np.random.Generator, mask: np.ndarray) -> None:
    for _ in range(int(rng.integers(1, 3))):
        h, w = (int(v) for v in rng.integers(30, 141, size=2))
        y, x = int(rng.integers(0, TILE - h)), int(rng.integers(0, TILE - w))
        mask[y:y + h, x:x + w] = 255


def random_mask(rng: np.random.Generator) -> np.ndarray:
    """Binary uint8 (256, 256) mask, 255 = fake, of strokes, blobs or boxes covering 5–35 % of the tile."""
    shape = (_strokes, _blobs, _boxes)[int(rng.integers(3))]
    for _ in range(50):
        mask = np.zeros((TILE, TILE), np.uint8)
        shape(rng, mask)
        if COVERAGE[0] <= (mask > 0).mean() <= COVERAGE[1]:
            return mask
    mask = np.zeros((TILE, TILE), np.uint8)
    mask[64:160, 64:160] = 255  # 14 %: only reached if 50 draws all missed the coverage band
    return mask


def _biharmonic(tile: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Biharmonic fill at half resolution, upsampled, pasted into the masked pixels only."""
    import cv2
    from skimage.restoration import inpaint_biharmonic

    half = (TILE // 2, TILE // 2)
    small = cv2.resize(tile, half, interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0
    small_mask = cv2.resize(mask, half, interpolation=cv2.INTER_AREA) > 0
    filled = inpaint_biharmonic(small, small_mask, channel_axis=-1)
    up = cv2.resize((np.clip(filled, 0, 1) * 255).astype(np.float32), (TILE, TILE), interpolation=cv2.INTER_LINEAR)
    return np.where(mask[..., None] > 0, np.clip(up + 0.5, 0, 255).astype(np.uint8), tile)


def _splice(tile: np.ndarray, mask: np.ndarray, donor: np.ndarray) -> np.ndarray:
    """Paste the donor's masked region with a 1.5-px Gaussian feather."""
    import cv2

    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 1.5)[..., None]
    return np.clip(alpha * donor + (1 - alpha) * tile + 0.5, 0, 255).astype(np.uint8)


def fake_image(method: str, tile: np.ndarray, mask: np.ndarray, donor: np.ndarray) -> np.ndarray:
    """Fill ``mask`` (255 = fake) of ``tile`` with one classical generator."""
    import cv2

    if method == "telea":
        return cv2.inpaint(tile, mask, 3, cv2.INPAINT_TELEA)
    if method == "ns":
        return cv2.inpaint(tile, mask, 3, cv2.INPAINT_NS)
    if method == "biharmonic":
        return _biharmonic(tile, mask)
    if method == "splice":
        return _splice(tile, mask, donor)
    raise ValueError(f"unknown demo method {method!r}; expected one of {METHODS}")


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes without metadata (deterministic); OpenCV's encoder at level 1 is 4x faster than PIL's default."""
    import cv2

    bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise DeclipError("OpenCV could not encode a demo PNG; check the opencv-python-headless install")
    return buf.tobytes()


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(array))


def _fake_job(job: tuple[str, Path, np.ndarray, np.ndarray, np.ndarray]) -> None:
    method, image_path, tile, donor, mask = job
    _save_png(fake_image(method, tile, mask, donor), image_path)
    _save_png(255 - mask, Path(str(image_path).replace("/images/", "/masks/")))  # Dolos polarity: black = fake


def _write_split(tree: Path, split: str, sampler: TileSampler, seed: int, size: int, pool: ThreadPoolExecutor) -> None:
    """Reals and every method's fakes of one split: crops drawn in a fixed order, then filled in a thread pool."""
    split_id = SPLITS.index(split)
    for i in range(split_counts(_real_count(size))[split]):
        rng = np.random.default_rng([seed, split_id, len(METHODS), i])
        _save_png(sampler.sample(rng), tree / "real" / split / f"real_{split}_{i:04d}.png")
    jobs = []
    for m, method in enumerate(METHODS):
        for i in range(split_counts(size)[split]):
            rng = np.random.default_rng([seed, split_id, m, i])
            path = tree / "fake" / method / "images" / split / f"{method}_{split}_{i:04d}.png"
            jobs.append((method, path, sampler.sample(rng), sampler.sample(rng), random_mask(rng)))
    list(pool.map(_fake_job, jobs))


def _prepare_out(out: Path) -> Path:
    """Create ``out``; replace a previous demo tree, but never a folder we did not write."""
    tree = out / TREE
    readme = out / "README.txt"
    ours = readme.is_file() and README_MARKER in readme.read_text(encoding="utf-8", errors="replace")
    if tree.exists() and any(tree.iterdir()):
        if not ours:
            raise DeclipError(f"{tree} exists and was not written by `declip data demo`; choose an empty OUT folder")
        shutil.rmtree(tree)
    out.mkdir(parents=True, exist_ok=True)
    return tree


def _readme(size: int, seed: int) -> str:
    return (f"{README_MARKER} (seed {seed}, {size} fakes per generator)\n\n"
            "Sources: the photos shipped inside scikit-image (skimage/data: astronaut, coffee, chelsea, rocket, "
            "motorcycle, hubble_deep_field, camera, moon, ...) and scikit-learn (sample images china.jpg, "
            "flower.jpg),\ncropped to 256x256 RGB tiles; photos are assigned to train/valid/test by source.\n"
            "Fakes: random stroke/blob/box masks filled by CLASSICAL inpainting (OpenCV Telea, OpenCV Navier-Stokes, "
            "scikit-image biharmonic) or a feathered splice from another crop.\nThese are NOT deep generators: "
            "results on this data say the pipeline runs, not how well anything detects deepfakes.\n"
            f"Layout: Dolos ({TREE}/real/<split>, {TREE}/fake/<method>/{{images,masks}}/<split>); "
            "masks black = fake.\n")


def build_demo_dataset(out: str | Path, seed: int = 0, size: int = 60) -> Path:
    """Write the demo dataset under ``out/demo`` and return ``out`` (the ROOT to scan with ``--layout dolos``).

    Args:
        out: output folder; a previous demo tree in it is replaced.
        seed: same seed, byte-identical files.
        size: fake images per generator (split ~60/20/20); about ``size/2`` reals.
    """
    if size < 3:
        raise DeclipError(f"--size {size} is too small; the demo needs at least 3 fakes per generator (one per split)")
    base = Path(out)
    tree = _prepare_out(base)
    sources = load_sources()
    (base / "README.txt").write_text(_readme(size, seed), encoding="utf-8")  # first: marks the folder as ours
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:  # OpenCV and numpy release the GIL
        for split in SPLITS:
            _write_split(tree, split, TileSampler(sources[split]), seed, size, pool)
    return base


def scan_demo_dataset(root: str | Path, manifest: str | Path) -> dict:
    """Scan the tree :func:`build_demo_dataset` wrote into the manifest ``manifest``; returns the dataset's name, its
    row count and its generators. Why strict: every demo file is generated here, so a problem is a bug, not data."""
    from declip.pipeline.data.manifest import scan_dataset, write_manifest

    result = scan_dataset(root, "dolos", progress=False)
    if len(result.problems):
        raise DeclipError(f"the demo dataset in {root} has problems: {result.problems.to_dict('records')[:3]}")
    write_manifest(result.manifest, manifest, root, "dolos")
    df = result.manifest
    return {"dataset": str(df["dataset"].iloc[0]), "rows": len(df),
            "generators": sorted(df.loc[df["kind"] == "partial", "subset"].unique().tolist())}
