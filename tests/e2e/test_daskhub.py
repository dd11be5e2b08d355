"""The staged checks: could a real user log in, start a Dask cluster, compute, and open its
dashboard? Each test is one stage, in order; a stage runs only when the stages it needs passed.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urljoin, urlparse

import dask
import dask_gateway
import distributed
import pytest
import websocket

from fixtures.capacity import run_capacity
from fixtures.dashboard import wait_for_dashboard
from fixtures.errors import StageFailure
from fixtures.helm import Helm
from fixtures.http import excerpt
from fixtures.hub import HubUser, UserMaker, whoami
from fixtures.kernel import CellResult, Kernel
from fixtures.kube import (
    DASK_KUBERNETES,
    TRAEFIK_POLICY_BUG,
    gateway_object,
    rbac_problems,
    require_no_problems,
    service_problems,
    traefik_blockers,
    traefik_blockers_in_cluster,
    user_pod_problems,
)
from fixtures.processes import log_cause
from fixtures.run_state import RunState
from fixtures.secrets import new_token
from fixtures.targets import Deployment, harness_files
from fixtures.user_server import CannotSpawn, EarlySpawn, UserServer
from fixtures.values import VALUES_DIR
from fixtures.waiting import NotYet, scaled, wait_for

IMAGE_HANDLER_MESSAGE = "When specifying an image you must also provide a tag"
#: What the hub API's status says when the proxy answers for a hub it cannot reach.
HUB_HINTS = dict.fromkeys(
    (502, 503),
    "the proxy could not reach the hub (is the hub running, and its Service reachable?)",
)
#: What the answer at /services/dask-gateway/api/health means, in an operator's words.
ROUTE_HINTS = {
    302: "the hub answered instead of the gateway: there is no route at /services/dask-gateway/ "
    "(does the hub's dask-gateway service have a url?)",
    404: "nothing serves /services/dask-gateway/api/health: the gateway's prefix is not "
    "/services/dask-gateway, or the hub's dask-gateway service points elsewhere",
    **dict.fromkeys(
        (502, 503),
        "the proxy could not reach the gateway (is the gateway or traefik up, and its Service "
        "reachable?)",
    ),
}


def _tcp_open(address: str) -> None:
    parsed = urlparse(address)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 80), timeout=scaled(5)):
            pass
    except OSError as exc:
        raise StageFailure(
            f"the scheduler proxy {address} to accept connections",
            f"it does not ({exc.strerror or exc}); check --gateway-proxy-address "
            "or the traefik Service",
        ) from None


@pytest.mark.stage("discovery")
def test_discovery(deployment: Deployment, recorder: Any, note: Any) -> None:
    """On Kubernetes, the chart's Services with their ports and ready endpoints; then the hub
    API, the gateway behind the hub's proxy, and the scheduler proxy all answer."""
    _kubernetes_services(deployment, note)
    http = deployment.http
    hub = http.json("GET", "hub/api/", what="the JupyterHub API version", hints=HUB_HINTS)
    if not isinstance(hub, dict) or "version" not in hub:
        raise StageFailure("the hub API to report its version", f"{hub!r:.200}")
    recorder.versions["jupyterhub"] = hub["version"]

    response = http.request("GET", "services/dask-gateway/api/health")
    if response.status_code != 200 or "json" not in response.headers.get("Content-Type", ""):
        status = 302 if response.is_redirect else response.status_code
        hint = ROUTE_HINTS.get(status, "not the gateway's health answer")
        raise StageFailure(
            "the gateway's health JSON at /services/dask-gateway/api/health",
            f"HTTP {response.status_code}: {hint}",
            excerpt(response),
        )
    health = response.json()
    if health.get("status") != "pass":
        raise StageFailure("gateway health status 'pass'", f"{health!r:.200}", excerpt(response))
    version = http.json("GET", "services/dask-gateway/api/version", what="the gateway version")
    recorder.versions["dask-gateway-server"] = version.get("version")
    recorder.versions.update(
        {
            "client dask": dask.__version__,
            "client distributed": distributed.__version__,
            "client dask-gateway": dask_gateway.__version__,
        }
    )

    if deployment.gateway_proxy_address:
        _tcp_open(deployment.gateway_proxy_address)
    else:
        note(
            "no scheduler proxy address given (DaskHub's traefik Service is ClusterIP by "
            "default), so gateway_cluster runs its API part and skips the computation"
        )
    note(f"hub {hub['version']}, gateway {version.get('version')}")


