"""The capacity stage (--users N) and the Prometheus textfile (--metrics), against a real local
DaskHub started by the test process (the live target), so that what a run leaves on the hub
and the gateway can be looked at after it ended."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from fixtures.capacity import CapacityResult, UserResult, nearest_rank
from fixtures.errors import StageFailure
from fixtures.local_stack import LocalStack
from fixtures.record import Recorder
from fixtures.waiting import NotYet, wait_for
from tests.harness.runner import (
    closed_port,
    ctrl_c_ends_the_run,
    live_args,
    read_until,
    run_harness,
    start_harness,
    temp_dir_of,
)

#: The stages a capacity run selects (user_server's spawn would only slow it down).
SELECT = ["-k", "not user_server"]


def _live(stack: LocalStack, tmp_path: Path, *extra: str):
    return run_harness(
        [*live_args(stack), *extra],
        tmp_path / "artifacts",
        env={"DASKHUB_E2E_HUB_TOKEN": stack.harness_token},
        timeout=400,
    )


def _e2e_users(stack: LocalStack) -> list[str]:
    users = requests.get(
        stack.public_url + "hub/api/users",
        headers={"Authorization": f"token {stack.harness_token}"},
        timeout=10,
    ).json()
    return [u["name"] for u in users if u["name"].startswith("e2e-")]


def _dask_processes_now(stack: LocalStack) -> list[str]:
    """Schedulers and workers the stack's gateway runs at this moment."""
    found = []
    for child in psutil.Process(stack.processes["gateway"].pid).children(recursive=True):
        try:
            argv = child.cmdline()
            dask = {"scheduler", "worker"} & set(argv[1:3])  # `[python] dask scheduler ...`
            if child.status() != psutil.STATUS_ZOMBIE and dask:  # (not the gateway's proxy)
                found.append(" ".join(argv)[:120])
        except psutil.Error:
            continue
    return found


def _dask_processes(stack: LocalStack) -> list[str]:
    """Schedulers and workers the stack's gateway still runs once the clusters the run asked
    it to stop have had the time to end (the gateway stops them after it answers)."""

    def none_left() -> None:
        if running := _dask_processes_now(stack):
            raise NotYet(f"still running: {running}")

    with contextlib.suppress(StageFailure):
        wait_for(none_left, stage="self-test", what="the clusters to end", timeout=20)
    return _dask_processes_now(stack)


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text file, read with prometheus_client's own parser."""
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_ten_users_at_once_get_clusters_with_figures_and_leave_nothing(
    running_stack: LocalStack, tmp_path: Path
):
    metrics = tmp_path / "daskhub-e2e.prom"
    run = _live(running_stack, tmp_path, "--users", "10", "--metrics", str(metrics), *SELECT)

    assert run.returncode == 0, run.stdout[-4000:]
    capacity = run.outcome("capacity")
    assert capacity["outcome"] == "passed", capacity
    assert "10 of 10 users got a cluster" in capacity["message"]
    assert "to running p50" in capacity["message"] and "to a result p50" in capacity["message"]
    details = capacity["details"]
    assert details["users"] == 10 and details["failed"] == 0 and details["concurrency"] == 10
    users = details["per_user"]
    assert len({u["user"] for u in users}) == 10
    for user in users:
        assert user["error"] is None
        assert 0 < user["to_running"] <= user["to_result"] <= user["seconds"]
    running = sorted(u["to_running"] for u in users)
    assert details["figures"]["to_running"] == {
        "0.5": running[4],
        "0.95": running[9],
        "1": running[9],
    }
    # At once: every user's cluster was requested before the first one had its result.
    starts = [datetime.fromisoformat(u["started"]).timestamp() for u in users]
    first_result = min(s + u["to_result"] for s, u in zip(starts, users, strict=True))
    assert max(starts) < first_result

    report = (run.artifacts / "report.md").read_text()
    assert "## Capacity" in report
    assert all(f"| {u['user']} |" in report for u in users)
    picture = (run.artifacts / "timeline.svg").read_text()
    assert all(u["user"] in picture for u in users)  # a row per user, under the stage

    samples = _samples(metrics)
    here = {"target": "live", "stage": "capacity"}
    assert _value(samples, "daskhub_e2e_capacity_users", **here) == 10
    assert _value(samples, "daskhub_e2e_capacity_failed_users", **here) == 0
    assert _value(
        samples, "daskhub_e2e_capacity_seconds", **here, measure="to_running", quantile="1"
    ) == pytest.approx(running[9])
    assert (
        _value(
            samples, "daskhub_e2e_stage_outcome", target="live", stage="capacity", outcome="passed"
        )
        == 1
    )

    assert _e2e_users(running_stack) == []  # the ten, the test user and the second user
    assert _dask_processes(running_stack) == []
    assert run.files_left() == []


