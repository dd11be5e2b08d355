"""The one waiting helper: deadlines, last errors, give-up states, Ctrl-C."""

from __future__ import annotations

import time

import pytest

from fixtures.errors import StageFailure, Unrecoverable
from fixtures.waiting import NotYet, wait_for


def test_returns_the_probes_value_once_it_holds():
    calls = []

    def probe():
        calls.append(1)
        if len(calls) < 3:
            raise NotYet("not yet")
        return "ready"

    assert wait_for(probe, stage="s", what="it", timeout=5, interval=0.01) == "ready"


def test_a_deadline_names_stage_what_and_last_error():
    with pytest.raises(StageFailure) as failed:
        wait_for(
            lambda: (_ for _ in ()).throw(NotYet("HTTP 503")),
            stage="discovery",
            what="the hub to answer",
            timeout=0.3,
            interval=0.05,
            evidence=lambda: "hub log tail",
        )
    text = str(failed.value)
    assert "the hub to answer within 0s (stage discovery)" in text
    assert "last error: HTTP 503" in text
    assert failed.value.evidence == "hub log tail"


def test_give_up_ends_the_wait_at_once():
    started = time.monotonic()
    with pytest.raises(StageFailure, match="the gateway process exited with code 1"):
        wait_for(
            lambda: (_ for _ in ()).throw(NotYet("x")),
            stage="setup",
            what="gateway",
            timeout=30,
            give_up=lambda: "the gateway process exited with code 1",
        )
    assert time.monotonic() - started < 1


def test_an_unrecoverable_probe_error_ends_the_wait_at_once():
    started = time.monotonic()
    with pytest.raises(StageFailure, match="CrashLoopBackOff"):
        wait_for(
            lambda: (_ for _ in ()).throw(Unrecoverable("pod hub: CrashLoopBackOff")),
            stage="setup",
            what="the hub",
            timeout=30,
        )
    assert time.monotonic() - started < 1


def test_keyboard_interrupt_is_never_retried():
    with pytest.raises(KeyboardInterrupt):
        wait_for(
            lambda: (_ for _ in ()).throw(KeyboardInterrupt()), stage="s", what="w", timeout=30
        )
