"""Views: deterministic perturbations applied to an image before it is encoded, each cached as a copy of a dataset.

A view is a ``+``-joined composition of registered operations, applied left to right::

    clean                        no perturbation (the features cached today)
    jpeg:Q                       Pillow JPEG at quality Q with Pillow's default settings, then decoded
    resize:S                     rescale by S with Pillow's antialiased bicubic filter; masks follow (nearest)
    blur:SIGMA                   Gaussian blur (torchvision ``gaussian_blur``, kernel 2*ceil(3*SIGMA)+1)
    noise:STD                    Gaussian noise of standard deviation STD on 0-1 pixels, clipped, re-quantised to 8 bit
    jitter[:B,C,S,H]             colour jitter with torchvision's ColorJitter semantics (default DeCLIP's 0.3 each)
    augment:KIND                 DeCLIP's ``--data_aug`` KIND (blur | color_jitter | jpeg_compression | all), applied
                                 as DeCLIP does: after the resize to the model's input size
    copy:K                       changes nothing but the random draw: K augmented copies are ``...+copy:0`` ... ``copy:K-1``

Why this lives in ``features/``: a view is image plumbing, like decoding and preprocessing. The randomness of a view
(noise, jitter, augment) is seeded from the canonical view string and the image's id, so the same image gets the same
pixels in every run, process and machine, and a different image (or another ``copy:K``) gets a fresh draw.

The canonical form (:attr:`View.name`) writes numbers with up to 6 significant digits and is what the operations use,
so two spellings of one view are one cached copy. :meth:`View.record` is the view's part of the store identity: the
canonical name, the definition of each operation, and the versions of the libraries that compute it (Pillow, libjpeg,
torchvision, numpy), so features from another JPEG encoder are never mixed with cached ones.
"""
from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from declip.core.errors import DeclipError

CLEAN = "clean"
AUGMENT_KINDS = ("blur", "color_jitter", "jpeg_compression", "all")
DECLIP_JITTER = (0.3, 0.3, 0.3, 0.3)


@dataclass(frozen=True)
class OpSpec:
    """One registered operation: how to parse its parameters, apply it, and what it does (for the record)."""

    name: str
    parse: Callable[[str], tuple]
    apply: Callable[[Image.Image, tuple, np.random.Generator], Image.Image]
    definition: str
    libraries: tuple[str, ...]
    geometric: bool = False  # changes the image size: masks must follow
    after_resize: bool = False  # applied to the model-input-size image (DeCLIP's augmentation), not the native one
    strength_axis: str | None = None  # for robustness curves: what the single numeric parameter means


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


def _no_params(text: str) -> tuple:
    if text:
        raise ValueError(f"takes no parameter, got {text!r}")
    return ()


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
    if kind in ("color_jitter", "all"):
        image = jitter(image, DECLIP_JITTER, rng)
    if kind in ("jpeg_compression", "all"):
        image = jpeg(image, int(rng.integers(30, 101)), optimize=True)
    if kind in ("blur", "all"):
        image = blur(image, float(rng.uniform(0.4, 2.0)), kernel=5)
    return image


OPS: dict[str, OpSpec] = {spec.name: spec for spec in (
    OpSpec("jpeg", _one_number(1, 100, integer=True), lambda im, p, rng: jpeg(im, p[0]),
           "PIL Image.save(format='JPEG', quality=Q) with Pillow's other defaults, decoded to RGB",
           ("Pillow", "libjpeg", "libjpeg_turbo"), strength_axis="JPEG quality"),
    OpSpec("resize", _one_number(0.01, 8), lambda im, p, rng: resize(im, p[0]),
           "PIL Image.resize((round(w*S), round(h*S)), BICUBIC) (antialiased); masks: NEAREST to the same size",
           ("Pillow",), geometric=True, strength_axis="resize scale"),
    OpSpec("blur", _one_number(0, 50), lambda im, p, rng: blur(im, p[0]),
           "torchvision gaussian_blur, kernel 2*ceil(3*SIGMA)+1 (capped by the image side), sigma SIGMA",
           ("torchvision", "torch", "Pillow"), strength_axis="blur sigma"),
    OpSpec("noise", _one_number(0, 1), lambda im, p, rng: noise(im, p[0], rng),
           "x/255 + numpy Generator(PCG64).normal(0, STD), clipped to [0, 1], round(x*255) to uint8",
           ("numpy", "Pillow"), strength_axis="noise std"),
    OpSpec("jitter", _jitter_params, lambda im, p, rng: jitter(im, p, rng),
           "torchvision ColorJitter(B, C, S, H) semantics with factors and order drawn from the view's generator",
           ("torchvision", "torch", "Pillow", "numpy")),
    OpSpec("augment", _augment_params, lambda im, p, rng: declip_augment(im, p[0], rng),
           "DeCLIP --data_aug after the resize to the model input: ColorJitter(0.3 x4), then JPEG q~randint[30,100] "
           "optimize=True, then GaussianBlur(kernel 5, sigma~U(0.4, 2.0)), per KIND",
           ("torchvision", "torch", "Pillow", "libjpeg", "libjpeg_turbo", "numpy"), after_resize=True),
    OpSpec("copy", _one_number(0, 1_000_000, integer=True), lambda im, p, rng: im,
           "identity; K only changes the seed of the other operations (the K-th augmented copy)", ()),
)}


