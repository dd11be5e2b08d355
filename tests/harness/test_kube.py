"""The Kubernetes checks, with the real `kubernetes` client against a loopback HTTP server
that answers the API paths with objects shaped like the DaskHub chart's (pytest-httpserver).
Nothing of the client or the harness is patched: requests cross a real socket."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from fixtures.errors import StageFailure
from fixtures.kube import (
    DASK_KUBERNETES_RULES,
    UNSCHEDULABLE_GRACE,
    KubeRelease,
    expected_services,
    gateway_name,
    gateway_object,
    pod_failure,
    rbac_problems,
    service_problems,
    user_pod_env_expected,
    user_pod_problems,
    wait_deployments_available,
)
from fixtures.kube_target import Reach, claim_namespace
from fixtures.port_forward import start_port_forward
from fixtures.prepull import PREPULL_POD, pulling_since, start_prepull, wait_pulled
from fixtures.waiting import NotYet, wait_for
from tests.harness import renders, stand_ins
from tests.harness.fake_kube import FakeKube

NS = "dhub"


@pytest.fixture
def api(httpserver: HTTPServer) -> client.ApiClient:
    config = client.Configuration()
    config.host = httpserver.url_for("").rstrip("/")
    return client.ApiClient(config)


def _serve(server: HTTPServer, path: str, body: dict[str, Any], status: int = 200) -> None:
    server.expect_request(path).respond_with_json(body, status=status)


def _not_found(server: HTTPServer, path: str) -> None:
    _serve(
        server,
        path,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "NotFound",
            "code": 404,
        },
        status=404,
    )


def _service(name: str, ports: set[int]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"type": "ClusterIP", "ports": [{"port": p, "protocol": "TCP"} for p in ports]},
    }


def _endpoints(name: str, ready: bool) -> dict[str, Any]:
    subsets = [{"addresses": [{"ip": "10.244.0.7"}], "ports": [{"port": 8000}]}] if ready else []
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name}, "subsets": subsets}


def _serve_release(server: HTTPServer, release: str, skip: str = "", unready: str = "") -> None:
    for name, ports in expected_services(release).items():
        if name == skip:
            _not_found(server, f"/api/v1/namespaces/{NS}/services/{name}")
            continue
        _serve(server, f"/api/v1/namespaces/{NS}/services/{name}", _service(name, ports))
        _serve(
            server, f"/api/v1/namespaces/{NS}/endpoints/{name}", _endpoints(name, name != unready)
        )


@pytest.mark.parametrize(
    ("release", "prefix"),
    [
        ("dhub", "dhub-dask-gateway"),
        ("my-dask-gateway", "my-dask-gateway"),
    ],
)
def test_gateway_services_follow_the_subcharts_naming_rule(release: str, prefix: str):
    assert gateway_name(release) == prefix
    assert {f"api-{prefix}", f"traefik-{prefix}", "hub", "proxy-api", "proxy-public"} == set(
        expected_services(release)
    )


def test_gateway_names_are_cut_to_63_characters_as_the_chart_cuts_them():
    """trunc 63 | trimSuffix "-" on <P> and on traefik-<P> (dask-gateway's _helpers.tpl)."""
    release = "a" * 41 + "-b"  # <P> = 56 characters; traefik-<P> = 64 before cutting
    assert gateway_name(release) == release + "-dask-gateway"
    assert gateway_object("traefik", release) == ("traefik-" + release + "-dask-gatewa")
    assert len(gateway_object("traefik", release)) == 63
    long_release = "r" * 49 + "-"  # cut right after the '-': the '-' is trimmed
    assert gateway_name(long_release + "x" * 20).endswith("x")
    assert not gateway_object("api", "c" * 58 + "-x").endswith("-")


@pytest.mark.parametrize("release", ["dhub", "my-dask-gateway"])
def test_a_healthy_release_has_every_service_ready(httpserver, api, release):
    _serve_release(httpserver, release)
    assert service_problems(client.CoreV1Api(api), NS, release) == []


def test_a_missing_traefik_service_is_named(httpserver, api):
    _serve_release(httpserver, "dhub", skip="traefik-dhub-dask-gateway")
    assert service_problems(client.CoreV1Api(api), NS, "dhub") == [
        "Service dhub/traefik-dhub-dask-gateway is missing"
    ]


def test_a_service_without_ready_endpoints_is_named(httpserver, api):
    _serve_release(httpserver, "dhub", unready="hub")
    assert service_problems(client.CoreV1Api(api), NS, "dhub") == [
        "Service dhub/hub has no ready endpoints"
    ]


def _deployments(available: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DeploymentList",
        "items": [
            {
                "metadata": {"name": "hub", "generation": 2},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"component": "hub"}},
                    "template": {"metadata": {}, "spec": {"containers": []}},
                },
                "status": {"observedGeneration": 2, "availableReplicas": available},
            }
        ],
    }


