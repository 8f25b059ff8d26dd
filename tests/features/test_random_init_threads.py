"""Random-weight backbones built in several threads at once (sharded extraction tasks on the thread runner) get the
weights of their seed: torch's generator is one per process, so seeding and drawing are done one build at a time."""
from __future__ import annotations

import threading

from declip.features.backbones import load_backbone, state_checksum
from tests.fixtures import TINY_BACKBONE


def test_backbones_built_in_two_threads_at_once_equal_one_built_alone(monkeypatch):
    import open_clip

    alone = state_checksum(load_backbone(TINY_BACKBONE).visual)
    real = open_clip.create_model
    seeded = threading.Barrier(2)

    def create_after_both_seeded(*args, **kwargs):
        # Forces the race: without one-at-a-time building both threads have seeded the shared generator here, and
        # their draws then interleave or follow each other. With it, the first waits out the timeout alone.
        try:
            seeded.wait(timeout=2)
        except threading.BrokenBarrierError:
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(open_clip, "create_model", create_after_both_seeded)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(state_checksum(load_backbone(TINY_BACKBONE).visual)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [alone, alone]
