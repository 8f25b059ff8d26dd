"""One map per image, whoever asks: evaluation (saved maps), predict (the image encoded now) and the report's
recomputation (a grid with save_maps = 0) give the same native-size map, and each equals the decoder run by hand on
the cached features, sigmoid, then DeCLIP's antialiased bilinear resize to the image's (height, width)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.fixtures import TINY_BACKBONE, TINY_SIZE, train_config
from declip.decoders import load_decoder
from declip.pipeline.evaluate.evaluation import EvalConfig, evaluate
from declip.pipeline.infer.predict import predict
from declip.pipeline.report.overlays import recompute_maps
from declip.pipeline.report.report import write_report
from declip.pipeline.train.training import train
from declip.store.feature_store import FeatureStore
from declip.store.readers import FeatureSource

DATASET = "dolos-celebahq"
SOURCE = f"{TINY_BACKBONE}/layer1"


@pytest.fixture(scope="module")
def grid_dir(tiny_store, tmp_path_factory):
    """A grid folder holding one trained cell (``runs/cell/best``) and a grid.json naming the store."""
    grid = tmp_path_factory.mktemp("maps-grid")
    train(train_config(tiny_store, grid / "runs" / "cell", source=SOURCE, dataset=DATASET, train_sets=("tint",),
                       decoder="linear", batch_size=8, max_epochs=2, progress=False))
    (grid / "grid.json").write_text(json.dumps({"store": str(tiny_store), "dataset": DATASET, "save_maps": 0}))
    return grid


def _by_hand(checkpoint, tiny_store, row: int) -> np.ndarray:
    """The oracle: logits of the cached features, sigmoid, antialiased bilinear resize to (height, width)."""
    feats, cls = FeatureSource(FeatureStore(str(tiny_store), mode="r"), SOURCE, DATASET).get(np.array([row]))
    decoder, _ = load_decoder(checkpoint)
    with torch.no_grad():
        prob = torch.sigmoid(decoder(feats.float(), cls.float()))[:, :1]
    return F.interpolate(prob, size=TINY_SIZE, mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()


def _eight_bit(prob: np.ndarray) -> np.ndarray:
    return np.clip(prob * 255.0 + 0.5, 0, 255).astype(np.uint8)


def test_evaluation_predict_and_report_give_one_map(grid_dir, tiny_store, tmp_path):
    checkpoint = grid_dir / "runs" / "cell" / "best"
    store = FeatureStore(str(tiny_store), mode="r")
    samples = store.samples(DATASET)
    fakes = samples[(samples["subset"] == "tint") & (samples["split"] == "test") & (samples["label"] == 1)]
    rows = [int(r) for r in fakes.index[:3]]
    expected = [_by_hand(checkpoint, tiny_store, row) for row in rows]
    assert expected[0].shape == TINY_SIZE and expected[0].std() > 0  # not square, not constant: a swap would show

    recomputed = recompute_maps({"store": str(tiny_store), "dataset": DATASET}, grid_dir, "cell", SOURCE, rows)
    assert len(recomputed) == len(rows)
    for got, want in zip(recomputed, expected):  # in the order asked for, each its own image's map
        assert got.shape == TINY_SIZE
        np.testing.assert_allclose(got, want, atol=1e-6)

    evaluate(EvalConfig(store=str(tiny_store), checkpoint=str(checkpoint), dataset=DATASET, test_subsets=("tint",),
                        out=str(tmp_path / "ev"), save_maps=True))
    name = fakes.loc[rows[0], "image_path"].rsplit("/", 1)[-1]
    saved = np.asarray(Image.open(tmp_path / "ev" / "tint" / "maps" / name))
    assert saved.shape == TINY_SIZE
    np.testing.assert_array_equal(saved, _eight_bit(recomputed[0]))  # same features, same code: the same bytes

    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(Path(store.dataset_attrs(DATASET)["root"]) / fakes.loc[rows[0], "image_path"], images / name)
    table = predict(str(checkpoint), [str(images)], str(tmp_path / "pred"), progress=False)
    predicted = np.asarray(Image.open(tmp_path / "pred" / table["map"].iloc[0])) / 255.0
    assert predicted.shape == TINY_SIZE
    np.testing.assert_allclose(predicted, expected[0], atol=2.5 / 255)  # fp16 cache vs encoded now, 8-bit PNG


def _one_model_results(grid_dir) -> pd.DataFrame:
    rows = []
    for split in ("valid", "test"):
        for metric, value, scale in (("iou", 40.0, "percent"), ("ap", 0.5, "unit")):
            rows.append(dict(metric=metric, value=value, scale=scale, threshold_rule="pred>0.5", aggregation="mean",
                             decoder="linear", layer="layer1", source=SOURCE, backbone=TINY_BACKBONE,
                             train_set="tint", test_set="tint", split=split, run_id="cell", random_weights=True,
                             dataset=DATASET, collapsed=False, collapse_reason="", view="clean"))
    path = grid_dir / "results.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_report_overlays_are_recomputed_when_no_maps_were_saved(grid_dir, tmp_path):
    page = write_report(_one_model_results(grid_dir), tmp_path / "report", max_overlays=2)
    assert not list((grid_dir / "runs" / "cell").glob("eval/*/maps"))  # nothing saved: the maps must be recomputed
    with Image.open(page.parent / "overlays.png") as panel:
        width, height = panel.size
    assert height >= 2 * 200, "a one-line 'No overlay' note instead of two rows of image | truth | prediction"


def test_freshly_encoded_fused_layers_reach_the_decoder_as_cached_ones_do(tiny_store):
    """predict fuses layers it has just encoded; the store's reader fuses cached ones: same tensor, no class token."""
    from declip.pipeline.evaluate.maps import decoder_inputs

    store = FeatureStore(str(tiny_store), mode="r")
    rows = np.array([0, 5, 9])
    parts = [FeatureSource(store, f"{TINY_BACKBONE}/{layer}", DATASET).get(rows) for layer in ("layer2", "layer0")]
    assert parts[0][1] is not None  # the single layers carry class tokens
    cached, cached_cls = FeatureSource(store, f"{TINY_BACKBONE}/layer2+{TINY_BACKBONE}/layer0", DATASET).get(rows)
    fused, cls = decoder_inputs(parts, fused=True)
    assert cls is None and cached_cls is None
    torch.testing.assert_close(fused, cached, rtol=0, atol=0)
    assert fused.shape[1] == parts[0][0].shape[1] + parts[1][0].shape[1]
    single, single_cls = decoder_inputs(parts[:1], fused=False)
    assert single is parts[0][0] and single_cls is parts[0][1]