def _pods(
    waiting_reason: str | None,
    message: str = "back-off restarting",
    restarts: int = 4,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    state = (
        {"waiting": {"reason": waiting_reason, "message": message}}
        if waiting_reason
        else {"running": {}}
    )
    return {
        "apiVersion": "v1",
        "kind": "PodList",
        "items": [
            {
                "metadata": {"name": "hub-5d9c7b7c4-x2x9q"},
                "status": {
                    "phase": "Running",
                    "conditions": conditions or [],
                    "containerStatuses": [
                        {
                            "name": "hub",
                            "ready": waiting_reason is None,
                            "restartCount": restarts,
                            "image": "hub",
                            "imageID": "",
                            "state": state,
                        }
                    ],
                },
            }
        ],
    }


def test_available_deployments_pass(httpserver, api):
    _serve(httpserver, f"/apis/apps/v1/namespaces/{NS}/deployments", _deployments(1))
    _serve(httpserver, f"/api/v1/namespaces/{NS}/pods", _pods(None))
    wait_deployments_available(
        client.AppsV1Api(api), client.CoreV1Api(api), NS, "dhub", stage="setup", timeout=5
    )


NOT_FOUND = (
    'rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/pangeo/'
    'base-notebook:nope": docker.io/pangeo/base-notebook:nope: not found'
)
RATE_LIMITED = (
    "toomanyrequests: You have reached your unauthenticated pull rate limit. "
    "https://www.docker.com/increase-rate-limit"
)


@pytest.mark.parametrize(
    ("reason", "message", "restarts"),
    [
        ("CrashLoopBackOff", "back-off 40s restarting failed container", 4),
        ("ImagePullBackOff", NOT_FOUND, 0),
        ("ErrImagePull", "pull access denied, repository does not exist", 0),
        ("CreateContainerConfigError", 'secret "hub" not found', 0),
    ],
)
def test_a_pod_that_can_not_recover_fails_the_wait_at_once_naming_it(
    httpserver, api, reason, message, restarts
):
    _serve(httpserver, f"/apis/apps/v1/namespaces/{NS}/deployments", _deployments(0))
    _serve(httpserver, f"/api/v1/namespaces/{NS}/pods", _pods(reason, message, restarts))
    with pytest.raises(StageFailure) as failed:
        wait_deployments_available(
            client.AppsV1Api(api), client.CoreV1Api(api), NS, "dhub", stage="setup", timeout=60
        )
    assert f"pod hub-5d9c7b7c4-x2x9q container hub is {reason}" in str(failed.value)
    assert "cannot recover after 0." in str(failed.value)


NOT_READY = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/1 nodes are available: 1 node(s) had untolerated taint "
    "{node.kubernetes.io/not-ready: }. preemption: 0/1 nodes are available",
}


