"""Bad input that can be judged before any stage: one line on stderr, exit code 4, nothing left."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from fixtures.processes import processes_of_run
from tests.harness import stand_ins
from tests.harness.runner import REPO, child_env, closed_port

USAGE_ERROR = 4


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the stages with bad input; whatever the outcome, the run leaves nothing behind."""
    with tempfile.TemporaryDirectory() as temp:
        run_id = uuid.uuid4().hex
        environment = child_env(**(env or {}), TMPDIR=temp, DASKHUB_E2E_RUN_ID=run_id)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/e2e", "-p", "no:cacheprovider", *args],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert list(Path(temp).iterdir()) == []
        assert processes_of_run(run_id) == []
    return result


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == USAGE_ERROR, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert lines[0].startswith("ERROR: ")
    return lines[0]


@pytest.fixture
def occupied_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_unknown_target(tmp_path: Path):
    line = _one_line_error(_run(["--target", "cloud", "--artifacts", str(tmp_path)]))
    assert "unknown --target 'cloud'" in line and "local" in line


def _path_with(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only python and the named stand-ins (docker's daemon is down)."""
    bare = stand_ins.install(tmp_path / "all-tools")
    only = tmp_path / "bin"
    only.mkdir()
    (only / "python").symlink_to(sys.executable)
    for tool in tools:
        (only / tool).symlink_to(bare / tool)
    return str(only)


@pytest.mark.parametrize(
    ("target", "tools", "expected"),
    [
        ("kind", (), "--target kind needs Docker: `docker` is not on PATH; install Docker"),
        ("kind", ("docker",), "the Docker daemon is not running (`docker info` failed)"),
        ("existing", (), "`kubectl` is not on PATH; install kubectl"),
        ("existing", ("kubectl",), "`helm` is not on PATH; install helm >= 3.7"),
    ],
)
def test_a_missing_kubernetes_tool_says_what_to_install(
    tmp_path: Path, target: str, tools: tuple[str, ...], expected: str
):
    line = _one_line_error(
        _run(
            ["--target", target, "--artifacts", str(tmp_path / "artifacts")],
            env={"PATH": _path_with(tmp_path, *tools)},
        )
    )
    assert expected in line


def test_a_docker_socket_without_permission_is_not_called_a_stopped_daemon(tmp_path: Path):
    line = _one_line_error(
        _run(
            ["--target", "kind", "--artifacts", str(tmp_path / "artifacts")],
            env={"PATH": _path_with(tmp_path, "docker"), "FAKE_DOCKER_UP": "denied"},
        )
    )
    assert "may not use the Docker daemon's socket (permission denied)" in line
    assert "`docker` group" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mode", "spark"], "unknown --mode 'spark'; use one of gateway, dask-kubernetes"),
        (["--no-install"], "--no-install tests a release that is already installed"),
        (["--release", "Bad_Name"], "--release 'Bad_Name' is not a valid Kubernetes name"),
        (["--chart", "daskhub"], "--chart 'daskhub' is neither a chart folder nor"),
        (
            ["--kubeconfig", "/nonexistent/kubeconfig"],
            "--kubeconfig /nonexistent/kubeconfig: no such",
        ),
        (["--chart-version", "1.0.0"], "--chart-version 1.0.0: the values check knows"),
    ],
)
def test_bad_kubernetes_options(tmp_path: Path, args: list[str], expected: str):
    """Each Kubernetes option judged before any cluster work, in one line."""
    line = _one_line_error(
        _run(
            ["--target", "existing", "--artifacts", str(tmp_path / "artifacts"), *args],
            env={"PATH": _path_with(tmp_path, "kubectl", "helm")},
        )
    )
    assert expected in line


def test_live_without_a_url(tmp_path: Path):
    line = _one_line_error(
        _run(
            ["--target", "live", "--artifacts", str(tmp_path)],
            env={"DASKHUB_E2E_HUB_TOKEN": "x" * 64},
        )
    )
    assert "--hub-url" in line and "DASKHUB_E2E_HUB_URL" in line


def test_live_with_a_malformed_url(tmp_path: Path):
    line = _one_line_error(
        _run(
            ["--target", "live", "--hub-url", "hub.example.org", "--artifacts", str(tmp_path)],
            env={"DASKHUB_E2E_HUB_TOKEN": "x" * 64},
        )
    )
    assert "is not an http(s) URL" in line


def test_live_without_a_token(tmp_path: Path):
    line = _one_line_error(
        _run(["--target", "live", "--hub-url", "http://127.0.0.1:1/", "--artifacts", str(tmp_path)])
    )
    assert "DASKHUB_E2E_HUB_TOKEN" in line and "--hub-token-file" in line


