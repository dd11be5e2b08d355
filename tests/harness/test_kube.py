"""The Kubernetes checks, with the real `kubernetes` client against a loopback HTTP server
that answers the API paths with objects shaped like the DaskHub chart's (pytest-httpserver).
Nothing of the client or the harness is patched: requests cross a real socket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from fixtures.errors import StageFailure
from fixtures.kube import (
    DASK_KUBERNETES_RULES,
    expected_services,
    gateway_name,
    rbac_problems,
    service_problems,
    wait_deployments_available,
)

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


def _pods(waiting_reason: str | None) -> dict[str, Any]:
    state = (
        {"waiting": {"reason": waiting_reason, "message": "back-off restarting"}}
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
                    "containerStatuses": [
                        {
                            "name": "hub",
                            "ready": waiting_reason is None,
                            "restartCount": 4,
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


@pytest.mark.parametrize("reason", ["CrashLoopBackOff", "ImagePullBackOff"])
def test_a_pod_that_can_not_recover_fails_the_wait_at_once_naming_it(httpserver, api, reason):
    _serve(httpserver, f"/apis/apps/v1/namespaces/{NS}/deployments", _deployments(0))
    _serve(httpserver, f"/api/v1/namespaces/{NS}/pods", _pods(reason))
    with pytest.raises(StageFailure) as failed:
        wait_deployments_available(
            client.AppsV1Api(api), client.CoreV1Api(api), NS, "dhub", stage="setup", timeout=60
        )
    assert f"pod hub-5d9c7b7c4-x2x9q container hub is {reason}" in str(failed.value)
    assert "cannot recover after 0." in str(failed.value)


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
