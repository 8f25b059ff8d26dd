import threading

import pytest

from declip.core import stop


def test_the_flag_is_raised_once_requested_from_any_thread_and_cleared():
    stop.clear()
    stop.check()  # nothing requested: no-op
    t = threading.Thread(target=stop.request_stop)
    t.start()
    t.join()
    assert stop.stop_requested()
    with pytest.raises(stop.StopRequested, match="epoch 4"):
        stop.check("epoch 4")
    assert not issubclass(stop.StopRequested, Exception)  # `except Exception` in the grid must not swallow it
    stop.clear()
    assert not stop.stop_requested()
    stop.check()
