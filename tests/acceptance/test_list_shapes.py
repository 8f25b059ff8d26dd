"""A CocoGlide-style test list: test-only first (training on it is refused), then split to train on it."""
from __future__ import annotations

import pytest

from tests.acceptance.shapes import write_list
from tests.acceptance.user_session import run_pipeline
from tests.fixtures import TINY_BACKBONE

pytestmark = [pytest.mark.slow, pytest.mark.flow]  # CLI subprocesses that run Prefect flows


def test_a_test_only_list_then_split_to_train_on_it(user, tmp_path):
    root = tmp_path / "glide"
    write_list(root, fakes=10, reals=2)
    only = user.run("data", "scan", str(root), "--layout", "list", "--list-file", "test.txt", "--split", "test",
                    "--out", "test-only.parquet", "--dataset", "glide-test", "--no-progress")
    assert "every row in split 'test'" in only.stdout
    user.run("extract", "--manifest", "test-only.parquet", "--store", "feats.zarr", "--backbone", TINY_BACKBONE,
             "--layers", "layer1", "--no-progress")
    refused = user.run("train", "--store", "feats.zarr", "--dataset", "glide-test", "--source",
                       f"{TINY_BACKBONE}/layer1", "--decoders", "linear", "--train-sets", "fake", "--out", "r",
                       "--no-flow", ok=False)
    assert refused.returncode == 2 and "is test-only" in refused.stderr
    run_pipeline(user, root, ["--layout", "list", "--list-file", "test.txt", "--split-ratios", "0.6,0.2,0.2"],
                 "glide", ["fake"], ["fake"])
    checkpoint = next((tmp_path / "grid" / "by-name").glob("test-vit-tiny_layer1_linear_*")) / "best"
    done = user.run("evaluate", "--store", "feats.zarr", "--dataset", "glide-test", "--ckpt", str(checkpoint),
                    "--test-sets", "fake", "--out", "test-only-eval", "--no-flow")
    assert "fake" in done.stdout
