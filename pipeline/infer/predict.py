"""``declip predict``: a trained decoder (ours or an imported DeCLIP checkpoint) plus its frozen backbone on new
images: probability maps at the image's size (8-bit PNG and exact float32 ``.npy``), a panel per image (original |
map with its colour bar, :mod:`declip.pipeline.infer.panels`), and a CSV of image scores.

This is the one place where images go through the backbone at decoder time, so it uses the same preprocessing
recipe and layer taps as extraction; a decoder trained on cached ``ViT-L-14@openai/layer20`` features sees exactly
the features it was trained on.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from declip.decoders import Decoder, load_decoder
from declip.features.backbones import load_backbone
from declip.features.images import ImageProblem, open_rgb
from declip.features.encode import encode_images
from declip.core.errors import DeclipError
from declip.core.stop import check_stop
from declip.core.keys import DECLIP_FUSION_PARTNER, DECLIP_VIT, BackboneKey, SourceKey
from declip.pipeline.evaluate.maps import decoder_inputs, native_maps
from declip.pipeline.infer.panels import save_panel

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (recursive) and glob patterns → a sorted, de-duplicated list of image paths."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.is_file():
            found.append(path)
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise DeclipError(f"{item}: no such file, folder or glob match")
            found += [Path(m) for m in matches if Path(m).is_file()]
    return list(dict.fromkeys(found))


def resolve_source(meta: dict, backbone: str | None) -> SourceKey:
    """The checkpoint's own source, or (imported DeCLIP checkpoints) the backbone given plus its feature layer."""
    if backbone is None and meta.get("source") and meta["source"] != "declip":  # "declip": imported before 2026-11
        return SourceKey.parse(meta["source"])
    layer = meta.get("feature_layer") or meta.get("layer")
    family = meta.get("family")
    if family == "fused":
        return SourceKey.declip_fused(backbone or DECLIP_VIT, layer)
    if backbone is None:
        backbone = DECLIP_VIT if family == "vit" else DECLIP_FUSION_PARTNER.backbone
    return SourceKey.single(backbone, layer)


def weights_files(meta: dict, checkpoint: str | os.PathLike) -> dict[str, str]:
    """Backbone key → local weights file for the checkpoint's file-keyed backbones (relative to the checkpoint)."""
    return {key: str(Path(checkpoint) / path) for key, path in (meta.get("weights_files") or {}).items()}


def _backbone_key(key: BackboneKey, files: dict[str, str]) -> BackboneKey:
    """A store key such as ``RN50@file-<sha>`` names weights by checksum; load them from the file given with it
    (``--backbone ARCH@FILE``: the key still knows the path) or recorded in the checkpoint (``weights_files``)."""
    text = str(key)
    if key.weights_path or text not in files:
        return key
    loaded = BackboneKey.parse(f"{key.arch}@{files[text]}~{key.recipe}")
    if loaded.weights != key.weights:
        raise DeclipError(f"{files[text]} no longer holds the weights {text} was made with (checksum differs); "
                          "re-import or retrain the checkpoint")
    return loaded


@dataclass
class Predictor:
    decoder: Decoder
    spec: SourceKey
    device: str = "cpu"
    files: dict[str, str] | None = None

    def __post_init__(self):
        self.backbones = [load_backbone(_backbone_key(p.backbone, self.files or {}), self.device)
                          for p in self.spec.parts]
        self.recipes = [bb.recipe() for bb in self.backbones]
        self.decoder.to(self.device).eval()

    @torch.no_grad()
    def maps(self, images: list[Image.Image]) -> list[np.ndarray]:
        """One manipulation-probability map per image, at the image's own size (the same path as evaluation's)."""
        parts = [encode_images(bb, recipe, images, [part.layer], self.device)[part.layer]
                 for bb, recipe, part in zip(self.backbones, self.recipes, self.spec.parts)]
        feats, cls = decoder_inputs(parts, self.spec.fused)
        return native_maps(self.decoder, feats, cls, [(image.height, image.width) for image in images], self.device)


