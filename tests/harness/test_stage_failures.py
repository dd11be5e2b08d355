"""A red stage blocks exactly the stages that need it; a deployment that does not start is a
red `setup`. Each case runs the real local stack with one fault (the stack's fault switch) in a
child pytest and reads stages.json. (Each fault's own verdict is tests/faults' subject.)
"""

from __future__ import annotations

from pathlib import Path

from tests.harness.runner import KUBERNETES_ONLY, STAGES, run_harness

#: The stages after setup that run on the local target.
ORDER = [s for s in STAGES[1:] if s not in KUBERNETES_ONLY]
AFTER = {
    "discovery": [],
    "hub_login": ["discovery"],
    "gateway_cluster": ["hub_login"],
    "dashboard": ["gateway_cluster"],
    "isolation": ["gateway_cluster"],
    "capacity": ["gateway_cluster", "dashboard"],
    "user_server": ["hub_login", "gateway_cluster"],
}


def _blocked_and_run(run, failed: str) -> None:
    """Every later stage that needs ``failed`` (directly or through another) is skipped as
    blocked by what it needs; every other later stage ran (capacity, without --users, is
    skipped for that reason)."""
    not_passed = {failed}
    for later in ORDER[ORDER.index(failed) + 1 :]:
        record = run.outcome(later)
        needs = [n for n in AFTER[later] if n in not_passed]
        if needs:
            assert record["outcome"] == "skipped", record
            assert record["message"] == f"blocked by {needs[0]}"
            not_passed.add(later)
        elif later == "capacity":
            assert record["outcome"] == "skipped", record
            assert record["message"].startswith("--users 0"), record
        else:
            assert record["outcome"] == "passed", record


def test_a_red_stage_blocks_the_stages_that_need_it(tmp_path: Path):
    run = run_harness(
        ["--target", "local"],
        tmp_path / "artifacts",
        env={"DASKHUB_E2E_LOCAL_FAULTS": "reject_harness_token"},
    )
    assert run.returncode == 1
    _blocked_and_run(run, "hub_login")
    assert run.leftovers() == []


def test_a_red_stage_leaves_the_stages_that_do_not_need_it_running(tmp_path: Path):
    run = run_harness(
        ["--target", "local"],
        tmp_path / "artifacts",
        env={"DASKHUB_E2E_LOCAL_FAULTS": "shared_identity"},
    )
    assert run.returncode == 1
    assert run.first_failure is not None and run.first_failure["stage"] == "isolation"
    _blocked_and_run(run, "isolation")
    assert run.outcome("user_server")["outcome"] == "passed"
    assert run.leftovers() == []


def test_a_deployment_that_does_not_start_is_a_setup_failure(tmp_path: Path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "dask-gateway:\n  gateway:\n    extraConfig:\n"
        "      zz-broken: raise RuntimeError('broken extraConfig')\n"
    )
    run = run_harness(["--target", "local", "--values", str(broken)], tmp_path / "artifacts")

    assert run.returncode == 1
    assert run.first_failure is not None and run.first_failure["stage"] == "setup"
    assert "the gateway process exited" in run.first_failure["message"]
    assert [s["stage"] for s in run.stages[1:]] == ORDER + list(KUBERNETES_ONLY)
    assert {s["outcome"] for s in run.stages[1:]} == {"skipped"}
    assert {s["message"] for s in run.stages[1:]} == {"blocked by setup"}
    report = (run.artifacts / "report.md").read_text()
    assert "broken extraConfig" in report  # the gateway's log is the evidence
    assert run.leftovers() == []


def test_a_red_stage_does_not_wait_for_the_user_server_still_spawning(tmp_path: Path):
    """The user server is requested right after hub_login; when gateway_cluster then fails,
    user_server is blocked and the run ends without waiting for that spawn (slow_spawn=120:
    the server would start only after two minutes, as after an image pull): the hub is told
    to stop it while it is pending (its log says "Interrupting spawner")."""
    run = run_harness(
        ["--target", "local"],
        tmp_path / "artifacts",
        env={"DASKHUB_E2E_LOCAL_FAULTS": "no_scheduler_command,slow_spawn=120"},
        timeout=110,
    )
    assert run.returncode == 1, run.stdout[-3000:]
    _blocked_and_run(run, "gateway_cluster")
    assert "server requested for user_server" in run.outcome("hub_login")["message"]
    assert "Interrupting spawner" in (run.artifacts / "logs" / "hub.log").read_text()
    assert not [s for s in run.stages if s["stage"] == "teardown"], run.stages  # no problem
    assert run.leftovers() == []
