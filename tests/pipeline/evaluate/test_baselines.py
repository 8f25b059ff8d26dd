"""The feature-free baselines against the dataset's own mask files (PIL, not the store's mask reader)."""
import numpy as np
import pytest
from PIL import Image

from declip.pipeline.evaluate.baselines import baseline_rows


def test_constant_baselines_score_each_image_against_its_own_mask(tiny_store, tiny_dolos):
    kept = {}

    def keep(name, train_set, test_set, acc):
        kept[(name, train_set, test_set)] = acc.per_image()

    table = baseline_rows(str(tiny_store), "dolos-celebahq", ["tint"], ["tint", "bright"], metrics=["iou"],
                          keep=keep)
    assert set(kept) == {(n, "tint", t) for n in ("all-zero", "all-fake", "mask-prior") for t in ("tint", "bright")}
    for test_set in ("tint", "bright"):
        fake = kept[("all-fake", "tint", test_set)].set_index("image_id")
        fakes = fake[fake["label"] == 1]
        assert len(fakes) == 4 and (fake["label"] == 0).sum() == 2  # the test fakes of one generator, every real
        for image_id, row in fakes.iterrows():
            mask_file = tiny_dolos / image_id.replace("/images/", "/masks/")
            gt = np.asarray(Image.open(mask_file)) < 128  # black = fake (Dolos)
            assert row["iou"] == pytest.approx(100.0 * gt.mean(), abs=1e-4), image_id  # all-fake IoU = mask area
        zero = kept[("all-zero", "tint", test_set)]
        assert (zero.loc[zero["label"] == 1, "iou"].abs() < 1e-4).all()
        rows = table[(table["test_set"] == test_set) & (table["metric"] == "iou")].set_index("decoder")["value"]
        assert rows["baseline:all-fake"] == pytest.approx(fakes["iou"].mean())
