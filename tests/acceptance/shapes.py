"""Dataset shapes a researcher brings on day one, written small: the acceptance suite drives each through the CLI.

Every fake is a photo-like noise image with one box shifted in colour (so even random-weight features carry a
learnable signal) and a mask of that box. Sizes, file formats and mask modes vary per shape; nothing here imports
declip, so the shapes stay an oracle independent of the scanner.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _photo(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    base = rng.normal(128, 40, (max(2, height // 8), max(2, width // 8), 3))
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    noise = rng.normal(0, 20, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(img, float) + noise, 0, 255).astype(np.uint8))


def _inpainted(rng: np.random.Generator, height: int, width: int) -> tuple[Image.Image, np.ndarray]:
    """(image, fake box as bool (H, W)): a box of a quarter to a half of each side, tinted."""
    img = _photo(rng, height, width)
    w, h = int(rng.integers(width // 4, width // 2)), int(rng.integers(height // 4, height // 2))
    x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
    region = np.asarray(img.crop((x0, y0, x0 + w, y0 + h)), dtype=float)
    img.paste(Image.fromarray(np.clip(region + (70, -30, -30), 0, 255).astype(np.uint8)), (x0, y0))
    fake = np.zeros((height, width), dtype=bool)
    fake[y0:y0 + h, x0:x0 + w] = True
    return img, fake


def _mask_image(fake: np.ndarray, mode: str, fake_is_white: bool = True) -> Image.Image:
    """The mask as a greyscale (L), RGB or palette (P) file."""
    grey = ((fake if fake_is_white else ~fake) * 255).astype(np.uint8)
    if mode == "L":
        return Image.fromarray(grey, "L")
    if mode == "RGB":
        return Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB")
    pal = Image.fromarray((grey > 0).astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    return pal


def _save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=95) if path.suffix == ".jpg" else img.save(path)


#: (height, width) of the mixed pairs set, in turn: landscape, portrait, square, and 2000 px wide.
MIXED_SIZES = ((72, 120), (120, 72), (96, 96), (1200, 2000))
MASK_MODES = ("L", "RGB", "P")


def write_pairs(root: Path, splits: dict[str, int] | None, n: int = 10, seed: int = 0,
                sizes: tuple[tuple[int, int], ...] = MIXED_SIZES) -> None:
    """``images/`` + ``masks/`` by stem: with ``splits`` (split -> count) in split folders, else ``n`` flat images.

    The flat set mixes JPEG and PNG images, the (height, width) ``sizes`` in turn (by default non-square and large
    ones, :data:`MIXED_SIZES`) and greyscale, RGB and palette masks; the split set is small PNGs of one size.
    """
    rng = np.random.default_rng(seed)
    if splits:
        for split, count in splits.items():
            for i in range(count):
                img, fake = _inpainted(rng, 64, 96)
                _save(img, root / "images" / split / f"{split}{i:02d}.png")
                _save(_mask_image(fake, "L"), root / "masks" / split / f"{split}{i:02d}.png")
        return
    for i in range(n):
        height, width = sizes[i % len(sizes)]
        img, fake = _inpainted(rng, height, width)
        ext = ".jpg" if i % 2 else ".png"
        _save(img, root / "images" / f"photo{i:02d}{ext}")
        _save(_mask_image(fake, MASK_MODES[i % 3]), root / "masks" / f"photo{i:02d}.png")


def write_list(root: Path, fakes: int = 6, reals: int = 2, seed: int = 1, name: str = "test.txt") -> Path:
    """A CocoGlide-style test list: ``image,mask`` lines, ``Negative`` for authentic images, no split column."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(fakes):
        img, fake = _inpainted(rng, 80, 64)
        _save(img, root / "img" / f"glide{i:02d}.png")
        _save(_mask_image(fake, "L"), root / "gt" / f"glide{i:02d}_mask.png")
        lines.append(f"img/glide{i:02d}.png,gt/glide{i:02d}_mask.png")
    for i in range(reals):
        _save(_photo(rng, 80, 64), root / "img" / f"real{i:02d}.jpg")
        lines.append(f"img/real{i:02d}.jpg,Negative")
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return path


def write_dolos(root: Path, generators: tuple[str, ...], counts: dict[str, int] | None = None, seed: int = 2) -> None:
    """A Dolos tree ``<root>/celebahq``: reals per split, and per generator inpainted fakes (black = fake) per split."""
    rng = np.random.default_rng(seed)
    counts = counts or {"train": 6, "valid": 2, "test": 2}
    tree = root / "celebahq"
    for split, count in counts.items():
        for i in range(max(1, count // 2)):
            _save(_photo(rng, 64, 80), tree / "real" / split / f"r{split}{i:02d}.png")
        for gen in generators:
            for i in range(count):
                img, fake = _inpainted(rng, 64, 80)
                _save(img, tree / "fake" / gen / "images" / split / f"{gen}{split}{i:02d}.png")
                _save(_mask_image(fake, "L", fake_is_white=False),
                      tree / "fake" / gen / "masks" / split / f"{gen}{split}{i:02d}.png")
