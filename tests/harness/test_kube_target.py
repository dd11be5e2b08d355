"""The kind and existing targets, run as a user runs them (`pytest tests/e2e --target ...` in a
child process), against what is real here and stand-ins for what is not:

- the Kubernetes API is the loopback server of :mod:`tests.harness.fake_kube`, reached by the
  real ``kubernetes`` client through the kubeconfig the harness is given or kind writes;
- ``helm``, ``kind``, ``kubectl`` and ``docker`` are the stand-ins of
  :mod:`tests.harness.stand_ins`, first on PATH, recording their argv;
- behind the Services, the port-forwards and the kind NodePort mappings is a real local
  DaskHub stack (real hub, proxy, gateway and Dask), so the stages that talk HTTP and Dask
  really run.

No kind cluster, helm chart or container image is involved: these tests prove the harness's
own sequence (lint gate, namespace claim, install, wait, reach, checks, teardown), its safety
rules and its diagnostics, not the chart's behaviour on a real cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from pytest_httpserver import HTTPServer

from fixtures.kind import HUB_NODE_PORT, TRAEFIK_NODE_PORT
from fixtures.kube_target import HOST_LABEL, OWNER_LABEL, OWNER_VALUE, PID_LABEL, this_host
from fixtures.local_stack import LocalStack
from fixtures.waiting import wait_for
from tests.harness import stand_ins
from tests.harness.fake_kube import FakeKube
from tests.harness.runner import (
    REPO,
    HarnessRun,
    ctrl_c_ends_the_run,
    run_harness,
    start_harness,
    temp_dir_of,
)

THROUGH_KUBERNETES = (
    "discovery or dask_kubernetes or gateway_disabled or singleuser_reaches_traefik"
)


@dataclass
class Tools:
    """The stand-ins on PATH, their call log, and the environment a child run gets."""

    log: Path
    kind_state: Path
    env: dict[str, str]

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        return stand_ins.calls(self.log, tool)

    def commands(self, tool: str) -> list[str]:
        return [" ".join(call["argv"][:2]) for call in self.calls(tool)]


@pytest.fixture
def fake_kube(httpserver: HTTPServer, running_stack: LocalStack) -> FakeKube:
    """The loopback API, its Services' port-forwards leading to the running local stack."""
    fake = FakeKube(httpserver)
    fake.forwards[("*", "proxy-public")] = _host_port(running_stack.public_url)
    fake.forwards[("*", "traefik-*")] = _host_port(running_stack.gateway_proxy_address)
    return fake


@pytest.fixture
def tools(tmp_path: Path, fake_kube: FakeKube) -> Tools:
    bin_dir = stand_ins.install(tmp_path / "bin")
    log, kind_state = tmp_path / "tools.jsonl", tmp_path / "kind-state"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_TOOLS_LOG": str(log),
        "FAKE_KIND_STATE": str(kind_state),
        "FAKE_KUBE_URL": fake_kube.url,
        "FAKE_DOCKER_UP": "1",
    }
    return Tools(log, kind_state, env)


@pytest.fixture
def kubeconfig(tmp_path: Path, fake_kube: FakeKube) -> Path:
    """An operator's kubeconfig for the loopback cluster."""
    return stand_ins.write_kubeconfig(tmp_path / "kubeconfig", fake_kube.url, "ops")


def _host_port(address: str) -> tuple[str, int]:
    parsed = urlparse(address)
    return str(parsed.hostname), int(parsed.port or 80)


