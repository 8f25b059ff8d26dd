"""Finding your data: `data scan` names the dataset and generators later commands take, `store ls`/`store info`
show each dataset's subsets and splits, and a wrong subset name gets an error listing the real ones."""
from declip.cli.app import main
from tests.fixtures import TINY_BACKBONE


def test_data_scan_prints_the_dataset_name_and_generators(tiny_dolos, tmp_path, capsys):
    out = tmp_path / "m.parquet"
    assert main(["data", "scan", "--layout", "dolos", str(tiny_dolos), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "dataset: dolos-celebahq" in text and "--dataset dolos-celebahq" in text
    assert "generators: bright, tint" in text
    assert f"next: declip extract --manifest {out}" in text


def test_store_ls_and_info_show_subsets_by_split(tiny_store, capsys):
    assert main(["store", "ls", "--store", str(tiny_store)]) == 0
    text = capsys.readouterr().out
    assert "dataset dolos-celebahq" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.split()[:1] in (["tint"], ["real"])}
    assert rows["tint"] == ["16", "4", "4", "24"] and rows["real"] == ["8", "2", "2", "12"]
    assert f"{TINY_BACKBONE}/layer1/dolos-celebahq" in text
    assert main(["store", "info", "dolos-celebahq", "--store", str(tiny_store)]) == 0
    info = capsys.readouterr().out
    assert info.startswith("dataset dolos-celebahq: 60 images") and "bright" in info


def test_wrong_subset_name_lists_the_real_ones(tiny_store, tmp_path, capsys):
    code = main(["train", "--store", str(tiny_store), "--dataset", "dolos-celebahq", "--source",
                 f"{TINY_BACKBONE}/layer1", "--train-sets", "lama", "--out", str(tmp_path / "r"), "--no-flow",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "['bright', 'real', 'tint']" in err and "declip store ls --store" in err
