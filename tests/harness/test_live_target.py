"""The live target, pointed at a separately started local stack with only a URL and a token."""

from __future__ import annotations

from pathlib import Path

import requests

from fixtures.client_loop import client_loop
from fixtures.gateway import GatewaySession
from fixtures.local_stack import LocalStack
from fixtures.secrets import write_secret_file
from tests.harness.runner import closed_port, live_args, run_harness


def _live(stack: LocalStack, token: str, artifacts: Path, *extra: str):
    return run_harness([*live_args(stack), *extra], artifacts, env={"DASKHUB_E2E_HUB_TOKEN": token})


def test_live_with_an_admin_token_passes_every_stage_and_removes_its_users(
    running_stack: LocalStack, tmp_path: Path
):
    run = _live(running_stack, running_stack.harness_token, tmp_path / "a")

    assert run.returncode == 0, run.stdout[-4000:]
    assert run.stdout.startswith("daskhub-e2e: target live")
    assert run.outcomes_beside_kubernetes() == {"passed"}, run.stages
    texts = [run.stdout, run.stderr] + [p.read_text() for p in run.artifacts.rglob("*.*")]
    assert not any(running_stack.harness_token in text for text in texts)
    users = requests.get(
        running_stack.public_url + "hub/api/users",
        timeout=10,
        headers={"Authorization": f"token {running_stack.harness_token}"},
    ).json()
    assert [u["name"] for u in users if u["name"].startswith("e2e-")] == []


def test_live_with_a_plain_user_token_runs_as_that_user_and_skips_isolation(
    running_stack: LocalStack, tmp_path: Path
):
    admin = {"Authorization": f"token {running_stack.harness_token}"}
    hub = running_stack.public_url + "hub/api/"
    requests.post(hub + "users/alice", headers=admin, timeout=10).raise_for_status()
    issued = requests.post(hub + "users/alice/tokens", headers=admin, json={}, timeout=10).json()
    token_file = write_secret_file(tmp_path / "token", issued["token"])
    try:
        run = run_harness(
            [
                "--target",
                "live",
                "--hub-url",
                running_stack.public_url,
                "--hub-token-file",
                str(token_file),
                "--gateway-proxy-address",
                running_stack.gateway_proxy_address,
                "-k",
                "not user_server",  # the admin-token run covers user_server on live
            ],
            tmp_path / "a",
        )
    finally:
        requests.delete(hub + "users/alice", headers=admin, timeout=10)

    assert run.returncode == 0, run.stdout[-4000:]
    assert "running as alice" in run.outcome("hub_login")["message"]
    isolation = run.outcome("isolation")
    assert isolation["outcome"] == "skipped"
    assert "plain user token" in isolation["message"]
    assert run.outcome("gateway_cluster")["outcome"] == "passed"


def test_live_with_a_token_the_hub_rejects_fails_hub_login_with_one_sentence(
    running_stack: LocalStack, tmp_path: Path
):
    run = _live(running_stack, "0" * 64, tmp_path / "a", "-x")

    assert run.returncode == 1
    assert run.outcome("discovery")["outcome"] == "passed"
    failure = run.first_failure
    assert failure is not None and failure["stage"] == "hub_login"
    assert "the hub rejected the token" in failure["message"]
    assert "Traceback" not in failure["message"]


def test_live_without_a_scheduler_proxy_runs_the_api_part_and_says_what_it_skipped(
    running_stack: LocalStack, tmp_path: Path
):
    run = run_harness(
        ["--target", "live", "--hub-url", running_stack.public_url, "-k", "not user_server"],
        tmp_path / "a",
        env={"DASKHUB_E2E_HUB_TOKEN": running_stack.harness_token},
    )

    assert run.returncode == 0, run.stdout[-4000:]
    assert "no scheduler proxy address given" in run.outcome("discovery")["message"]
    cluster = run.outcome("gateway_cluster")
    assert cluster["outcome"] == "passed"
    assert "computation skipped" in cluster["message"]


def test_live_at_an_unreachable_url_fails_discovery_saying_so(tmp_path: Path):
    run = run_harness(
        ["--target", "live", "--hub-url", f"http://127.0.0.1:{closed_port()}/"],
        tmp_path / "a",
        env={"DASKHUB_E2E_HUB_TOKEN": "1" * 64},
    )

    assert run.returncode == 1
    failure = run.first_failure
    assert failure is not None and failure["stage"] == "discovery"
    assert "connection refused" in failure["message"]
    assert "check the URL" in failure["message"]


def test_cleanup_on_live_removes_e2e_users_and_their_clusters(
    running_stack: LocalStack, tmp_path: Path
):
    """What a crashed run leaves on a hub (an e2e- user with a running cluster) is removed."""
    admin = {"Authorization": f"token {running_stack.harness_token}"}
    hub = running_stack.public_url + "hub/api/"
    requests.post(hub + "users/e2e-crashed", headers=admin, timeout=10).raise_for_status()
    token = requests.post(
        hub + "users/e2e-crashed/tokens", headers=admin, json={}, timeout=10
    ).json()["token"]
    address = running_stack.public_url + "services/dask-gateway"
    with client_loop() as loop:
        session = GatewaySession(
            loop, "self-test", address, running_stack.gateway_proxy_address, token
        )
        name = session.submit()
        listed = session.call(session.gateway.list_clusters, "list_clusters()")
        assert [c.name for c in listed] == [name]
        session.close(stop_clusters=False)  # left running, as a crashed run leaves it

    run = _live(running_stack, running_stack.harness_token, tmp_path / "a", "--cleanup")

    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "1 e2e- user(s) deleted, 1 cluster(s) stopped" in run.stdout + run.stderr
    users = requests.get(hub + "users", headers=admin, timeout=10).json()
    assert "e2e-crashed" not in [u["name"] for u in users]


def test_a_run_as_a_plain_user_leaves_that_users_own_clusters_running(
    running_stack: LocalStack, tmp_path: Path
):
    """The harness stops the clusters it made, never a given user's own: alice's cluster,
    running before a whole run as alice (user_server included), is still running after it."""
    admin = {"Authorization": f"token {running_stack.harness_token}"}
    hub = running_stack.public_url + "hub/api/"
    requests.post(hub + "users/alice", headers=admin, timeout=10).raise_for_status()
    try:
        token = requests.post(hub + "users/alice/tokens", headers=admin, json={}, timeout=10)
        token_file = write_secret_file(tmp_path / "token", token.json()["token"])
        address = running_stack.public_url + "services/dask-gateway"
        with client_loop() as loop:
            session = GatewaySession(
                loop,
                "self-test",
                address,
                running_stack.gateway_proxy_address,
                token_file.read_text(),
            )
            own = session.submit()
            try:
                run = run_harness(
                    [*live_args(running_stack), "--hub-token-file", str(token_file)],
                    tmp_path / "a",
                )
                listed = session.call(session.gateway.list_clusters, "list_clusters()")
            finally:
                session.close()  # stops alice's cluster
    finally:
        requests.delete(hub + "users/alice", headers=admin, timeout=10)

    assert run.returncode == 0, run.stdout[-4000:]
    assert run.outcome("user_server")["outcome"] == "passed"
    assert [(c.name, c.status.name) for c in listed] == [(own, "RUNNING")]
