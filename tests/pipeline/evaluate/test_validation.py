"""Per-epoch validation (matrix upsampling, as in training) against evaluation of the same decoder (the decoder's
own ``F.interpolate``, DeCLIP's call): the same IoU up to float rounding."""
import numpy as np
import pytest

from declip.core.keys import SourceKey
from declip.decoders import build_decoder
from declip.pipeline.data.cached_splits import CachedSplits, select_rows
from declip.pipeline.evaluate.evaluation import score_rows, validate_many
from tests.fixtures import TINY_BACKBONE


@pytest.mark.parametrize("name", ["linear", "attention"])
def test_validation_iou_is_evaluations_iou(tiny_store, name):
    source = SourceKey.single(TINY_BACKBONE, "layer1")
    data = CachedSplits.open(str(tiny_store), "dolos-celebahq", [source], None)
    src = data.sources[source]
    rows = select_rows(data.samples, data.valid, ("tint", "bright"), "valid", "localization")
    decoders = [build_decoder(name, in_channels=src.channels, grid=src.grid, family=src.family, layer="layer1",
                              width=0.25, seed=seed) for seed in (0, 1)]
    scores = validate_many([(d, source) for d in decoders], data, rows, "localization", "cpu", batch_size=4)
    for decoder, score in zip(decoders, scores):
        want = score_rows(decoder, data, source, rows, metrics=["iou"], batch_size=4)
        iou = float(want.summary().set_index("metric").loc["iou", "value"])
        assert score["iou"] == pytest.approx(iou, abs=1e-3)
    assert len(rows) == 8 and not np.isclose(scores[0]["iou"], scores[1]["iou"])  # two different heads
