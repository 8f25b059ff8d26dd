"""Views: deterministic perturbations applied to an image before it is encoded, each cached as a copy of a dataset.

A view is a ``+``-joined composition of operations registered in :mod:`features.view_ops`, applied left to right::

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
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from declip.core.errors import DeclipError
from declip.core.keys import CLEAN_VIEW, split_view_chain
from declip.core.versions import library_versions
from declip.features.view_ops import AUGMENT_KINDS, VIEW_OPS, OpSpec, view_op  # noqa: F401 - the registries, here too

CLEAN = CLEAN_VIEW


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
        return VIEW_OPS.get(self.name)


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
        for name, params in split_view_chain(text):
            if name == CLEAN and not params:
                continue
            if name not in VIEW_OPS:
                raise DeclipError(f"unknown view operation {name!r} in view {text!r}; known: "
                                  f"{', '.join([CLEAN, *VIEW_OPS])} (compose with +, e.g. jpeg:75+resize:0.5)")
            try:
                ops.append(ViewOp(name, VIEW_OPS.get(name).parse(params)))
            except ValueError as exc:
                raise DeclipError(f"view {text!r}: {name}: {exc}") from None
        seen_after = False
        for op in ops:
            if seen_after and not op.spec.after_resize and not op.spec.seed_only:
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

    @property
    def random(self) -> bool:
        """Draws from its seeded generator: each image (and each ``copy:K``) gets its own perturbation."""
        return any(op.spec.random for op in self.ops)

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
                mask = op.spec.move_mask(mask, op.params)
        return mask

    def image_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the perturbed image, before the model's own resize."""
        for op in self.ops:
            if op.spec.geometric:
                width, height = op.spec.new_size((width, height), op.params)
        return width, height

    def strength(self) -> tuple[str, float] | None:
        """(axis, value) when the view is one numeric operation (the x of a robustness curve), else None."""
        real = [op for op in self.ops if not op.spec.seed_only]
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
