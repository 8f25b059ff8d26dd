"""``declip store ls|info|export|rm|import`` as a user runs them: real subprocesses on a store built in-process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from declip.store.feature_store import FeatureStore, dataset_checksum

pytestmark = pytest.mark.slow
from tests.fixtures import REPO  # noqa: E402
KEY = "ViT-T@random-0/layer2/ds"
PARTIAL = "ViT-T@random-0/layer10/ds"


def _build(path: Path) -> None:
    n, br = 10, 4
    samples = pd.DataFrame({
        "image_path": [f"i{i}.png" for i in range(n)], "mask_path": [None] * n, "sha256": [str(i) * 8 for i in range(n)],
        "width": [8] * n, "height": [8] * n, "label": [0] * n,
    })
    store = FeatureStore(str(path))
    store.create_dataset("ds", samples, "/data", "list", block_rows=br)
    for layer, blocks in (("layer2", range(3)), ("layer10", [0])):
        meta = {"backbone": "ViT-T@random-0", "layer": layer, "channels": 3, "grid": [4, 5], "has_cls": True,
                "n_rows": n, "block_rows": br, "family": "vit", "weights_checksum": "abc", "recipe": {"size": 32},
                "dataset_checksum": dataset_checksum(samples), "random_weights": True, "semantics": "tokens"}
        arrays = store.open_layer("ViT-T@random-0", layer, "ds", meta)
        for b in blocks:
            lo, hi = arrays.block_range(b)
            rng = np.random.default_rng(b)
            store.write_block(arrays, b, (rng.random((hi - lo, 3, 4, 5)) + 1).astype(np.float16),
                              (rng.random((hi - lo, 3)) + 1).astype(np.float16), np.ones(hi - lo, np.uint8),
                              [{"row": lo, "path": f"i{lo}.png", "reason": "truncated"}] if b == 1 else [])


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "zarr.json"}


def _sh(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)


def _cli(*args: str) -> str:
    return " ".join([sys.executable, "-m", "declip.cli", "store", *args])


def test_store_ls_info_export_rm_import(tmp_path):
    s = tmp_path / "s.zarr"
    _build(s)
    before = _files(s / "features" / "ViT-T@random-0" / "layer2")

    # ls and info in one shell: the table, a separator, then info's JSON
    r = _sh(f"{_cli('ls', '--store', str(s))} && echo '=====' && {_cli('info', KEY, '--store', str(s))}")
    assert r.returncode == 0, r.stderr
    table, info_text = r.stdout.split("=====\n")
    lines = table.splitlines()
    assert "datasets ds" in lines[0]
    row = next(line for line in lines if KEY in line)
    assert "10×3×4×5" in row and "10/10" in row and "MiB" in row and "True" in row
    partial = next(line for line in lines if PARTIAL in line)
    assert "4/10" in partial and "False" in partial
    assert table.index("layer2/ds") < table.index("layer10/ds")  # numeric layer order
    info = json.loads(info_text)
    assert info["key"] == KEY and info["shape"] == [10, 3, 4, 5] and info["dtype"] == "float16"
    assert info["chunks"] == [1, 3, 4, 5] and info["blocks_done"] == 3 and info["blocks_total"] == 3
    assert info["rows_valid"] == 10 and info["bytes"] >= 10 * 3 * 4 * 5 * 2
    assert info["unreadable"] == [{"row": 4, "path": "i4.png", "reason": "truncated"}]
    assert info["meta"]["weights_checksum"] == "abc" and info["meta"]["grid"] == [4, 5]

    # export → rm → (gone) → import restores the same bytes
    h5 = tmp_path / "out.h5"
    r = _sh(f"set -e; {_cli('export', KEY, '--store', str(s), '--format', 'hdf5', '--out', str(h5))}; "
            f"{_cli('rm', KEY, '--store', str(s))}; test ! -e '{s}/features/ViT-T@random-0/layer2/ds'; "
            f"{_cli('import', str(h5), '--store', str(s))}")
    assert r.returncode == 0, r.stderr
    assert f"wrote {h5}" in r.stdout and f"removed {KEY}" in r.stdout and f"imported {KEY}" in r.stdout
    assert _files(s / "features" / "ViT-T@random-0" / "layer2") == before
    assert FeatureStore(str(s), mode="r").open_layer("ViT-T@random-0", "layer2", "ds").complete


def test_store_cli_errors_are_clean(tmp_path):
    s = tmp_path / "s.zarr"
    _build(s)
    before = _files(s)
    missing = tmp_path / "nowhere.zarr"
    r = _sh(f"{_cli('info', 'ViT-T@random-0/layer7/ds', '--store', str(s))}; echo \"rc=$?\"; "
            f"{_cli('rm', 'no-slashes', '--store', str(s))}; echo \"rc=$?\"; "
            f"{_cli('ls', '--store', str(missing))}; echo \"rc=$?\"")
    assert r.stdout.splitlines() == ["rc=2", "rc=2", "rc=2"], r.stdout
    err = r.stderr.splitlines()
    assert len(err) == 3 and "Traceback" not in r.stderr, r.stderr
    assert err[0].startswith("declip store: error:") and "features/ViT-T@random-0/layer7/ds" in err[0]
    assert "BACKBONE/LAYER/DATASET" in err[1] and "no-slashes" in err[1]
    assert str(missing) in err[2] and "no feature store" in err[2]
    assert not missing.exists()  # ls never creates a store
    assert _files(s) == before