def _kubernetes_services(deployment: Deployment, note: Any) -> None:
    """Services hub, proxy-api, proxy-public, api-<P>, traefik-<P>: ports, ready endpoints."""
    kube = deployment.kube
    if kube is None:
        note(f"Kubernetes checks skipped: the {deployment.target} target has no Kubernetes API")
        return
    require_no_problems(
        service_problems(kube.core, kube.namespace, kube.release),
        f"the Services of release {kube.release} with their ports and ready endpoints",
    )
    note(
        f"Kubernetes {kube.server_version}: Services of {kube.namespace}/{kube.release} ready; "
        f"reached {'; '.join(kube.reached)}"
    )


@pytest.mark.stage("hub_login", after=("discovery",))
def test_hub_login(deployment: Deployment, run: RunState, note: Any, planned: list[str]) -> None:
    """A test user is made and given a token through the REST API; the hub names it back.
    When user_server will run, the user's server is requested now, on a helper thread, so
    that it starts while the gateway stages run (user_server judges what it met)."""
    http = deployment.http
    identity = whoami(http, deployment.token)
    run.identity = identity
    if identity.can_make_users:
        run.users = UserMaker(http, deployment.token)
        user = run.users.create()
        seen = whoami(http, user.token)
        if (seen.kind, seen.name) != ("user", user.name):
            raise StageFailure(
                f"GET /hub/api/user with the new token to name user {user.name}",
                f"{seen.kind} {seen.name}",
            )
        run.user = user
        note(f"created test user {user.name} with {identity.kind} {identity.name}'s token")
    elif identity.kind == "user":
        run.user = HubUser(identity.name, deployment.token, created=False)
        note(f"plain user token: running as {identity.name}; isolation will be skipped")
    else:
        raise StageFailure(
            "a user's token, or a token with the scopes admin:users and tokens",
            f"the token of {identity.kind} {identity.name} without those scopes",
        )

    if any(name.split("@")[0] == "user_server" for name in planned):
        timeouts = (USER_SERVER_TIMEOUTS["spawn"], USER_SERVER_TIMEOUTS["kernel"])
        first_cells = ((CELL_ENVIRONMENT, USER_SERVER_TIMEOUTS["cell"]),)
        if run.the_user().created:  # a cluster early only where teardown may stop it
            first_cells += ((CELL_CLUSTER, USER_SERVER_TIMEOUTS["cluster"]),)
        run.start_user_server_early("user_server", timeouts, first_cells, _environment_ok)
        note(f"{run.the_user().name}'s server requested for user_server")

    wrong = http.request("GET", "hub/api/user", token=new_token())
    if wrong.status_code != 403:
        raise StageFailure(
            "HTTP 403 for GET /hub/api/user with a wrong token",
            f"HTTP {wrong.status_code}",
            excerpt(wrong),
        )


@pytest.mark.stage("gateway_cluster", after=("hub_login",))
def test_gateway_cluster(
    deployment: Deployment, run: RunState, stage: str, note: Any, finding: Any, recorder: Any
) -> None:
    """As the test user: options, a rejected bad option, a cluster that computes, shutdown."""
    session = run.gateway_for(run.the_user(), stage)
    gateway = session.gateway
    options = session.call(gateway.cluster_options, "cluster_options()")
    chosen: dict[str, Any] = {}
    if "image" in options:
        chosen = {"image": options.image}
        _bad_image_is_rejected(session)
    else:
        note("the deployment offers no image option; the option checks were skipped")

    try:
        name = session.submit(options)
    except StageFailure:
        raise
    except Exception as exc:  # the gateway's answer, e.g. the option handler's ValueError
        raise StageFailure(
            "the gateway to accept a new cluster with the default options",
            f"{type(exc).__name__}: {exc}",
            deployment.evidence(),
        ) from None
    # The cluster for dashboard and isolation starts while this stage works. Without an
    # early spawn it is submitted with this cluster (later, its start would slow this
    # stage's worker); while the user's server starts early, once this cluster runs:
    # submitted with it, its scheduler's start also shared the cores with the spawn, which
    # user_server waits for (the server was ready 1.2 s after its request, not 0.8 s).
    if run.early_server is None:
        run.submit_standing_cluster(stage)
    session.wait_running(name)
    run.submit_standing_cluster(stage)  # once: a second call keeps the first one's cluster
    session.call(lambda: gateway.scale_cluster(name, 1), "scale_cluster(1)")
    computed = ""
    if deployment.gateway_proxy_address:
        try:
            _compute(session, name, recorder, finding)
        except StageFailure:
            raise
        except Exception as exc:  # the client's error; the cause is in the logs
            evidence = deployment.evidence()
            raise StageFailure(
                "one worker to compute sum(range(10)) on the new cluster",
                f"{type(exc).__name__}: {exc}{log_cause(evidence)}",
                evidence,
            ) from None
        computed = "1 worker computed sum(range(10)) = 45, "
    else:
        note("computation skipped: the scheduler proxy is not reachable from here")

    listed = {c.name: c for c in session.call(gateway.list_clusters, "list_clusters()")}
    if name not in listed:
        raise StageFailure(f"list_clusters() to list {name}", f"{sorted(listed)}")
    shown = dict(listed[name].options)
    for key, value in chosen.items():
        if shown.get(key) != value:
            raise StageFailure(f"the listed cluster's option {key}={value!r}", f"{shown}")
    session.stop(name)
    wait_for(
        lambda: _not_listed(session, name),
        stage=stage,
        what=f"{name} to leave list_clusters() after it was stopped",
        timeout=30,
    )
    note(f"cluster {name} with options {shown}: {computed}shut down and unlisted")


