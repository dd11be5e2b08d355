"""The loopback Kubernetes API serves what the real chart creates: for every case of the
workspace's chart renders (Helm's own engine), the objects the stand-in installs, read back
through the real ``kubernetes`` client, are the render's objects: kinds, names, labels,
selectors, port names and numbers, nodePorts, container names, Secret keys and values, RBAC
rules and NetworkPolicies. Any difference fails. Only what the cluster adds (status, cluster
IPs, node ports the render leaves to the API server) and what the project's values add since
the render was made (listed below, each one place) are allowed."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from kubernetes import client
from pytest_httpserver import HTTPServer

from fixtures.values import VALUES_DIR
from tests.harness import renders
from tests.harness.fake_kube import FakeKube

#: Project values changed since the renders were made, and the one place each reaches.
KNOWN_VALUE_CHANGES = {
    "daskhub-e2e.yaml": "singleuser.extraEnv: only the hub Secret's values.yaml (omitted in "
    "the renders)",
    "kind.yaml": "singleuser.networkPolicy.egress: one more rule of NetworkPolicy singleuser",
}
CASES = sorted(renders.index()["cases"])
#: What the stand-in installs as (release, namespace); the renders' placeholders differ.
RELEASE, NAMESPACE = "rel", "ns1"


def test_every_changed_values_file_is_one_the_comparison_knows():
    """A values change the renders do not reflect must be known here (or re-rendered)."""
    for name, digest in renders.index()["values_sha256"].items():
        now = hashlib.sha256((VALUES_DIR / name).read_bytes()).hexdigest()
        if now != digest:
            assert name in KNOWN_VALUE_CHANGES, f"{name} changed: ask for a re-render"


def _values(meta: dict[str, Any]) -> dict[str, Any]:
    values = renders.project_values(meta["values_files"])
    if meta["tokens"]:
        tokens = renders.placeholder_tokens()
        values.setdefault("jupyterhub", {}).setdefault("proxy", {})["secretToken"] = tokens["proxy"]
        services = values["jupyterhub"].setdefault("hub", {}).setdefault("services", {})
        services.setdefault("dask-gateway", {})["apiToken"] = tokens["gateway"]
        services.setdefault("daskhub-e2e", {})["apiToken"] = tokens["harness"]
        values.setdefault("dask-gateway", {}).setdefault("gateway", {}).setdefault(
            "auth", {}
        ).setdefault("jupyterhub", {})["apiToken"] = tokens["gateway"]
    for pair in meta["set"]:
        renders.apply_set(values, pair)
    return values


def _path(obj: dict[str, Any]) -> str:
    group, _, version = obj["apiVersion"].rpartition("/")
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    resource = renders.resource_of(obj["kind"])
    name = obj["metadata"]["name"]
    if obj["kind"] in renders.CLUSTER_SCOPED:
        return f"{base}/{resource}/{name}"
    return f"{base}/namespaces/{NAMESPACE}/{resource}/{name}"


def _without_cluster_additions(served: dict[str, Any], render: dict[str, Any]) -> dict[str, Any]:
    """The served object less what the API server and controllers add."""
    served = copy.deepcopy(served)
    served.pop("status", None)
    for key in ("generation", "creationTimestamp"):
        served["metadata"].pop(key, None)
    if not render["metadata"].get("labels"):
        served["metadata"].pop("labels", None)
    if served["kind"] == "Service":
        spec, given = served["spec"], render["spec"]
        if "clusterIP" not in given:
            spec.pop("clusterIP", None)
        for port, expected in zip(spec.get("ports") or [], given.get("ports") or [], strict=True):
            if "nodePort" not in expected:
                port.pop("nodePort", None)
    return served


@pytest.mark.parametrize("key", CASES)
def test_the_stand_in_serves_the_real_objects_of_every_render_case(
    httpserver: HTTPServer, key: str
):
    version, case = key.split("/", 1)
    version = version.removeprefix("daskhub-")
    meta = renders.index()["cases"][key]
    release = RELEASE + meta["release"][len(renders.PLACEHOLDER_RELEASE) :]
    values = _values(meta)
    fake = FakeKube(httpserver)
    chart = "dask/daskhub" if version == "2024.1.1" else "./daskhub"
    fake.install(NAMESPACE, release, values, chart, version if version != "main" else None)
    tokens = renders.tokens_of(values) if meta["tokens"] else {}
    if not meta["tokens"]:  # the render's own random tokens are kept as rendered
        tokens = {}
    expected = renders.with_values_applied(
        renders.objects(version, case, release, NAMESPACE, {k: v for k, v in tokens.items() if v}),
        values,
    )

    config = client.Configuration()
    config.host = fake.url
    api = client.ApiClient(config)
    served_kinds = {
        (o["kind"], o["metadata"]["name"])
        for (_, resource, _), o in fake.objects.items()
        if resource not in ("pods", "endpoints", "events")
    }
    assert served_kinds == {(o["kind"], o["metadata"]["name"]) for o in expected}
    for render in expected:
        answer = api.call_api("GET", fake.url + _path(render))
        answer.read()
        served = json.loads(answer.data)
        assert _without_cluster_additions(served, render) == render, _path(render)

    # the typed models the harness reads agree too (ports, selectors, containers, rules)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    for render in expected:
        name = render["metadata"]["name"]
        if render["kind"] == "Service":
            service = core.read_namespaced_service(name, NAMESPACE)
            assert [(p.name, p.port) for p in service.spec.ports] == [
                (p.get("name"), p["port"]) for p in render["spec"]["ports"]
            ]
            assert service.spec.selector == render["spec"].get("selector")
        if render["kind"] == "Deployment":
            deployment = apps.read_namespaced_deployment(name, NAMESPACE)
            assert [c.name for c in deployment.spec.template.spec.containers] == [
                c["name"] for c in render["spec"]["template"]["spec"]["containers"]
            ]
            assert deployment.spec.selector.match_labels == render["spec"]["selector"].get(
                "matchLabels"
            )


def test_the_kind_values_add_the_traefik_egress_rule_to_the_singleuser_policy_only():
    values = renders.project_values(["daskhub-e2e.yaml", "kind.yaml"])
    made = renders.objects("main", "kind-gateway", RELEASE, NAMESPACE, {})
    applied = renders.with_values_applied(made, values)
    changed = [b["metadata"]["name"] for a, b in zip(made, applied, strict=True) if a != b]
    assert changed == ["singleuser"]
