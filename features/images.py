"""Decode one image (or mask) file robustly, or say in one slug why it cannot be used.

The scanner and the extraction reader share these functions, so an image that passes ``declip data scan`` decodes the
same way during extraction. Everything a bad file can do becomes :class:`ImageProblem` with a short ``reason`` slug
(``zero-byte``, ``missing-file``, ``not-an-image``, ``truncated``, ``decompression-bomb``, ``unreadable``) so problem
tables can be grouped and filtered.

Conversion rules (why: DeCLIP and Dolos feed 8-bit RGB, and forensic traces live in the stored pixel values):

- EXIF orientation (``ImageOps.exif_transpose``) is applied only when asked (``exif=True``), to images *and* masks
  alike: the preprocessing recipe decides (DeCLIP's recipe reads pixels as stored, as DeCLIP's PIL loader does; the
  ``+exif`` recipes turn them upright). The scanner reads both as stored: a mask belongs to its image's stored
  pixels and is turned with its image (``pipeline/data/orientation.py``).
- Alpha (RGBA, LA, PA, palette transparency) is **dropped**, not composited: the stored colour values are kept as they
  are, because compositing on a background would rewrite exactly the pixels a detector looks at.
- Greyscale, palette, CMYK, YCbCr and 1-bit images go through PIL's ``convert("RGB")`` (CMYK: PIL's naive
  conversion, no ICC profile).
- 16-bit (``I;16*``) and 32-bit integer images are scaled from 0..65535 to 0..255 with rounding; float images in
  0..1 are scaled by 255, otherwise clipped.
- The whole file is decoded here (``load()``), so a truncated file fails now and not in the middle of a batch.
- Images over :data:`MAX_PIXELS` are refused as ``decompression-bomb`` before any pixel is decoded: PIL's
  ``DecompressionBombWarning`` is thus treated as an error. The check is our own, so it does not depend on the
  process-wide warning filters (which are not thread-safe to change while reader threads run).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from declip.core.errors import DeclipError

#: Largest accepted image, in pixels: PIL's own bomb limit (~89.5 M, about 9459²), five times AutoSplice's largest
#: image (4232²). Above it PIL only warns; we refuse.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

_WIDE_INT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


class ImageProblem(DeclipError):
    """A file that cannot be used as an image; ``reason`` is a machine-friendly slug, ``detail`` says more."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        tail = f": {detail}" if detail else ""
        super().__init__(f"{self.path}: {reason}{tail} (fix or remove the file, then re-run `declip data scan`)")


def _read_bytes(path: str | os.PathLike) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageProblem(path, "missing-file", "no such file") from None
    except OSError as exc:
        raise ImageProblem(path, "unreadable", f"{type(exc).__name__}: {exc}") from None
    if not data:
        raise ImageProblem(path, "zero-byte", "the file is empty")
    return data


def _open_loaded(source: str | os.PathLike | bytes, path: str | os.PathLike, exif: bool = True) -> Image.Image:
    """Open, check the pixel count, decode fully and (``exif``) apply the EXIF orientation."""
    if not isinstance(source, bytes) and os.path.exists(source) and os.path.getsize(source) == 0:
        raise ImageProblem(path, "zero-byte", "the file is empty")
    if isinstance(source, bytes) and not source:
        raise ImageProblem(path, "zero-byte", "the file is empty")
    try:
        im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        raise ImageProblem(path, "missing-file", "no such file") from None
    except UnidentifiedImageError:
        raise ImageProblem(path, "not-an-image", "no image decoder recognises the file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageProblem(path, "decompression-bomb", str(exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageProblem(path, "unreadable", f"{type(exc).__name__}: {exc}") from None
    width, height = im.size
    if width * height > MAX_PIXELS:
        im.close()
        raise ImageProblem(path, "decompression-bomb", f"{width}x{height} pixels exceeds MAX_PIXELS={MAX_PIXELS}")
    try:
        im.load()
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc).lower() or "broken data" in str(exc).lower() else "unreadable"
        raise ImageProblem(path, reason, f"{type(exc).__name__}: {exc}") from None
    except (ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageProblem(path, "unreadable", f"{type(exc).__name__}: {exc}") from None
    return _upright(im) if exif else im


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a corrupt EXIF block is ignored rather than failing an intact image."""
    try:
        return ImageOps.exif_transpose(im) or im
    except Exception:  # noqa: BLE001 - bad EXIF must not reject good pixels
        return im


def _wide_to_u8(im: Image.Image) -> np.ndarray:
    """16/32-bit integer or float single-channel pixels to uint8 (H, W)."""
    arr = np.asarray(im)
    if im.mode == "F":
        scale = 255.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(arr) * scale + 0.5, 0, 255).astype(np.uint8)
    wide = np.clip(arr.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _to_mode(im: Image.Image, mode: str) -> Image.Image:
    """Convert a loaded image to ``"RGB"`` or ``"L"`` by the rules in the module docstring."""
    if im.mode == mode:
        return im
    if im.mode in _WIDE_INT_MODES or im.mode == "F":
        return Image.fromarray(_wide_to_u8(im), "L").convert(mode)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in _ALPHA_MODES:
        im = im.convert("RGBA").convert("RGB")  # drop alpha, keep stored colours
    return im.convert(mode)


def decode_rgb(data: bytes, path: str | os.PathLike = "<bytes>", exif: bool = True) -> Image.Image:
    """Decode in-memory file bytes to RGB (the scanner reads each file once to hash and decode it)."""
    return _to_mode(_open_loaded(data, path, exif), "RGB")


def open_rgb(path: str | os.PathLike, exif: bool = True) -> Image.Image:
    """Decode ``path`` to a fully loaded 8-bit RGB image (upright if ``exif``); raise :class:`ImageProblem` if not."""
    return _to_mode(_open_loaded(path, path, exif), "RGB")


def decode_mask_gray(data: bytes, path: str | os.PathLike = "<bytes>", exif: bool = True) -> np.ndarray:
    """Decode in-memory mask bytes to greyscale uint8 (H, W)."""
    return np.asarray(_to_mode(_open_loaded(data, path, exif), "L"))


def open_mask_gray(path: str | os.PathLike, exif: bool = True) -> np.ndarray:
    """Decode a mask to greyscale uint8 (H, W); multi-channel masks go through PIL's ``convert("L")`` (luma)."""
    return np.asarray(_to_mode(_open_loaded(path, path, exif), "L"))


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """File bytes, with a missing, unreadable or empty file reported as :class:`ImageProblem`."""
    return _read_bytes(path)