def test_p95_to_running_above_max_cluster_start_turns_capacity_red(
    running_stack: LocalStack, tmp_path: Path
):
    run = _live(running_stack, tmp_path, "--users", "2", "--max-cluster-start", "0.001", *SELECT)

    assert run.returncode == 1, run.stdout[-3000:]
    failure = run.first_failure
    assert failure is not None and failure["stage"] == "capacity"
    assert "p95 of the seconds to running within --max-cluster-start 0.001s" in failure["message"]
    assert "2 of 2 users got a cluster" in failure["message"]
    assert failure["details"]["failed"] == 0
    assert _e2e_users(running_stack) == []
    assert _dask_processes(running_stack) == []


def test_ctrl_c_during_capacity_removes_its_users_and_clusters_and_writes_metrics(
    running_stack: LocalStack, tmp_path: Path
):
    metrics = tmp_path / "daskhub-e2e.prom"
    artifacts = tmp_path / "artifacts"
    proc, _ = start_harness(
        [*live_args(running_stack), "--users", "6", "--metrics", str(metrics), *SELECT],
        artifacts,
        env={"DASKHUB_E2E_HUB_TOKEN": running_stack.harness_token},
    )
    read_until(proc, "stage capacity starting")

    def users_made() -> None:  # the test user, the second user and the six
        if len(_e2e_users(running_stack)) < 8:
            raise NotYet("not all users made yet")

    wait_for(users_made, stage="self-test", what="the capacity users", timeout=60)

    def a_capacity_cluster_started() -> None:  # so that the Ctrl-C finds clusters to remove
        # One scheduler is the standing cluster's (dashboard, isolation); a second is a
        # capacity user's, whether or not the standing cluster still runs.
        schedulers = [p for p in _dask_processes_now(running_stack) if " scheduler " in p]
        if len(schedulers) < 2:
            raise NotYet(f"{len(schedulers)} scheduler(s) running")

    wait_for(a_capacity_cluster_started, stage="self-test", what="a capacity cluster", timeout=60)
    ctrl_c_ends_the_run(proc)

    assert _e2e_users(running_stack) == []
    assert _dask_processes(running_stack) == []
    samples = _samples(metrics)
    assert (
        _value(
            samples, "daskhub_e2e_stage_outcome", target="live", stage="capacity", outcome="not_run"
        )
        == 1
    )
    assert _value(samples, "daskhub_e2e_run_exit_code", target="live") == 2
    assert _value(samples, "daskhub_e2e_run_success", target="live") == 0
    assert list(temp_dir_of(artifacts).iterdir()) == []


