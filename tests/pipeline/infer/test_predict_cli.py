"""declip predict: maps, overlays and scores for a folder with a broken file; agrees with the cached features."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.fixtures import TINY_BACKBONE, TINY_SIZE, train_config
from declip.core.errors import DeclipError
from declip.pipeline.infer.predict import predict
from declip.pipeline.train.training import train

from tests.fixtures import REPO  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tiny_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(train_config(tiny_store, out, batch_size=8, max_epochs=1))
    return out / "best"


def test_predict_folder_with_broken_file_matches_cached_features(checkpoint, tiny_store, tiny_dolos, tmp_path):
    from declip.store.feature_store import FeatureStore
    from declip.store.readers import FeatureSource
    from declip.decoders import load_decoder

    images = tmp_path / "in"
    (images / "nested").mkdir(parents=True)
    src = sorted((tiny_dolos / "celebahq" / "fake" / "tint" / "images" / "test").glob("*.png"))[:3]
    for p in src[:2]:
        shutil.copy(p, images / p.name)
    shutil.copy(src[2], images / "nested" / src[2].name)
    (images / "broken.png").write_bytes(b"not an image at all")
    table = predict(str(checkpoint), [str(images)], str(tmp_path / "out"), progress=False)
    ok = table[table["status"] == "ok"]
    assert len(ok) == 3 and ok["image_score"].between(0, 1).all()
    bad = table[table["status"] != "ok"]
    assert bad["path"].str.endswith("broken.png").all() and len(bad) == 1 and bad["reason"].iloc[0]
    for rec in ok.itertuples():
        height, width = TINY_SIZE  # PIL sizes are (width, height)
        assert Image.open(tmp_path / "out" / rec.map).size == (width, height)
        assert (rec.width, rec.height) == (width, height)
        saved = np.asarray(Image.open(tmp_path / "out" / rec.map)) / 255.0  # the map, 8-bit
        assert rec.image_score == pytest.approx(saved.mean(), abs=1 / 255)  # DeCLIP: mean of the pixel probabilities
        assert rec.max_prob == pytest.approx(saved.max(), abs=1 / 255)
        assert rec.fake_fraction == pytest.approx((saved > 0.5).mean(), abs=0.02)
        assert (tmp_path / "out" / "overlays" / Path(rec.map).name).exists()
    assert (tmp_path / "out" / "scores.csv").exists()

    store = FeatureStore(str(tiny_store), mode="r")
    samples = store.samples("dolos-celebahq")
    row = int(np.flatnonzero(samples["image_path"].str.endswith("/" + src[0].name).to_numpy())[0])
    feats, cls = FeatureSource(store, f"{TINY_BACKBONE}/layer1", "dolos-celebahq").get(np.array([row]))
    decoder, _ = load_decoder(checkpoint)
    with torch.no_grad():
        cached = torch.sigmoid(decoder(feats.float(), cls.float()))[0, 0].numpy()
    from declip.pipeline.metrics.resize import to_native

    cached = to_native(cached, TINY_SIZE)
    predicted = np.asarray(Image.open(tmp_path / "out" / "maps" / f"{src[0].stem}.png")) / 255.0
    np.testing.assert_allclose(predicted, cached, atol=2.5 / 255)  # fp16 cache + 8-bit PNG

    globbed = predict(str(checkpoint), [str(images / "*.png")], str(tmp_path / "g"), progress=False)
    assert len(globbed) == 3
    with pytest.raises(DeclipError, match="no such file"):
        predict(str(checkpoint), [str(tmp_path / "missing.jpg")], str(tmp_path / "x"), progress=False)


@pytest.mark.slow
def test_predict_cli_reports_skipped_file(checkpoint, tiny_dolos, tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(next((tiny_dolos / "celebahq" / "real" / "test").glob("*.png")), images / "a.png")
    (images / "zero.png").write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "declip.cli", "predict", str(images), "--ckpt", str(checkpoint),
                           "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout and "zero.png" in proc.stdout
    assert len(pd.read_csv(tmp_path / "out" / "scores.csv")) == 2
    # issue 19 item 9: the random-weight features are said, and sizes are whole pixels beside a skipped file
    assert f"NOTE: {TINY_BACKBONE}/layer1: this checkpoint was trained on" in proc.stdout and "RANDOM" in proc.stdout
    header, *lines = (tmp_path / "out" / "scores.csv").read_text().splitlines()
    columns = header.split(",")
    ok = next(line.split(",") for line in lines if ",ok," in line)
    assert (ok[columns.index("width")], ok[columns.index("height")]) == (str(TINY_SIZE[1]), str(TINY_SIZE[0]))


def test_same_stem_different_suffix_get_separate_maps(tmp_path):
    from declip.pipeline.infer.predict import out_names

    paths = [tmp_path / "x.jpg", tmp_path / "x.png", tmp_path / "y.png", tmp_path / "sub" / "x.png"]
    names = out_names(paths, tmp_path.resolve())
    assert names == {paths[0]: "x.jpg.png", paths[1]: "x.png.png", paths[2]: "y.png", paths[3]: "sub__x.png"}
    assert len(set(names.values())) == len(paths)