def _bad_image_is_rejected(session: Any) -> None:
    """An image without a tag is refused with the option handler's message."""
    bad = session.call(session.gateway.cluster_options, "cluster_options()")
    bad.image = "pangeo/base-notebook"
    try:
        name = session.submit(bad)
    except StageFailure:
        raise
    except Exception as exc:
        if IMAGE_HANDLER_MESSAGE not in str(exc):
            raise StageFailure(
                f"the option handler's message {IMAGE_HANDLER_MESSAGE!r}",
                f"{type(exc).__name__}: {exc}",
            ) from None
        return
    session.stop(name)
    raise StageFailure(
        "an image without a tag to be rejected by the option handler",
        f"it was accepted (cluster {name})",
    )


def _compute(session: Any, name: str, recorder: Any, finding: Any) -> None:
    """Connect through the scheduler proxy, wait for the worker, check a result."""
    with session.connect(name) as client:
        session.compute_sum(client)
        versions = session.call(lambda: client.get_versions(check=False), "get_versions()")
        _compare_versions(versions, recorder, finding)


def _not_listed(session: Any, name: str) -> None:
    names = [c.name for c in session.call(session.gateway.list_clusters, "list_clusters()")]
    if name in names:
        raise NotYet(f"{name} still listed")


def _compare_versions(versions: dict[str, Any], recorder: Any, finding: Any) -> None:
    client = versions["client"]["packages"]
    scheduler = versions["scheduler"]["packages"]
    workers = [w["packages"] for w in versions["workers"].values()]
    recorder.versions.update(
        {
            "scheduler dask": scheduler.get("dask"),
            "scheduler distributed": scheduler.get("distributed"),
        }
    )
    for package in ("dask", "distributed"):
        seen = {"scheduler": scheduler.get(package)}
        seen.update({f"worker {i}": w.get(package) for i, w in enumerate(workers)})
        differing = {where: v for where, v in seen.items() if v != client.get(package)}
        if differing:
            finding(
                "compatibility",
                f"{package} version differs between client and cluster",
                f"client {client.get(package)}, {differing}",
            )


@pytest.mark.stage("dashboard", after=("gateway_cluster",))
def test_dashboard(deployment: Deployment, run: RunState, stage: str, finding: Any) -> None:
    """The cluster's dashboard link, through the hub's public URL, is the Dask status page."""
    link = run.standing_cluster(stage).dashboard_link
    if not link:
        raise StageFailure("a dashboard link in the cluster report", "none")
    page = wait_for_dashboard(
        deployment.http,
        link,
        stage=stage,
        what=f"the dashboard at {link} to answer",
        timeout=30,
        evidence=deployment.evidence,
    )
    finding(
        "security",
        "dashboards are readable anonymously",
        f"GET {urlparse(link).path} with no credentials answered 200 (only the random "
        "cluster name guards it)",
    )
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page)
    bokeh = [s for s in scripts if "bokeh" in s.lower()]
    if not bokeh:
        raise StageFailure("Bokeh scripts on the status page", f"scripts {scripts[:5]}")
    for src in bokeh:
        asset = deployment.http.request("GET", urljoin(link, src))
        if asset.status_code != 200:
            raise StageFailure(
                f"the Bokeh asset {src} to load (HTTP 200)",
                f"HTTP {asset.status_code}",
                excerpt(asset),
            )
    _dashboard_websocket(deployment, link, page)


def _dashboard_websocket(deployment: Deployment, link: str, page: str) -> None:
    token = re.search(r'"token":\s*"([^"]+)"', page)
    if token is None:
        raise StageFailure("a Bokeh session token on the status page", "none")
    ws_url = re.sub(r"^http", "ws", link.split("?", maxsplit=1)[0].rstrip("/")) + "/ws"
    sslopt = {"ca_certs": deployment.http.verify} if isinstance(deployment.http.verify, str) else {}
    try:
        conn = websocket.create_connection(
            ws_url, timeout=scaled(10), subprotocols=["bokeh", token.group(1)], sslopt=sslopt
        )
        try:
            first = conn.recv()
        finally:
            conn.close()
    except Exception as exc:
        raise StageFailure(
            f"the dashboard websocket {urlparse(ws_url).path} to answer",
            f"{type(exc).__name__}: {exc}",
        ) from None
    if not first:
        raise StageFailure("a Bokeh message on the dashboard websocket", "an empty frame")


