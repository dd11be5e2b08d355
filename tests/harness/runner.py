"""Run the harness as a user does, in a child pytest, and read what it left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from jupyterhub.spawner import SimpleLocalProcessSpawner

from fixtures.hub import TEST_USER_PREFIX
from fixtures.local_stack import LocalStack
from fixtures.processes import RUN_ID_ENV, processes_of_run
from fixtures.values import SCHEMAS_ENV

REPO = Path(__file__).resolve().parents[2]
#: Stages that need a Kubernetes target; elsewhere they are skipped with that reason.
KUBERNETES_ONLY = ("dask_kubernetes", "gateway_disabled", "singleuser_reaches_traefik")
#: Every stage of a run, in the order stages.json lists them.
STAGES = [
    "setup",
    "discovery",
    "hub_login",
    "gateway_cluster",
    "dashboard",
    "isolation",
    "capacity",
    "user_server",
    *KUBERNETES_ONLY,
]


@dataclass
class HarnessRun:
    returncode: int
    stdout: str
    stderr: str
    artifacts: Path
    run_id: str
    argvs: set[str] = field(default_factory=set)  # every argv seen of the run's processes

    @property
    def stages(self) -> list[dict[str, Any]]:
        """stages.json's stages; a run that wrote none fails the test with what it printed."""
        written = self.artifacts / "stages.json"
        if not written.exists():
            raise AssertionError(
                f"the run wrote no {written} (exit {self.returncode}); it printed:\n"
                f"{self.stdout[-2000:]}{self.stderr[-2000:]}"
            )
        return list(json.loads(written.read_text())["stages"])

    def outcome(self, stage: str) -> dict[str, Any]:
        return next(s for s in self.stages if s["stage"] == stage)

    def outcomes_beside_kubernetes(self) -> set[str]:
        """The outcomes of every stage, after checking that the Kubernetes-only ones were
        skipped for the reason that the target has none (and capacity, unless --users was
        given, for that reason)."""
        for stage in self.stages:
            if stage["stage"] in KUBERNETES_ONLY:
                assert stage["outcome"] == "skipped", stage
                assert "Kubernetes" in stage["message"] or "--target kind" in stage["message"]
        optional = [*KUBERNETES_ONLY]
        if any(
            s["stage"] == "capacity" and s["message"].startswith("--users 0") for s in self.stages
        ):
            optional.append("capacity")
        return {s["outcome"] for s in self.stages if s["stage"] not in optional}

    @property
    def first_failure(self) -> dict[str, Any] | None:
        return next((s for s in self.stages if s["outcome"] == "failed"), None)

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list(json.loads((self.artifacts / "findings.json").read_text())["findings"])

    def files_left(self) -> list[str]:
        """What the run left in its temp folder (it must leave nothing there)."""
        return sorted(str(p) for p in temp_dir_of(self.artifacts).iterdir())

    def homes_left(self) -> list[str]:
        """Home folders of the run's test users (named in the hub's log) that outlived it
        where the local spawner makes them unless told otherwise (its default template)."""
        template = SimpleLocalProcessSpawner.class_traits()["home_dir_template"].default_value
        hub_log = (self.artifacts / "logs" / "hub.log").read_text(errors="replace")
        users = set(re.findall(rf"\b{TEST_USER_PREFIX}[0-9a-f]{{8}}\b", hub_log))
        assert users, "the hub's log names no test user: nothing to judge"
        homes = (Path(template.format(username=user)) for user in users)
        return sorted(str(home) for home in homes if home.exists())

    def leftovers(self) -> list[str]:
        """The run's processes still alive, as readable lines."""
        return [
            f"{p.pid} {' '.join(p.cmdline())[:120]}"
            for p in processes_of_run(self.run_id)
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        ]


#: pytest with Python's own Ctrl-C handler, as in a terminal, even when these self-tests were
#: started with SIGINT ignored (a shell's background job without job control ignores it, and
#: children inherit that), so that a self-test's Ctrl-C reaches the run. The rest is
#: ``python -m pytest`` itself (pytest.console_main is deprecated for this since pytest 9.1).
PYTEST_AS_IN_A_TERMINAL = (
    "import signal, runpy; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('pytest', run_name='__main__', alter_sys=True)"
)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child run: none of the harness's variables but the schema folder
    the self-tests check values against."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("DASKHUB_E2E_") or k == SCHEMAS_ENV
    }
    env.pop("GITHUB_STEP_SUMMARY", None)
    env.update(extra)
    return env


def _watch_argv(run_id: str, seen: set[str], stop: threading.Event) -> None:
    while not stop.wait(0.2):
        for proc in processes_of_run(run_id):
            try:
                seen.add(" ".join(proc.cmdline()))
            except psutil.Error:
                continue


def temp_dir_of(artifacts: Path) -> Path:
    """The TMPDIR a harness run with these artifacts gets."""
    return artifacts.parent / f"{artifacts.name}-tmp"


def start_harness(
    args: list[str], artifacts: Path, env: dict[str, str] | None = None, run_id: str | None = None
) -> tuple[subprocess.Popen[str], str]:
    run_id = run_id or uuid.uuid4().hex
    environment = child_env(**(env or {}))
    environment[RUN_ID_ENV] = run_id
    # A temp folder of the run's own, so that "nothing left on disk" is judged for this run
    # alone, whatever else runs on the machine.
    if "TMPDIR" not in (env or {}):
        environment["TMPDIR"] = str(temp_dir_of(artifacts))
        temp_dir_of(artifacts).mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PYTEST_AS_IN_A_TERMINAL,
            "tests/e2e",
            "-p",
            "no:cacheprovider",
            "--artifacts",
            str(artifacts),
            *args,
        ],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, run_id


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 120) -> None:
    """Read a started run's output until a line holds ``marker``; fail with what it printed
    when none did. A run that printed no such line within ``timeout`` seconds, even one that
    went silent, is sent SIGTERM (it ends as interrupted, removing what it started), which
    closes its output and so ends the read."""
    seen = []
    assert proc.stdout is not None
    too_late = threading.Timer(timeout, proc.terminate)
    too_late.start()
    try:
        for line in proc.stdout:  # ends when the child closes its output
            seen.append(line)
            if marker in line:
                break
    finally:
        too_late.cancel()
    assert any(marker in line for line in seen), "".join(seen)


def ctrl_c_ends_the_run(proc: subprocess.Popen[str]) -> str:
    """Press Ctrl-C: the run must end within 20 s, interrupted (exit code 2); its output."""
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - interrupted
    assert proc.returncode == 2, out[-3000:] + err[-2000:]
    assert took < 20, f"Ctrl-C took {took:.0f}s to end the run"
    return out


def run_harness(
    args: list[str], artifacts: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> HarnessRun:
    """Run ``pytest tests/e2e --artifacts DIR ARGS`` to its end, watching its processes' argv."""
    proc, run_id = start_harness(args, artifacts, env)
    seen: set[str] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_argv, args=(run_id, seen, stop), daemon=True)
    watcher.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    watcher.join()
    return HarnessRun(proc.returncode, stdout, stderr, artifacts, run_id, seen)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound for a moment, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def live_args(stack: LocalStack) -> list[str]:
    """``--target live`` against a separately started local stack: its URL and proxy."""
    return [
        "--target",
        "live",
        "--hub-url",
        stack.public_url,
        "--gateway-proxy-address",
        stack.gateway_proxy_address,
    ]
