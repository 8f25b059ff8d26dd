"""A grid folder written by hand for the report's tests: per-image tables where the grid keeps them and a results table
whose values are computed here from those tables (plain means), independently of the code under test.

Per-image IoU = clip(quality of the model + difficulty of the image + noise of the (model, seed, train set), 0, 100),
so models evaluated on the same images are correlated as real ones are.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

BASELINES = {"baseline:all-zero": 0.0, "baseline:all-fake": 15.0, "baseline:mask-prior": 10.0}


def image_ids(test_set: str, n_fake: int, n_real: int) -> tuple[list[str], list[int]]:
    ids = [f"{test_set}/fake/{i:03d}.png" for i in range(n_fake)] + [f"real/{i:03d}.png" for i in range(n_real)]
    return ids, [1] * n_fake + [0] * n_real


def per_image_table(test_set: str, values: np.ndarray, n_real: int, seed: int) -> pd.DataFrame:
    """A shuffled per-image table (evaluation order is not image-id order) with TP/FP/FN consistent with nothing in
    particular: only IoU is read by these tests."""
    ids, labels = image_ids(test_set, len(values), n_real)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"image_id": ids, "label": labels,
                          "image_score": np.r_[rng.uniform(0.3, 1, len(values)), rng.uniform(0, 0.7, n_real)],
                          "iou": np.r_[values, np.full(n_real, np.nan)]})
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def write_grid(root: Path, models: dict[tuple[str, str], float], train_sets=("a", "b"), test_sets=("a", "b"),
               seeds=(0,), n_fake: int = 30, n_real: int = 6, seed_spread: float = 0.0, splits=("valid", "test"),
               random_weights: bool = True, valid_quality: dict | None = None, noise: float = 4.0) -> Path:
    """Write ``root/grid`` and return its ``results.parquet``. ``models`` maps (source, decoder) to a quality (mean
    IoU); ``valid_quality`` overrides it on the valid split; ``seed_spread`` shifts each seed's quality by
    ``seed_spread * seed``."""
    grid = root / "grid"
    grid.mkdir(parents=True, exist_ok=True)
    (grid / "grid.json").write_text(json.dumps({"store": str(root / "missing.zarr"), "dataset": "d"}))
    rows = []
    for split in splits:
        for t_index, test_set in enumerate(test_sets):
            difficulty = np.random.default_rng(1000 + t_index + 17 * (split == "valid")).normal(0, 20, n_fake)
            for m_index, ((source, decoder), quality) in enumerate(models.items()):
                q = (valid_quality or {}).get((source, decoder), quality) if split == "valid" else quality
                for train_set in train_sets:
                    for seed in seeds:
                        shift = (0 if train_set == test_set else -20) + seed_spread * seed
                        rng = np.random.default_rng([m_index, seed, t_index, train_sets.index(train_set),
                                                     split == "valid"])
                        values = np.clip(q + shift + difficulty + rng.normal(0, noise, n_fake), 0, 100)
                        run = f"run-{m_index}-{train_set}-s{seed}"
                        where = grid / "runs" / run / ("eval" if split == "test" else f"eval-{split}") / test_set
                        where.mkdir(parents=True, exist_ok=True)
                        per_image_table(test_set, values, n_real, seed).to_parquet(where / "per_image.parquet")
                        rows.append(dict(source=source, decoder=decoder, layer=source.rsplit("/", 1)[-1],
                                         backbone=source.rsplit("/", 1)[0], train_set=train_set, test_set=test_set,
                                         split=split, seed=seed, run_id=run, value=float(values.mean()),
                                         n_images=n_fake, random_weights=random_weights))
            for name, level in BASELINES.items():
                for train_set in train_sets:
                    values = np.clip(level + 0.3 * difficulty, 0, 100)
                    where = grid / "baselines" / split / train_set / test_set / name.removeprefix("baseline:")
                    where.mkdir(parents=True, exist_ok=True)
                    per_image_table(test_set, values, n_real, 0).to_parquet(where / "per_image.parquet")
                    rows.append(dict(source="-", decoder=name, layer="-", backbone="-", train_set=train_set,
                                     test_set=test_set, split=split, seed=-1, run_id=f"baseline-{name[9:]}",
                                     value=float(values.mean()), n_images=n_fake, random_weights=False,
                                     collapsed=True, collapse_reason="constant map"))
    table = pd.DataFrame(rows).assign(metric="iou", scale="percent", threshold_rule="pred>0.5",
                                      aggregation="mean over images", dataset="d", view="clean")
    table["collapsed"] = table["collapsed"].fillna(False).astype(bool) if "collapsed" in table else False
    table["collapse_reason"] = table["collapse_reason"].fillna("") if "collapse_reason" in table else ""
    table.to_parquet(grid / "results.parquet")
    return grid / "results.parquet"


def sorted_fakes(grid: Path, run: str, test_set: str, split: str = "test") -> np.ndarray:
    """One evaluation's fake-image IoU in image-id order (the order every interval aligns on)."""
    where = grid / "runs" / run / ("eval" if split == "test" else f"eval-{split}") / test_set / "per_image.parquet"
    frame = pd.read_parquet(where)
    return frame[frame["label"] == 1].sort_values("image_id")["iou"].to_numpy(dtype=float)