@pytest.mark.stage("isolation", after=("gateway_cluster",))
def test_isolation(
    deployment: Deployment, run: RunState, stage: str, finding: Any, note: Any
) -> None:
    """A second user can not see, connect to, scale or stop the first user's cluster."""
    if run.users is None:
        pytest.skip(
            "the harness token is a plain user token, so no second user can be made; "
            "isolation needs a token with the scopes admin:users and tokens"
        )
    name = run.standing_cluster(stage).name
    intruder = run.users.create()
    session = run.gateway_for(intruder, stage)
    names = [c.name for c in session.call(session.gateway.list_clusters, "list_clusters()")]
    if name in names:
        raise StageFailure(
            "a second user's list_clusters() not to show the first user's cluster",
            f"it lists {name}",
        )
    api = "services/dask-gateway/api/v1/clusters/"
    for what, method, path, body in (
        ("connect to (read the report of)", "GET", f"{api}{name}", None),
        ("scale", "POST", f"{api}{name}/scale", {"count": 2}),
        ("stop", "DELETE", f"{api}{name}", None),
    ):
        answer = deployment.http.request(
            method, path, token=intruder.token, scheme="jupyterhub", json=body
        )
        if answer.status_code < 400 and what != "stop":
            raise StageFailure(
                f"a second user's attempt to {what} {name} to be refused",
                f"HTTP {answer.status_code}",
                excerpt(answer),
            )
    owner = run.gateway_for(run.the_user(), stage)
    report = owner.call(lambda: owner.gateway.get_cluster(name), "get_cluster()")
    if report.status.name != "RUNNING":
        raise StageFailure(
            f"{name} still running after another user tried to stop it",
            f"status {report.status.name}",
        )

    anonymous = deployment.http.request("GET", api)
    if anonymous.status_code != 401:
        raise StageFailure(
            "HTTP 401 from the gateway API with no token",
            f"HTTP {anonymous.status_code}",
            excerpt(anonymous),
        )
    wrong = deployment.http.request("GET", api, token=new_token(), scheme="jupyterhub")
    if wrong.status_code < 400:
        raise StageFailure(
            "the gateway to refuse a token the hub does not know",
            f"HTTP {wrong.status_code}",
            excerpt(wrong),
        )
    note(f"a second user was refused; a wrong token is refused with HTTP {wrong.status_code}")
    if run.identity is not None and run.identity.kind == "service":
        service = deployment.http.request("GET", api, token=deployment.token, scheme="jupyterhub")
        if service.status_code == 200:
            finding(
                "security",
                "the gateway accepts a non-user (service) token",
                f"the token of service {run.identity.name} listed clusters (HTTP 200); set "
                "gateway.auth.jupyterhub.jupyterhubServiceName to require "
                "access:services!service=dask-gateway",
            )


@pytest.mark.stage("capacity", after=("gateway_cluster", "dashboard"))
def test_capacity(
    run: RunState, options: Any, recorder: Any, note: Any, deployment: Deployment, stage: str
) -> None:
    """--users N fresh test users at once each start a cluster, scale it to one worker,
    compute, open its dashboard and shut it down; per user the seconds from the request to
    running and to a result, and p50/p95/max over the users. Red when any user fails, or when
    p95 to running exceeds --max-cluster-start."""
    if options.users == 0:
        pytest.skip("--users 0: give --users N to start N users' clusters at once")
    if run.users is None:
        pytest.skip(
            "the harness token is a plain user token; the capacity stage makes its users "
            "with a token that has the scopes admin:users and tokens"
        )
    result = run_capacity(run, options.users)
    recorder.capacity[stage] = result
    summary = result.summary()
    if result.failed:
        causes = "; ".join(f"{r.user}: {r.error}" for r in result.failed[:3])
        raise StageFailure(
            f"all {result.users} users to get a cluster, a result and a dashboard",
            f"{len(result.failed)} of {result.users} users failed; first causes: {causes}",
            result.evidence or deployment.evidence(),
        )
    p95 = result.figures()["to_running"]["0.95"]
    if options.max_cluster_start is not None and p95 > options.max_cluster_start:
        raise StageFailure(
            f"p95 of the seconds to running within --max-cluster-start "
            f"{options.max_cluster_start:g}s",
            f"p95 {p95:.1f}s ({summary})",
        )
    bound = (
        f"within --max-cluster-start {options.max_cluster_start:g}s"
        if options.max_cluster_start is not None
        else "(no --max-cluster-start given)"
    )
    note(f"{summary}; p95 to running {bound}; {result.concurrency} at once")


