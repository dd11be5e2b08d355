"""Background work is waited for until it really ended, even after a wait was interrupted."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from fixtures.background import Background


def _interrupt_after(seconds: float) -> None:
    def raise_interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, raise_interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def test_a_wait_interrupted_by_ctrl_c_does_not_make_the_work_look_ended():
    """CPython 3.11's Thread.join, interrupted by Ctrl-C, marks a running thread stopped; the
    teardown's later wait must still wait for the work (a spawn request in flight)."""
    release = threading.Event()
    work = Background("slow work", lambda: release.wait(10)).start()
    previous = signal.getsignal(signal.SIGALRM)
    try:
        _interrupt_after(0.2)
        with pytest.raises(KeyboardInterrupt):
            work.finish(5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    started = time.monotonic()
    assert work.finish(0.5) is False  # still running: the wait used its whole bound
    assert time.monotonic() - started >= 0.45
    release.set()
    assert work.finish(5) is True
    assert work.result(1) is True


def test_the_work_s_error_is_raised_where_its_result_is_asked_for():
    def fail() -> None:
        raise ValueError("spawn failed")

    work = Background("failing work", fail).start()
    with pytest.raises(ValueError, match="spawn failed"):
        work.result(5)
