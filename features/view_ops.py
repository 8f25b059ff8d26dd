"""The operations a view is composed of (``features.views``), each registered with what it does, for the record.

An operation is a pure function of the image, its parameters and the view's seeded generator. A new one is one
``@view_op`` function below, and ``declip extract --view``, the store identity and ``tests/test_contracts.py``
(determinism, masks, canonical names) pick it up. DeCLIP's ``--data_aug`` kinds are a registry of their own
(:data:`AUGMENT_KINDS`), which ``augment:KIND``, ``declip train --data-aug`` and the grid's ``augment`` accept.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from declip.core.registry import Registry

DECLIP_JITTER = (0.3, 0.3, 0.3, 0.3)


@dataclass(frozen=True)
class OpSpec:
    """One registered operation: how to parse its parameters, apply it, and what it does (for the record)."""

    name: str
    parse: Callable[[str], tuple]
    apply: Callable[[Image.Image, tuple, np.random.Generator], Image.Image]
    definition: str
    libraries: tuple[str, ...]
    syntax: str  # how it is written, for help texts: ``jpeg:Q``
    example: str  # a whole view using it (help texts, and the contract test in tests/test_contracts.py)
    # geometric operations move pixels, so the mask must follow: (mask, params) -> mask, ((w, h), params) -> (w, h)
    move_mask: Callable[[np.ndarray, tuple], np.ndarray] | None = None
    new_size: Callable[[tuple[int, int], tuple], tuple[int, int]] | None = None
    after_resize: bool = False  # applied to the model-input-size image (DeCLIP's augmentation), not the native one
    strength_axis: str | None = None  # for robustness curves: what the single numeric parameter means
    random: bool = False  # draws from the view's generator: the same image gets the same draw, another image another
    seed_only: bool = False  # leaves pixels alone and only changes the seed (``copy:K``): no strength, any position

    def __post_init__(self) -> None:
        if (self.move_mask is None) != (self.new_size is None):
            raise ValueError(f"view operation {self.name!r}: a geometric operation needs move_mask and new_size")

    @property
    def geometric(self) -> bool:
        """Changes where pixels are (the image size, here): masks must follow."""
        return self.move_mask is not None


#: The view operations, in the order help texts list them. A new one is one ``@view_op`` function in this file.
VIEW_OPS: Registry[OpSpec] = Registry("view operation")


def view_op(name: str, syntax: str, parse: Callable[[str], tuple], definition: str, libraries: tuple[str, ...],
            example: str, **flags) -> Callable:
    """Register ``fn(image, params, rng) -> image`` as the view operation ``name``, written ``syntax``; ``parse``
    turns the parameter text into the canonical tuple ``fn`` receives; flags: see :class:`OpSpec`."""
    def register(fn: Callable[[Image.Image, tuple, np.random.Generator], Image.Image]) -> Callable:
        VIEW_OPS.add(name, OpSpec(name, parse, fn, definition, tuple(libraries), syntax, example, **flags))
        return fn
    return register


def view_syntax() -> str:
    """Every registered operation as it is written (``clean | jpeg:Q | resize:S | ...``), for help texts."""
    return " | ".join(["clean", *(spec.syntax for spec in VIEW_OPS.values())])


def _num(text: str) -> float:
    return float(format(float(text), ".6g"))


def _one_number(lo: float, hi: float, integer: bool = False) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        try:
            value = _num(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if integer and value != int(value):
            raise ValueError(f"expected an integer, got {text!r}")
        if not lo <= value <= hi:
            raise ValueError(f"expected a value in [{lo:g}, {hi:g}], got {text!r}")
        return (int(value),) if integer else (value,)
    return parse


def _jitter_params(text: str) -> tuple:
    if not text:
        return DECLIP_JITTER
    parts = [_num(p) for p in text.split(",")]
    if len(parts) == 1:
        parts = parts * 4
    if len(parts) != 4 or any(p < 0 for p in parts) or parts[3] > 0.5:
        raise ValueError("expected B,C,S,H (or one value for all four), each >= 0 and hue <= 0.5")
    return tuple(parts)


def _augment_params(text: str) -> tuple:
    if text not in AUGMENT_KINDS:
        raise ValueError(f"expected one of {', '.join(AUGMENT_KINDS)}, got {text!r}")
    return (text,)


def _declip_jitter(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return jitter(image, DECLIP_JITTER, rng)


def _declip_jpeg(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return jpeg(image, int(rng.integers(30, 101)), optimize=True)


def _declip_blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return blur(image, float(rng.uniform(0.4, 2.0)), kernel=5)


#: DeCLIP's ``--data_aug`` kinds (declip-method §5.5): the random steps each applies, in DeCLIP's order. What
#: ``augment:KIND``, ``declip train --data-aug`` and the grid's ``augment`` accept.
AUGMENT_KINDS: Registry[tuple[Callable[[Image.Image, np.random.Generator], Image.Image], ...]] = Registry(
    "DeCLIP augmentation kind")
AUGMENT_KINDS.add("blur", (_declip_blur,))
AUGMENT_KINDS.add("color_jitter", (_declip_jitter,))
AUGMENT_KINDS.add("jpeg_compression", (_declip_jpeg,))
AUGMENT_KINDS.add("all", (_declip_jitter, _declip_jpeg, _declip_blur))


# ---- the operations (each a pure function of the image, its parameters and a seeded generator) ----

def jpeg(image: Image.Image, quality: int, optimize: bool = False) -> Image.Image:
    """Encode with Pillow's JPEG encoder (default subsampling and tables) and decode again."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(quality), optimize=optimize)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return decoded.convert("RGB")


def resize(image: Image.Image, scale: float) -> Image.Image:
    """Pillow's antialiased bicubic rescale (what most image hosts and editors do on upload)."""
    return image.resize(scaled_size(image.size, scale), Image.Resampling.BICUBIC)


