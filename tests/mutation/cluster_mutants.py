"""Mutants of issue 22 (areas ``sharding``, ``placement``, ``slurm``, ``object-lock``): realistic slips in the block
ranges of a sharded extraction, the one-GPU-per-task path, the [cluster] table's mapping onto dask-jobqueue, the
worker path check and the lock on object stores.

``mutants.py`` appends them to ``MUTANTS`` as ``Mutant(*fields)`` (id, area, what, file, old, new, tests), so this
file imports nothing from it.
"""
from __future__ import annotations


def M(*fields: object) -> tuple:  # noqa: N802 - reads like mutants.py's table
    return fields


SHARDS = ("tests/pipeline/extract/test_shards.py",)
PLACEMENT = ("tests/flows/test_placement.py",)
CLUSTER = ("tests/pipeline/grid/test_cluster.py",)
OBJECT_LOCK = ("tests/store/test_object_lock.py",)

CLUSTER_MUTANTS: list[tuple] = [
    M("X1", "sharding", "block ranges drop the last block of each range", "pipeline/extract/shards.py",
      "return [todo[lo:hi] for lo, hi in zip(bounds, bounds[1:])]",
      "return [todo[lo:max(lo + 1, hi - 1)] for lo, hi in zip(bounds, bounds[1:])]", SHARDS),
    M("X2", "sharding", "more ranges than blocks (empty tasks)", "pipeline/extract/shards.py",
      "n = min(shards, len(todo))", "n = shards if todo else 0", SHARDS),
    M("X3", "sharding", "a block-range task encodes every pending block, not only its own",
      "pipeline/extract/extraction.py", "_plan_blocks(arrays).items() if block in wanted}",
      "_plan_blocks(arrays).items()}", SHARDS),
    M("X4", "placement", "every task gets the first GPU", "flows/placement.py",
      'yield f"cuda:{index}"', 'yield "cuda:0"', PLACEMENT),
    M("X5", "placement", "GPU resource never requested", "flows/placement.py",
      "    if not enabled:\n        return contextlib.nullcontext()",
      "    if True:\n        return contextlib.nullcontext()", PLACEMENT),
    M("X6", "placement", "device auto on a CPU-only worker asks for CUDA", "flows/placement.py",
      '        yield "cpu"\n        return', '        yield "cuda"\n        return', PLACEMENT),
    M("X7", "slurm", "GPUs per job not requested from SLURM", "pipeline/grid/cluster.py",
      'job_extra_directives=([f"--gres=gpu:{c.gpus}"] if c.gpus else [])', "job_extra_directives=([])", CLUSTER),
    M("X8", "slurm", "fixed job count not adaptive above its minimum", "pipeline/grid/cluster.py",
      'return {"minimum_jobs": low, "maximum_jobs": high}', 'return {"minimum_jobs": low, "maximum_jobs": low}',
      CLUSTER),
    M("X9", "slurm", "a worker's missing mount goes unnoticed", "pipeline/grid/cluster.py",
      'if path and "://" not in str(path) and not os.path.exists(path):',
      'if path and "://" not in str(path) and not os.path.exists(os.path.dirname(path)):', CLUSTER),
    M("X10", "object-lock", "lock object written without the conditional create", "store/object_lock.py",
      'self.fs.pipe_file(self.path, self.payload(), mode="create")', "self.fs.pipe_file(self.path, self.payload())",
      OBJECT_LOCK),
    M("X11", "object-lock", "a live remote holder's lock is broken at once", "store/object_lock.py",
      "if not (self.holder_is_dead_here(holder) or age > self.stale_after):",
      "if not (self.holder_is_dead_here(holder) or age >= 0):", OBJECT_LOCK),
    M("X12", "object-lock", "object stores get no lock again", "store/locks.py",
      "if fs is None or fs_root is None:", "if True:", OBJECT_LOCK),
]
