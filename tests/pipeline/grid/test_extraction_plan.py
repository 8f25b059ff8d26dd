"""What a grid extracts before training, without Prefect: clean features for every row, each test view for the test
split only, each training view for the train split only; one job per (view, backbone). Expected plans by hand."""
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.extraction_plan import extraction_configs, view_splits


def _grid(tmp_path, **kw):
    base = dict(store=str(tmp_path / "s.zarr"), dataset="d", out=str(tmp_path / "g"), backbones=["b@random-0"],
                layers=["layer0"], train_sets=["a"], test_sets=["a"], manifest=str(tmp_path / "m.parquet"),
                extract_batch_size=4, storage_dtype="int8")
    return GridConfig.from_dict(dict(base, **kw))


def test_views_are_extracted_for_the_split_that_reads_them(tmp_path):
    assert view_splits(_grid(tmp_path)) == [("clean", ())]
    g = _grid(tmp_path, test_views=["clean", "jpeg:50.0", "blur:2"], augment_copies=2)
    assert view_splits(g) == [("clean", ()), ("jpeg:50", ("test",)), ("blur:2", ("test",)),
                              ("augment:all+copy:0", ("train",)), ("augment:all+copy:1", ("train",))]


def test_one_job_per_view_and_backbone_with_the_grids_settings(tmp_path):
    g = _grid(tmp_path, test_views=["jpeg:50"])
    jobs = extraction_configs(g, {"b@random-0": ["layer2", "layer0", "layer2"], "srm@fixed": ["layer0"]})
    assert [(c.view, c.splits, c.backbone, c.layers) for c in jobs] == [
        ("clean", (), "b@random-0", "layer0,layer2"), ("clean", (), "srm@fixed", "layer0"),
        ("jpeg:50", ("test",), "b@random-0", "layer0,layer2"), ("jpeg:50", ("test",), "srm@fixed", "layer0")]
    for c in jobs:
        assert (c.manifest, c.store, c.dataset) == (g.manifest, g.store, "d")
        assert (c.batch_size, c.storage_dtype, c.device, c.progress) == (4, "int8", "cpu", True)


def test_the_grids_extraction_shows_a_bar_unless_progress_is_off(tmp_path):
    """Issue 19 item 5: a grid encoded for hours with progress=False."""
    jobs = {"b@random-0": ["layer0"]}
    assert [c.progress for c in extraction_configs(_grid(tmp_path), jobs)] == [True]
    assert [c.progress for c in extraction_configs(_grid(tmp_path, progress=False), jobs)] == [False]


def test_without_a_manifest_nothing_is_extracted(tmp_path):
    assert extraction_configs(_grid(tmp_path, manifest=None), {"b@random-0": ["layer0"]}) == []