@pytest.mark.parametrize(
    ("reason", "message", "restarts", "conditions"),
    [
        ("CrashLoopBackOff", "back-off 10s restarting failed container", 1, None),
        ("ErrImagePull", RATE_LIMITED, 0, None),
        ("ImagePullBackOff", "Back-off pulling image: i/o timeout", 0, None),
        (None, "", 0, [NOT_READY]),
    ],
    ids=["crash-once", "rate-limited-pull", "pull-timeout", "new-node-not-ready"],
)
def test_states_the_kubelet_or_a_new_node_outgrow_are_waited_out(
    httpserver, api, reason, message, restarts, conditions
):
    """What the kubelet retries by itself, and a fresh kind node's not-ready taint, are not
    failures: the wait runs to its deadline with the last state as its error."""
    _serve(httpserver, f"/apis/apps/v1/namespaces/{NS}/deployments", _deployments(0))
    _serve(
        httpserver,
        f"/api/v1/namespaces/{NS}/pods",
        _pods(reason, message, restarts, conditions),
    )
    with pytest.raises(StageFailure) as failed:
        wait_deployments_available(
            client.AppsV1Api(api), client.CoreV1Api(api), NS, "dhub", stage="setup", timeout=1.5
        )
    assert "within 2s (stage setup); saw it did not happen" in str(failed.value)


def test_a_pod_unschedulable_for_another_reason_fails_after_the_grace():
    """Insufficient cpu is final, but only once it has lasted UNSCHEDULABLE_GRACE."""
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="hub-0"),
        status=client.V1PodStatus(
            conditions=[
                client.V1PodCondition(
                    type="PodScheduled",
                    status="False",
                    reason="Unschedulable",
                    message="0/1 nodes are available: 1 Insufficient cpu.",
                )
            ]
        ),
    )
    assert pod_failure(pod, 5.0) is None
    assert "Insufficient cpu" in str(pod_failure(pod, UNSCHEDULABLE_GRACE + 1))
    not_ready = client.V1Pod(
        metadata=client.V1ObjectMeta(name="hub-0"),
        status=client.V1PodStatus(
            conditions=[
                client.V1PodCondition(
                    **{k: NOT_READY[k] for k in ("type", "status", "reason", "message")}
                )
            ]
        ),
    )
    assert pod_failure(not_ready, 10 * UNSCHEDULABLE_GRACE) is None


def _rbac(server: HTTPServer, verbs_for_pods: list[str]) -> None:
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}"
    _serve(
        server,
        f"/api/v1/namespaces/{NS}/serviceaccounts/daskkubernetes",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "daskkubernetes"}},
    )
    _serve(
        server,
        f"{base}/roles/daskkubernetes",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "daskkubernetes"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": verbs_for_pods},
                {
                    "apiGroups": [""],
                    "resources": ["services"],
                    "verbs": ["get", "list", "watch", "create", "delete"],
                },
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list"]},
            ],
        },
    )
    _serve(
        server,
        f"{base}/rolebindings/daskkubernetes",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "daskkubernetes"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "daskkubernetes",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "daskkubernetes", "namespace": NS}],
        },
    )
    granted = (
        {("pods", v) for v in verbs_for_pods}
        | {("services", v) for v in ("get", "list", "watch", "create", "delete")}
        | {("pods/log", v) for v in ("get", "list")}
    )

    def review(request: Request) -> Response:
        spec = json.loads(request.data)["spec"]
        attributes = spec["resourceAttributes"]
        resource = attributes["resource"] + (
            "/" + attributes["subresource"] if attributes.get("subresource") else ""
        )
        allowed = (resource, attributes["verb"]) in granted
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
            "status": {"allowed": allowed},
        }
        return Response(json.dumps(body), status=201, content_type="application/json")

    server.expect_request(
        "/apis/authorization.k8s.io/v1/subjectaccessreviews", method="POST"
    ).respond_with_handler(review)


def _rbac_apis(api: client.ApiClient):
    return (
        client.CoreV1Api(api),
        client.RbacAuthorizationV1Api(api),
        client.AuthorizationV1Api(api),
    )


def test_the_dask_kubernetes_rbac_grants_exactly_the_documented_rules(httpserver, api):
    _rbac(httpserver, ["get", "list", "watch", "create", "delete"])
    assert rbac_problems(*_rbac_apis(api), NS) == []
    assert DASK_KUBERNETES_RULES[("", "pods/log")] == {"get", "list"}


