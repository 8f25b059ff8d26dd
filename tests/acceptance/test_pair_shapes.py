"""Image/mask pairs as researchers keep them: without split folders (mixed JPEG/PNG, non-square and 2000×1200
images, greyscale/RGB/palette masks; refused until a split is drawn) and with split folders. Every command as a user
types it (tests/acceptance/user_session.py); the commands must work on each shape, not learn."""
from __future__ import annotations

import pytest

from tests.acceptance.shapes import write_pairs
from tests.acceptance.user_session import grid_toml, run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.flow]  # CLI subprocesses that run Prefect flows


def test_pairs_without_split_folders_mixed_formats_sizes_and_mask_modes(user, tmp_path):
    root = tmp_path / "photos"
    write_pairs(root, None, n=10)
    plain = user.run("data", "scan", str(root), "--out", "manifest.parquet", "--no-progress")
    assert "WARNING: no split" in plain.stdout and "--split-ratios 0.6,0.2,0.2 --seed 0" in plain.stdout
    toml = str(grid_toml(tmp_path / "grid.toml", "photos", ["fake"], ["fake"]))
    refused = user.run("grid", "--config", toml, "--dry-run", ok=False)
    assert refused.returncode == 2 and "has no split" in refused.stderr and "--split-ratios" in refused.stderr
    assert not (tmp_path / "feats.zarr").exists()
    run_pipeline(user, root, ["--split-ratios", "0.6,0.2,0.2", "--seed", "3"], "photos", ["fake"], ["fake"])
    import pandas as pd

    rows = pd.read_parquet(tmp_path / "manifest.parquet")
    assert set(rows.loc[rows["width"] >= 2000, "split"]) == {"valid", "test"}  # evaluated at 2000×1200 (seed 3)


def test_pairs_with_split_folders(user, tmp_path):
    write_pairs(tmp_path / "mine", {"train": 6, "valid": 2, "test": 2})
    run_pipeline(user, tmp_path / "mine", ["--layout", "pairs"], "mine", ["fake"], ["fake"])
