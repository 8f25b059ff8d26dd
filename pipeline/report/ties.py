"""Which models the chosen best is not significantly better than ("tied with best"), on the same test images.

A model here is a (feature source, decoder) pair evaluated on every train × test cell, the quantity the selection
ranks (mean IoU over all cells). Two models are compared image by image: for each test image, each model's value
is its mean over the cells that test that image (one per training generator) and over its seeds, so every test image
counts once however many generators were trained. The paired differences of every model against the best then go
through :func:`declip.pipeline.report.comparisons.tied_with_best`: a paired bootstrap interval of the mean
difference, Wilcoxon's signed-rank p-value, Holm's correction over the models compared; "tied with best" where the
adjusted p is not below 0.05.

On the validation split the same test decides whether the choice is a choice at all: when other eligible models are
tied with the highest one there, the report says that validation cannot tell them apart instead of crowning one.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from declip.pipeline.metrics.registry import REGISTRY
from declip.pipeline.metrics.resampling import BootstrapOptions
from declip.pipeline.report.comparisons import ALPHA, tied_with_best
from declip.pipeline.report.interval_cells import Aligner, ImageSet
from declip.pipeline.report.intervals import PerImageLoader

MODEL = ["source", "decoder"]


def model_name(source: str, decoder: str) -> str:
    return f"{decoder} @ {source}"


def image_values(rows: pd.DataFrame, load: PerImageLoader, metric: str) -> dict[tuple[str, str], np.ndarray]:
    """Per model (source, decoder), one value per fake test image of every test set in ``rows`` (aligned across
    models on (test set, image id)): the mean of the model's evaluations of that image over cells and seeds; nan
    where a model has no evaluation of an image. Evaluations without a per-image table are left out."""
    rows = rows.reset_index(drop=True)
    frames = {i: load(r) for i, r in zip(rows.index, rows.to_dict("records"))}
    tests = sorted(set(rows["test_set"].astype(str)))
    aligners = {}
    for t in tests:
        loaded = [frames[i] for i in rows.index[rows["test_set"].astype(str) == t] if frames[i] is not None]
        if loaded:
            images = ImageSet.of(loaded)
            aligners[t] = Aligner(images.image_ids[images.fake])
    out = {}
    for key, part in rows.groupby(MODEL, sort=True):
        pieces = []
        for t, align in aligners.items():
            got = [align.column(frames[i], metric) for i in part.index[part["test_set"].astype(str) == t]
                   if frames[i] is not None]
            with warnings.catch_warnings():  # images no evaluation defines stay nan, as intended
                warnings.simplefilter("ignore", RuntimeWarning)
                pieces.append(np.nanmean(np.stack(got), axis=0) if got else np.full(len(align.ids), np.nan))
        out[(str(key[0]), str(key[1]))] = np.concatenate(pieces) if pieces else np.zeros(0)
    return out


def ties_with(rows: pd.DataFrame, best: tuple[str, str], load: PerImageLoader, metric: str = "iou",
              models: Sequence[tuple[str, str]] | None = None, options: BootstrapOptions = BootstrapOptions(),
              alpha: float = ALPHA) -> pd.DataFrame:
    """Every model of ``rows`` (or of ``models``) against ``best`` on the same images: source, decoder, difference
    (model − best) with its paired interval, p_value, p_holm (over the models compared) and status ('best', 'tied
    with best', 'below best', 'above best', 'not compared'), n_images where both are defined."""
    values = image_values(rows, load, metric)
    wanted = [m for m in (models if models is not None else values) if m in values]
    columns = ["source", "decoder", "difference", "ci_low", "ci_high", "p_value", "p_holm", "status", "n_images"]
    if best not in values or not np.isfinite(values[best]).any():
        return pd.DataFrame([{"source": s, "decoder": d, "status": "not compared"} for s, d in wanted],
                            columns=columns)
    names = {model_name(*m): m for m in dict.fromkeys([best, *wanted])}
    higher = REGISTRY[metric].higher_is_better if metric in REGISTRY else True
    table = tied_with_best({n: values[m] for n, m in names.items()}, model_name(*best), options, alpha,
                           higher_is_better=higher)
    defined = {n: np.isfinite(values[m]) for n, m in names.items()}
    table["n_images"] = [int((defined[n] & defined[model_name(*best)]).sum()) for n in table["model"]]
    table["source"] = [names[n][0] for n in table["model"]]
    table["decoder"] = [names[n][1] for n in table["model"]]
    return table[columns]


def validation_ties(rows: pd.DataFrame, best: tuple[str, str], eligible: Sequence[tuple[str, str]],
                    load: PerImageLoader, options: BootstrapOptions = BootstrapOptions()) -> list[tuple[str, str]]:
    """The eligible models that validation cannot tell from ``best`` (tied with it on the validation split's IoU)."""
    if len(eligible) < 2:
        return []
    ties = ties_with(rows, best, load, "iou", eligible, options)
    tied = ties[ties["status"] == "tied with best"]
    return [(str(s), str(d)) for s, d in zip(tied["source"], tied["decoder"])]
