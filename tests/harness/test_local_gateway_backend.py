"""The local stack's gateway backend (fixtures/local_configs/dask_gateway_config.py) stops a
scheduler or worker process as the base class does (SIGINT, then SIGTERM after its timeout),
and returns within a poll's interval of the process's exit, not after a backoff's gap. Real
processes, started and reaped the way the gateway starts and reaps them (asyncio)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import runpy
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from traitlets.config import Config

from fixtures.local_stack import CONFIGS

#: How late the backend may see an exit: its poll interval (50 ms) and scheduling on a busy
#: machine. The base class's backoff sees an exit at 0.35 s only at 0.7 s.
LATE = 0.2


@pytest.fixture
def backend_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """PromptLocalBackend as the gateway's config file defines it, from a minimal spec."""
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "faults": {},
                "gateway_api_port": 1,
                "gateway_proxy_port": 2,
                "hub_api_url": "http://127.0.0.1:3/hub/api",
                "clusters_dir": str(tmp_path),
                "scheduler_cmd": ["dask", "scheduler"],
                "worker_cmd": ["dask", "worker"],
                "gateway_extra_config": [],
            }
        )
    )
    monkeypatch.setenv("DASKHUB_E2E_STACK_SPEC", str(spec))
    namespace = runpy.run_path(str(CONFIGS / "dask_gateway_config.py"), {"c": Config()})
    assert namespace["c"].DaskGateway.backend_class is namespace["PromptLocalBackend"]
    return namespace["PromptLocalBackend"]


def _stopping(backend_class: Any, on_sigint: str, exited: Path) -> tuple[float, float, bool]:
    """Start a process whose SIGINT handling is ``on_sigint`` (it writes its exit time to
    ``exited`` when it exits by itself), stop it; return (seconds stop_process took, seconds
    from the process's own exit to the return, whether the process is still there)."""
    code = (
        "import signal, sys, time\n"
        "def leave(*_):\n"
        f"    {on_sigint}\n"
        f"    open({str(exited)!r}, 'w').write(repr(time.time()))\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGINT, leave)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    backend = SimpleNamespace(
        sigint_timeout=1, sigterm_timeout=1, sigkill_timeout=1, log=logging.getLogger("test")
    )

    async def scenario() -> tuple[float, float, bool]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
        started = time.monotonic()
        await asyncio.wait_for(backend_class.stop_process(backend, proc.pid), 10)
        took, returned = time.monotonic() - started, time.time()
        lag = returned - float(exited.read_text()) if exited.exists() else -1.0
        try:
            os.kill(proc.pid, 0)  # the gateway's own check: gone once reaped
            alive = True
        except ProcessLookupError:
            alive = False
        await proc.wait()
        return took, lag, alive

    return asyncio.run(scenario())


def test_a_process_that_exits_on_sigint_is_seen_gone_at_once(backend_class: Any, tmp_path: Path):
    took, lag, alive = _stopping(backend_class, "time.sleep(0.35)", tmp_path / "exited")
    assert not alive
    assert 0 <= lag < LATE, f"stop_process returned {lag:.2f}s after the process exited"
    assert took < 1, f"stop_process took {took:.2f}s (SIGINT's timeout is 1 s)"


def test_a_process_that_ignores_sigint_gets_sigterm_after_the_timeout(
    backend_class: Any, tmp_path: Path
):
    took, lag, alive = _stopping(backend_class, "return", tmp_path / "exited")
    assert not alive
    assert lag == -1.0  # SIGTERM's default action ended it, not its own exit
    assert 1 <= took < 1 + LATE + 0.5, f"stop_process took {took:.2f}s"
