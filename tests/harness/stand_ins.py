"""Stand-in ``helm``, ``kind``, ``kubectl`` and ``docker`` executables for the self-tests.

:func:`install` writes four small executables into a folder that a test puts first on PATH.
Each records its argv (and, for helm, the mode of every values file it is given, never the
contents) in ``$FAKE_TOOLS_LOG`` and answers like the real tool, acting on the loopback
Kubernetes API of :mod:`tests.harness.fake_kube` found through the ``--kubeconfig`` it gets:
helm installs a release's objects there, kind writes kubeconfigs pointing at it, kubectl
port-forwards to the backend the fake API names for a Service.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any

import requests
import yaml

from fixtures.argv import flag_value
from fixtures.values import SCHEMAS_ENV, SUBCHARTS, merge_all

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("helm", "kind", "kubectl", "docker")


def install(bin_dir: Path) -> Path:
    """Write the four stand-ins into ``bin_dir`` and return it."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        path = bin_dir / tool
        path.write_text(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
            f"from tests.harness.stand_ins import main\nmain({tool!r})\n"
        )
        path.chmod(0o755)
    return bin_dir


def calls(log: Path, tool: str | None = None) -> list[dict[str, Any]]:
    """The recorded calls, oldest first (only ``tool``'s when given)."""
    if not log.exists():
        return []
    entries = [json.loads(line) for line in log.read_text().splitlines() if line]
    return [e for e in entries if tool is None or e["tool"] == tool]


# ---------------------------------------------------------------------- inside a stand-in