def _out_name(path: Path, common: Path, keep_suffix: bool = False) -> str:
    try:
        rel = path.resolve().relative_to(common)
    except ValueError:
        rel = Path(path.name)
    if keep_suffix:  # x.jpg and x.png side by side: x.jpg.png and x.png.png, so neither map overwrites the other
        return "__".join(rel.parts) + ".png"
    return "__".join(rel.with_suffix("").parts) + ".png"


def out_names(paths: list[Path], common: Path) -> dict[Path, str]:
    """Output file name per input; inputs whose plain names would collide keep their suffix."""
    plain = {p: _out_name(p, common) for p in paths}
    counts: dict[str, int] = {}
    for name in plain.values():
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    return {p: _out_name(p, common, keep_suffix=True) if counts[n.lower()] > 1 else n for p, n in plain.items()}


def trained_on_random_weights(meta: dict) -> bool:
    """Whether the checkpoint's decoder was trained on features of a random-weight backbone (``@random-N``)."""
    try:
        source = SourceKey.parse(meta["source"])
    except (KeyError, TypeError, DeclipError):
        return False
    return any(part.backbone.is_random for part in source.parts)


def predict(checkpoint: str, inputs: list[str], out: str, *, backbone: str | None = None, device: str = "cpu",
            batch_size: int = 16, threshold: float = 0.5, overlays: bool = True, progress: bool = True) -> pd.DataFrame:
    """Maps, panels and scores for ``inputs``; the table's ``attrs`` say the source used and whether the checkpoint
    was trained on random-weight features (``random_weights``)."""
    decoder, meta = load_decoder(checkpoint)
    predictor = Predictor(decoder, resolve_source(meta, backbone), device, weights_files(meta, checkpoint))
    paths = expand_inputs(inputs)
    if not paths:
        raise DeclipError(f"no images found in {inputs}")
    common = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    names = out_names(paths, common)
    out_dir = Path(out)
    (out_dir / "maps").mkdir(parents=True, exist_ok=True)
    if overlays:
        (out_dir / "overlays").mkdir(exist_ok=True)
    rows = []
    from tqdm.auto import tqdm

    for lo in tqdm(range(0, len(paths), batch_size), desc="predict", unit="batch", disable=not progress):
        check_stop()
        good, images = [], []
        for path in paths[lo:lo + batch_size]:
            try:
                images.append(open_rgb(str(path), exif=predictor.recipes[0].applies_exif))
                good.append(path)
            except ImageProblem as exc:
                rows.append({"path": str(path), "status": "skipped", "reason": exc.reason, "detail": str(exc)})
        if not images:
            continue
        for path, image, native in zip(good, images, predictor.maps(images)):
            name = names[path]
            Image.fromarray(np.clip(native * 255 + 0.5, 0, 255).astype(np.uint8)).save(out_dir / "maps" / name)
            np.save(out_dir / "maps" / float_map_name(name), native.astype(np.float32))  # exact, as TruFor's
            row = {"path": str(path), "status": "ok", "reason": "", "detail": "", "width": image.width,
                   "height": image.height, "image_score": float(native.mean()), "max_prob": float(native.max()),
                   "fake_fraction": float((native > threshold).mean()), "map": f"maps/{name}",
                   "float_map": f"maps/{float_map_name(name)}"}
            if overlays:
                save_panel(image, native, out_dir / "overlays" / name, threshold,
                           f"{path.name}: mean p {row['image_score']:.3f}, max p {row['max_prob']:.3f}, "
                           f"{100 * row['fake_fraction']:.1f}% of pixels p > {threshold:g}")
            rows.append(row)
    table = pd.DataFrame(rows)
    for column in ("width", "height"):  # whole pixels, also beside skipped files (which have none)
        if column in table:
            table[column] = table[column].astype("Int64")
    table.to_csv(out_dir / "scores.csv", index=False)
    table.attrs.update(source=str(predictor.spec), random_weights=trained_on_random_weights(meta)
                       or any(part.backbone.is_random for part in predictor.spec.parts))
    return table


def float_map_name(png_name: str) -> str:
    """``x.png`` -> ``x.npy``: the float32 map beside its 8-bit PNG."""
    return png_name.removesuffix(".png") + ".npy"
