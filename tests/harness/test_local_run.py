"""The full stage run on the local target: green, secret-free, and nothing left behind."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

import yaml

from fixtures.secrets import write_secret_file
from tests.harness.runner import STAGES, run_harness


def _canary_values(folder: Path) -> tuple[Path, list[str]]:
    """A values file whose three tokens are canaries: strings that must never be seen again."""
    proxy, gateway, harness = (secrets.token_hex(32) for _ in range(3))
    values = {
        "jupyterhub": {
            "proxy": {"secretToken": proxy},
            "hub": {
                "services": {
                    "dask-gateway": {"apiToken": gateway},
                    "daskhub-e2e": {"apiToken": harness},
                }
            },
        },
        "dask-gateway": {"gateway": {"auth": {"jupyterhub": {"apiToken": gateway}}}},
    }
    path = write_secret_file(folder / "canary-secrets.yaml", yaml.safe_dump(values))
    return path, [proxy, gateway, harness]


def _shared_scratch_stamp() -> int | None:
    """When the machine's shared dask scratch folder last changed (a worker that is not told
    otherwise makes its folder there and removes it at its end), or None if there is none."""
    scratch = Path(tempfile.gettempdir()) / "dask-scratch-space"
    return scratch.stat().st_mtime_ns if scratch.exists() else None


def test_local_target_passes_every_stage_without_leaking_or_leaving_anything(tmp_path: Path):
    values, canaries = _canary_values(tmp_path)
    scratch_before = _shared_scratch_stamp()
    run = run_harness(["--target", "local", "--values", str(values)], tmp_path / "artifacts")

    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert run.stdout.startswith("daskhub-e2e: target local (asked for with --target)")
    assert [s["stage"] for s in run.stages] == STAGES
    assert run.outcomes_beside_kubernetes() == {"passed"}, run.stages
    assert "1 worker computed sum(range(10)) = 45" in run.outcome("gateway_cluster")["message"]
    assert (
        "Kubernetes checks skipped: the local target has no Kubernetes API"
        in run.outcome("discovery")["message"]
    )
    # The server was requested right after hub_login and was ready when user_server began.
    assert "server requested for user_server" in run.outcome("hub_login")["message"]
    inside = run.outcome("user_server")["message"]
    assert "server requested after hub_login, ready" in inside
    assert "options {'image': 'daskhub-e2e/local-user:1.0'}" in inside  # JUPYTER_IMAGE_SPEC
    assert "1 worker computed 45, dashboard OK" in inside
    steps = run.outcome("user_server")["details"]["steps"]
    assert list(steps) == [
        "server_ready_after_request",
        "early_kernel",
        "early_environment",
        "early_cluster",
        "spawn",
        "kernel",
        "environment",
        "environment_queued",
        "cluster",
        "dashboard",
        "compute",
        "shutdown",
    ]
    # Its environment and cluster cells ran while the gateway stages did (the user is the
    # harness's own), so the stage itself only waited for what was left of them.
    assert "2 of its first cells ran meanwhile" in inside
    assert steps["cluster"] == 0 and steps["compute"] > 0
    # What those early steps took is kept apart: a cluster started from inside the server
    # (new_cluster returns once its scheduler runs) takes time, even when none of it was
    # waited for.
    assert steps["early_kernel"] > 0 and steps["early_cluster"] > 0.1
    # The first cell's wait for the kernel to begin it is part of that cell's seconds (at
    # two decimals it may round to 0 where the kernel answers at once).
    assert 0 <= steps["environment_queued"] <= steps["early_environment"]
    titles = {f["title"] for f in run.findings}
    assert "dashboards are readable anonymously" in titles
    assert "the gateway accepts a non-user (service) token" in titles
    for name in (
        "stages.json",
        "findings.json",
        "junit.xml",
        "report.md",
        "logs/hub.log",
        "logs/gateway.log",
    ):
        assert (run.artifacts / name).is_file(), name
    assert "Adding external service dask-gateway" in (run.artifacts / "logs/hub.log").read_text()

    # No token in stdout, stderr, any artifact, or any process's argv.
    texts = [run.stdout, run.stderr, *run.argvs]
    texts += [p.read_text(errors="replace") for p in run.artifacts.rglob("*") if p.is_file()]
    assert run.argvs, "the argv watcher saw none of the run's processes"
    for canary in canaries:
        assert not any(canary in text for text in texts)

    assert run.leftovers() == []
    assert run.files_left() == []
    assert run.homes_left() == []
    assert _shared_scratch_stamp() == scratch_before  # workers used the run's own scratch


def test_the_user_server_is_requested_early_only_when_user_server_runs(tmp_path: Path):
    """Deselected user_server: no server is spawned (the hub's log has no spawn)."""
    run = run_harness(["--target", "local", "-k", "discovery or hub_login"], tmp_path / "artifacts")

    assert run.returncode == 0, run.stdout[-3000:]
    assert "requested" not in run.outcome("hub_login")["message"]
    hub_log = (run.artifacts / "logs" / "hub.log").read_text()
    assert "Adding external service dask-gateway" in hub_log
    assert "Spawning" not in hub_log
    assert run.leftovers() == []