@contextlib.contextmanager
def node_port_mapping(
    host_port: int, backend: tuple[str, int], kind_state: Path | None = None
) -> Iterator[None]:
    """What kind's extraPortMappings give the host: ``127.0.0.1:host_port`` reaching a
    NodePort (here: the local stack behind it), listening only once the stand-in kind has
    made a cluster (in ``kind_state``), as the real mapping does."""
    stop = threading.Event()
    listeners: list[socket.socket] = []

    def serve() -> None:
        while kind_state is not None and not any(kind_state.glob("*.json")):
            if stop.wait(0.05):
                return
        listeners.append(socket.create_server(("127.0.0.1", host_port)))
        stand_ins.forward_connections(listeners[0], backend, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        for listener in listeners:
            listener.close()


def _secrets_nowhere(run: HarnessRun, tools: Tools, fake: FakeKube) -> None:
    """No token the run installed appears in its output, artifacts or any tool's argv."""
    tokens = {
        service["apiToken"]
        for body in fake.installed
        for service in body["values"]["jupyterhub"]["hub"]["services"].values()
        if "apiToken" in service
    }
    assert tokens
    texts = [run.stdout, run.stderr, tools.log.read_text()]
    texts += [p.read_text() for p in run.artifacts.rglob("*") if p.is_file() and p.suffix != ".svg"]
    for token in tokens:
        assert not any(token[:12] in text for text in texts)


def _secrets_file_used_and_gone(tools: Tools) -> None:
    """helm got the generated tokens in a 0600 file that no longer exists."""
    upgrade = next(c for c in tools.calls("helm") if c["argv"][0] == "upgrade")
    secret_files = [f for f in upgrade["modes"] if f.endswith("daskhub-e2e-secrets.yaml")]
    assert secret_files
    assert upgrade["modes"][secret_files[0]] == "0o600"
    assert not Path(secret_files[0]).exists()


# ------------------------------------------------------------------------ existing target


def test_existing_target_installs_its_own_release_checks_it_and_removes_it(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, kubeconfig: Path
):
    # a relative --kubeconfig (the run's directory is the repository): kubectl port-forward
    # runs in another folder, so the path must be made absolute when the options are read
    run = run_harness(
        [
            "--target",
            "existing",
            "--kubeconfig",
            os.path.relpath(kubeconfig, REPO),
            "--mode",
            "dask-kubernetes",
            "-k",
            THROUGH_KUBERNETES,
        ],
        tmp_path / "artifacts",
        # the chart's pre-install hooks take longer than helm's default 5 minutes
        {**tools.env, "FAKE_HELM_HOOK_SECONDS": "400"},
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert [s["outcome"] for s in run.stages] == [
        "passed",
        "passed",
        "passed",
        "xfailed",
        "xfailed",
    ]
    assert (
        "NetworkPolicy singleuser allows no egress from user pods to traefik-"
        in (run.outcome("singleuser_reaches_traefik")["message"])
    )
    discovery = run.outcome("discovery")["message"]
    assert "Services of daskhub-e2e-" in discovery
    # the user image was pulled while the release started, and the report says how long
    assert (
        "user image pangeo/base-notebook:2025.11.13 on the node after"
        in run.outcome("setup")["message"]
    )
    assert "proxy-public through kubectl port-forward" in discovery
    assert "daskkubernetes" in run.outcome("dask_kubernetes")["message"]
    assert "no `condition:`" in run.outcome("gateway_disabled")["message"]

    upgrade = next(c["argv"] for c in tools.calls("helm") if c["argv"][0] == "upgrade")
    namespace = upgrade[upgrade.index("--namespace") + 1]
    release = upgrade[2]
    # a fresh release daskhub-e2e-<random> in a namespace of the same name: two runs on one
    # cluster never share cluster-scoped objects
    assert release.startswith("daskhub-e2e-") and release == namespace
    assert "--create-namespace" not in upgrade  # the harness made it (a 403 otherwise)
    assert upgrade[upgrade.index("--timeout") + 1] == "600s"  # pre-install hooks, scaled
    helm = tools.commands("helm")
    # the values check (pull) and the lint gate (template) come before the cluster is touched
    assert helm.index("repo add") < helm.index("pull dask/daskhub")
    assert helm.index("pull dask/daskhub") < helm.index(f"template {release}")
    assert helm.index(f"template {release}") < helm.index("list --all-namespaces")
    listing = next(c["argv"] for c in tools.calls("helm") if c["argv"][0] == "list")
    assert "--all" in listing  # pending and failed releases too
    repo_add = next(c for c in tools.calls("helm") if c["argv"][:2] == ["repo", "add"])
    # the run's own repository list: the user's is never rewritten by --force-update
    assert repo_add["repository_config"].startswith(str(temp_dir_of(run.artifacts)))
    assert helm[-1] == f"uninstall {release}"
    files = [upgrade[i + 1] for i, a in enumerate(upgrade) if a == "--values"]
    assert [Path(f).name for f in files] == [
        "daskhub-e2e.yaml",
        "dask-kubernetes.yaml",
        "daskhub-e2e-secrets.yaml",
    ]
    assert ("POST", "/api/v1/namespaces") in fake_kube.requests
    assert ("DELETE", f"/api/v1/namespaces/{namespace}") in fake_kube.requests
    assert fake_kube.namespaces == {} and fake_kube.releases == {}
    assert tools.commands("kubectl") == [
        "port-forward svc/proxy-public",
        f"port-forward svc/traefik-{release}-dask-gateway",
    ]
    _secrets_file_used_and_gone(tools)
    _secrets_nowhere(run, tools, fake_kube)
    assert run.leftovers() == [] and run.files_left() == []


def test_existing_target_with_no_install_tests_a_release_and_leaves_it(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, kubeconfig: Path, running_stack: LocalStack
):
    fake_kube.add_namespace("ops")
    fake_kube.install("ops", "dhub", {})
    # $KUBECONFIG naming two files, the current context in the second: every tool (the
    # client, kubectl) reads them merged, as kubectl does
    other = tmp_path / "other-kubeconfig"
    other.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "other", "cluster": {"server": "https://192.0.2.1:6443"}}],
                "contexts": [{"name": "other", "context": {"cluster": "other", "user": "o"}}],
                "users": [{"name": "o", "user": {"token": "x"}}],
            }
        )
    )
    env = {
        **tools.env,
        "DASKHUB_E2E_HUB_TOKEN": running_stack.harness_token,
        "KUBECONFIG": f"{other}{os.pathsep}{kubeconfig}",
    }
    run = run_harness(
        [
            "--target",
            "existing",
            "--no-install",
            "--release",
            "dhub",
            "--namespace",
            "ops",
            "-k",
            "not user_server",
        ],
        tmp_path / "artifacts",
        env,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    outcomes = {s["stage"]: s["outcome"] for s in run.stages}
    assert outcomes == {
        "setup": "passed",
        "discovery": "passed",
        "hub_login": "passed",
        "gateway_cluster": "passed",
        "dashboard": "passed",
        "isolation": "passed",
        "capacity": "skipped",
        "dask_kubernetes": "skipped",
        "gateway_disabled": "skipped",
        "singleuser_reaches_traefik": "skipped",
    }
    assert "1 worker computed" in run.outcome("gateway_cluster")["message"]
    assert tools.calls("helm") == []  # nothing installed, upgraded or removed
    assert ("ops", "dhub") in fake_kube.releases and "ops" in fake_kube.namespaces
    assert not any(method == "DELETE" for method, _ in fake_kube.requests)
    assert run.leftovers() == [] and run.files_left() == []


def test_existing_target_refuses_a_namespace_it_did_not_make(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, kubeconfig: Path
):
    fake_kube.add_namespace("team-a")
    run = run_harness(
        ["--target", "existing", "--kubeconfig", str(kubeconfig), "--namespace", "team-a"],
        tmp_path / "artifacts",
        tools.env,
    )
    assert run.returncode == 1
    setup = run.outcome("setup")
    assert setup["outcome"] == "failed"
    assert f"without the label {OWNER_LABEL}={OWNER_VALUE}" in setup["message"]
    assert "--no-install" in setup["message"]
    assert not {"upgrade", "uninstall"} & {c["argv"][0] for c in tools.calls("helm")}
    assert "team-a" in fake_kube.namespaces
    assert not any(method == "DELETE" for method, _ in fake_kube.requests)


def test_a_crash_looping_pod_fails_setup_at_once_with_censored_diagnostics(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, kubeconfig: Path
):
    fake_kube.break_pod = "hub"
    run = run_harness(
        ["--target", "existing", "--kubeconfig", str(kubeconfig)],
        tmp_path / "artifacts",
        tools.env,
    )
    assert run.returncode == 1
    setup = run.outcome("setup")
    assert "container hub is CrashLoopBackOff" in setup["message"]
    assert setup["seconds"] < 30  # fail-fast, not the 600 s deadline
    diagnostics = run.artifacts / "diagnostics"
    pods = (diagnostics / "pods.txt").read_text()
    assert "hub-5d8f7c9b4-x2x7q  0/1 ready  CrashLoopBackOff  restarts 3" in pods
    events = (diagnostics / "events.txt").read_text().splitlines()
    # sorted by time: the hub pod's pull, the pre-pull Pod's pull, the hub start
    assert [line.split()[2] for line in events] == ["Pulled", "Pulling", "Started"]
    assert (diagnostics / "logs" / "hub-5d8f7c9b4-x2x7q.hub.previous.log").exists()
    values = yaml.safe_load((diagnostics / "values.yaml").read_text())
    services = values["jupyterhub"]["hub"]["services"]
    assert services["daskhub-e2e"]["apiToken"] == "[censored]"
    assert "diagnostics written to" in (run.artifacts / "report.md").read_text()
    assert tools.commands("helm")[-1].startswith("uninstall daskhub-e2e-")  # removed after it
    assert fake_kube.namespaces == {}
    _secrets_nowhere(run, tools, fake_kube)


# ----------------------------------------------------------------------------- kind target


def _kind_run(tmp_path: Path, tools: Tools, stack: LocalStack, *args: str) -> HarnessRun:
    with (
        node_port_mapping(HUB_NODE_PORT, _host_port(stack.public_url), tools.kind_state),
        node_port_mapping(
            TRAEFIK_NODE_PORT, _host_port(stack.gateway_proxy_address), tools.kind_state
        ),
    ):
        return run_harness(
            ["--target", "kind", "--cluster-name", "e2e-selftest", "-k", THROUGH_KUBERNETES, *args],
            tmp_path / f"artifacts-{len(list(tmp_path.glob('artifacts-*')))}",
            tools.env,
        )


def test_kind_target_makes_a_cluster_with_port_mappings_and_deletes_it(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, running_stack: LocalStack
):
    run = _kind_run(tmp_path, tools, running_stack)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "through the kind port mapping of NodePort 30080" in run.outcome("discovery")["message"]
    assert tools.commands("kubectl") == []  # no port-forward on kind
    create = next(c for c in tools.calls("kind") if c["argv"][:2] == ["create", "cluster"])
    assert not [a for a in create["argv"] if a.startswith("--image")]  # kind's own default
    assert "setup" in [s["stage"] for s in run.stages]
    mappings = create["config"]["nodes"][0]["extraPortMappings"]
    assert {(m["containerPort"], m["hostPort"], m["listenAddress"]) for m in mappings} == {
        (30080, 30080, "127.0.0.1"),
        (30081, 30081, "127.0.0.1"),
    }
    assert tools.commands("kind")[-1] == "delete cluster"
    assert not list(tools.kind_state.glob("*.json"))
    assert not (REPO / ".pytest-kind" / "e2e-selftest").exists()
    upgrade = next(c["argv"] for c in tools.calls("helm") if c["argv"][0] == "upgrade")
    files = [Path(upgrade[i + 1]).name for i, a in enumerate(upgrade) if a == "--values"]
    assert files == ["daskhub-e2e.yaml", "kind.yaml", "daskhub-e2e-secrets.yaml"]
    assert upgrade[upgrade.index("--kubeconfig") + 1].endswith(
        ".pytest-kind/e2e-selftest/kubeconfig"
    )
    assert upgrade[1:4] == ["--install", "dhub", "dask/daskhub"] and "--wait" not in upgrade
    _secrets_file_used_and_gone(tools)
    assert run.leftovers() == [] and run.files_left() == []


def _installed_tokens(body: dict[str, Any]) -> dict[str, str]:
    services = body["values"]["jupyterhub"]["hub"]["services"]
    return {
        name: service["apiToken"] for name, service in services.items() if "apiToken" in service
    }


def test_a_kept_kind_cluster_is_reused_with_its_tokens_read_back(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, running_stack: LocalStack
):
    kept = _kind_run(tmp_path, tools, running_stack, "--keep")
    try:
        assert kept.returncode == 0, kept.stdout[-3000:]
        assert "kind cluster e2e-selftest" in kept.stdout
        assert "kind delete cluster --name e2e-selftest" in kept.stdout
        assert [c["argv"][0] for c in tools.calls("kind")].count("delete") == 0
        assert ("dhub", "dhub") in fake_kube.releases
        assert fake_kube.namespaces["dhub"]["metadata"]["labels"][OWNER_LABEL] == OWNER_VALUE

        again = _kind_run(tmp_path, tools, running_stack)
        assert again.returncode == 0, again.stdout[-3000:]
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(REPO / ".pytest-kind" / "e2e-selftest")
    commands = tools.commands("kind")
    assert commands.count("create cluster") == 1
    assert "export kubeconfig" in commands[commands.index("create cluster") + 1 :]
    # A cluster this run did not create is never deleted; the release it installed is.
    assert "delete cluster" not in commands
    assert [p.stem for p in tools.kind_state.glob("*.json")] == ["e2e-selftest"]
    assert ("dhub", "dhub") not in fake_kube.releases
    first, second = fake_kube.installed
    assert _installed_tokens(second) == _installed_tokens(first)  # read back from Secret hub
    proxy = second["values"]["jupyterhub"]["proxy"]
    assert "secretToken" not in proxy  # the chart keeps its own (lookup)
    assert again.leftovers() == [] and again.files_left() == []


def test_a_new_kind_cluster_whose_host_ports_are_taken_is_one_sentence(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, running_stack: LocalStack
):
    """Another cluster (or process) holds host port 30080: setup says so, nothing is made."""
    with socket.create_server(("127.0.0.1", HUB_NODE_PORT)):
        run = run_harness(
            ["--target", "kind", "-k", "discovery"], tmp_path / "artifacts", tools.env
        )
    assert run.returncode == 1, run.stdout[-3000:]
    setup = run.outcome("setup")
    assert setup["outcome"] == "failed"
    assert "host port 30080 is taken (another kind cluster or process" in setup["message"]
    assert tools.commands("kind") == ["get clusters"]  # no cluster was made
    assert run.leftovers() == [] and run.files_left() == []


def test_the_default_kind_cluster_is_the_harness_own_not_pytest_kinds(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, running_stack: LocalStack
):
    """pytest-kind-ng's default name is shared with every pytest-kind user: never taken."""
    with (
        node_port_mapping(HUB_NODE_PORT, _host_port(running_stack.public_url), tools.kind_state),
        node_port_mapping(
            TRAEFIK_NODE_PORT,
            _host_port(running_stack.gateway_proxy_address),
            tools.kind_state,
        ),
    ):
        run = run_harness(
            ["--target", "kind", "-k", "discovery"], tmp_path / "artifacts", tools.env
        )
    assert run.returncode == 0, run.stdout[-3000:]
    create = next(c for c in tools.calls("kind") if c["argv"][:2] == ["create", "cluster"])
    assert "--name=daskhub-e2e" in create["argv"]
    assert tools.commands("kind")[-1] == "delete cluster"


def test_ctrl_c_while_waiting_for_the_release_removes_it(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, kubeconfig: Path
):
    fake_kube.slow_pod = "hub"
    artifacts = tmp_path / "artifacts"
    proc, _ = start_harness(
        ["--target", "existing", "--kubeconfig", str(kubeconfig)], artifacts, tools.env
    )
    try:
        wait_for(
            lambda: fake_kube.installed[0],
            stage="self-test",
            what="the harness to install its release",
            timeout=60,
        )
    finally:
        ctrl_c_ends_the_run(proc)
    assert tools.commands("helm")[-1].startswith("uninstall daskhub-e2e-")
    assert fake_kube.namespaces == {} and fake_kube.releases == {}
    assert list(temp_dir_of(artifacts).iterdir()) == []


# ----------------------------------------------------------------------------- upgrade path


def _local_chart(tmp_path: Path) -> Path:
    chart = tmp_path / "helm-chart" / "daskhub"
    chart.mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: daskhub\nversion: 0.0.1-dev\n")
    # dask/helm-chart keeps a Chart.lock that often lags Chart.yaml: `helm dependency build`
    # refuses it, `helm dependency update` does not
    (chart / "Chart.lock").write_text("dependencies: []\ndigest: sha256:0\n")
    return chart


def _upgrade_run(tmp_path: Path, tools: Tools, kubeconfig: Path) -> HarnessRun:
    return run_harness(
        [
            "--target",
            "existing",
            "--kubeconfig",
            str(kubeconfig),
            "--release",
            "dhub",
            "--chart",
            str(_local_chart(tmp_path)),
            "--upgrade-from",
            "2024.1.1",
            "-k",
            "discovery or gateway_disabled",
        ],
        tmp_path / "artifacts",
        tools.env,
    )


def test_upgrade_from_a_published_version_runs_the_stages_before_and_after(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, kubeconfig: Path
):
    run = _upgrade_run(tmp_path, tools, kubeconfig)
    assert run.returncode == 0, run.stdout[-3000:]
    outcomes = [(s["stage"], s["outcome"]) for s in run.stages]
    assert ("setup@2024.1.1", "passed") in outcomes
    assert ("discovery@2024.1.1", "passed") in outcomes
    assert ("setup@upgraded", "passed") in outcomes
    assert ("discovery@upgraded", "passed") in outcomes
    assert outcomes.index(("discovery@2024.1.1", "passed")) < outcomes.index(
        ("setup@upgraded", "passed")
    )
    for phase in ("2024.1.1", "upgraded"):  # each phase's record carries its own notes
        assert "hub 6." in run.outcome(f"discovery@{phase}")["message"], run.stages
    upgrades = [c for c in tools.calls("helm") if c["argv"][0] == "upgrade"]
    first, second = (c["argv"] for c in upgrades)
    assert first[3:6] == ["dask/daskhub", "--version", "2024.1.1"]
    assert second[3] == str(tmp_path / "helm-chart" / "daskhub")
    assert not any(f.endswith("secrets.yaml") for f in upgrades[1]["modes"])  # lookup keeps them
    helm = tools.commands("helm")
    assert "dependency update" in helm and "lint --strict" in helm
    assert helm.index("lint --strict") < helm.index("list --all-namespaces")  # gate first
    # the new chart's CRDs, server-side, between the two installs (helm never updates CRDs)
    order = [" ".join(c["argv"][:2]) for c in tools.calls() if c["tool"] in ("helm", "kubectl")]
    applies = [i for i, c in enumerate(order) if c.startswith("apply")]
    installs = [i for i, c in enumerate(order) if c == "upgrade --install"]
    assert len(applies) == 2 and installs[0] < applies[0] and applies[-1] < installs[1]
    for call in (c for c in tools.calls("kubectl") if c["argv"][0] == "apply"):
        assert call["argv"][1:3] == ["--server-side", "--force-conflicts"]
    assert {Path(c["argv"][4]).name for c in tools.calls("kubectl") if c["argv"][0] == "apply"} == {
        "dask-gateway-daskclusters.yaml",
        "dask-gateway-traefik.yaml",
    }
    assert (
        "applied the new chart's CRDs before the upgrade"
        in run.outcome("setup@upgraded")["message"]
    )
    assert fake_kube.namespaces == {}


def test_an_upgrade_that_loses_the_tokens_fails_its_setup(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, kubeconfig: Path
):
    fake_kube.lookup = False
    run = _upgrade_run(tmp_path, tools, kubeconfig)
    assert run.returncode == 1
    setup = run.outcome("setup@upgraded")
    assert setup["outcome"] == "failed"
    assert "to keep the tokens of Secret hub (the chart's lookup)" in setup["message"]
    assert run.outcome("discovery@2024.1.1")["outcome"] == "passed"
    assert fake_kube.namespaces == {}


def test_cleanup_removes_only_what_killed_runs_on_this_machine_left(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, kubeconfig: Path
):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])  # a harness PID that is gone
    dead.wait()
    owner = {OWNER_LABEL: OWNER_VALUE, HOST_LABEL: this_host()}
    fake_kube.add_namespace("daskhub-e2e-dead01", {**owner, PID_LABEL: str(dead.pid)})
    fake_kube.install("daskhub-e2e-dead01", "daskhub-e2e", {})
    fake_kube.add_namespace("daskhub-e2e-alive1", {**owner, PID_LABEL: str(os.getpid())})
    fake_kube.add_namespace(
        "daskhub-e2e-other1", {**owner, HOST_LABEL: "another-host", PID_LABEL: str(dead.pid)}
    )
    fake_kube.add_namespace("team-a")

    run = run_harness(
        ["--target", "existing", "--kubeconfig", str(kubeconfig), "--cleanup"],
        tmp_path / "artifacts",
        tools.env,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert "1 namespace(s) of killed runs removed (daskhub-e2e-dead01)" in run.stdout
    assert set(fake_kube.namespaces) == {"daskhub-e2e-alive1", "daskhub-e2e-other1", "team-a"}
    assert fake_kube.releases == {}
    assert [c["argv"][:2] for c in tools.calls("helm")][-1] == ["uninstall", "daskhub-e2e"]


def test_a_pending_release_of_the_same_name_elsewhere_is_found(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, kubeconfig: Path
):
    """helm list hides pending releases without --all; a half-installed one in another
    namespace still owns the cluster-scoped objects, so the run must refuse."""
    fake_kube.add_namespace("elsewhere")
    fake_kube.install("elsewhere", "dhub2", {})
    fake_kube.releases[("elsewhere", "dhub2")]["info"]["status"] = "pending-install"
    args = ["--target", "existing", "--kubeconfig", str(kubeconfig), "--release", "dhub2"]
    run = run_harness(
        [*args, "-k", "discovery"],
        tmp_path / "artifacts",
        tools.env,
    )
    assert run.returncode == 1, run.stdout[-3000:]
    assert "one is in namespace elsewhere" in run.outcome("setup")["message"]
    assert ("elsewhere", "dhub2") in fake_kube.releases  # never touched
    assert run.leftovers() == [] and run.files_left() == []


def test_a_user_who_may_not_list_releases_everywhere_gets_a_note(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, kubeconfig: Path
):
    run = run_harness(
        ["--target", "existing", "--kubeconfig", str(kubeconfig), "-k", "discovery"],
        tmp_path / "artifacts",
        {**tools.env, "FAKE_HELM_NS_ONLY": "1"},
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert (
        "not checked whether a release of this name is in another namespace"
        in (run.outcome("setup")["message"])
    )


def test_a_reused_kind_cluster_without_port_mappings_is_reached_by_port_forward(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, running_stack: LocalStack
):
    """A cluster made by someone else (no extraPortMappings): its NodePorts do not answer on
    this host, so the harness port-forwards, and it leaves the cluster in place."""
    tools.kind_state.mkdir(parents=True, exist_ok=True)
    (tools.kind_state / "theirs.json").write_text("{}")
    try:
        run = run_harness(
            ["--target", "kind", "--cluster-name", "theirs", "-k", "discovery"],
            tmp_path / "artifacts",
            tools.env,
        )
    finally:
        shutil.rmtree(REPO / ".pytest-kind" / "theirs", ignore_errors=True)
    assert run.returncode == 0, run.stdout[-3000:]
    discovery = run.outcome("discovery")["message"]
    assert "no kind port mapping answers on host port 30080" in discovery
    assert "proxy-public through kubectl port-forward" in discovery
    assert "delete cluster" not in tools.commands("kind")
    assert run.leftovers() == [] and run.files_left() == []


def test_a_kind_delete_that_fails_is_said_not_raised_over_the_outcome(
    tmp_path: Path, tools: Tools, fake_kube: FakeKube, running_stack: LocalStack
):
    tools.env["FAKE_KIND_DELETE_FAILS"] = "1"
    try:
        run = _kind_run(tmp_path, tools, running_stack)
    finally:
        shutil.rmtree(REPO / ".pytest-kind" / "e2e-selftest", ignore_errors=True)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "could not delete kind cluster e2e-selftest" in run.stdout
    assert "kind delete cluster --name e2e-selftest" in run.stdout