def test_a_token_on_the_command_line_is_refused_without_echoing_it(tmp_path: Path):
    secret = "f" * 64
    result = _run(
        [
            "--target",
            "live",
            "--hub-url",
            "http://127.0.0.1:1/",
            "--hub-token",
            secret,
            "--artifacts",
            str(tmp_path),
        ]
    )
    line = _one_line_error(result)
    assert "argv is visible" in line and "DASKHUB_E2E_HUB_TOKEN" in line
    assert secret not in result.stdout + result.stderr


def test_a_missing_token_file(tmp_path: Path):
    line = _one_line_error(
        _run(
            [
                "--target",
                "live",
                "--hub-url",
                "http://127.0.0.1:1/",
                "--hub-token-file",
                str(tmp_path / "nope"),
                "--artifacts",
                str(tmp_path),
            ]
        )
    )
    assert "cannot read --hub-token-file" in line


def test_a_token_file_readable_by_others_is_warned_about(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text("0" * 64)
    os.chmod(token_file, 0o644)
    result = _run(
        [
            "--target",
            "live",
            "--hub-url",
            f"http://127.0.0.1:{closed_port()}/",
            "--hub-token-file",
            str(token_file),
            "--artifacts",
            str(tmp_path / "a"),
        ]
    )
    assert "readable by other users; run `chmod 600" in result.stderr
    assert result.returncode == 1  # the run goes on, and fails discovery on the closed port
    assert "0" * 64 not in result.stdout + result.stderr


def test_a_values_file_that_is_not_yaml(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("jupyterhub: [unclosed\n")
    line = _one_line_error(
        _run(["--target", "local", "--values", str(bad), "--artifacts", str(tmp_path)])
    )
    assert "is not valid YAML" in line and str(bad) in line


def test_a_values_key_the_subchart_schema_rejects_names_the_key_path(tmp_path: Path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("jupyterhub:\n  singleuser:\n    servieAccountName: daskkubernetes\n")
    line = _one_line_error(
        _run(["--target", "local", "--values", str(bad), "--artifacts", str(tmp_path)])
    )
    assert "jupyterhub.singleuser" in line and "servieAccountName" in line


def test_a_missing_values_file(tmp_path: Path):
    line = _one_line_error(
        _run(
            [
                "--target",
                "local",
                "--values",
                str(tmp_path / "nope.yaml"),
                "--artifacts",
                str(tmp_path),
            ]
        )
    )
    assert "no such file" in line


def test_missing_node_for_the_local_target(tmp_path: Path):
    line = _one_line_error(
        _run(
            ["--target", "local", "--artifacts", str(tmp_path / "artifacts")],
            env={"PATH": _path_with(tmp_path)},
        )
    )
    assert "needs Node.js" in line and "node" in line


def test_an_occupied_local_port(tmp_path: Path, occupied_port: int):
    line = _one_line_error(
        _run(
            ["--target", "local", "--local-port", str(occupied_port), "--artifacts", str(tmp_path)]
        )
    )
    assert f"--local-port {occupied_port} is in use" in line


def test_a_bad_timeout_scale(tmp_path: Path):
    line = _one_line_error(
        _run(["--target", "local", "--timeout-scale", "fast", "--artifacts", str(tmp_path)])
    )
    assert "--timeout-scale must be a positive number" in line


def test_a_kubernetes_option_on_the_local_target_is_refused(tmp_path: Path):
    line = _one_line_error(
        _run(["--target", "local", "--artifacts", str(tmp_path), "--chart", "dask/daskhub"])
    )
    assert "--chart applies to --target kind or existing, not to --target local" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--users", "-1"], "--users must be a whole number from 0 to 200, not '-1'"),
        (["--users", "ten"], "--users must be a whole number from 0 to 200, not 'ten'"),
        (["--users", "201"], "--users must be a whole number from 0 to 200, not '201'"),
        (
            ["--users", "3", "--max-cluster-start", "0"],
            "--max-cluster-start must be a positive number of seconds, not '0'",
        ),
        (["--max-cluster-start", "60"], "--max-cluster-start bounds the capacity stage"),
        (["--metrics", "results.txt"], "reads only *.prom files; give a name ending in .prom"),
        (
            ["--metrics", "/nonexistent/daskhub-e2e.prom"],
            "the folder /nonexistent does not exist",
        ),
    ],
)
def test_bad_capacity_and_metrics_options(tmp_path: Path, args: list[str], expected: str):
    """--users, --max-cluster-start and --metrics are judged before any stage, in one line."""
    line = _one_line_error(
        _run(["--target", "local", "--artifacts", str(tmp_path / "artifacts"), *args])
    )
    assert expected in line
