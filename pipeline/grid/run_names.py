"""Readable names and tags for what a run does: Prefect flow-run names, Prefect tags, grid cell names.

A run is identified by its config hash (``TrainConfig.identity``); these names are for people scanning the Prefect
UI or a ``runs/`` folder. They are derived from configs only (no Prefect import), so the CLI, the flows and the
grid's ``runs/index.csv`` name things the same way.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from declip.core.errors import DeclipError
from declip.core.keys import backbone_arch

_UNSAFE = re.compile(r"[^A-Za-z0-9@.+_=-]+")


def slug(text: str, limit: int = 60) -> str:
    """``text`` with path separators and spaces turned into ``-``, safe as a file name, at most ``limit`` chars."""
    out = _UNSAFE.sub("-", text.replace("/", "_")).strip("-")
    return out if len(out) <= limit else out[: limit - 1] + "~"


def arch(backbone: str) -> str:
    """``ViT-L-14@openai`` -> ``ViT-L-14``; the part a person recognises. Text that is no backbone key is shown as
    written: a name must never stop a run (the run itself reports a bad key)."""
    try:
        return backbone_arch(backbone)
    except DeclipError:
        return str(backbone)


def _joined(values: Sequence[str], limit: int = 3) -> str:
    values = list(dict.fromkeys(values))
    return "+".join(values) if len(values) <= limit else f"{len(values)}-sets"


def source_parts(source) -> list[tuple[str, str]]:
    """A feature source (``B/L``, ``B1/L1+B2/L2``, with or without a ``[view]``) -> [(backbone, layer), ...]."""
    from declip.core.keys import SourceKey

    return [(str(part.backbone), part.layer) for part in SourceKey.parse(source).parts]


def _view(source) -> str:
    from declip.core.keys import CLEAN_VIEW, SourceKey

    view = SourceKey.parse(source).view
    return "" if view == CLEAN_VIEW else f"[{view}]"


def tags(*, backbones: Iterable[str] = (), layers: Iterable[str] = (), decoders: Iterable[str] = (),
         datasets: Iterable[str | None] = ()) -> list[str]:
    """Prefect tags ``backbone:…``, ``layer:…``, ``decoder:…``, ``dataset:…`` (filterable in the UI)."""
    out = []
    for kind, values in (("backbone", backbones), ("layer", layers), ("decoder", decoders), ("dataset", datasets)):
        out += [f"{kind}:{v}" for v in dict.fromkeys(values) if v]
    return out


def grid_run_name(cfg: dict) -> str:
    """``grid-<dataset>-<arch>-<layers>x<decoders>[+<extra sources>]``, e.g. ``grid-dolos-demo-demo-vit-small-2x2+srm``:
    the extra sources (the SRM control, ...) are named by their architecture, as backbones are."""
    archs = [arch(b) for b in cfg.get("backbones", ())] or (["fused"] if cfg.get("fused") else [])
    n_sources = len(cfg.get("layers", ())) + len(cfg.get("fused", ()))
    extra = [arch(b) for s in cfg.get("extra_sources", ()) for b, _ in source_parts(s)]
    if not archs:  # only extra sources (e.g. the SRM control alone): they are the grid
        archs, n_sources, extra = extra, len(cfg.get("extra_sources", ())), []
    more = f"+{_joined(extra)}" if extra else ""
    return slug(f"grid-{cfg['dataset']}-{_joined(archs)}-{n_sources}x{len(cfg.get('decoders', ()))}{more}", 100)


def grid_tags(cfg: dict) -> list[str]:
    pairs = [p for b in cfg.get("backbones", ()) for p in [(b, layer) for layer in cfg.get("layers", ())]]
    pairs += [p for s in (*cfg.get("fused", ()), *cfg.get("extra_sources", ())) for p in source_parts(s)]
    return tags(backbones=[b for b, _ in pairs], layers=[layer for _, layer in pairs],
                decoders=cfg.get("decoders", ()), datasets=[cfg.get("dataset")])


def _dataset_of(cfg: dict) -> str:
    return cfg.get("dataset") or manifest_dataset(cfg.get("manifest")) or Path(cfg.get("manifest") or "data").stem


def manifest_dataset(manifest: str | None) -> str | None:
    """The one dataset name a manifest holds (what extraction will call it), or None."""
    try:
        import pandas as pd

        names = pd.read_parquet(manifest, columns=["dataset"])["dataset"].unique()
    except Exception:  # noqa: BLE001 - only a name; extraction reports a bad manifest properly
        return None
    return str(names[0]) if len(names) == 1 else None


def extract_run_name(cfg: dict, jobs: Sequence[dict] | None = None) -> str:
    """``extract-<arch>-<dataset>``, e.g. ``extract-ViT-L-14-dolos-celebahq``."""
    backbones = [j["backbone"] for j in jobs] if jobs else [cfg["backbone"]]
    return slug(f"extract-{_joined([arch(b) for b in backbones])}-{_dataset_of(cfg)}", 100)


def extract_tags(cfg: dict, jobs: Sequence[dict] | None = None) -> list[str]:
    jobs = list(jobs or [{"backbone": cfg["backbone"], "layers": cfg.get("layers", "all")}])
    layers = [layer for j in jobs for layer in str(j.get("layers") or "all").split(",")]
    return tags(backbones=[j["backbone"] for j in jobs], layers=layers, datasets=[_dataset_of(cfg)])


def train_run_name(cfgs: Sequence[dict]) -> str:
    """``train-<decoder>-<layer>-<train sets>``; several heads: ``train-<n>heads-<train sets>``."""
    first = cfgs[0]
    sets = _joined(first["train_subsets"])
    if len(cfgs) == 1:
        layers = "+".join(layer for _, layer in source_parts(first["source"]))
        return slug(f"train-{first['decoder']}-{layers}-{sets}", 100)
    return slug(f"train-{len(cfgs)}heads-{sets}", 100)


def train_tags(cfgs: Sequence[dict]) -> list[str]:
    pairs = [p for c in cfgs for p in source_parts(c["source"])]
    return tags(backbones=[b for b, _ in pairs], layers=[layer for _, layer in pairs],
                decoders=[c["decoder"] for c in cfgs], datasets=[cfgs[0]["dataset"]])


def evaluate_run_name(cfg: dict) -> str:
    """``evaluate-<run>-on-<test sets>``; ``<run>`` is the checkpoint's run folder (``runs/lama/best`` -> lama)."""
    ckpt = Path(cfg["checkpoint"])
    run = ckpt.parent.name if ckpt.name in ("best", "last") else ckpt.name
    return slug(f"evaluate-{run}-on-{_joined(cfg['test_subsets'])}", 100)


