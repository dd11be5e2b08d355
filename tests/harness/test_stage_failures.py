"""Each stage turns red, alone and with its cause named, when its piece of DaskHub is broken.

Every case runs the real local stack with one fault (the stack's fault switch), in a child
pytest, and reads stages.json: the first failed stage, its message, and the blocked stages.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.runner import run_harness

ORDER = ["discovery", "hub_login", "gateway_cluster", "dashboard", "isolation", "user_server"]
AFTER = {
    "discovery": [],
    "hub_login": ["discovery"],
    "gateway_cluster": ["hub_login"],
    "dashboard": ["gateway_cluster"],
    "isolation": ["gateway_cluster"],
    "user_server": ["hub_login", "gateway_cluster"],
}

CASES = [
    ("no_gateway_route", "discovery", "there is no route at /services/dask-gateway/"),
    ("reject_harness_token", "hub_login", "the hub rejected the token"),
    ("no_scheduler_command", "gateway_cluster", "No such file or directory"),
    ("no_dashboard", "dashboard", "no dashboard is served"),
    ("shared_identity", "isolation", "not to show the first user's cluster"),
    ("user_env_no_proxy_address", "user_server", "env missing: DASK_GATEWAY__PROXY_ADDRESS"),
    ("user_env_closed_proxy", "user_server", "the computation failed inside the server"),
    ("user_env_no_dask_gateway", "user_server", "the user environment has no dask-gateway"),
]


@pytest.mark.parametrize(("fault", "stage", "cause"), CASES, ids=[c[0] for c in CASES])
def test_a_broken_piece_fails_its_stage(tmp_path: Path, fault: str, stage: str, cause: str):
    # -x: the run stops at the first red stage; what comes after is the next tests' subject.
    run = run_harness(
        ["--target", "local", "-x"],
        tmp_path / "artifacts",
        env={"DASKHUB_E2E_LOCAL_FAULTS": fault},
    )

    assert run.returncode == 1, run.stdout[-3000:]
    failure = run.first_failure
    assert failure is not None and failure["stage"] == stage, run.stages
    assert cause in failure["message"]
    before = ["setup", *ORDER[: ORDER.index(stage)]]
    assert [(s["stage"], s["outcome"]) for s in run.stages[: len(before)]] == [
        (name, "passed") for name in before
    ]
    assert f"stage {stage} FAILED" in run.stdout
    assert "## Failure cause" in (run.artifacts / "report.md").read_text()
    assert run.leftovers() == []
    assert run.files_left() == []


def _blocked_and_run(run, failed: str) -> None:
    """Every later stage that needs ``failed`` (directly or through another) is skipped as
    blocked by what it needs; every other later stage ran."""
    not_passed = {failed}
    for later in ORDER[ORDER.index(failed) + 1 :]:
        record = run.outcome(later)
        needs = [n for n in AFTER[later] if n in not_passed]
        if needs:
            assert record["outcome"] == "skipped", record
            assert record["message"] == f"blocked by {needs[0]}"
            not_passed.add(later)
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
    assert [s["outcome"] for s in run.stages[1:]] == ["skipped"] * len(ORDER)
    assert {s["message"] for s in run.stages[1:]} == {"blocked by setup"}
    report = (run.artifacts / "report.md").read_text()
    assert "broken extraConfig" in report  # the gateway's log is the evidence
    assert run.leftovers() == []
