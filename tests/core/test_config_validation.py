"""Every config is checked when built: a bad number fails at once with one message naming the field (issue 10.4)."""
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from declip.core.errors import DeclipError
from declip.pipeline.evaluate.evaluation import EvalConfig
from declip.pipeline.extract.extraction import ExtractConfig
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.train.config import TrainConfig
from declip.pipeline.train.options import TrainOptions

from tests.fixtures import REPO  # noqa: E402
BASE = dict(store="s.zarr", source="B@random-0/layer1", dataset="d", train_sets=("a",), out="o")

anything = st.one_of(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
                     st.booleans(), st.none())


def _ok_whole(v, least):
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(["batch_size", "max_epochs", "patience", "seed"]), value=anything)
def test_train_whole_number_fields(field, value):
    least = 1 if field in ("batch_size", "max_epochs") else 0
    if _ok_whole(value, least):
        assert TrainConfig.from_json({**BASE, field: value}).to_json()[field] == value
    else:
        with pytest.raises(DeclipError, match=rf"{field} \(--{field.replace('_', '-')}\) must be a whole number"):
            TrainConfig.from_json({**BASE, field: value})


@settings(max_examples=100, deadline=None)
@given(value=anything)
def test_learning_rate_is_a_positive_finite_number(value):
    good = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
        and abs(value) != float("inf") and value > 0
    if good:
        TrainConfig.from_json({**BASE, "lr": value})
    else:
        with pytest.raises(DeclipError, match=r"lr \(--lr\) must be a number > 0"):
            TrainConfig.from_json({**BASE, "lr": value})


def test_every_bad_field_in_one_message():
    with pytest.raises(DeclipError) as err:
        TrainConfig.from_json({**BASE, "max_epochs": "three", "batch_size": 0, "mode": "both"})
    text = str(err.value)
    assert "max_epochs" in text and "'three'" in text and "batch_size" in text and "mode" in text
    assert text.count("\n") == 0


@settings(max_examples=60, deadline=None)
@given(value=anything)
def test_eval_extract_and_grid_batch_sizes(value):
    builders = [lambda v: EvalConfig(store="s", checkpoint="c", dataset="d", test_subsets=("a",), out="o",
                                     batch_size=v),
                lambda v: ExtractConfig(manifest="m", store="s", backbone="b", batch_size=v),
                lambda v: GridConfig.from_dict(dict(store="s", dataset="d", out="o", backbones=("b",), layers=("l",),
                                                    train_sets=("a",), test_sets=("a",), batch_size=v)),
                lambda v: TrainOptions(batch_size=v)]
    for build in builders:
        if _ok_whole(value, 1):
            build(value)
        else:
            with pytest.raises(DeclipError, match="batch_size"):
                build(value)


def test_grid_toml_names_the_file(tmp_path):
    toml = tmp_path / "g.toml"
    toml.write_text('store="s"\ndataset="d"\nout="o"\nbackbones=["b"]\nlayers=["l"]\ntrain_sets=["a"]\n'
                    'test_sets=["a"]\nmax_epochs="three"\nseeds=[0, -1]\n')
    with pytest.raises(DeclipError, match=r"g\.toml: invalid grid settings: max_epochs .*got 'three'; seeds"):
        GridConfig.from_toml(str(toml))


@pytest.mark.slow
@pytest.mark.parametrize("flag,value", [("--max-epochs", "0"), ("--max-epochs", "-3"), ("--batch-size", "-1")])
def test_cli_refuses_bad_numbers_before_training(flag, value, tmp_path):
    out = subprocess.run([sys.executable, "-m", "declip.cli", "train", "--store", str(tmp_path / "none.zarr"),
                          "--dataset", "d", "--source", "B@random-0/layer1", "--decoder", "linear", "--train", "a",
                          "--out", str(tmp_path / "o"), flag, value, "--no-flow"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "must be a whole number ≥ 1" in out.stderr, out.stderr
    assert not (tmp_path / "o").exists()