def checkpoint_config(checkpoint: str | None) -> dict:
    """A decoder directory's ``config.json`` (source, decoder name, ...), or {} when it cannot be read: names only."""
    import json

    try:
        return json.loads((Path(checkpoint) / "config.json").read_text())
    except (OSError, TypeError, ValueError):
        return {}


def evaluate_tags(cfg: dict) -> list[str]:
    """The dataset, and the backbone(s), layer(s) and decoder evaluated: the source given, else the checkpoint's."""
    saved = checkpoint_config(cfg.get("checkpoint"))
    source = cfg.get("source") or saved.get("source")
    try:
        pairs = source_parts(source) if source and source != "declip" else []
    except DeclipError:
        pairs = []
    return tags(backbones=[b for b, _ in pairs], layers=[layer for _, layer in pairs],
                decoders=[saved.get("name")], datasets=[cfg.get("dataset")])


def cell_name(source: str, decoder: str, train_sets: Sequence[str], seed: int, run_id: str) -> str:
    """A grid cell's readable name, unique by the hash suffix: ``ViT-L-14_layer20_conv-20_lama_s0-3fa2b1``."""
    layers = "+".join(f"{arch(b)}_{layer}" for b, layer in source_parts(source)) + _view(source)
    return slug(f"{layers}_{decoder}_{'+'.join(train_sets)}_s{seed}", 90) + f"-{run_id[:6]}"


def grid_artifact_key(cfg: dict) -> str:
    """The Prefect artifact key of a grid's IoU table: one per grid folder (two grids used to share ``grid-iou`` and
    overwrite each other's table), in Prefect's alphabet (lowercase letters, digits, dashes)."""
    import hashlib

    name = re.sub(r"[^a-z0-9]+", "-", str(cfg.get("dataset", "grid")).lower()).strip("-")[:40]
    where = hashlib.sha256(str(cfg.get("out", "")).encode()).hexdigest()[:8]
    return f"grid-iou-{name}-{where}" if name else f"grid-iou-{where}"
