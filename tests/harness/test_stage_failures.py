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
    run = run_harness(
        ["--target", "local"], tmp_path / "artifacts", env={"DASKHUB_E2E_LOCAL_FAULTS": fault}
    )

    assert run.returncode == 1, run.stdout[-3000:]
    failure = run.first_failure
    assert failure is not None and failure["stage"] == stage, run.stages
    assert cause in failure["message"]
    for later in ORDER[ORDER.index(stage) + 1 :]:
        record = run.outcome(later)
        if stage in AFTER[later]:
            assert record == {**record, "outcome": "skipped", "message": f"blocked by {stage}"}
    assert f"stage {stage} FAILED" in run.stdout
    assert "## Failure cause" in (run.artifacts / "report.md").read_text()
    assert run.leftovers() == []
    assert run.files_left() == []


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