def _positionals(args: list[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("--"):
            skip = "=" not in arg and arg not in (
                "--install",
                "--all-namespaces",
                "--strict",
                "--wait",
                "--force-update",
                "--create-namespace",
                "--all",
            )
        else:
            out.append(arg)
    return out


def _server(args: list[str]) -> str:
    """The API server of the current context, as kubectl and helm find it: ``--kubeconfig``
    (one file), else every file of ``$KUBECONFIG`` merged (the first to set a value wins)."""
    given = flag_value(args, "--kubeconfig")
    files = [given] if given else (os.environ.get("KUBECONFIG") or "").split(os.pathsep)
    configs = [yaml.safe_load(Path(f).read_text()) or {} for f in files if f and Path(f).is_file()]
    if not configs:
        sys.exit("Error: Kubernetes cluster unreachable: no kubeconfig")
    current = next((c["current-context"] for c in configs if c.get("current-context")), None)
    contexts = {x["name"]: x["context"] for c in configs for x in c.get("contexts") or []}
    clusters = {x["name"]: x["cluster"] for c in reversed(configs) for x in c.get("clusters") or []}
    if current not in contexts:
        sys.exit(f'error: context "{current}" does not exist')
    return str(clusters[contexts[current]["cluster"]]["server"])


def _api(server: str, path: str, body: Any = None) -> Any:
    """Call the fake API's control paths; an HTTP error status raises NotFoundError."""
    answer = requests.request(
        "POST" if body is not None else "GET", server + path, json=body, timeout=10
    )
    if answer.status_code >= 400:
        raise NotFoundError(path)
    return answer.json()


class NotFoundError(Exception):
    pass


def _helm(args: list[str]) -> None:
    command, names = args[0], _positionals(args)[1:]
    namespace = flag_value(args, "--namespace") or "default"
    if command == "upgrade":
        files = [args[i + 1] for i, arg in enumerate(args) if arg == "--values"]
        values = merge_all([yaml.safe_load(Path(f).read_text()) or {} for f in files])
        if os.environ.get("FAKE_HELM_FAIL"):
            sys.exit("Error: UPGRADE FAILED: timed out waiting for the condition")
        hooks = float(os.environ.get("FAKE_HELM_HOOK_SECONDS") or 0)  # pre-install hooks
        limit = _duration(flag_value(args, "--timeout") or "5m0s")
        if hooks > limit:
            sys.exit(
                "Error: UPGRADE FAILED: pre-upgrade hooks failed: 1 error occurred:\n"
                "\t* timed out waiting for the condition"
            )
        _api(
            _server(args),
            "/_fake/install",
            {
                "namespace": namespace,
                "release": names[0],
                "chart": names[1],
                "version": flag_value(args, "--version"),
                "values": values,
            },
        )
        print(f'Release "{names[0]}" has been upgraded. Happy Helming!')
    elif command == "status":
        try:
            print(json.dumps(_api(_server(args), f"/_fake/releases/{namespace}/{names[0]}")))
        except NotFoundError:
            sys.exit("Error: release: not found")
    elif command == "list" and "--all-namespaces" in args and os.environ.get("FAKE_HELM_NS_ONLY"):
        sys.exit(  # what helm says to a user whose rights end at one namespace
            'Error: list: failed to list: secrets is forbidden: User "ops" cannot list resource '
            '"secrets" in API group "" at the cluster scope'
        )
    elif command == "list":
        pattern = re.compile(flag_value(args, "--filter") or ".*")  # unanchored, as helm's
        releases = _api(_server(args), "/_fake/releases")
        if "--all-namespaces" not in args:
            releases = [r for r in releases if r["namespace"] == namespace]
        if "--all" not in args:  # helm 3 shows only deployed and failed releases
            releases = [r for r in releases if r["info"]["status"] in ("deployed", "failed")]
        print(json.dumps([r for r in releases if pattern.search(r["name"])]))
    elif command == "uninstall":
        _api(_server(args), "/_fake/uninstall", {"namespace": namespace, "release": names[0]})
        print(f'release "{names[0]}" uninstalled')
    elif command == "rollback":
        _api(
            _server(args),
            "/_fake/status",
            {"namespace": namespace, "release": names[0], "status": "deployed"},
        )
    elif command == "template":
        print(_rendered(args, names))
    elif command == "pull":
        version = flag_value(args, "--version") or "main"
        destination = Path(flag_value(args, "--destination") or ".")
        _package_daskhub(destination / f"daskhub-{version}.tgz", version)
    elif command == "dependency" and names[:1] == ["build"]:
        lock = Path(names[1]) / "Chart.lock"
        if lock.exists():  # a lock out of sync with Chart.yaml: helm refuses to build
            sys.exit(
                "Error: the lock file (Chart.lock) is out of sync with the dependencies file "
                "(Chart.yaml). Please update the dependencies"
            )
    elif command == "dependency" and names[:1] == ["update"]:
        charts = Path(names[1]) / "charts"
        charts.mkdir(exist_ok=True)
        for name, version in SUBCHARTS["main"].items():
            (charts / f"{name}-{version}.tgz").write_bytes(_packaged_subchart(name, version))


def _duration(text: str) -> float:
    """Seconds of a Go duration as helm's --timeout takes it (600s, 5m0s, 1h)."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)([hms])", text))


def _shared_schemas() -> Path:
    """The subcharts' published files, from the workspace (never copied into the project)."""
    return Path(os.environ.get(SCHEMAS_ENV) or REPO.parent / "shared" / "chart-schemas")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _packaged_subchart(name: str, version: str) -> bytes:
    """A subchart package as helm writes it: Chart.yaml, values.yaml, values.schema.json."""
    stem = _shared_schemas() / f"{name}-{version}"
    schema = yaml.safe_load(Path(f"{stem}.values.schema.yaml").read_text())
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        _add(tar, f"{name}/Chart.yaml", f"name: {name}\nversion: {version}\n".encode())
        _add(tar, f"{name}/values.yaml", Path(f"{stem}.values.yaml").read_bytes())
        _add(tar, f"{name}/values.schema.json", json.dumps(schema).encode())
        if name == "dask-gateway":  # the chart's crds/ (not in the workspace: stand-ins)
            for crd in ("daskclusters.yaml", "traefik.yaml"):
                _add(tar, f"{name}/crds/{crd}", f"# stand-in for {name}/crds/{crd}\n".encode())
    return out.getvalue()


def _package_daskhub(path: Path, version: str) -> None:
    """What ``helm pull dask/daskhub --version V`` writes: the chart with its subcharts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode="w:gz") as tar:
        _add(tar, "daskhub/Chart.yaml", f"name: daskhub\nversion: {version}\n".encode())
        for name, sub in SUBCHARTS[version].items():
            _add(tar, f"daskhub/charts/{name}-{sub}.tgz", _packaged_subchart(name, sub))


def _rendered(args: list[str], names: list[str]) -> str:
    """What ``helm template RELEASE CHART`` prints: the real chart's objects for these values
    (the workspace's renders, tests/harness/renders.py); Dask Gateway is always included,
    since the chart gives its dependency no ``condition:``."""
    from tests.harness import renders  # noqa: PLC0415

    release, chart = names[0], names[1]
    files = [args[i + 1] for i, arg in enumerate(args) if arg == "--values"]
    values = merge_all([yaml.safe_load(Path(f).read_text()) or {} for f in files])
    for i, arg in enumerate(args):
        if arg == "--set":
            renders.apply_set(values, args[i + 1])
    made = renders.objects(
        renders.version_for(chart, flag_value(args, "--version")),
        renders.case_for(values, release),
        release,
        flag_value(args, "--namespace") or "default",
        {},
    )
    return yaml.safe_dump_all(renders.with_values_applied(made, values))


def write_kubeconfig(path: str | Path, server: str, name: str) -> Path:
    """A kubeconfig whose current context is the API at ``server`` (as kind writes one)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": f"kind-{name}",
        "clusters": [{"name": f"kind-{name}", "cluster": {"server": server}}],
        "contexts": [
            {"name": f"kind-{name}", "context": {"cluster": f"kind-{name}", "user": f"kind-{name}"}}
        ],
        "users": [{"name": f"kind-{name}", "user": {"token": "stand-in-kind-admin"}}],
    }
    Path(path).write_text(yaml.safe_dump(config))
    return Path(path)


def _kubeconfig(path: str, name: str) -> None:
    write_kubeconfig(path, os.environ["FAKE_KUBE_URL"], name)


def _kind(args: list[str]) -> None:
    state = Path(os.environ["FAKE_KIND_STATE"])
    state.mkdir(parents=True, exist_ok=True)
    name = flag_value(args, "--name") or "kind"
    if args[:2] == ["get", "clusters"]:
        names = sorted(p.stem for p in state.glob("*.json"))
        print("\n".join(names)) if names else print("No kind clusters found.", file=sys.stderr)
    elif args[:2] == ["create", "cluster"]:
        config = flag_value(args, "--config")
        (state / f"{name}.json").write_text(
            json.dumps(
                {
                    "image": flag_value(args, "--image"),
                    "config": yaml.safe_load(Path(config).read_text()) if config else None,
                }
            )
        )
        _kubeconfig(flag_value(args, "--kubeconfig") or str(Path.home() / ".kube/config"), name)
    elif args[:2] == ["export", "kubeconfig"]:
        _kubeconfig(flag_value(args, "--kubeconfig") or str(Path.home() / ".kube/config"), name)
    elif args[:2] == ["delete", "cluster"]:
        if os.environ.get("FAKE_KIND_DELETE_FAILS"):
            sys.exit("ERROR: failed to delete cluster: error deleting nodes: exit status 1")
        (state / f"{name}.json").unlink(missing_ok=True)


def pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _kubectl(args: list[str]) -> None:
    if args[0] == "apply":
        crd = Path(args[args.index("-f") + 1]).stem
        print(f"customresourcedefinition.apiextensions.k8s.io/{crd} serverside-applied")
        return
    if args[0] != "port-forward":
        return
    target, ports = _positionals(args)[1:3]
    namespace = flag_value(args, "--namespace") or "default"
    try:
        backend = _api(_server(args), f"/_fake/forward/{namespace}/{target.split('/', 1)[1]}")
    except NotFoundError:
        sys.exit(f'Error from server (NotFound): services "{target.split("/", 1)[1]}" not found')
    local = ports.split(":")[0]
    listener = socket.create_server(("127.0.0.1", int(local or 0)))
    port = listener.getsockname()[1]
    print(f"Forwarding from 127.0.0.1:{port} -> {ports.lstrip(':')}", flush=True)
    print(f"Forwarding from [::1]:{port} -> {ports.lstrip(':')}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    def lost(*_: object) -> None:
        """What kubectl >= 1.23 does on one forwarding error (the pod restarted): it ends."""
        print(
            f"E1202 12:00:00.000000 portforward.go:413] an error occurred forwarding {port} -> "
            f"{ports.split(':')[1]}: error forwarding port: lost connection to pod",
            file=sys.stderr,
            flush=True,
        )
        print("error: lost connection to pod", file=sys.stderr, flush=True)
        os._exit(1)

    signal.signal(signal.SIGUSR1, lost)  # a self-test's way to make the pod go away
    forward_connections(listener, (backend["host"], backend["port"]), threading.Event())


def forward_connections(
    listener: socket.socket, backend: tuple[str, int], stop: threading.Event
) -> None:
    """Accept on ``listener`` and pipe each connection to ``backend`` until ``stop`` is set
    or the listener is closed."""
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            client, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        client.settimeout(None)
        upstream = socket.create_connection(backend)
        for pair in ((client, upstream), (upstream, client)):
            threading.Thread(target=pipe, args=pair, daemon=True).start()


def _docker(args: list[str]) -> None:
    if args[:1] == ["info"]:
        if os.environ.get("FAKE_DOCKER_UP") == "denied":  # docker 27's words, on stderr
            sys.exit(
                "permission denied while trying to connect to the Docker daemon socket at "
                'unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.47/'
                'info": dial unix /var/run/docker.sock: connect: permission denied'
            )
        if os.environ.get("FAKE_DOCKER_UP") != "1":
            sys.exit(
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                "Is the docker daemon running?"
            )
        print("27.3.1")


def main(tool: str) -> None:
    args = sys.argv[1:]
    entry: dict[str, Any] = {"tool": tool, "argv": args}
    if tool == "helm":
        files = [args[i + 1] for i, a in enumerate(args) if a == "--values"]
        entry["modes"] = {f: oct(os.stat(f).st_mode & 0o777) for f in files}
        entry["repository_config"] = os.environ.get("HELM_REPOSITORY_CONFIG")
    if tool == "kind" and flag_value(args, "--config"):
        entry["config"] = yaml.safe_load(Path(str(flag_value(args, "--config"))).read_text())
    log = os.environ.get("FAKE_TOOLS_LOG")
    if log:
        with open(log, "a") as out:
            out.write(json.dumps(entry) + "\n")
    {"helm": _helm, "kind": _kind, "kubectl": _kubectl, "docker": _docker}[tool](args)
