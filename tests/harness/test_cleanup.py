"""Nothing of a run survives Ctrl-C: processes (hub, proxy, gateway, schedulers, workers) and
temp folders are gone, whichever stage was running."""

from __future__ import annotations

import signal
import time
from functools import partial
from pathlib import Path

import pytest
import requests

from fixtures.background import Background
from fixtures.faults import FAULTS_ENV
from fixtures.http import Http
from fixtures.hub import UserMaker
from fixtures.processes import interrupts_deferred, interrupts_held, processes_of_run
from fixtures.run_state import RunState
from fixtures.targets import Deployment
from fixtures.user_server import UserServer
from fixtures.waiting import NotYet, wait_for
from tests.harness.runner import ctrl_c_ends_the_run, read_until, start_harness, temp_dir_of


def _left_nothing(run_id: str, artifacts: Path) -> None:
    """The interrupted run left no process (not even a zombie) and nothing in its temp
    folder, and still wrote its stages.json."""
    assert processes_of_run(run_id) == []
    assert list(temp_dir_of(artifacts).iterdir()) == []
    assert (artifacts / "stages.json").is_file()


@pytest.mark.parametrize(
    "stage",
    ["discovery", "hub_login", "gateway_cluster", "dashboard", "isolation", "user_server"],
)
def test_ctrl_c_during_a_stage_leaves_nothing_running(tmp_path: Path, stage: str):
    proc, run_id = start_harness(["--target", "local"], tmp_path / "artifacts")
    read_until(proc, f"daskhub-e2e: stage {stage} starting")
    if stage in ("gateway_cluster", "dashboard", "user_server"):
        time.sleep(1.0)  # let the stage get into its cluster or server work first
    assert processes_of_run(run_id), "the run had no processes to stop"
    out = ctrl_c_ends_the_run(proc)

    assert "KeyboardInterrupt" in out
    _left_nothing(run_id, tmp_path / "artifacts")


@pytest.mark.parametrize("stage", ["gateway_cluster", "user_server"])
def test_ctrl_c_while_the_user_server_is_still_spawning_stops_it_at_once(
    tmp_path: Path, stage: str
):
    """A spawn that takes long (slow_spawn=120: on Kubernetes, an image pull) is interrupted,
    not waited for: the hub is told to stop it before it even answers the held spawn request
    (it does after its slow_spawn_timeout, 10 s, logging "is slow to ..."), Ctrl-C ends
    the run within 20 s (4 s here), and the pending server's process (it carries the run's
    marks) is gone with the rest."""
    proc, run_id = start_harness(
        ["--target", "local"], tmp_path / "artifacts", env={FAULTS_ENV: "slow_spawn=120"}
    )
    read_until(proc, f"daskhub-e2e: stage {stage} starting")

    def pending_server() -> None:
        if not any("time.sleep" in " ".join(p.cmdline()) for p in processes_of_run(run_id)):
            raise NotYet("the pending user server is not among the run's processes")

    wait_for(pending_server, stage="selftest", what="the pending user server", timeout=30)
    ctrl_c_ends_the_run(proc)
    hub_log = (tmp_path / "artifacts" / "logs" / "hub.log").read_text()
    assert "Interrupting spawner" in hub_log
    assert "is slow to" not in hub_log.split("Interrupting spawner")[0]
    _left_nothing(run_id, tmp_path / "artifacts")


def test_ctrl_c_during_the_cleanup_is_held_until_it_ends_and_a_second_one_stops_it_at_once(
    tmp_path: Path,
):
    """pytest gives up the fixtures left to tear down when one of them raises
    KeyboardInterrupt, which would leave the hub, the gateway and the clusters running. A
    Ctrl-C in teardown is held instead (the hang=teardown fault keeps the run there, before the
    stack's removal), and a second one ends the run at once through the emergency stop, with
    exit code 2 and nothing left."""
    proc, run_id = start_harness(
        ["--target", "local", "-k", "discovery"],
        tmp_path / "artifacts",
        env={FAULTS_ENV: "hang=teardown"},
    )
    read_until(proc, "daskhub-e2e: stage discovery passed")
    time.sleep(1.0)  # into the teardown, where the fault blocks
    proc.send_signal(signal.SIGINT)
    read_until(proc, "daskhub-e2e: Ctrl-C: removing what the run started first")
    time.sleep(1.0)
    assert proc.poll() is None, "the first Ctrl-C ended the run before its cleanup"
    assert processes_of_run(run_id), "the run's processes are gone before its cleanup"
    out = ctrl_c_ends_the_run(proc)
    assert "Ctrl-C again during the run's cleanup: what it started was stopped at once" in out
    _left_nothing(run_id, tmp_path / "artifacts")


