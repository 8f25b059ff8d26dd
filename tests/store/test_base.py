"""The store's root (store/base.py): the first open of a new store by several writers at once (issue 21 item 3)."""
from __future__ import annotations

import threading

from declip.store import base
from declip.store.feature_store import FeatureStore
from tests.store.store_fixtures import DS, make_samples, root_race_hook


def test_writers_creating_a_fresh_store_at_once_all_open_it(tmp_path, monkeypatch):
    """Each writer finds no root; one creates it and the others try after it exists (forced by the hook, not left to
    timing): before, those failed with zarr's ContainsGroupError. Now every one opens the store and registers."""
    meeting, url, parties = tmp_path / "meeting", str(tmp_path / "fresh.zarr"), 3
    monkeypatch.setattr(base, "BEFORE_ROOT_CREATION", root_race_hook(meeting, parties, timeout=60))
    samples, errors = make_samples(6), []

    def writer() -> None:
        try:
            FeatureStore(url).create_dataset(DS, samples, "/data", "list", block_rows=4)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(parties)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(list(meeting.iterdir())) == parties  # every writer took the creation path: the race really ran
    assert FeatureStore(url, mode="r").datasets() == [DS]


def test_an_existing_store_is_opened_without_the_creation_path(tmp_path, monkeypatch):
    url = str(tmp_path / "s.zarr")
    FeatureStore(url)
    calls = []
    monkeypatch.setattr(base, "BEFORE_ROOT_CREATION", calls.append)
    FeatureStore(url)
    FeatureStore(url, mode="r")
    assert calls == []