# ------------------------------------------------------------------ user_server: from inside

#: Cell 1: what the hub put in the server's environment, and whether dask_gateway imports.
CELL_ENVIRONMENT = """
import json, os, socket
from urllib.parse import urlparse
_env = {k: v for k, v in os.environ.items()
        if k.startswith("DASK_GATEWAY__") or k == "JUPYTER_IMAGE_SPEC"}
try:
    import dask_gateway
    _imported = {"ok": True}
except Exception as _exc:
    _imported = {"ok": False, "error": f"{type(_exc).__name__}: {_exc}"}
_proxy = {"ok": None}
if _env.get("DASK_GATEWAY__PROXY_ADDRESS"):
    _where = urlparse(_env["DASK_GATEWAY__PROXY_ADDRESS"])
    try:
        socket.create_connection((_where.hostname, _where.port or 80), timeout=10).close()
        _proxy = {"ok": True}
    except OSError as _exc:
        _proxy = {"ok": False, "error": f"{type(_exc).__name__}: {_exc}"}
print("E2E-ENV " + json.dumps({"env": _env, "import": _imported, "proxy": _proxy}))
"""
#: Cell 2: Gateway() from the environment alone, a new cluster, and one worker asked for.
CELL_CLUSTER = """
import json
import dask
from dask_gateway import Gateway
dask.config.set({"distributed.comm.timeouts.connect": "15s"})
gateway = Gateway()
print("E2E-SETTINGS " + json.dumps({
    "address": gateway.address, "proxy_address": gateway.proxy_address,
    "public_address": gateway._public_address, "auth": type(gateway.auth).__name__}))
cluster = gateway.new_cluster()
print("E2E-CLUSTER " + json.dumps({
    "name": cluster.name, "dashboard_link": cluster.dashboard_link,
    "options": dict(gateway.get_cluster(cluster.name).options)}))
cluster.scale(1)
"""
#: Cell 3: the worker, a computation, and the versions on both sides.
CELL_COMPUTE = """
import dask, distributed, dask_gateway
client = cluster.get_client()
client.wait_for_workers(1, timeout=60)
result = client.submit(sum, range(10)).result(timeout=60)
scheduler = client.get_versions(check=False)["scheduler"]["packages"]
print("E2E-COMPUTE " + json.dumps({
    "result": result,
    "server": {"dask": dask.__version__, "distributed": distributed.__version__,
               "dask-gateway": dask_gateway.__version__},
    "scheduler": {"dask": scheduler.get("dask"), "distributed": scheduler.get("distributed")}}))
"""
#: Cell 4: shut the cluster down (also run, guarded, when an earlier cell failed).
CELL_SHUTDOWN = """
import json
_errors = []
for _close in ("client.close()", "cluster.shutdown()", "gateway.close()"):
    try:
        if _close.split(".")[0] in globals():
            eval(_close)
    except Exception as _exc:
        _errors.append(f"{_close}: {type(_exc).__name__}: {_exc}")
print("E2E-SHUTDOWN " + json.dumps({"errors": _errors}))
"""
#: What user_server's details.steps calls the early start's own seconds (EarlySpawn.took):
#: the kernel's start, then each first cell (hub_login passes them in this order).
EARLY_STEPS = ("early_kernel", "early_environment", "early_cluster")
REQUIRED_ENV = (
    "DASK_GATEWAY__ADDRESS",
    "DASK_GATEWAY__PROXY_ADDRESS",
    "DASK_GATEWAY__PUBLIC_ADDRESS",
    "DASK_GATEWAY__AUTH__TYPE",
)


def _cell(kernel: Kernel, code: str, marker: str, timeout: float, failure: str) -> Any:
    """Run a cell and return the JSON it printed after ``marker`` (:func:`_printed`)."""
    return _printed(kernel.execute(code, timeout), marker, failure)


def _early_or_now(
    early: EarlySpawn | None, index: int, kernel: Kernel, code: str, timeout: float
) -> CellResult:
    """First cell ``index`` as the early start ran it (raising what it met), or run now."""
    ran = early.cell_result(index) if early is not None else None
    return ran if ran is not None else kernel.execute(code, timeout)