def library_versions(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Versions of the libraries a view's pixels depend on (libjpeg via ``PIL.features``)."""
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


@dataclass(frozen=True)
class ViewOp:
    name: str
    params: tuple

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}:" + ",".join(p if isinstance(p, str) else format(p, "g") for p in self.params)

    @property
    def spec(self) -> OpSpec:
        return OPS[self.name]


@dataclass(frozen=True)
class View:
    """A parsed, canonical view; ``View.parse("clean")`` has no operations."""

    ops: tuple[ViewOp, ...] = ()

    @classmethod
    def parse(cls, text: str | "View") -> "View":
        if isinstance(text, View):
            return text
        text = str(text).strip()
        if not text:
            raise DeclipError("empty view; use `clean` or e.g. `jpeg:75`, `resize:0.5`, `jpeg:75+resize:0.5`")
        ops = []
        for piece in text.split("+"):
            name, _, params = piece.strip().partition(":")
            if name == CLEAN and not params:
                continue
            if name not in OPS:
                raise DeclipError(f"unknown view operation {name!r} in view {text!r}; known: "
                                  f"{', '.join([CLEAN, *OPS])} (compose with +, e.g. jpeg:75+resize:0.5)")
            try:
                ops.append(ViewOp(name, OPS[name].parse(params)))
            except ValueError as exc:
                raise DeclipError(f"view {text!r}: {name}: {exc}") from None
        seen_after = False
        for op in ops:
            if seen_after and not op.spec.after_resize and op.name != "copy":
                raise DeclipError(f"view {text!r}: `augment` acts on the model-input image, so it must come after "
                                  "every other operation (e.g. resize:0.5+augment:all)")
            seen_after |= op.spec.after_resize
        return cls(tuple(ops))

    @property
    def name(self) -> str:
        return "+".join(str(op) for op in self.ops) or CLEAN

    def __str__(self) -> str:
        return self.name

    @property
    def is_clean(self) -> bool:
        return not self.ops

    @property
    def geometric(self) -> bool:
        return any(op.spec.geometric for op in self.ops)

    def seed(self, image_id: str) -> int:
        """64-bit seed from the canonical view and the image id: stable across runs, processes and machines."""
        digest = hashlib.sha256(f"{self.name}\x1f{image_id}".encode()).digest()
        return int.from_bytes(digest[:8], "little")

    def apply(self, image: Image.Image, image_id: str,
              to_input_size: Callable[[Image.Image], Image.Image] | None = None) -> Image.Image:
        """Perturb a decoded RGB image. ``to_input_size`` is the recipe's resize, needed by ``augment`` only."""
        if self.is_clean:
            return image
        rng = np.random.Generator(np.random.PCG64(self.seed(image_id)))
        resized = False
        for op in self.ops:
            if op.spec.after_resize and not resized:
                if to_input_size is None:
                    raise DeclipError(f"view {self.name}: `augment` needs the model's input resize")
                image, resized = to_input_size(image), True
            image = op.spec.apply(image, op.params, rng)
        return image if image.mode == "RGB" else image.convert("RGB")

    def apply_mask(self, mask: np.ndarray) -> np.ndarray:
        """The mask of the perturbed image: geometric operations move it, photometric ones leave it alone."""
        for op in self.ops:
            if op.spec.geometric:
                mask = resize_mask(mask, op.params[0])
        return mask

    def image_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the perturbed image, before the model's own resize."""
        for op in self.ops:
            if op.spec.geometric:
                width, height = scaled_size((width, height), op.params[0])
        return width, height

    def strength(self) -> tuple[str, float] | None:
        """(axis, value) when the view is one numeric operation (the x of a robustness curve), else None."""
        real = [op for op in self.ops if op.name != "copy"]
        if len(real) == 1 and real[0].spec.strength_axis:
            return real[0].spec.strength_axis, float(real[0].params[0])
        return None

    def record(self) -> dict:
        """The view's part of the store identity (definition + library versions); clean has none."""
        libs = [lib for op in self.ops for lib in op.spec.libraries]
        return {
            "view": self.name,
            "ops": [{"op": str(op), "definition": op.spec.definition, "geometric": op.spec.geometric,
                     "after_resize": op.spec.after_resize} for op in self.ops],
            "seed_rule": "sha256(view + '\\x1f' + image_path)[:8] little-endian -> numpy PCG64",
            "libraries": library_versions(libs),
        }


def parse_views(texts: list[str] | tuple[str, ...] | None) -> list[View]:
    """Parse and de-duplicate (by canonical name, first occurrence wins) a list of view strings."""
    out: dict[str, View] = {}
    for text in texts or ():
        for piece in _split_list(text):
            view = View.parse(piece)
            out.setdefault(view.name, view)
    return list(out.values())


def _split_list(text: str) -> list[str]:
    """``--view a --view b`` or ``--view a;b``: a semicolon separates views (commas belong to ``jitter``)."""
    return [p for p in (s.strip() for s in str(text).split(";")) if p]


def augment_copies(kind: str, copies: int) -> list[View]:
    """The K cached copies DeCLIP's augmentation is approximated by: ``augment:KIND+copy:0`` ... ``copy:K-1``."""
    if copies < 1:
        raise DeclipError(f"augment_copies must be >= 1, got {copies}")
    return [View.parse(f"augment:{kind}+copy:{k}") for k in range(copies)]
