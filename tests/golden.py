"""Golden regression values: what a refactor must not change.

Two groups, each computed from fixed synthetic images (seeded numpy; independent of the shared test fixtures):

* ``features.json``: every layer of the tiny seeded test backbones (``test-vit-tiny@random-0``,
  ``test-rn-tiny@random-0``) under their default recipe -- shape, mean, std, max |x| and 24 values at fixed
  positions, for the features and the class token;
* ``decoder.json``: the whole path scan → extract → store → train (a conv-4 decoder, 3 epochs at lr 1e-2, seed 0) →
  logits of the last epoch's decoder on the stored features, summarised the same way, plus the per-epoch training
  losses and the best validation IoU.

Values are computed on one CPU thread and compared with a tolerance (features rtol 1e-4, trained outputs rtol 1e-2),
not hashed, so harmless float
noise across CPUs passes and a changed computation fails. A deliberate change of numbers (new recipe default, new
init, a torch/open_clip upgrade that changes them) is recorded by regenerating and reviewing the diff:

    python -m tests.golden --update     # rewrite tests/golden/*.json
    python -m tests.golden              # compare only, print every difference
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

GOLDEN_DIR = Path(__file__).with_name("golden")
BACKBONES = ("test-vit-tiny@random-0", "test-rn-tiny@random-0")
DECODER_BACKBONE, DECODER_LAYER = "test-vit-tiny@random-0", "layer2"
# (rtol, atol). Training amplifies float noise (Adam normalises tiny gradients), hence the wider decoder tolerance;
# a changed computation (data order, loss, schedule, init, preprocessing) moves these values by far more.
TOLERANCE = {"features": (1e-4, 1e-5), "decoder": (1e-2, 1e-3)}
N_SAMPLES = 24


def synthetic_image(seed: int, size: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """A smooth gradient plus seeded noise, with a brightened box; returns (RGB image, box mask, True = fake)."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (h + w) * 255], axis=-1)
    pixels = base + rng.normal(0, 20, (h, w, 3))
    mask = np.zeros((h, w), dtype=bool)
    y0, x0 = int(rng.integers(2, h // 2)), int(rng.integers(2, w // 2))
    mask[y0:y0 + h // 3, x0:x0 + w // 3] = True
    pixels[mask] += (60, -40, 30)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), mask


SIZES = ((48, 64), (64, 48), (40, 40), (72, 56), (56, 72), (64, 64), (50, 60), (60, 50))


def summarize(t: torch.Tensor | None) -> dict | None:
    if t is None:
        return None
    a = t.detach().double().cpu().numpy().ravel()
    idx = np.linspace(0, a.size - 1, N_SAMPLES).astype(int)
    return {"shape": list(t.shape), "mean": float(a.mean()), "std": float(a.std()), "absmax": float(np.abs(a).max()),
            "sample": [float(v) for v in a[idx]]}


def feature_values() -> dict:
    from declip.features.backbones import load_backbone
    from declip.features.preprocess import to_tensor
    from declip.features.taps import forward_layers, layer_names

    images = [synthetic_image(i, size)[0] for i, size in enumerate(SIZES[:4])]
    out = {}
    for key in BACKBONES:
        bb = load_backbone(key)
        x = torch.stack([to_tensor(bb.recipe(), im) for im in images])
        layers = forward_layers(bb, x, layer_names(bb))
        out[key] = {"recipe": bb.recipe().name,
                    **{layer: {"feats": summarize(f), "cls": summarize(c)} for layer, (f, c) in layers.items()}}
    return out


def _write_tree(root: Path) -> None:
    """A Dolos tree of the synthetic images: 6 train + 2 valid fakes (black = fake masks), 2 real."""
    for i, size in enumerate(SIZES):
        split = "train" if i < 6 else "valid"
        image, mask = synthetic_image(100 + i, size)
        for kind, item in (("images", image), ("masks", Image.fromarray(np.where(mask, 0, 255).astype(np.uint8)))):
            path = root / "golden" / "fake" / "box" / kind / split / f"g{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            item.save(path)
    for i, split in enumerate(("train", "valid")):
        path = root / "golden" / "real" / split / f"r{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_image(200 + i, (48, 48))[0].save(path)


def decoder_values() -> dict:
    from declip.core.keys import SourceKey
    from declip.decoders import load_decoder
    from declip.pipeline.data.manifest import scan_dataset, write_manifest
    from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
    from declip.pipeline.train.training import train
    from tests.fixtures import train_config
    from declip.store.feature_store import FeatureStore
    from declip.store.readers import FeatureSource

    with tempfile.TemporaryDirectory(prefix="declip-golden-") as tmp:
        root = Path(tmp)
        _write_tree(root / "data")
        scan = scan_dataset(root / "data", "dolos", progress=False)
        write_manifest(scan.manifest, root / "m.parquet", root / "data", "dolos")
        run_extraction(ExtractConfig(manifest=str(root / "m.parquet"), store=str(root / "s.zarr"),
                                     backbone=DECODER_BACKBONE, layers=DECODER_LAYER, batch_size=4, workers=1,
                                     progress=False))
        source = SourceKey.single(DECODER_BACKBONE, DECODER_LAYER)
        summary = train(train_config(root / "s.zarr", root / "run", source=source, dataset="dolos-golden",
                                     train_sets=("box",), decoder="conv-4", width=0.25, batch_size=4, max_epochs=3,
                                     lr=1e-2, seed=0))
        decoder, _ = load_decoder(str(root / "run" / "best"))
        state = torch.load(root / "run" / "state.pt", weights_only=True)  # the last epoch: every step counts
        decoder.load_state_dict(state["decoder"])
        losses = [float(row["train_loss"]) for row in state["history"]]
        feats, cls = FeatureSource(FeatureStore(str(root / "s.zarr"), mode="r"), source, "dolos-golden").get(
            np.arange(len(SIZES) + 2))
        with torch.no_grad():
            logits = decoder.eval()(feats.float(), None if cls is None else cls.float())
    return {"best_val_iou": summary["best_val"], "epochs": summary["epochs"], "train_loss": losses,
            "logits": summarize(logits)}


COMPUTE = {"features": feature_values, "decoder": decoder_values}


def differences(expected, actual, rtol: float, atol: float, where: str = "") -> list[str]:
    """Every place where ``actual`` leaves ``expected`` (numbers within rtol/atol; everything else exactly)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = [f"{where}/{k}: missing" for k in expected if k not in actual]
        out += [f"{where}/{k}: unexpected" for k in actual if k not in expected]
        for k in expected:
            if k in actual:
                out += differences(expected[k], actual[k], rtol, atol, f"{where}/{k}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: length {len(actual)} != {len(expected)}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in differences(e, a, rtol, atol,
                                                                                          f"{where}[{i}]")]
    if isinstance(expected, float) or isinstance(actual, float):
        if not math.isclose(float(actual), float(expected), rel_tol=rtol, abs_tol=atol):
            return [f"{where}: {actual!r} != {expected!r}"]
        return []
    return [] if expected == actual else [f"{where}: {actual!r} != {expected!r}"]


def compute(name: str) -> dict:
    """One group's values, on one CPU thread (the thread count changes float summation order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return COMPUTE[name]()
    finally:
        torch.set_num_threads(threads)


def check(name: str) -> list[str]:
    expected = json.loads((GOLDEN_DIR / f"{name}.json").read_text())
    return differences(expected, compute(name), *TOLERANCE[name])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--update", action="store_true", help="rewrite tests/golden/*.json from this code")
    ap.add_argument("names", nargs="*", help=f"groups to compute (default: all of {', '.join(COMPUTE)})")
    args = ap.parse_args(argv)
    unknown = set(args.names) - set(COMPUTE)
    if unknown:
        ap.error(f"unknown groups {sorted(unknown)}; choose from {', '.join(COMPUTE)}")
    args.names = args.names or list(COMPUTE)
    status = 0
    for name in args.names:
        if args.update:
            GOLDEN_DIR.mkdir(exist_ok=True)
            (GOLDEN_DIR / f"{name}.json").write_text(json.dumps(compute(name), indent=1) + "\n")
            print(f"wrote {GOLDEN_DIR / name}.json")
            continue
        diffs = check(name)
        print(f"{name}: {'ok' if not diffs else f'{len(diffs)} differences'}")
        for d in diffs:
            print("  " + d)
        status |= bool(diffs)
    return status


if __name__ == "__main__":
    sys.exit(main())