def test_a_role_missing_a_verb_is_named(httpserver, api):
    _rbac(httpserver, ["get", "list", "watch", "create"])
    problems = rbac_problems(*_rbac_apis(api), NS)
    assert problems[0].startswith("Role dhub/daskkubernetes grants pods: create,get,list,watch")
    assert "the API server denies delete pods to ServiceAccount daskkubernetes" in problems


def test_a_missing_service_account_is_named(httpserver, api):
    _not_found(httpserver, f"/api/v1/namespaces/{NS}/serviceaccounts/daskkubernetes")
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}"
    _not_found(httpserver, f"{base}/roles/daskkubernetes")
    _not_found(httpserver, f"{base}/rolebindings/daskkubernetes")
    assert rbac_problems(*_rbac_apis(api), NS) == [
        "ServiceAccount dhub/daskkubernetes is missing",
        "Role dhub/daskkubernetes is missing",
        "RoleBinding dhub/daskkubernetes is missing",
    ]


def test_a_grant_to_every_authenticated_account_is_named(httpserver, api):
    """A ClusterRoleBinding that gives group system:authenticated the Secrets reaches the
    daskkubernetes account too: the access review must carry that group to see it."""
    fake = FakeKube(httpserver)
    fake.add_namespace(NS)
    fake.add_dask_kubernetes_rbac(NS)
    fake.put(
        "",
        "clusterroles",
        "read-secrets",
        {"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]},
    )
    fake.put(
        "",
        "clusterrolebindings",
        "everyone-reads-secrets",
        {
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "read-secrets",
            },
            "subjects": [
                {
                    "kind": "Group",
                    "name": "system:authenticated",
                    "apiGroup": "rbac.authorization.k8s.io",
                }
            ],
        },
    )
    problems = rbac_problems(*_rbac_apis(api), NS)
    assert problems == [
        "the API server allows get secrets to ServiceAccount daskkubernetes, which the chart's "
        "Role does not grant"
    ]


# ------------------------------------------- the user pod, against the stateful loopback API


def _release(api: client.ApiClient, name: str, mode: str = "gateway") -> KubeRelease:
    return KubeRelease(api, NS, name, mode, "kubectl", None, "v1.32.2")


def _user_pod(fake: FakeKube, release: str, account: str = "default", **env: str) -> None:
    expected = user_pod_env_expected(release, NS)
    fake.add_pod(
        NS,
        "jupyter-e2e-0a1b2c",
        "notebook",
        {"component": "singleuser-server"},
        annotations={"hub.jupyter.org/username": "e2e-0a1b2c"},
        env={**expected, **env},
        account=account,
    )


def test_a_user_pod_as_the_chart_makes_it_passes(httpserver, api):
    fake = FakeKube(httpserver)
    _user_pod(fake, "dhub")
    assert user_pod_problems(_release(api, "dhub"), "e2e-0a1b2c") == []
    assert user_pod_env_expected("dhub", NS)["DASK_GATEWAY__PROXY_ADDRESS"] == (
        f"gateway://traefik-dhub-dask-gateway.{NS}:80"
    )


def test_the_hard_coded_traefik_name_is_caught_for_a_release_named_dask_gateway(httpserver, api):
    """daskhub's hub config writes traefik-<release>-dask-gateway; the subchart names the
    Service traefik-<release> when the release name contains dask-gateway (CHART-FACTS.md)."""
    fake = FakeKube(httpserver)
    wrong = f"gateway://traefik-my-dask-gateway-dask-gateway.{NS}:80"
    _user_pod(fake, "my-dask-gateway", DASK_GATEWAY__PROXY_ADDRESS=wrong)
    assert user_pod_problems(_release(api, "my-dask-gateway"), "e2e-0a1b2c") == [
        f"pod jupyter-e2e-0a1b2c has DASK_GATEWAY__PROXY_ADDRESS={wrong!r}, not "
        f"'gateway://traefik-my-dask-gateway.{NS}:80'"
    ]


