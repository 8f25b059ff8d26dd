"""Architecture questions (which family builds ``ViT-L-14``, its layer count) are answered from open_clip's config
files without importing open_clip, and give what open_clip itself gives."""
import subprocess
import sys

import pytest

from tests.fixtures import REPO


@pytest.mark.slow  # a fresh interpreter: this test process has imported open_clip already
def test_asking_what_an_architecture_is_imports_neither_open_clip_nor_torchvision():
    code = ("import sys; from declip.features.families import family_for; "
            "print(family_for('ViT-L-14').name, family_for('RN50').name, family_for('srm').name, "
            "sorted(m for m in ('open_clip', 'torchvision') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip().split(maxsplit=3) == ["vit", "resnet", "srm", "[]"], done.stdout + done.stderr


def test_configs_read_from_disk_equal_open_clips_own(monkeypatch):
    """The oracle is open_clip's own scan of its folder and ours (other tests register folders of their own: the scan
    is run afresh on exactly these two, and the registry restored afterwards)."""
    from pathlib import Path

    import open_clip
    from open_clip import factory

    from declip.features.open_clip import CONFIG_DIR, _configs_on_disk

    monkeypatch.setattr(factory, "_MODEL_CONFIG_PATHS", [Path(open_clip.__file__).parent / "model_configs", CONFIG_DIR])
    monkeypatch.setattr(factory, "_MODEL_CONFIGS", {})
    factory._rescan_model_configs()
    on_disk = _configs_on_disk()
    assert sorted(on_disk) == sorted(open_clip.list_models())
    assert "ViT-L-14" in on_disk and "RN50" in on_disk and "test-vit-tiny" in on_disk
    for name in on_disk:
        assert on_disk[name] == open_clip.get_model_config(name), name


def test_the_disk_path_answers_like_the_open_clip_path(monkeypatch):
    from declip.features import open_clip as oc

    names = ["ViT-L-14", "ViT-B-16-quickgelu", "RN50", "test-vit-tiny", "no-such-arch"]
    with_open_clip = [oc.open_clip_config(n) for n in names]
    monkeypatch.delitem(sys.modules, "open_clip")  # as in a process that never built a model
    assert [oc.open_clip_config(n) for n in names] == with_open_clip
    assert with_open_clip[-1] is None and with_open_clip[1]["vision_cfg"]["layers"] == 12