def _check_environment(seen: dict[str, Any], why_unreachable: Callable[[], str]) -> None:
    """What the environment cell printed (E2E-ENV) is what a notebook needs: the
    DASK_GATEWAY__* settings, JupyterHub auth, dask_gateway importable, the scheduler proxy
    reachable (else ``why_unreachable()`` says what may block it)."""
    env = seen["env"]
    missing = [name for name in REQUIRED_ENV if not env.get(name)]
    if missing:
        raise StageFailure(
            f"{', '.join(REQUIRED_ENV)} in the user server's environment",
            f"env missing: {', '.join(missing)} not set in the server",
        )
    if env["DASK_GATEWAY__AUTH__TYPE"] != "jupyterhub":
        raise StageFailure(
            "DASK_GATEWAY__AUTH__TYPE=jupyterhub", f"{env['DASK_GATEWAY__AUTH__TYPE']!r}"
        )
    if not seen["import"]["ok"]:
        raise StageFailure(
            "dask_gateway importable in the user environment",
            f"the user environment has no dask-gateway: {seen['import']['error']}",
        )
    if seen["proxy"]["ok"] is False:
        raise StageFailure(
            "the scheduler proxy reachable from inside the user server",
            f"the user server can not reach DASK_GATEWAY__PROXY_ADDRESS="
            f"{env['DASK_GATEWAY__PROXY_ADDRESS']} ({seen['proxy']['error']}); "
            f"{why_unreachable()}",
        )


def _environment_ok(result: CellResult) -> bool:
    """Whether the early start may go on from the environment cell to the cluster cell: the
    cell printed an environment that passes the checks (the stage reports any that fails)."""
    seen = result.marked("E2E-ENV")
    if result.error or seen is None:
        return False
    try:
        _check_environment(seen, lambda: "")
    except StageFailure:
        return False
    return True


def _printed(result: CellResult, marker: str, failure: str) -> Any:
    """The JSON a cell printed after ``marker``; when it raised or printed nothing, fail with
    ``failure`` and the cell's error."""
    printed = result.marked(marker)
    if result.error or printed is None:
        raise StageFailure(
            f"the cell behind {marker} to succeed",
            f"{failure}: {result.error or 'no result printed'}",
            result.stdout[-2000:],
        )
    return printed


@pytest.mark.stage("user_server", after=("hub_login", "gateway_cluster"))
def test_user_server(
    deployment: Deployment, run: RunState, stage: str, note: Any, finding: Any, recorder: Any
) -> None:
    """A user's own server runs the gateway flow from its environment alone, as a notebook."""
    user = run.the_user()
    early = run.take_early_server()
    server = early.server if early else UserServer(deployment.http, user.name, user.token)
    kernel = early.kernel if early else Kernel(deployment.http, user.name, user.token)
    timings = recorder.steps.setdefault(stage, {})  # stages.json details.steps
    clock = time.monotonic()
    made_names: tuple[str, ...] = ()  # the in-server cluster, once it printed its name

    def lap(step: str) -> None:
        nonlocal clock
        timings[step] = round(time.monotonic() - clock, 2)
        clock = time.monotonic()

    try:
        try:
            if early is not None:
                ready_after = early.result()
                timings["server_ready_after_request"] = round(ready_after, 2)
                timings.update(
                    zip(EARLY_STEPS, (round(seconds, 2) for seconds in early.took), strict=False)
                )
                note(
                    f"server requested after hub_login, ready {ready_after:.1f}s later; "
                    f"{len(early.results)} of its first cells ran meanwhile; this stage "
                    f"waited {time.monotonic() - clock:.1f}s for them"
                )
            else:
                server.start(stage, USER_SERVER_TIMEOUTS["spawn"], deployment.evidence)
        except CannotSpawn as reason:
            pytest.skip(f"{reason}; the user_server stage needs a token that may start servers")
        lap("spawn")
        _user_pod(deployment, user.name, note)
        try:
            if early is not None:
                early.started_kernel()
            else:
                kernel.start(USER_SERVER_TIMEOUTS["kernel"])
        except StageFailure:
            raise
        except Exception as exc:
            raise StageFailure(
                "a kernel to start on the user's server",
                f"the kernel did not start: {type(exc).__name__}: {exc}",
                deployment.evidence(),
            ) from None
        lap("kernel")
        # Each of the first cells was run already by the early start (while the gateway
        # stages ran), or is run now.
        environment_cell = _early_or_now(
            early, 0, kernel, CELL_ENVIRONMENT, USER_SERVER_TIMEOUTS["cell"]
        )
        seen = _printed(environment_cell, "E2E-ENV", "the environment cell failed")
        lap("environment")
        # Part of the environment cell's seconds (early or not): the first cell on the new
        # kernel connection waited this long before the kernel began it (CellResult.queued).
        timings["environment_queued"] = round(environment_cell.queued, 2)
        env = seen["env"]
        _check_environment(seen, partial(_why_unreachable, deployment))
        cluster_cell = _early_or_now(
            early, 1, kernel, CELL_CLUSTER, USER_SERVER_TIMEOUTS["cluster"]
        )
        made = _printed(
            cluster_cell, "E2E-CLUSTER", "the cluster did not start from inside the server"
        )
        made_names = (made["name"],)
        lap("cluster")
        _settings_follow_env(cluster_cell, env)
        # The cluster cell asked for one worker; its dashboard is checked while it starts.
        link = made["dashboard_link"]
        if not str(link).startswith(env["DASK_GATEWAY__PUBLIC_ADDRESS"].rstrip("/") + "/"):
            raise StageFailure(
                f"a dashboard link under {env['DASK_GATEWAY__PUBLIC_ADDRESS']}", f"{link!r}"
            )
        wait_for_dashboard(
            deployment.http,
            urljoin(deployment.hub_url, link),
            stage=stage,
            what=f"the in-server dashboard link {link} through the hub",
            timeout=USER_SERVER_TIMEOUTS["dashboard"],
        )
        lap("dashboard")
        computed = _cell(
            kernel,
            CELL_COMPUTE,
            "E2E-COMPUTE",
            USER_SERVER_TIMEOUTS["compute"],
            "the computation failed inside the server (through "
            f"DASK_GATEWAY__PROXY_ADDRESS={env['DASK_GATEWAY__PROXY_ADDRESS']})",
        )
        if computed["result"] != 45:
            raise StageFailure(
                "sum(range(10)) == 45 computed from inside the server",
                f"computation wrong: {computed['result']!r}",
            )
        lap("compute")
        image = env.get("JUPYTER_IMAGE_SPEC")
        image_from_env = env.get("DASK_GATEWAY__CLUSTER__OPTIONS__IMAGE")
        if image_from_env and made["options"].get("image", image) != image:
            raise StageFailure(
                f"the cluster's image option to be the server's image {image!r} "
                "(DASK_GATEWAY__CLUSTER__OPTIONS__IMAGE)",
                f"{made['options']['image']!r}",
            )
        _record_server_versions(computed, recorder, finding)
        done = _cell(
            kernel,
            CELL_SHUTDOWN,
            "E2E-SHUTDOWN",
            USER_SERVER_TIMEOUTS["cluster"],
            "the cluster did not shut down from inside the server",
        )
        lap("shutdown")
        note(
            f"cluster {made['name']} from inside {user.name}'s server: options "
            f"{made['options']}, 1 worker computed 45, dashboard OK, shut down "
            f"({'; '.join(done['errors']) or 'cleanly'}); step seconds {timings}"
        )
    finally:
        if early is not None:  # interrupted while the server starts: end that start first
            early.abandon()
        _stop_everything(kernel, server, run, stage, made_names)