def resize_mask(mask: np.ndarray, scale: float) -> np.ndarray:
    """Nearest-neighbour rescale of a greyscale mask, so its values (and its binary pixels) stay what they were."""
    im = Image.fromarray(np.ascontiguousarray(mask), "L")
    return np.asarray(im.resize(scaled_size(im.size, scale), Image.Resampling.NEAREST))


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def blur(image: Image.Image, sigma: float, kernel: int | None = None) -> Image.Image:
    """torchvision's Gaussian blur (reflect padding), the call DeCLIP's augmentation makes."""
    import torchvision.transforms.functional as TF

    if sigma <= 0:
        return image.copy()
    k = kernel or 2 * math.ceil(3 * sigma) + 1
    limit = 2 * min(image.size) - 1  # reflect padding needs pad < side
    k = min(k, limit if limit % 2 else limit - 1)
    return TF.gaussian_blur(image, [k, k], [sigma, sigma]) if k >= 3 else image.copy()


def noise(image: Image.Image, std: float, rng: np.random.Generator) -> Image.Image:
    """Additive Gaussian noise on 0-1 pixels, clipped to [0, 1] and rounded back to 8 bit."""
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    noisy = np.clip(pixels + rng.normal(0.0, std, pixels.shape), 0.0, 1.0)
    return Image.fromarray(np.round(noisy * 255.0).astype(np.uint8), "RGB")


def jitter(image: Image.Image, strengths: tuple, rng: np.random.Generator) -> Image.Image:
    """torchvision ColorJitter semantics (factors and a random order of the four adjustments), drawn from ``rng``."""
    import torchvision.transforms.functional as TF

    b, c, s, h = strengths
    factors = [rng.uniform(max(0.0, 1 - b), 1 + b) if b else None,
               rng.uniform(max(0.0, 1 - c), 1 + c) if c else None,
               rng.uniform(max(0.0, 1 - s), 1 + s) if s else None,
               rng.uniform(-h, h) if h else None]
    adjust = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i in rng.permutation(4):
        if factors[i] is not None:
            image = adjust[i](image, float(factors[i]))
    return image


def declip_augment(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """DeCLIP's ``--data_aug`` (declip-method §5.5): blur σ~U(0.4, 2) kernel 5; ColorJitter 0.3; JPEG q~[30, 100]."""
    for step in AUGMENT_KINDS.get(kind):
        image = step(image, rng)
    return image


# ---- the registered view operations ----

@view_op("jpeg", "jpeg:Q", _one_number(1, 100, integer=True),
         "PIL Image.save(format='JPEG', quality=Q) with Pillow's other defaults, decoded to RGB",
         ("Pillow", "libjpeg", "libjpeg_turbo"), "jpeg:75", strength_axis="JPEG quality")
def _jpeg_op(image: Image.Image, params: tuple, rng: np.random.Generator) -> Image.Image:
    return jpeg(image, params[0])


@view_op("resize", "resize:S", _one_number(0.01, 8),
         "PIL Image.resize((round(w*S), round(h*S)), BICUBIC) (antialiased); masks: NEAREST to the same size",
         ("Pillow",), "resize:0.5", strength_axis="resize scale",
         move_mask=lambda mask, params: resize_mask(mask, params[0]),
         new_size=lambda size, params: scaled_size(size, params[0]))
def _resize_op(image: Image.Image, params: tuple, rng: np.random.Generator) -> Image.Image:
    return resize(image, params[0])


@view_op("blur", "blur:SIGMA", _one_number(0, 50),
         "torchvision gaussian_blur, kernel 2*ceil(3*SIGMA)+1 (capped by the image side), sigma SIGMA",
         ("torchvision", "torch", "Pillow"), "blur:2", strength_axis="blur sigma")
def _blur_op(image: Image.Image, params: tuple, rng: np.random.Generator) -> Image.Image:
    return blur(image, params[0])


@view_op("noise", "noise:STD", _one_number(0, 1),
         "x/255 + numpy Generator(PCG64).normal(0, STD), clipped to [0, 1], round(x*255) to uint8",
         ("numpy", "Pillow"), "noise:0.05", strength_axis="noise std", random=True)
def _noise_op(image: Image.Image, params: tuple, rng: np.random.Generator) -> Image.Image:
    return noise(image, params[0], rng)


@view_op("jitter", "jitter[:B,C,S,H]", _jitter_params,
         "torchvision ColorJitter(B, C, S, H) semantics with factors and order drawn from the view's generator",
         ("torchvision", "torch", "Pillow", "numpy"), "jitter", random=True)
def _jitter_op(image: Image.Image, params: tuple, rng: np.random.Generator) -> Image.Image:
    return jitter(image, params, rng)


@view_op("augment", "augment:KIND", _augment_params,
         "DeCLIP --data_aug after the resize to the model input: ColorJitter(0.3 x4), then JPEG q~randint[30,100] "
         "optimize=True, then GaussianBlur(kernel 5, sigma~U(0.4, 2.0)), per KIND",
         ("torchvision", "torch", "Pillow", "libjpeg", "libjpeg_turbo", "numpy"), "augment:all", after_resize=True,
         random=True)
def _augment_op(image: Image.Image, params: tuple, rng: np.random.Generator) -> Image.Image:
    return declip_augment(image, params[0], rng)


@view_op("copy", "copy:K", _one_number(0, 1_000_000, integer=True),
         "identity; K only changes the seed of the other operations (the K-th augmented copy)", (),
         "augment:all+copy:1", seed_only=True)
def _copy_op(image: Image.Image, params: tuple, rng: np.random.Generator) -> Image.Image:
    return image
