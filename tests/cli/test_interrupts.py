"""The CLI's signal handling in-process: the first Ctrl-C / SIGTERM asks for a stop at the next batch boundary, a
second stops at once, a thread that only waits is woken at once, and the command ends with one line."""
import os
import signal

import pytest

from declip.cli.interrupts import INTERRUPTED_LINE, exit_code, stop_on_signals
from declip.core.stop import Interrupted, check_stop, clear_stop, stop_requested, waiting


@pytest.fixture(autouse=True)
def _clear():
    clear_stop()
    yield
    clear_stop()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_signal_only_asks_the_second_stops_now(sig, code, capsys):
    before = signal.getsignal(sig)
    with stop_on_signals():
        check_stop()  # a batch loop runs: it will see the request
        os.kill(os.getpid(), sig)  # delivered to this (the main) thread before kill returns to Python code
        assert stop_requested()  # nothing raised: the loops stop at their next batch boundary
        assert "stopping at the next batch boundary" in capsys.readouterr().err
        with pytest.raises(Interrupted):
            check_stop()
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), sig)
    assert exit_code() == code
    assert signal.getsignal(sig) is before  # the previous handler is back


def test_before_any_batch_loop_a_signal_stops_at_once():
    with stop_on_signals():
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGINT)
    assert stop_requested()


def test_a_waiting_main_thread_is_interrupted_at_once():
    with stop_on_signals():
        check_stop()
        with pytest.raises(Interrupted), waiting():
            os.kill(os.getpid(), signal.SIGTERM)
    assert stop_requested()


def test_main_prints_one_line_when_a_stop_surfaces(monkeypatch, capsys):
    from declip.cli import app
    from declip.core.stop import request_stop

    def command(args):
        request_stop("SIGTERM")
        raise RuntimeError("what a flow engine made of the interrupt")  # wrapped: still the user's stop

    monkeypatch.setattr(app, "_quiet_defaults", lambda: None)  # leave this process's environment alone
    parser = app.build_parser()
    monkeypatch.setattr(app, "build_parser", lambda: parser)
    args = parser.parse_args(["store", "ls", "--store", "x"])
    monkeypatch.setattr(args, "func", command, raising=False)
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: args)
    assert app.main(["store", "ls", "--store", "x"]) == 143
    err = capsys.readouterr().err
    assert err.strip().endswith(INTERRUPTED_LINE) and "Traceback" not in err