USER_SERVER_TIMEOUTS = {
    "spawn": 90.0,
    "kernel": 30.0,
    "cell": 30.0,
    "cluster": 120.0,
    "compute": 150.0,
    "dashboard": 30.0,
    "stop": 60.0,
}


def _user_pod(deployment: Deployment, username: str, note: Any) -> None:
    """On Kubernetes: the user's pod carries the DASK_GATEWAY__* values of CHART-FACTS.md and
    runs under the mode's ServiceAccount."""
    if deployment.kube is None:
        return
    require_no_problems(
        user_pod_problems(deployment.kube, username),
        "the user pod's DASK_GATEWAY__* environment and ServiceAccount as the chart sets them",
    )
    note(f"user pod of {username}: DASK_GATEWAY__* and ServiceAccount as expected")


def _why_unreachable(deployment: Deployment) -> str:
    """On Kubernetes, the NetworkPolicy that blocks user pods from traefik, read from the
    API; elsewhere (or when none does) the two usual causes."""
    if deployment.kube is not None:
        with contextlib.suppress(Exception):
            blocked = traefik_blockers_in_cluster(deployment.kube)
            if blocked:
                return f"{blocked} ({TRAEFIK_POLICY_BUG.split('(')[-1]}"
    return "a NetworkPolicy blocking user-pod egress, or a wrong proxy address"


def _settings_follow_env(cluster_cell: CellResult, env: dict[str, str]) -> None:
    """Gateway() in the server resolved its address and proxy from DASK_GATEWAY__*."""
    printed = cluster_cell.marked("E2E-SETTINGS")
    expected = {
        "address": env["DASK_GATEWAY__ADDRESS"].rstrip("/"),
        "proxy_address": env["DASK_GATEWAY__PROXY_ADDRESS"],
        "auth": "JupyterHubAuth",
    }
    seen = {key: (printed or {}).get(key) for key in expected}
    if seen != expected:
        raise StageFailure(f"Gateway() inside the server to resolve {expected}", f"{seen}")