def test_dask_kubernetes_mode_needs_the_pod_under_its_service_account(httpserver, api):
    fake = FakeKube(httpserver)
    _user_pod(fake, "dhub", account="default")
    assert user_pod_problems(_release(api, "dhub", "dask-kubernetes"), "e2e-0a1b2c") == [
        "pod jupyter-e2e-0a1b2c runs under ServiceAccount 'default', not 'daskkubernetes'"
    ]


def test_a_missing_user_pod_is_named(httpserver, api):
    FakeKube(httpserver)
    assert user_pod_problems(_release(api, "dhub"), "e2e-0a1b2c") == [
        f"no user server pod of e2e-0a1b2c in {NS}"
    ]


def test_a_port_forward_whose_kubectl_exits_fails_at_once_with_its_words(
    httpserver, tmp_path: Path
):
    fake = FakeKube(httpserver)
    kubeconfig = stand_ins.write_kubeconfig(tmp_path / "kubeconfig", fake.url, "c")
    kubectl = stand_ins.install(tmp_path / "bin") / "kubectl"
    began, started = time.monotonic(), []
    with pytest.raises(StageFailure) as failure:
        start_port_forward(
            str(kubectl), kubeconfig, NS, "proxy-public", 80, tmp_path, "setup", started
        )
    assert time.monotonic() - began < 10
    assert started[0].process.popen is not None and started[0].process.popen.poll() is not None
    assert "the port-forward proxy-public process exited with code 1" in str(failure.value)
    assert 'services "proxy-public" not found' in str(failure.value)


def test_a_port_forward_is_ready_when_kubectl_says_so_and_stops_by_pid(
    httpserver, tmp_path: Path, running_stack
):
    fake = FakeKube(httpserver)
    fake.forwards[(NS, "proxy-public")] = ("127.0.0.1", running_stack.ports["public"])
    kubeconfig = stand_ins.write_kubeconfig(tmp_path / "kubeconfig", fake.url, "c")
    kubectl = stand_ins.install(tmp_path / "bin") / "kubectl"
    forward = start_port_forward(
        str(kubectl), kubeconfig, NS, "proxy-public", 80, tmp_path, "setup", []
    )
    try:
        answer = requests.get(f"http://127.0.0.1:{forward.local_port}/hub/api/", timeout=10)
        assert answer.status_code == 200 and "version" in answer.json()
    finally:
        forward.stop()
    assert forward.process.popen is not None and forward.process.popen.poll() is not None


def test_a_port_forward_that_lost_its_pod_is_started_again_once_per_stage(
    httpserver, tmp_path: Path, running_stack, api
):
    """kubectl >= 1.23 ends on one forwarding error ("lost connection to pod"): the next
    stage finds it ended, starts it again on the same local port and says so; not twice in
    one stage."""
    fake = FakeKube(httpserver)
    fake.forwards[(NS, "proxy-public")] = ("127.0.0.1", running_stack.ports["public"])
    kubeconfig = stand_ins.write_kubeconfig(tmp_path / "kubeconfig", fake.url, "c")
    kubectl = stand_ins.install(tmp_path / "bin") / "kubectl"
    release = KubeRelease(api, NS, "dhub", "gateway", str(kubectl), kubeconfig, "v1.32.2")
    reach = Reach(release, kind=False, log_dir=tmp_path)
    try:
        url = reach.address("proxy-public", 80, 30080, "http")
        first = reach.forwards[0]
        assert reach.heal("dashboard") == []  # alive: nothing to do
        os.kill(first.process.pid, signal.SIGUSR1)  # the pod behind it went away
        wait_for(lambda: first.ended() or _raise(), stage="t", what="kubectl ends", timeout=10)

        said = reach.heal("dashboard")
        assert said == [
            "kubectl port-forward svc/proxy-public had ended (error: lost connection to pod); "
            f"started again on port {first.local_port}"
        ]
        assert requests.get(url + "/hub/api/", timeout=10).status_code == 200  # same URL
        os.kill(reach.forwards[0].process.pid, signal.SIGUSR1)
        wait_for(lambda: reach.forwards[0].ended() or _raise(), stage="t", what="ends", timeout=10)
        assert reach.heal("dashboard") == []  # once per stage
        assert len(reach.heal("isolation")) == 1  # the next stage may again
    finally:
        reach.stop()


