"""Mutants of issue 21's oracle repairs (areas ``collapse``, ``srm``, ``decoders``, ``augmentation``).

Kept in their own file, like interval_mutants.py; ``mutants.py`` appends them to ``MUTANTS`` as ``Mutant(*fields)``
(id, area, what, file, old, new, tests), so this file imports nothing from it.
"""
from __future__ import annotations


def M(*fields: object) -> tuple:  # noqa: N802 - reads like mutants.py's table
    return fields


COLLAPSE = ("tests/pipeline/metrics/test_collapse.py",)
SRM = ("tests/features/test_srm.py",)
ATTENTION = ("tests/decoders/test_decoders.py",)
SAMPLER = ("tests/pipeline/evaluate/test_view_runs.py::test_sampler_is_seeded_per_epoch_and_row_and_independent_of_"
           "batching",)

CONTROL_MUTANTS: list[tuple] = [
    M("CL1", "collapse", "minimum fake fraction 0.002 -> 0.02", "pipeline/metrics/collapse.py",
      "min_fake_fraction: float = 0.002", "min_fake_fraction: float = 0.02", COLLAPSE),
    M("CL2", "collapse", "maximum fake fraction 0.95 -> 0.99", "pipeline/metrics/collapse.py",
      "max_fake_fraction: float = 0.95", "max_fake_fraction: float = 0.99", COLLAPSE),
    M("CL3", "collapse", "all-fake threshold strict (> instead of >=)", "pipeline/metrics/collapse.py",
      "if fake_fraction >= self.max_fake_fraction:", "if fake_fraction > self.max_fake_fraction:", COLLAPSE),
    M("CL4", "collapse", "AUC band 0.02 -> 0.01", "pipeline/metrics/collapse.py",
      "auc_band: float = 0.02", "auc_band: float = 0.01", COLLAPSE),
    M("CL5", "collapse", "spread threshold 0.01 -> 0.005", "pipeline/metrics/collapse.py",
      "min_image_spread: float = 0.01", "min_image_spread: float = 0.005", COLLAPSE),
    M("CL6", "collapse", "spread as variance instead of standard deviation", "pipeline/metrics/collapse.py",
      "return float(np.sqrt(var).mean())", "return float(var.mean())", COLLAPSE),
    M("CL7", "collapse", "thumbnail sample positions with the map's axes swapped", "pipeline/metrics/collapse.py",
      "return prob[_thumbnail_index(*prob.shape)]", "return prob[_thumbnail_index(*prob.shape[::-1])]", COLLAPSE),
    M("CL8", "collapse", "image scores skipped although an image metric is asked for", "pipeline/metrics/registry.py",
      'self._image = any(REGISTRY[n].level == "image" for n in self.names)', "self._image = False",
      ("tests/pipeline/metrics/test_metrics.py",)),
    M("SR1", "srm", "third-order kernel normaliser 12 -> 8", "features/srm.py",
      "[-1, 2, -2, 2, -1]], dtype=np.float64) / 12.0,", "[-1, 2, -2, 2, -1]], dtype=np.float64) / 8.0,", SRM),
    M("SR2", "srm", "zero-padding instead of reflect", "features/srm.py", 'mode="reflect"', 'mode="constant"', SRM),
    M("SR3", "srm", "residual bins at |r| < 1 instead of 0.5", "features/srm.py", "(q < 0.5).float()",
      "(q < 1.0).float()", SRM),
    M("C8", "decoders", "QuickGELU constant 1.702 -> 1.72", "decoders/attention.py", "torch.sigmoid(1.702 * x)",
      "torch.sigmoid(1.72 * x)", ATTENTION),
    M("C9", "decoders", "attention block without its second LayerNorm", "decoders/attention.py",
      "return x + self.mlp(self.ln_2(x))", "return x + self.mlp(x)", ATTENTION),
    M("AU1", "augmentation", "augmentation copy drawn without the epoch", "pipeline/data/augmentation.py",
      "rng = np.random.default_rng([self.seed, epoch, 0x5EED])", "rng = np.random.default_rng([self.seed, 0x5EED])",
      SAMPLER),
    M("AU2", "augmentation", "augmentation copy drawn per batch position, not per row", "pipeline/data/augmentation.py",
      "return rng.integers(self.n_views, size=self.n_rows)[np.asarray(rows, dtype=np.int64)]",
      "return rng.integers(self.n_views, size=len(rows))", SAMPLER),
    M("AU3", "augmentation", "last cached copy never drawn", "pipeline/data/augmentation.py",
      "return rng.integers(self.n_views, size=self.n_rows)", "return rng.integers(max(1, self.n_views - 1), "
      "size=self.n_rows)", SAMPLER),
]

LOCKS = ("tests/pipeline/extract/test_concurrent_extraction.py::test_lock_is_exclusive_and_breaks_a_dead_holders_lock",
         "tests/pipeline/extract/test_concurrent_extraction.py::test_stale_lock_from_another_host_is_broken_after_its_"
         "heartbeat_stops")
MERGE = ("tests/flows/test_grid_views.py::test_results_merge_keeps_view_rows_apart",
         "tests/pipeline/report/test_results_file.py")
SELECTION = ("tests/pipeline/report/test_report_page.py", "tests/pipeline/report/test_headline.py")

CONTROL_MUTANTS += [
    M("LK1", "locks", "store lock file created without O_EXCL (two holders)", "store/locks.py",
      "fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)",
      "fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o644)", LOCKS),
    M("LK2", "locks", "a dead holder on this host waits for the stale timeout", "store/locks.py",
      "if same_host_dead or age > self.stale_after:", "if age > self.stale_after:", LOCKS),
    M("MK1", "results merge", "results merge key without the view (a view's rows replace the clean ones)",
      "pipeline/report/results_file.py", 'ROW_KEY = ("run_id", "train_set", "test_set", "split", "view", "metric")',
      'ROW_KEY = ("run_id", "train_set", "test_set", "split", "metric")', MERGE),
    M("MK2", "results merge", "merge keeps the old rows over the new ones", "pipeline/grid/results.py",
      "kept = old[~key(old).isin(key(new))]", "kept = old", MERGE),
    M("SE1", "selection", "best model = lowest validation IoU", "pipeline/report/selection.py",
      'ascending=[False, True, True]', 'ascending=[True, True, True]', SELECTION),
    M("SE2", "selection", "best chosen on test when validation exists", "pipeline/report/selection.py",
      'return "valid" if "valid" in splits else "test"', 'return "test"', SELECTION),
]
