"""The NetworkPolicy judgement behind singleuser_reaches_traefik and the user_server stage's
cause, against the chart's real policies (the workspace's renders) and the loopback API."""

from __future__ import annotations

import pytest
from kubernetes import client
from pytest_httpserver import HTTPServer

from fixtures.kube import KubeRelease, traefik_blockers, traefik_blockers_in_cluster
from fixtures.netpol import Destination, rule_allows
from tests.harness import renders
from tests.harness.fake_kube import FakeKube


@pytest.mark.parametrize("version", ["main", "2024.1.1"])
def test_the_charts_own_singleuser_policy_blocks_user_pods_from_traefik(version: str):
    """dask/helm-chart issue 445, on the chart's real objects."""
    made = renders.objects(version, "existing-gateway", "dhub", "dhub", {})
    assert traefik_blockers(made, "dhub") == (
        "NetworkPolicy singleuser allows no egress from user pods to "
        "traefik-dhub-dask-gateway (pod port 8000)"
    )


@pytest.mark.parametrize("version", ["main", "2024.1.1"])
def test_the_kind_values_egress_rule_lets_them_through(version: str):
    values = renders.project_values(["daskhub-e2e.yaml", "kind.yaml"])
    made = renders.objects(version, "kind-gateway", "dhub", "dhub", {})
    assert traefik_blockers(renders.with_values_applied(made, values), "dhub") is None


def test_rules_follow_the_networkpolicy_api():
    traefik = Destination({"app": "t"}, "10.244.0.7", 8000, "web")
    assert rule_allows({}, traefik)  # no to, no ports: everything
    assert rule_allows({"ports": [{"port": "web"}]}, traefik)
    assert not rule_allows({"ports": [{"port": 8000, "protocol": "UDP"}]}, traefik)
    assert rule_allows({"ports": [{"port": 7000, "endPort": 9000}]}, traefik)
    public_only = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}
    assert not rule_allows(public_only, traefik)
    assert rule_allows({"to": [{"podSelector": {"matchLabels": {"app": "t"}}}]}, traefik)
    assert not rule_allows({"to": [{"podSelector": {"matchLabels": {"app": "u"}}}]}, traefik)


def test_on_a_cluster_the_blocking_policy_is_read_from_the_api(httpserver: HTTPServer):
    fake = FakeKube(httpserver)
    fake.install("ops", "dhub", renders.project_values(["daskhub-e2e.yaml"]))
    config = client.Configuration()
    config.host = fake.url
    release = KubeRelease(client.ApiClient(config), "ops", "dhub", "gateway", "kubectl", None, "")
    assert "NetworkPolicy singleuser allows no egress" in str(traefik_blockers_in_cluster(release))
    fake.install("ops", "dhub", renders.project_values(["daskhub-e2e.yaml", "kind.yaml"]))
    assert traefik_blockers_in_cluster(release) is None
