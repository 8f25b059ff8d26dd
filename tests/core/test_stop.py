"""The cooperative stop flag: a request ends work at its next batch boundary, as a KeyboardInterrupt."""
import threading

import pytest

from declip.core.stop import (Interrupted, check_stop, clear_stop, is_waiting, request_stop, stop_reason,
                              stop_requested, waiting)


@pytest.fixture(autouse=True)
def _clear():
    clear_stop()
    yield
    clear_stop()


def test_check_stop_raises_only_after_a_request_and_keeps_the_first_reason():
    check_stop()  # nothing requested: a no-op
    request_stop("SIGTERM")
    request_stop("SIGINT")
    assert stop_requested() and stop_reason() == "SIGTERM"
    with pytest.raises(KeyboardInterrupt):  # Interrupted is one: every layer treats it as the user's interrupt
        check_stop()
    with pytest.raises(Interrupted):
        check_stop()
    clear_stop()
    assert not stop_requested() and stop_reason() == ""
    check_stop()


def test_a_request_reaches_worker_threads():
    seen = []

    def worker():
        try:
            for _ in range(10_000):
                check_stop()
                gate.wait()
        except Interrupted:
            seen.append("stopped")

    gate = threading.Event()
    t = threading.Thread(target=worker)
    t.start()
    request_stop("SIGINT")
    gate.set()
    t.join(timeout=60)
    assert seen == ["stopped"]


def test_waiting_marks_only_this_thread_and_nests():
    assert not is_waiting()
    with waiting():
        assert is_waiting()
        with waiting():
            assert is_waiting()
        assert is_waiting()
        other = []
        t = threading.Thread(target=lambda: other.append(is_waiting()))
        t.start()
        t.join()
        assert other == [False]
    assert not is_waiting()
