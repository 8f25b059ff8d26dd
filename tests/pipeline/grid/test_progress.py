"""The grid's cell counter, without Prefect, on a hand-made batch: a cell counts once its training run finished or,
trained earlier, once its last pending evaluation did; failures and skips are counted as the postfix shows them."""
from types import SimpleNamespace

from declip.pipeline.grid.progress import CellProgress


def _cells(*ids):
    return [SimpleNamespace(run_id=i) for i in ids]


def test_counts_follow_training_runs_and_pending_evaluations():
    a, b, c, d = cells = _cells("a", "b", "c", "d")
    # a and b train together now; c trained before and still needs two evaluations; d is finished
    progress = CellProgress(cells, [[a, b]], ["a", "a", "b", "c", "c"], show=False)
    assert (progress.total, progress.done) == (4, 1)
    assert progress.counts == {"trained": 0, "evaluated": 0, "skipped": 2, "failed": 0}

    progress.evaluated("c", {"status": "ok"})
    assert progress.done == 1  # c has one evaluation left
    progress.trained([{"status": "ok"}, {"status": "failed"}])
    assert progress.done == 3 and progress.counts["trained"] == 1 and progress.counts["failed"] == 1
    progress.evaluated("a", {"status": "ok"})
    progress.evaluated("b", {"status": "skipped", "reason": "training failed"})
    assert progress.done == 3  # evaluations of cells that trained now never count a cell twice
    progress.evaluated("c", {"status": "failed", "error": "boom"})
    progress.evaluated("a", {"status": "ok"})
    progress.close()
    assert progress.done == 4
    assert progress.counts == {"trained": 1, "evaluated": 3, "skipped": 2, "failed": 2}


def test_nothing_to_do_is_complete_from_the_start():
    progress = CellProgress(_cells("a", "b"), [], [], show=False)
    assert (progress.total, progress.done, progress.counts["skipped"]) == (2, 2, 2)
    progress.close()