def _raise() -> None:
    raise NotYet("still running")


def test_the_user_image_pull_is_waited_for_saying_which_and_how_long(httpserver, api):
    """On an empty node the user image takes minutes: the wait knows a pull is under way
    (the Pod's events) and returns once the image is there."""
    fake = FakeKube(httpserver)
    fake.add_namespace(NS)
    fake.pull_seconds = 2.5
    core = client.CoreV1Api(api)
    image = "pangeo/base-notebook:2025.11.13"
    assert start_prepull(core, NS, image) is None
    assert pulling_since(core, NS, PREPULL_POD) == f'Pulling image "{image}"'
    said = wait_pulled(core, NS, image, "setup")
    assert said.startswith(f"user image {image} on the node after ")
    assert int(said.split("after ")[1].rstrip("s")) >= 2
    assert pulling_since(core, NS, PREPULL_POD) is None
    assert start_prepull(core, NS, image) is None  # a kept run's Pod: already there


def test_a_pull_no_retry_brings_ends_the_wait_at_once_with_a_note(httpserver, api):
    """The pre-pull Pod has none of the chart's imagePullSecrets: a refused pull is a note,
    and the user pods (which have them) say the rest."""
    fake = FakeKube(httpserver)
    fake.add_namespace(NS)
    fake.pull_error = 'failed to resolve reference "docker.io/pangeo/base-notebook:nope": not found'
    core = client.CoreV1Api(api)
    start_prepull(core, NS, "pangeo/base-notebook:nope")
    began = time.monotonic()
    said = wait_pulled(core, NS, "pangeo/base-notebook:nope", "setup")
    assert said.startswith("the user image pangeo/base-notebook:nope was not pre-pulled: pod ")
    assert "ErrImagePull: failed to resolve reference" in said
    assert time.monotonic() - began < 10


def test_a_load_balancer_address_is_used_when_the_service_has_one(httpserver, api, tmp_path):
    """An existing cluster whose proxy-public got an address (the chart's default type): the
    hub is reached there, no port-forward is started (the address is never contacted here)."""
    fake = FakeKube(httpserver)
    fake.lb_address = "203.0.113.7"  # TEST-NET-3
    fake.install(NS, "dhub", renders.project_values(["daskhub-e2e.yaml"]))
    release = KubeRelease(api, NS, "dhub", "gateway", "kubectl-not-needed", None, "v1.32.2")
    reach = Reach(release, kind=False, log_dir=tmp_path)
    assert reach.address("proxy-public", 80, 30080, "http") == "http://203.0.113.7:80"
    assert reach.how == ["proxy-public at its LoadBalancer address 203.0.113.7"]
    assert reach.forwards == []


def test_a_namespace_still_terminating_is_waited_out_then_made_anew(httpserver, api):
    """An earlier run's teardown deleted it a moment ago: it is Terminating for a while, and
    creating it then is a 409; the claim waits until it is gone."""
    fake = FakeKube(httpserver)
    fake.terminating_seconds = 1.5
    core = client.CoreV1Api(api)
    assert claim_namespace(core, "daskhub-e2e-ab12cd", "run-1") is True
    core.delete_namespace("daskhub-e2e-ab12cd")
    assert fake.namespaces["daskhub-e2e-ab12cd"]["status"]["phase"] == "Terminating"
    began = time.monotonic()
    assert claim_namespace(core, "daskhub-e2e-ab12cd", "run-2") is True
    assert time.monotonic() - began >= 1.0
    assert fake.namespaces["daskhub-e2e-ab12cd"]["status"]["phase"] == "Active"
