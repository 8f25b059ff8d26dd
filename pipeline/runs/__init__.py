"""Jobs on the cache: extraction, training, evaluation, baselines, grids, prediction, reports."""
