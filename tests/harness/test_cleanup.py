"""Nothing of a run survives Ctrl-C: processes (hub, proxy, gateway, schedulers, workers) and
temp folders are gone, whichever stage was running."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from fixtures.faults import FAULTS_ENV
from fixtures.processes import processes_of_run
from tests.harness.runner import start_harness, temp_dir_of


@pytest.mark.parametrize(
    "stage",
    ["discovery", "hub_login", "gateway_cluster", "dashboard", "isolation", "user_server"],
)
def test_ctrl_c_during_a_stage_leaves_nothing_running(tmp_path: Path, stage: str):
    proc, run_id = start_harness(["--target", "local"], tmp_path / "artifacts")
    marker = f"daskhub-e2e: stage {stage} starting"
    seen = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for line in proc.stdout:  # ends when the child closes its output
        seen.append(line)
        if marker in line or time.monotonic() > deadline:
            break
    assert any(marker in line for line in seen), "".join(seen)
    if stage in ("gateway_cluster", "dashboard", "user_server"):
        time.sleep(1.0)  # let the stage get into its cluster or server work first
    assert processes_of_run(run_id), "the run had no processes to stop"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 2, out[-3000:] + err[-2000:]  # pytest: interrupted
    assert "KeyboardInterrupt" in out
    assert processes_of_run(run_id) == []
    assert list(temp_dir_of(tmp_path / "artifacts").iterdir()) == []
    assert (tmp_path / "artifacts" / "stages.json").is_file()


@pytest.mark.parametrize("stage", ["gateway_cluster", "user_server"])
def test_ctrl_c_while_the_user_server_is_still_spawning_stops_it_at_once(
    tmp_path: Path, stage: str
):
    """A spawn that takes long (slow_spawn=120: on Kubernetes, an image pull) is interrupted,
    not waited for: Ctrl-C ends the run within 30 s, and the pending server's process (it
    carries the run's marks) is gone with the rest."""
    proc, run_id = start_harness(
        ["--target", "local"], tmp_path / "artifacts", env={FAULTS_ENV: "slow_spawn=120"}
    )
    marker = f"daskhub-e2e: stage {stage} starting"
    seen = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for line in proc.stdout:  # ends when the child closes its output
        seen.append(line)
        if marker in line or time.monotonic() > deadline:
            break
    assert any(marker in line for line in seen), "".join(seen)
    time.sleep(1.0)
    assert any("time.sleep" in " ".join(p.cmdline()) for p in processes_of_run(run_id)), (
        "the pending user server is not among the run's processes"
    )
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - interrupted

    assert proc.returncode == 2, out[-3000:] + err[-2000:]
    assert took < 30, f"Ctrl-C took {took:.0f}s to end the run"
    hub_log = (tmp_path / "artifacts" / "logs" / "hub.log").read_text()
    assert "Interrupting spawner" in hub_log
    assert processes_of_run(run_id) == []
    assert list(temp_dir_of(tmp_path / "artifacts").iterdir()) == []
