"""Issue 19 item 8: an unknown flag gets "did you mean" (argparse said "unrecognized arguments", or that a required
flag was missing when it was typed misspelt); DeCLIP's and IMDLBenCo's spellings reach the canonical options."""
import pytest

from declip.cli.app import build_parser, main
from declip.cli.suggest import unknown_options


@pytest.fixture(scope="module")
def parser():
    return build_parser()


def test_unknown_flags_get_the_closest_spellings_of_their_command(parser):
    argv = ["train", "--sotre", "s", "--dataset", "d", "--train-sets", "a", "--out", "o", "--max-epcohs", "3",
            "--lr=1e-3", "--see", "8", "--", "--not-an-option"]
    found = dict(unknown_options(parser, argv))
    assert set(found) == {"--sotre", "--max-epcohs"}  # --see: a unique prefix argparse accepts; after --: values
    assert found["--sotre"][0] == "--store" and found["--max-epcohs"][0] == "--max-epochs"
    assert dict(unknown_options(parser, ["data", "scan", "ROOT", "--out", "m", "--layuot", "dolos"])) == {
        "--layuot": ["--layout"]}
    assert unknown_options(parser, ["grid", "--decoder_type", "linear", "--epochs", "2", "--data_path", "m"]) == []


def test_the_cli_says_did_you_mean_and_exits_2(capsys):
    with pytest.raises(SystemExit) as code:
        main(["evaluate", "--store", "s", "--dataset", "d", "--ckpt", "c", "--test-sets", "a", "--out", "o",
              "--save-map"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code.value.code == 2
    assert err.startswith("declip evaluate: error: unknown option --save-map; did you mean --save-maps")
    with pytest.raises(SystemExit):
        main(["train", "--zzzz"])
    assert "unknown option --zzzz (`declip train --help` lists them)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, dest, value", [
    (["train", "--store", "s", "--dataset", "d", "--train-sets", "a", "--output_dir", "o", "--epochs", "7"],
     ("out", "max_epochs"), ("o", 7)),
    (["grid", "--epochs", "3", "--output_dir", "g", "--data_path", "m.parquet"],
     ("max_epochs", "out", "manifest"), (3, "g", "m.parquet")),
    (["extract", "--data_path", "m.parquet", "--store", "s"], ("manifest",), ("m.parquet",)),
    (["evaluate", "--store", "s", "--dataset", "d", "--ckpt", "c", "--test-sets", "a", "--output_dir", "r",
      "--output_save_path", "maps"], ("out", "maps_dir"), ("r", "maps")),
    (["predict", "x.png", "--ckpt", "c", "--output_dir", "p"], ("out",), ("p",)),
])
def test_benco_and_declip_spellings_take_their_values(parser, argv, dest, value):
    """IMDLBenCo's --epochs, --output_dir, --data_path where the option exists; DeCLIP's --output_save_path DIR
    takes its folder (it was an alias of a flag that takes none)."""
    args = parser.parse_args(argv)
    assert tuple(getattr(args, d) for d in dest) == value
