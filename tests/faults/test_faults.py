"""The fault-injection suite: each realistic DaskHub breakage turns into a red stage that names
its cause, fast; a healthy but unusual deployment stays green.

Each case starts the real local stack with one fault switched on (``fixtures/faults.py``), runs
the stages in a child pytest (explicit ``--target local``, ``-x``: the run stops at the first
red stage), and asserts from stages.json: the first failed stage, that its message names the
cause in an operator's words, and that the verdict came within a fraction of the deadline that
governs it. Cases run one after another. The results table is written for the README
(``scripts/fault_table.py``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from fixtures.gateway import START_TIMEOUT
from fixtures.http import REQUEST_TIMEOUT
from fixtures.local_stack import START_TIMEOUT as STACK_START_TIMEOUT
from tests.e2e.test_daskhub import USER_SERVER_TIMEOUTS
from tests.harness.runner import REPO, run_harness

#: The deadline a user_server fault is detected under: spawn, kernel and one cell.
USER_SERVER_DEADLINE = sum(USER_SERVER_TIMEOUTS[k] for k in ("spawn", "kernel", "cell"))
RESULTS = REPO / "e2e-artifacts" / "fault-suite.json"


@dataclass(frozen=True)
class Case:
    fault: str
    stage: str | None  # the first red stage; None: the run must stay green
    cause: str  # words the failure message must contain (or the green run's message)
    deadline: float  # the deadline that governs the verdict
    fraction: float = 0.25  # the verdict must come within fraction * deadline
    select: str = "not user_server"
    args: tuple[str, ...] = ()  # more options of the run


CASES = [
    Case("gateway_down", "discovery", "the proxy could not reach the gateway", REQUEST_TIMEOUT),
    Case("hub_down", "discovery", "the proxy could not reach the hub", REQUEST_TIMEOUT),
    Case(
        "no_gateway_route",
        "discovery",
        "there is no route at /services/dask-gateway/",
        REQUEST_TIMEOUT,
    ),
    Case(
        "no_proxy_prefix",
        "discovery",
        "the gateway's prefix is not /services/dask-gateway",
        REQUEST_TIMEOUT,
    ),
    Case("no_scheduler_command", "gateway_cluster", "No such file or directory", START_TIMEOUT),
    Case("workers_fail", "gateway_cluster", "dask-worker'", START_TIMEOUT),
    Case(
        "bad_default_image",
        "gateway_cluster",
        "When specifying an image you must also provide a tag",
        START_TIMEOUT,
    ),
    Case("no_dashboard", "dashboard", "no dashboard is served", 30.0, fraction=0.4),
    Case("wrong_proxy_address", "discovery", "the scheduler proxy", REQUEST_TIMEOUT),
    Case("reject_harness_token", "hub_login", "the hub rejected the token", REQUEST_TIMEOUT),
    Case("shared_identity", "isolation", "not to show the first user's cluster", 30.0),
    Case(
        "user_env_no_proxy_address",
        "user_server",
        "env missing: DASK_GATEWAY__PROXY_ADDRESS",
        USER_SERVER_DEADLINE,
        fraction=0.2,
        select="user_server or not isolation",
    ),
    Case(
        "user_env_closed_proxy",
        "user_server",
        "the user server can not reach DASK_GATEWAY__PROXY_ADDRESS",
        USER_SERVER_DEADLINE,
        fraction=0.2,
        select="user_server or not isolation",
    ),
    Case(
        "user_env_no_dask_gateway",
        "user_server",
        "the user environment has no dask-gateway",
        USER_SERVER_DEADLINE,
        fraction=0.2,
        select="user_server or not isolation",
    ),
    Case(
        "user_env_unescaped_braces",
        "user_server",
        "KeyError: 'JUPYTER_IMAGE_SPEC'",
        USER_SERVER_DEADLINE,
        fraction=0.2,
        select="user_server or not isolation",
    ),
    # Found at once (the local spawner watches its process), not after the hub's http_timeout.
    Case(
        "user_server_exits",
        "user_server",
        "exited with code 2 before it listened",
        USER_SERVER_DEADLINE,
        fraction=0.1,
        select="user_server or not isolation",
    ),
    # gateway 2026.3.0 checks users' tokens with the hub itself and never uses its own
    # JUPYTERHUB_API_TOKEN for that, so a mismatch no longer breaks a user's flow.
    Case("token_mismatch", None, "every stage green", STACK_START_TIMEOUT, select=""),
    Case("slow_start=4", None, "every stage green", STACK_START_TIMEOUT),
    # Room for 4 clusters at once: the shared cluster of the earlier stages holds one (and
    # gateway_cluster's own may still be stopping, as a terminating pod still counts against
    # a ResourceQuota), so of 4 users at once some get a cluster and the rest are refused.
    Case(
        "cluster_quota=4",
        "capacity",
        "of 4 users failed; first causes: e2e-",
        START_TIMEOUT,
        fraction=0.5,
        args=("--users", "4"),
    ),
]

_results: list[dict[str, object]] = []


@pytest.fixture(scope="module", autouse=True)
def _write_results():
    yield
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(_results, indent=2) + "\n")


@pytest.mark.parametrize("case", CASES, ids=[case.fault for case in CASES])
def test_fault(tmp_path: Path, case: Case):
    args = ["--target", "local", "-x", *case.args] + (["-k", case.select] if case.select else [])
    run = run_harness(args, tmp_path / "artifacts", env={"DASKHUB_E2E_LOCAL_FAULTS": case.fault})
    failure = run.first_failure
    record = {
        **asdict(case),
        "returncode": run.returncode,
        "message": failure["message"] if failure else "every stage green",
        "seconds": failure["seconds"] if failure else None,
    }
    _results.append(record)

    if case.stage is None:
        assert run.returncode == 0, run.stdout[-4000:]
        assert run.outcomes_beside_kubernetes() == {"passed"}
        if case.fault.startswith("slow_start"):
            assert run.outcome("setup")["seconds"] >= float(case.fault.split("=")[1])
    else:
        assert run.returncode == 1, run.stdout[-4000:]
        assert failure is not None and failure["stage"] == case.stage, run.stages
        assert case.cause in failure["message"]
        assert "Traceback" not in failure["message"]
        if case.fault.startswith("cluster_quota"):  # some users got one; each other names why
            users = failure["details"]["per_user"]
            failed = [u for u in users if u["error"]]
            assert 0 < len(failed) < len(users), users
            assert all("exceeded quota: daskhub-e2e-quota" in u["error"] for u in failed), failed
        before = run.stages[: run.stages.index(failure)]
        assert {s["outcome"] for s in before} <= {"passed", "skipped"}, before
        assert not any(s["message"].startswith("blocked by") for s in before), before
        bound = case.fraction * case.deadline
        assert failure["seconds"] <= bound, (
            f"verdict after {failure['seconds']:.1f}s, bound {bound:.1f}s"
        )
    assert run.leftovers() == []
    assert run.files_left() == []
