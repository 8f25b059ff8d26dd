"""The SRM positive control learns where masks carry information, and does not where they are shuffled.

Images are camera-like noise with a smooth fill in a random box (what classical inpainting leaves). With the true
masks a decoder on SRM features must beat every feature-free baseline by 10 IoU points; with the masks shuffled
among the images (same areas, no relation to the pixels) it must not beat them.
"""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from declip.features import srm
from declip.pipeline.data.manifest import scan_dataset, write_manifest
from declip.pipeline.evaluate.baselines import baseline_rows
from declip.pipeline.evaluate.evaluation import EvalConfig, evaluate
from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
from declip.pipeline.train.training import train
from tests.fixtures import train_config

SIZE = 256
COUNTS = {"train": 16, "valid": 6, "test": 6}


def _write(root, shuffle: bool, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    tree = root / "celebahq"
    for split, n in COUNTS.items():
        (tree / "real" / split).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.normal(128, 18, (SIZE, SIZE, 3)).clip(0, 255).astype(np.uint8)).save(
                tree / "real" / split / f"r{i}.png")
        img_dir, mask_dir = tree / "fake" / "smooth" / "images" / split, tree / "fake" / "smooth" / "masks" / split
        img_dir.mkdir(parents=True)
        mask_dir.mkdir(parents=True)
        masks = []
        for i in range(n):
            base = rng.normal(128, 30, (SIZE // 16, SIZE // 16, 3)).clip(0, 255).astype(np.uint8)
            smooth = np.asarray(Image.fromarray(base).resize((SIZE, SIZE), Image.BICUBIC), dtype=float)
            img = (smooth + rng.normal(0, 6, smooth.shape)).clip(0, 255)
            y, x = rng.integers(0, SIZE - 96, 2)
            h, w = rng.integers(64, 128, 2)
            box = np.zeros((SIZE, SIZE), bool)
            box[y:y + h, x:x + w] = True
            img[box] = smooth[box]  # the "inpainted" region lost its noise
            Image.fromarray(img.round().astype(np.uint8)).save(img_dir / f"f{i:02d}.png")
            masks.append(box)
        if shuffle:
            masks = [masks[j] for j in np.roll(np.arange(n), 1)]  # every image gets another image's mask
        for i, box in enumerate(masks):
            Image.fromarray(np.where(box, 0, 255).astype(np.uint8)).save(mask_dir / f"f{i:02d}.png")


def _run(tmp_path, shuffle: bool) -> tuple[float, pd.Series]:
    root = tmp_path / "data"
    _write(root, shuffle)
    scan = scan_dataset(root, "dolos", progress=False)
    assert scan.problems.empty, scan.problems
    manifest = tmp_path / "manifest.parquet"
    write_manifest(scan.manifest, manifest, root, "dolos")
    store = tmp_path / "declip.store.zarr"
    run_extraction(ExtractConfig(manifest=str(manifest), store=str(store), backbone=srm.KEY, batch_size=8,
                                 progress=False))
    run = tmp_path / "run"
    train(train_config(store, run, source=f"{srm.KEY}/{srm.LAYER}", train_sets=("smooth",), batch_size=8,
                       max_epochs=5, patience=3, min_steps_per_epoch=12))
    result = evaluate(EvalConfig(store=str(store), checkpoint=str(run / "best"), dataset="dolos-celebahq",
                                 test_subsets=("smooth",), out=str(tmp_path / "eval"), metrics=("iou",)))
    base = baseline_rows(str(store), "dolos-celebahq", ["smooth"], ["smooth"], metrics=["iou"])
    return float(result["value"].iloc[0]), base.set_index("decoder")["value"]


@pytest.mark.slow
def test_srm_beats_baselines_only_when_masks_carry_information(tmp_path):
    real, base = _run(tmp_path / "real", shuffle=False)
    assert real > base.max() + 10, (real, base.to_dict())
    shuffled, base_s = _run(tmp_path / "shuffled", shuffle=True)
    assert shuffled < base_s.max() + 3, (shuffled, base_s.to_dict())
