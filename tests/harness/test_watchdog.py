"""No run may hang: the watchdog turns a harness that blocks for ever into a red verdict with
every thread's stack, stops what the run started, and exits non-zero; a port taken between
choice and use is chosen again instead of turning setup red."""

from __future__ import annotations

import time
from pathlib import Path

from fixtures.watchdog import BASE_ENV, EXIT_HUNG_TEARDOWN
from tests.harness.runner import run_harness

#: The watchdog's base bound in these runs (seconds).
BASE = "5"
#: Seconds a hung run may take in all: setup, the bound (the base, or a step's deadline plus
#: its 15 s grace, whichever is later) and the teardown.
WITHIN = 90


def _hung_run(where: str, artifacts: Path, *args: str):
    started = time.monotonic()
    run = run_harness(
        ["--target", "local", *args],
        artifacts,
        env={"DASKHUB_E2E_LOCAL_FAULTS": f"hang={where}", BASE_ENV: BASE},
        timeout=WITHIN + 60,
    )
    return run, time.monotonic() - started


def _assert_stacks_and_nothing_left(run, blocked_in: str) -> None:
    stacks = (run.artifacts / "logs" / "hang-stacks.txt").read_text()
    assert "(MainThread)" in stacks
    assert blocked_in in stacks  # where the main thread was stuck
    assert run.leftovers() == []
    assert run.files_left() == []


def test_a_stage_that_blocks_for_ever_is_failed_by_the_watchdog(tmp_path: Path):
    run, seconds = _hung_run("gateway_cluster", tmp_path / "a", "-k", "not user_server")

    assert run.returncode == 2, run.stdout[-3000:] + run.stderr[-3000:]  # interrupted
    assert seconds < WITHIN, seconds
    failure = run.first_failure
    assert failure is not None and failure["stage"] == "gateway_cluster", run.stages
    assert failure["message"].startswith("the harness itself hung in gateway_cluster for ")
    assert failure["message"].endswith("logs/hang-stacks.txt")
    assert "daskhub-e2e: the harness itself hung in gateway_cluster" in run.stdout
    _assert_stacks_and_nothing_left(run, "block_if_hanging_in")
    assert (run.artifacts / "logs" / "hub.log").is_file()  # the ordinary teardown ran


def test_a_teardown_that_blocks_for_ever_is_ended_and_cleaned_up_by_the_watchdog(
    tmp_path: Path,
):
    run, seconds = _hung_run("teardown", tmp_path / "a", "-k", "discovery")

    assert run.returncode == EXIT_HUNG_TEARDOWN, run.stdout[-3000:] + run.stderr[-3000:]
    assert seconds < WITHIN, seconds
    assert [s["outcome"] for s in run.stages] == ["passed", "passed", "failed"]
    assert run.stages[-1]["stage"] == "teardown"
    assert run.stages[-1]["message"].startswith("the harness itself hung in teardown for ")
    assert "the run's own cleanup hung" in run.stdout
    _assert_stacks_and_nothing_left(run, "block_if_hanging_in")


def test_a_port_taken_between_choice_and_use_is_chosen_again(tmp_path: Path):
    """The flake: the proxy's API got the public port's number, so configurable-http-proxy
    logged EADDRINUSE (and ran on). The stack sees it at once and starts again on fresh
    ports, instead of waiting out the hub's own wait for the proxy API (30 s)."""
    run = run_harness(
        ["--target", "local", "-k", "discovery"],
        tmp_path / "a",
        env={"DASKHUB_E2E_LOCAL_FAULTS": "port_collision"},
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    setup = run.outcome("setup")
    assert setup["outcome"] == "passed"
    assert setup["seconds"] < 15, setup  # not after the hub gave up on the proxy
    assert "start attempt 1: the proxy log says" in setup["message"]
    assert "EADDRINUSE" in setup["message"]
    assert "started again on fresh ports" in setup["message"]
    assert (run.artifacts / "logs" / "proxy-attempt1.log").is_file()
    assert run.leftovers() == []  # the first attempt's hub and gateway too
    assert run.files_left() == []


def test_a_user_servers_port_taken_before_it_listens_is_chosen_again(tmp_path: Path):
    """JupyterHub picks a user server's port by binding port 0 and closing it, so another
    process may take it first (it happened in CI): the server exits, and the other process
    answers there. The local spawner counts only the server's own listening socket and
    starts it again on another port; here its first port is the hub's own."""
    run = run_harness(
        ["--target", "local", "-k", "not isolation"],
        tmp_path / "a",
        env={"DASKHUB_E2E_LOCAL_FAULTS": "user_port_taken"},
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.outcome("user_server")["outcome"] == "passed"
    hub_log = (run.artifacts / "logs" / "hub.log").read_text()
    assert "was taken by another process before the server listened on it" in hub_log
    assert run.leftovers() == []
    assert run.files_left() == []