def _record_server_versions(computed: dict[str, Any], recorder: Any, finding: Any) -> None:
    server, scheduler = computed["server"], computed["scheduler"]
    recorder.versions.update({f"user server {k}": v for k, v in server.items()})
    for package in ("dask", "distributed"):
        if server.get(package) != scheduler.get(package):
            finding(
                "compatibility",
                f"{package} differs between the user server and the scheduler",
                f"server {server.get(package)}, scheduler {scheduler.get(package)}",
            )


def _stop_everything(
    kernel: Kernel, server: UserServer, run: RunState, stage: str, made: tuple[str, ...]
) -> None:
    """On every outcome: the in-server cluster (unless the shutdown cell just ran); the kernel
    and the server are stopped behind the next stages (a pod's termination takes its grace
    period; the run's teardown waits for it before the user is deleted); a cluster the kernel
    left behind (``made``, or any of a user the harness made) is stopped now."""
    with contextlib.suppress(Exception):
        if kernel.kernel_id is not None and kernel.last_marked("E2E-SHUTDOWN") is None:
            kernel.execute(CELL_SHUTDOWN, USER_SERVER_TIMEOUTS["cluster"])
    run.stop_server_later(
        f"stopping {server.user}'s kernel and server",
        server,
        kernel,
        stage,
        USER_SERVER_TIMEOUTS["stop"],
    )
    run.stop_leftover_clusters(stage, made)


# ------------------------------------------------------------------ dask-kubernetes mode


@pytest.mark.stage("dask_kubernetes", after=("discovery",))
def test_dask_kubernetes(deployment: Deployment, note: Any) -> None:
    """The daskkubernetes ServiceAccount, Role and RoleBinding exist with exactly the chart's
    rules, and the API server's SubjectAccessReviews agree with them."""
    kube = deployment.kube
    if kube is None:
        pytest.skip(f"the {deployment.target} target has no Kubernetes API")
    if kube.mode != "dask-kubernetes":
        pytest.skip("dask-kubernetes mode is checked with --mode dask-kubernetes")
    require_no_problems(
        rbac_problems(kube.core, kube.rbac, kube.auth, kube.namespace),
        f"ServiceAccount, Role and RoleBinding {DASK_KUBERNETES} with the chart's rules",
    )
    note(
        f"{DASK_KUBERNETES}: may get/list/watch/create/delete pods and services and read "
        "pods/log; may not touch secrets"
    )


GATEWAY_TOGGLE_BUG = (
    "daskhub's Chart.yaml gives its dask-gateway dependency no `condition:`, so "
    "dask-gateway.enabled: false does not remove Dask Gateway (CHART-FACTS.md)"
)


@pytest.mark.xfail(strict=True, raises=StageFailure, reason=GATEWAY_TOGGLE_BUG)
@pytest.mark.stage("gateway_disabled")
def test_gateway_disabled(options: Any, pytestconfig: pytest.Config) -> None:
    """``dask-gateway.enabled: false`` renders no Dask Gateway objects. A strict expected
    failure while the chart ignores the key: it turns red the day the chart is fixed."""
    kube = options.kube
    if kube is None or not kube.install:
        pytest.skip("renders the chart under test: needs --target kind or existing with a chart")
    helm = Helm(kube.release, "daskhub-e2e-render", kube.chart, kube.chart_version)
    objects = helm.template(
        [*harness_files(options), *options.values_files], "dask-gateway.enabled=false"
    )
    gateway = {gateway_object(c, kube.release) for c in ("api", "controller", "traefik")}
    left = sorted(
        f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"
        for o in objects
        if o.get("metadata", {}).get("name") in gateway
    )
    if left:
        raise StageFailure(
            "no Dask Gateway objects with dask-gateway.enabled: false",
            f"helm template still renders {', '.join(left)}",
        )


@pytest.mark.xfail(strict=True, raises=StageFailure, reason=TRAEFIK_POLICY_BUG)
@pytest.mark.stage("singleuser_reaches_traefik")
def test_singleuser_reaches_traefik(options: Any) -> None:
    """With the chart's own NetworkPolicies (the harness's values without the egress rule
    values/kind.yaml adds), a user pod may reach the traefik pods that carry the scheduler
    traffic. A strict expected failure while the chart blocks it (dask/helm-chart issue 445):
    it turns red the day the chart is fixed, and kind.yaml's rule can go."""
    kube = options.kube
    if kube is None or not kube.install:
        pytest.skip("renders the chart under test: needs --target kind or existing with a chart")
    helm = Helm(kube.release, "daskhub-e2e-render", kube.chart, kube.chart_version)
    objects = helm.template([VALUES_DIR / "daskhub-e2e.yaml"])
    blocked = traefik_blockers(objects, kube.release)
    if blocked:
        raise StageFailure(
            f"the chart's NetworkPolicies to let user pods reach "
            f"{gateway_object('traefik', kube.release)}",
            blocked,
        )