def test_metrics_of_a_failed_run_mark_the_stages_it_never_ran(tmp_path: Path):
    """-x ends the run at its first red stage: the stages after it are `not_run`."""
    metrics = tmp_path / "smoke.prom"
    unreachable = f"http://127.0.0.1:{closed_port()}/"
    run = run_harness(
        ["--target", "live", "--hub-url", unreachable, "-x", "--metrics", str(metrics)],
        tmp_path / "artifacts",
        env={"DASKHUB_E2E_HUB_TOKEN": "1" * 64},
    )

    assert run.returncode == 1
    samples = _samples(metrics)
    outcome = "daskhub_e2e_stage_outcome"
    assert _value(samples, outcome, target="live", stage="discovery", outcome="failed") == 1
    assert _value(samples, outcome, target="live", stage="discovery", outcome="passed") == 0
    assert _value(samples, outcome, target="live", stage="hub_login", outcome="not_run") == 1
    assert (
        "daskhub_e2e_stage_duration_seconds",
        (("stage", "hub_login"), ("target", "live")),
    ) not in samples
    assert _value(samples, "daskhub_e2e_run_success", target="live") == 0
    assert _value(samples, "daskhub_e2e_run_exit_code", target="live") == 1
    assert _value(samples, "daskhub_e2e_run_timestamp_seconds", target="live") > 1.7e9
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".smoke")] == []  # no temp
    assert "1" * 64 not in metrics.read_text()


def test_nearest_rank_percentiles():
    ten = [float(v) for v in range(10, 0, -1)]
    assert (nearest_rank(ten, 0.5), nearest_rank(ten, 0.95), nearest_rank(ten, 1.0)) == (
        5.0,
        10.0,
        10.0,
    )
    assert nearest_rank([3.0], 0.5) == nearest_rank([3.0], 0.95) == 3.0
    assert nearest_rank([float(v) for v in range(1, 101)], 0.95) == 95.0


def test_each_phase_of_an_upgrade_run_keeps_its_own_capacity_figures(tmp_path: Path):
    """--upgrade-from runs capacity once per phase: each stage record, report section and
    metrics series carries its own phase's users; a phase whose capacity did not run (blocked)
    carries none of the other's."""
    at = "2026-01-01T00:00:00+00:00"
    before = CapacityResult(2, 2, [UserResult("e2e-a", at, 3.0, 5.0, 5.0)])
    before.results.append(UserResult("e2e-b", at, 4.0, 6.0, 6.0))
    after = CapacityResult(1, 1, [UserResult("e2e-c", at, 9.0, 11.0, 11.0)])

    blocked = Recorder("kind", "asked for", tmp_path / "blocked")
    blocked.capacity["capacity@2024.1.1"] = before
    blocked.add("capacity@2024.1.1", "passed", time.time(), 6.0, "")
    blocked.add("capacity@upgraded", "skipped", time.time(), 0.0, "blocked by dashboard")
    assert blocked.stages[0].details == before.details()
    assert blocked.stages[1].details is None

    metrics = tmp_path / "daskhub-e2e.prom"
    recorder = Recorder("kind", "asked for", tmp_path / "artifacts", metrics)
    recorder.capacity["capacity@2024.1.1"] = before
    recorder.add("capacity@2024.1.1", "passed", time.time(), 6.0, "")
    recorder.capacity["capacity@upgraded"] = after
    recorder.add("capacity@upgraded", "passed", time.time(), 11.0, "")
    recorder.exit_status = 0
    recorder.write()

    assert [r.details for r in recorder.stages] == [before.details(), after.details()]
    report = (tmp_path / "artifacts" / "report.md").read_text()
    second = report.index("## Capacity (capacity@upgraded)")
    assert report.index("## Capacity (capacity@2024.1.1)") < report.index("| e2e-b |") < second
    assert report.index("| e2e-c |") > second
    samples = _samples(metrics)
    old = {"target": "kind", "stage": "capacity@2024.1.1"}
    new = {"target": "kind", "stage": "capacity@upgraded"}
    assert _value(samples, "daskhub_e2e_capacity_users", **old) == 2
    assert _value(samples, "daskhub_e2e_capacity_users", **new) == 1
    assert _value(
        samples, "daskhub_e2e_capacity_seconds", **new, measure="to_running", quantile="1"
    ) == pytest.approx(9.0)
