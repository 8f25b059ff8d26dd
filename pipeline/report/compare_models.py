"""``declip compare``: is model A different from model B on the same test images of a grid?

A model is a (feature source, decoder) of the grid, or a feature-free baseline (``baseline:all-fake``). For every
(train set, test set) both were evaluated on, A − B is the mean per-image difference of the metric on the same test
images, seeds pooled (each model's per-image mean over its seeds), with a paired bootstrap interval (the draws the
results' intervals use) and Wilcoxon's signed-rank p-value (:func:`declip.pipeline.report.comparisons.compare_tables`);
the p-values of the lines shown are also Holm-adjusted together. The in-domain and out-of-domain lines compare the
models over every such cell at once, each test image counted once (its mean over the cells that test it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from declip.core.errors import DeclipError
from declip.core.keys import BASELINE_MODEL, split_model_ref, source_or_none
from declip.pipeline.metrics.registry import REGISTRY
from declip.pipeline.metrics.resampling import BootstrapOptions
from declip.pipeline.report.comparisons import compare_tables, holm, paired_comparison
from declip.pipeline.report.grid_files import PerImageTables
from declip.pipeline.report.labels import short_source
from declip.pipeline.report.model_intervals import with_domain
from declip.pipeline.report.results_file import results_path
from declip.pipeline.report.selection import clean_rows
from declip.pipeline.report.tables import conform
from declip.pipeline.report.ties import image_values

COLUMNS = ["comparison", "train_set", "test_set", "difference", "ci_low", "ci_high", "p_value", "p_holm",
           "n_images", "seeds_a", "seeds_b"]


def model_names(table: pd.DataFrame) -> list[str]:
    """Every model of the table as ``SOURCE:DECODER`` (baselines as ``baseline:NAME``)."""
    pairs = table[["source", "decoder"]].drop_duplicates().sort_values(["source", "decoder"])
    return [d if str(d).startswith(f"{BASELINE_MODEL}:") else f"{s}:{d}" for s, d in pairs.itertuples(index=False)]


def resolve(table: pd.DataFrame, text: str) -> tuple[str, str]:
    """(source, decoder) of the model ``text`` names: an exact source, its short form (``demo-vit-small/layer4``) or,
    when the grid has one backbone, the layer alone (``layer4``)."""
    source, decoder = split_model_ref(text)
    if source == BASELINE_MODEL:
        if not (table["decoder"] == decoder).any():
            raise DeclipError(f"no baseline {decoder!r} in the results; known: "
                              + ", ".join(n for n in model_names(table) if n.startswith(f"{BASELINE_MODEL}:")))
        return "-", decoder
    rows = table[table["decoder"] == decoder]
    candidates = sorted(set(rows["source"].astype(str)))
    exact = [s for s in candidates if s == source or str(source_or_none(source) or "") == s]
    short = [s for s in candidates if short_source(s) == source]
    layer = [s for s in candidates if (k := source_or_none(s)) is not None and not k.fused and k.layer == source]
    for found in (exact, short, layer):
        if len(found) == 1:
            return found[0], decoder
    names = ", ".join(model_names(table)) or "none"
    why = "names several models" if any(len(f) > 1 for f in (exact, short, layer)) else "is not in the results"
    raise DeclipError(f"model {text!r} {why}; pass one of: {names}")


@dataclass(frozen=True)
class Comparison:
    a: tuple[str, str]
    b: tuple[str, str]
    metric: str
    split: str
    lines: pd.DataFrame  # COLUMNS: one row per (train set, test set), then in-domain and out-of-domain

    def text(self) -> str:
        scale = "IoU points" if self.metric in ("iou", "iou_empty0") else self.metric
        head = (f"A = {_name(self.a)}, B = {_name(self.b)}: {self.split} {self.metric}, A − B ({scale}) with its 95 % "
                "paired bootstrap interval, Wilcoxon signed-rank p (Holm over the lines), images where both are "
                "defined; seeds pooled")
        out = [head]
        for rec in self.lines.to_dict("records"):
            where = rec["comparison"] if rec["comparison"] != "cell" else \
                f"train {rec['train_set']} → test {rec['test_set']}"
            if not np.isfinite(rec["difference"]):
                out.append(f"  {where:<34} —  (no image where both are defined)")
                continue
            verdict = "significant" if rec["p_holm"] < 0.05 else "not significant"
            out.append(f"  {where:<34} {rec['difference']:+8.2f} [{rec['ci_low']:+.2f}, {rec['ci_high']:+.2f}]  "
                       f"p = {rec['p_value']:.3g} (Holm {rec['p_holm']:.3g}, {verdict})  n = {rec['n_images']}"
                       f"  seeds {rec['seeds_a']} vs {rec['seeds_b']}")
        return "\n".join(out)


def _name(model: tuple[str, str]) -> str:
    return model[1] if model[0] == "-" else f"{model[1]} @ {short_source(model[0])}"


def compare_models(results: str | Path, a: str, b: str, metric: str = "iou", split: str = "test",
                   test_sets: list[str] | None = None, options: BootstrapOptions = BootstrapOptions()) -> Comparison:
    """A − B per (train set, test set) both models were evaluated on, and in-domain / out-of-domain overall."""
    results = results_path(results)
    if not results.exists():
        raise DeclipError(f"{results} not found; pass the folder of a grid (`declip grid` writes results.parquet)")
    if metric in REGISTRY and REGISTRY[metric].level != "image-pixel":
        raise DeclipError(f"{metric!r} is a {REGISTRY[metric].level} metric: paired per-image comparisons need a "
                          "per-image metric (e.g. iou, ap, f1_fixed); its per-model intervals are in results.csv")
    table = clean_rows(conform(pd.read_parquet(results)))
    table = table[(table["metric"] == metric) & (table["split"] == split)]
    if table.empty:
        raise DeclipError(f"{results} has no {split}-split {metric!r} rows")
    model_a, model_b = resolve(table, a), resolve(table, b)
    load = PerImageTables(results.parent)
    rows_a = table[(table["source"] == model_a[0]) & (table["decoder"] == model_a[1])]
    rows_b = table[(table["source"] == model_b[0]) & (table["decoder"] == model_b[1])]
    if test_sets:
        rows_a, rows_b = rows_a[rows_a["test_set"].isin(test_sets)], rows_b[rows_b["test_set"].isin(test_sets)]
    lines = []
    cells = sorted(set(zip(rows_a["train_set"], rows_a["test_set"])) & set(zip(rows_b["train_set"], rows_b["test_set"])))
    if not cells:
        raise DeclipError(f"{_name(model_a)} and {_name(model_b)} share no (train set, test set) on {split}")
    for train_set, test_set in cells:
        fa, fb = (_frames(r[(r["train_set"] == train_set) & (r["test_set"] == test_set)], load) for r in (rows_a, rows_b))
        cmp = compare_tables(fa, fb, metric, options)
        lines.append(_line("cell", train_set, test_set, cmp, len(fa), len(fb)))  # one table per seed
    both = with_domain(pd.concat([rows_a, rows_b]))
    both = both[[(t, s) in cells for t, s in zip(both["train_set"], both["test_set"])]]
    for domain in ("in-domain", "out-of-domain"):
        part = both[both["domain"] == domain]
        if part[["train_set", "test_set"]].drop_duplicates().shape[0] > 1:
            values = image_values(part, load, metric)
            cmp = paired_comparison(values[model_a], values[model_b], options)
            lines.append(_line(f"{domain} ({part['test_set'].nunique()} test sets)", "", "", cmp,
                               _seeds(part, model_a), _seeds(part, model_b)))
    frame = pd.DataFrame(lines, columns=COLUMNS)
    frame["p_holm"] = holm(frame["p_value"].to_numpy(dtype=float))
    return Comparison(model_a, model_b, metric, split, frame)


def _seeds(rows: pd.DataFrame, model: tuple[str, str]) -> int:
    return int(rows[(rows["source"] == model[0]) & (rows["decoder"] == model[1])]["seed"].nunique())


def _frames(rows: pd.DataFrame, load: PerImageTables) -> list[pd.DataFrame]:
    frames = [load(r) for r in rows.to_dict("records")]
    if any(f is None for f in frames):
        raise DeclipError("a per-image table of these evaluations is missing (runs/<id>/eval*/<test set>/"
                          "per_image.parquet, or baselines/... for a baseline); re-run `declip grid` on this folder")
    return frames


def _line(what: str, train_set: str, test_set: str, cmp, seeds_a: int, seeds_b: int) -> dict:
    return {"comparison": what, "train_set": train_set, "test_set": test_set, "difference": float(cmp.difference[0]),
            "ci_low": float(cmp.ci_low[0]), "ci_high": float(cmp.ci_high[0]), "p_value": float(cmp.p_value[0]),
            "p_holm": float("nan"), "n_images": int(cmp.n_images[0]), "seeds_a": int(seeds_a),
            "seeds_b": int(seeds_b)}