def test_a_process_start_inside_the_teardown_hold_leaves_its_ctrl_c_to_that_hold():
    """Alone, a process start (interrupts_deferred) raises a Ctrl-C that came during it once
    it is done; inside the teardown's hold (interrupts_held) it must not raise it halfway
    through the teardown: the outer hold has it."""
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        signal.raise_signal(signal.SIGINT)
    with interrupts_held() as outer:
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
        assert outer == [signal.SIGINT]


def test_a_test_user_is_deleted_while_its_server_runs_and_while_it_stops(running_stack):
    """JupyterHub's user DELETE stops a running server itself, and answers 400 ("in the process
    of stopping") while a stop is pending: the teardown's deletion goes through in both cases,
    with no server DELETE that the harness role is refused (403)."""
    http = Http(running_stack.public_url)
    maker = UserMaker(http, running_stack.harness_token)
    running, stopping = maker.create(), maker.create()
    servers = {u.name: UserServer(http.fork(), u.name, u.token) for u in (running, stopping)}
    for server in servers.values():
        server.start("selftest", 60, lambda: "")

    maker.delete(running.name)

    def model(name: str, token: str = running_stack.harness_token) -> requests.Response:
        return http.request("GET", f"hub/api/users/{name}", token=token)

    def stop_pending() -> None:  # the user's own token reads its servers; the harness role not
        if model(stopping.name, stopping.token).json()["servers"][""]["pending"] != "stop":
            raise NotYet("no stop pending yet")

    stop_request = partial(
        http.fork().request, "DELETE", f"hub/api/users/{stopping.name}/server", token=stopping.token
    )
    stop = Background("the user's own server DELETE", stop_request).start()
    wait_for(stop_pending, stage="selftest", what="a pending stop", timeout=10, interval=0.01)
    maker.delete(stopping.name)

    assert stop.result(30).status_code in (202, 204)
    assert [model(u.name).status_code for u in (running, stopping)] == [404, 404]
    hub_log = running_stack.processes["hub"].log_path.read_text()
    assert f"400 DELETE /hub/api/users/{stopping.name} " in hub_log  # retried, then deleted
    assert f"204 DELETE /hub/api/users/{stopping.name} " in hub_log
    for name in servers:  # the harness token sent no server DELETE (its role is refused one)
        assert f"/hub/api/users/{name}/server (daskhub-e2e" not in hub_log


#: A notebook cell that leaves its cluster running past its kernel's end.
CELL_LEAVES_A_CLUSTER = """
import json
from dask_gateway import Gateway
cluster = Gateway().new_cluster(shutdown_on_close=False)
print("E2E-LEFT " + json.dumps({"name": cluster.name}))
"""


def test_a_cluster_left_by_an_early_cell_no_stage_took_is_stopped_at_the_end(running_stack):
    """user_server blocked or interrupted after the early start ran its cells: the run's
    close stops the server and every cluster of the test user, here one a cell left running
    past its kernel (as a notebook can); the gateway logs "Cluster <name> stopped"."""
    http = Http(running_stack.public_url)
    state = RunState(
        Deployment(
            "live",
            running_stack.public_url,
            running_stack.harness_token,
            running_stack.gateway_proxy_address,
            http,
            lambda: "",
        )
    )
    state.users = UserMaker(http, running_stack.harness_token)
    state.user = state.users.create()
    state.start_user_server_early(
        "selftest", (60, 30), ((CELL_LEAVES_A_CLUSTER, 60),), lambda result: True
    )
    early = state.early_server
    assert early is not None and early.finish()
    ran = early.cell_result(0)
    assert ran is not None and ran.error is None, ran
    left = ran.marked("E2E-LEFT")["name"]

    assert state.close() == []
    gateway_log = running_stack.processes["gateway"].log_path

    def stopped() -> None:
        if f"Cluster {left} stopped" not in gateway_log.read_text():
            raise NotYet(f"no 'Cluster {left} stopped' in the gateway log")

    wait_for(stopped, stage="selftest", what=f"cluster {left} to stop", timeout=30)
