import numpy as np
import pytest
from PIL import Image

from declip.pipeline.grid.demo_data import METHODS, SOURCE_SPLITS, build_demo_dataset, demo_counts, random_mask, source_files
from declip.core.errors import DeclipError
from declip.pipeline.data.manifest import counts_table, scan_dataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = build_demo_dataset(tmp_path_factory.mktemp("a"), seed=0, size=5)
    return root, scan_dataset(root, "dolos", progress=False)


def test_sources_present_on_disk():
    found = source_files()
    assert {"astronaut.png", "china.jpg", "flower.jpg"} <= set(found)
    assert {SOURCE_SPLITS[n] for n in found} == {"train", "valid", "test"}


def test_reads_back_with_zero_problems(demo):
    root, res = demo
    assert res.problems.empty and res.layout == "dolos"
    assert set(res.manifest.dataset) == {"dolos-demo"}
    assert set(res.manifest.subset) == {"real", *METHODS}
    # size 5 by hand: per generator round(0.2·5) = 1 valid, 1 test, 5 − 2 = 3 train; reals max(3, 5 // 2) = 3 → 1/1/1
    table = counts_table(res.manifest)
    expected = {gen: {"train": 3, "valid": 1, "test": 1, "total": 5} for gen in METHODS}
    expected["real"] = {"train": 1, "valid": 1, "test": 1, "total": 3}
    assert {row: {col: int(table.loc[row, col]) for col in ("train", "valid", "test", "total")}
            for row in table.index} == expected
    assert table.equals(demo_counts(5))  # the helper the CLI prints agrees
    assert (res.manifest.width == 256).all() and (res.manifest.height == 256).all()
    assert "classical" in (root / "README.txt").read_text().lower()


def test_masks_are_black_fake_and_sized(demo):
    root, res = demo
    for rec in res.manifest[res.manifest.kind == "partial"].itertuples():
        m = np.asarray(Image.open(root / rec.mask_path))
        assert set(np.unique(m)) <= {0, 255}
        assert 0.05 <= (m == 0).mean() <= 0.35
        assert rec.mask_polarity == "fake_is_black"


def test_same_seed_same_bytes_other_seed_differs(demo, tmp_path):
    _, res = demo
    again = scan_dataset(build_demo_dataset(tmp_path / "b", seed=0, size=5), "dolos", progress=False).manifest
    assert again.sha256.tolist() == res.manifest.sha256.tolist()
    other = scan_dataset(build_demo_dataset(tmp_path / "c", seed=1, size=5), "dolos", progress=False).manifest
    assert set(other.sha256).isdisjoint(res.manifest.sha256)


def test_rebuild_replaces_own_tree_but_not_foreign(tmp_path):
    build_demo_dataset(tmp_path / "x", seed=0, size=3)
    build_demo_dataset(tmp_path / "x", seed=0, size=3)  # replacing our own tree is fine
    foreign = tmp_path / "y" / "demo"
    foreign.mkdir(parents=True)
    (foreign / "precious.txt").write_text("keep")
    with pytest.raises(DeclipError, match="not written by"):
        build_demo_dataset(tmp_path / "y")
    assert (foreign / "precious.txt").exists()
    with pytest.raises(DeclipError, match="too small"):
        build_demo_dataset(tmp_path / "z", size=2)


def test_random_mask_coverage():
    for seed in range(30):
        m = random_mask(np.random.default_rng(seed))
        assert m.shape == (256, 256) and 0.05 <= (m > 0).mean() <= 0.35


def test_demo_counts_at_the_default_size_by_hand():
    # 60 per generator: round(0.2·60) = 12 valid, 12 test, 36 train; reals 60 // 2 = 30: 6 valid, 6 test, 18 train
    table = demo_counts()
    for gen in METHODS:
        assert table.loc[gen, ["train", "valid", "test", "total"]].tolist() == [36, 12, 12, 60]
    assert table.loc["real", ["train", "valid", "test", "total"]].tolist() == [18, 6, 6, 30]


def test_demo_scan_writes_the_manifest_and_names_the_generators(demo, tmp_path):
    from declip.pipeline.data.manifest import read_manifest
    from declip.pipeline.grid.demo_data import scan_demo_dataset

    root, _ = demo
    scanned = scan_demo_dataset(root, tmp_path / "manifest.parquet")
    assert scanned == {"dataset": "dolos-demo", "rows": 4 * 5 + 3, "generators": sorted(METHODS)}  # counts above
    assert len(read_manifest(tmp_path / "manifest.parquet").df) == 4 * 5 + 3
    import shutil

    copy = shutil.copytree(root, tmp_path / "copy")
    next(copy.rglob("*.png")).write_bytes(b"broken")  # a generated file that does not decode is a bug: refused
    with pytest.raises(DeclipError, match="the demo dataset .* has problems"):
        scan_demo_dataset(copy, tmp_path / "again.parquet")
