"""A loopback Kubernetes API for the self-tests: real HTTP on a real socket (pytest-httpserver),
answering the API paths the harness uses from objects held in memory, shaped like the ones the
DaskHub chart creates (CHART-FACTS.md). The real ``kubernetes`` client talks to it.

It also stands in for what a cluster does on its own: ``install`` (called by the stand-in helm
through ``/_fake/...``) creates a release's objects the way the chart would, reusing the tokens
of an existing ``hub`` Secret as the chart's ``lookup`` does; SubjectAccessReviews are answered
from the Roles held; a namespace delete removes what is in it.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from fixtures.kube import DASK_KUBERNETES, gateway_name

_OBJECT = re.compile(
    r"^/(?:api/v1|apis/[^/]+/v1)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?(?:/(log))?$"
)
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.2",
    "gitCommit": "67a30c0adcf52bd3f56ff0893ce19966be12991f",
    "gitTreeState": "clean",
    "buildDate": "2025-02-25T04:35:34Z",
    "goVersion": "go1.23.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_KINDS = {
    "pods": "Pod",
    "services": "Service",
    "endpoints": "Endpoints",
    "deployments": "Deployment",
    "secrets": "Secret",
    "events": "Event",
    "serviceaccounts": "ServiceAccount",
    "roles": "Role",
    "rolebindings": "RoleBinding",
    "clusterroles": "ClusterRole",
    "clusterrolebindings": "ClusterRoleBinding",
}


def _status(code: int, reason: str, message: str = "") -> Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }
    return Response(json.dumps(body), status=code, content_type="application/json")


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _subject_matches(subject: dict[str, Any], user: str, groups: set[str], ns: str) -> bool:
    if subject["kind"] == "ServiceAccount":
        where = subject.get("namespace") or ns  # RBAC takes the binding's namespace
        return user == f"system:serviceaccount:{where}:{subject['name']}"
    if subject["kind"] == "Group":
        return subject["name"] in groups
    return bool(subject["kind"] == "User" and subject["name"] == user)


def _rule_allows(rule: dict[str, Any], group: str, resource: str, verb: str) -> bool:
    def has(values: list[str], value: str) -> bool:
        return "*" in values or value in values

    return (
        has(rule.get("apiGroups") or [""], group)
        and has(rule.get("resources") or [], resource)
        and has(rule.get("verbs") or [], verb)
    )


def _dig(values: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        values = (values or {}).get(key) or {}
    return values or None


class FakeKube:
    """The in-memory cluster; ``url`` is its API address."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (ns, resource, name)
        self.logs: dict[tuple[str, str, bool], str] = {}  # (pod, container, previous)
        self.releases: dict[tuple[str, str], dict[str, Any]] = {}  # (ns, release)
        self.forwards: dict[tuple[str, str], tuple[str, int]] = {}  # (ns, service) -> backend
        self.requests: list[tuple[str, str]] = []
        self.installed: list[dict[str, Any]] = []  # every install's body (values with tokens)
        self.break_pod = ""  # a Deployment whose pod crash-loops after each install
        self.slow_pod = ""  # a Deployment that never becomes available (no failure either)
        self.lookup = True  # False: an install without tokens makes new ones (no helm lookup)
        #: When the node turns Ready (monotonic seconds): a new kind node is NotReady at first.
        self.node_ready_at = time.monotonic() + 1.5
        server.expect_request(re.compile(".*")).respond_with_handler(self.handle)

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    # ------------------------------------------------------------------ the HTTP surface

    def handle(self, request: Request) -> Response:  # noqa: PLR0911 (a router)
        path, method = request.path.rstrip("/"), request.method
        self.requests.append((method, path))
        if path == "/version":
            return _json(VERSION)
        if path == "/api/v1/nodes":
            return _json(self._nodes())
        if path.startswith("/_fake/"):
            return self._control(method, path, request)
        if path == "/apis/authorization.k8s.io/v1/subjectaccessreviews" and method == "POST":
            return self._access_review(json.loads(request.get_data()))
        if path == "/api/v1/namespaces" and method == "GET":
            selector = request.args.get("labelSelector", "")
            key, _, value = selector.partition("=")
            listed = [
                n
                for n in self.namespaces.values()
                if not selector or n["metadata"]["labels"].get(key) == value
            ]
            return _json(
                {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": listed}
            )
        if path == "/api/v1/namespaces" and method == "POST":
            body = json.loads(request.get_data())
            name = body["metadata"]["name"]
            if name in self.namespaces:
                return _status(409, "AlreadyExists", f'namespaces "{name}" already exists')
            self.add_namespace(name, body["metadata"].get("labels") or {})
            return _json(self.namespaces[name], 201)
        namespace = re.fullmatch(r"/api/v1/namespaces/([^/]+)", path)
        if namespace:
            return self._namespace(method, namespace.group(1))
        found = _OBJECT.match(path)
        if not found:
            return _status(404, "NotFound", f"the fake API does not serve {path}")
        ns, resource, name, log = found.groups()
        if log:
            previous = request.args.get("previous") == "true"
            text = self.logs.get((name, request.args.get("container", ""), previous))
            if text is None:
                return _status(400, "BadRequest", "previous terminated container not found")
            return Response(text, content_type="text/plain")
        if name is None:
            return _json(self._list(ns, resource, request.args.get("labelSelector")))
        obj = self.objects.get((ns, resource, name))
        if obj is None:
            return _status(404, "NotFound", f'{resource} "{name}" not found')
        return _json(obj)

    def _nodes(self) -> dict[str, Any]:
        """One kind node: NotReady, with the not-ready taint, until its network is up
        (``node_ready_at``), as a freshly created kind node is."""
        ready = time.monotonic() >= self.node_ready_at
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "daskhub-e2e-control-plane"},
            "spec": {}
            if ready
            else {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "reason": "KubeletReady" if ready else "KubeletNotReady",
                        "message": "kubelet is posting ready status"
                        if ready
                        else "container runtime network not ready: NetworkReady=false "
                        "reason:NetworkPluginNotReady message:Network plugin returns error: "
                        "cni plugin not initialized",
                    }
                ]
            },
        }
        return {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [node]}

    def _namespace(self, method: str, name: str) -> Response:
        if name not in self.namespaces:
            return _status(404, "NotFound", f'namespaces "{name}" not found')
        if method == "DELETE":
            del self.namespaces[name]
            for key in [k for k in self.objects if k[0] == name]:
                del self.objects[key]
            for key in [k for k in self.releases if k[0] == name]:
                del self.releases[key]
            return _json({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        return _json(self.namespaces[name])

    def _list(self, ns: str, resource: str, selector: str | None) -> dict[str, Any]:
        items = [o for (n, r, _), o in self.objects.items() if n == ns and r == resource]
        if selector:
            key, _, value = selector.partition("=")
            items = [o for o in items if (o["metadata"].get("labels") or {}).get(key) == value]
        return {
            "kind": f"{_KINDS.get(resource, 'Object')}List",
            "apiVersion": "v1",
            "metadata": {},
            "items": items,
        }

    def _access_review(self, review: dict[str, Any]) -> Response:
        """As the RBAC authorizer decides: the RoleBindings of the namespace (to a Role or a
        ClusterRole) and every ClusterRoleBinding, for the user and each of its groups."""
        spec = review["spec"]
        attrs = spec["resourceAttributes"]
        user, groups = spec["user"], set(spec.get("groups") or [])
        resource = attrs["resource"] + (
            f"/{attrs['subresource']}" if attrs.get("subresource") else ""
        )
        allowed = False
        for (ns, kind, _name), binding in self.objects.items():
            in_scope = (kind == "rolebindings" and ns == attrs["namespace"]) or (
                kind == "clusterrolebindings"
            )
            if not in_scope or not any(
                _subject_matches(s, user, groups, ns) for s in binding.get("subjects") or []
            ):
                continue
            ref = binding["roleRef"]
            role = (
                self.objects.get((ns, "roles", ref["name"]), {})
                if ref["kind"] == "Role"
                else self.objects.get(("", "clusterroles", ref["name"]), {})
            )
            for rule in role.get("rules", []):
                if _rule_allows(rule, attrs.get("group", ""), resource, attrs["verb"]):
                    allowed = True
        review["status"] = {"allowed": allowed}
        return _json(review, 201)

    def _control(self, method: str, path: str, request: Request) -> Response:  # noqa: PLR0911
        parts = path.split("/")[2:]
        if parts[0] == "releases" and len(parts) == 1:
            return _json(list(self.releases.values()))
        if parts[0] == "releases" and method == "GET":
            release = self.releases.get((parts[1], parts[2]))
            return _json(release) if release else _status(404, "NotFound")
        if parts[0] == "install":
            body = json.loads(request.get_data())
            self.install(body["namespace"], body["release"], body["values"], body.get("chart", ""))
            self.installed.append(body)
            if self.slow_pod:
                deployment = self.objects[(body["namespace"], "deployments", self.slow_pod)]
                deployment["status"]["availableReplicas"] = 0
            if self.break_pod:
                self.add_pod(
                    body["namespace"],
                    f"{self.break_pod}-5d8f7c9b4-x2x7q",
                    self.break_pod,
                    {"component": self.break_pod},
                    waiting="CrashLoopBackOff",
                )
                deployment = self.objects[(body["namespace"], "deployments", self.break_pod)]
                deployment["status"]["availableReplicas"] = 0
            return _json({"ok": True})
        if parts[0] == "uninstall":
            body = json.loads(request.get_data())
            self.uninstall(body["namespace"], body["release"])
            return _json({"ok": True})
        if parts[0] == "status":
            body = json.loads(request.get_data())
            self.releases[(body["namespace"], body["release"])]["info"]["status"] = body["status"]
            return _json({"ok": True})
        if parts[0] == "forward":
            backend = (
                self.forwards.get((parts[1], parts[2]))
                or self.forwards.get(("*", parts[2]))
                or self.forwards.get(("*", parts[2].split("-", 1)[0] + "-*"))
            )
            if backend is None:
                return _status(404, "NotFound", f'services "{parts[2]}" not found')
            return _json({"host": backend[0], "port": backend[1]})
        return _status(404, "NotFound", path)

    # ------------------------------------------------------------------ what the chart makes

    def add_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.namespaces[name] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels or {}},
            "status": {"phase": "Active"},
        }

    def put(
        self,
        ns: str,
        resource: str,
        name: str,
        body: dict[str, Any],
        labels: dict[str, str] | None = None,
    ) -> None:
        kind = _KINDS[resource]
        group = {
            "Deployment": "apps/v1",
            "Role": "rbac.authorization.k8s.io/v1",
            "RoleBinding": "rbac.authorization.k8s.io/v1",
            "ClusterRole": "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
        }.get(kind, "v1")
        self.objects[(ns, resource, name)] = {
            "apiVersion": group,
            "kind": kind,
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": labels or {},
                "generation": 1,
                "creationTimestamp": "2026-11-28T12:00:00Z",
            },
            **body,
        }

    def install(self, ns: str, release: str, values: dict[str, Any], chart: str = "") -> None:
        """What ``helm upgrade --install`` of DaskHub leaves in a cluster, all healthy."""
        if ns not in self.namespaces:
            self.add_namespace(ns)
        p = gateway_name(release)
        hub = values.get("jupyterhub") or {}
        proxy_type = _dig(hub, "proxy", "service", "type") or "LoadBalancer"
        traefik_type = _dig(values, "dask-gateway", "traefik", "service", "type") or "ClusterIP"
        services = {
            "hub": (8081, "ClusterIP", None),
            "proxy-api": (8001, "ClusterIP", None),
            "proxy-public": (80, proxy_type, _dig(hub, "proxy", "service", "nodePorts", "http")),
            f"api-{p}": (8000, "ClusterIP", None),
            f"traefik-{p}": (
                80,
                traefik_type,
                _dig(values, "dask-gateway", "traefik", "service", "ports", "web", "nodePort"),
            ),
        }
        for name, (port, kind, node_port) in services.items():
            entry: dict[str, Any] = {"name": "http", "port": port, "protocol": "TCP"}
            if kind in ("NodePort", "LoadBalancer"):
                entry["nodePort"] = node_port or 31000 + port
            self.put(ns, "services", name, {"spec": {"type": kind, "ports": [entry]}, "status": {}})
            self.put(
                ns,
                "endpoints",
                name,
                {"subsets": [{"addresses": [{"ip": "10.244.0.9"}], "ports": [{"port": port}]}]},
            )
        for name in ("hub", "proxy", f"api-{p}", f"controller-{p}", f"traefik-{p}"):
            self.put(
                ns,
                "deployments",
                name,
                {
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {}, "spec": {"containers": [{"name": name}]}},
                    },
                    "status": {"observedGeneration": 1, "replicas": 1, "availableReplicas": 1},
                },
            )
            self.add_pod(ns, f"{name}-5d8f7c9b4-x2x7q", name, {"component": name})
        old = self.objects.get((ns, "secrets", "hub"), {}).get("data", {})
        data = {}
        for service in ("dask-gateway", "daskhub-e2e"):
            key = f"hub.services.{service}.apiToken"
            given = _dig(hub, "hub", "services", service, "apiToken")
            token = given or (
                base64.b64decode(old[key]).decode()
                if key in old and self.lookup
                else secrets.token_hex(32)
            )
            data[key] = base64.b64encode(token.encode()).decode()
        self.put(ns, "secrets", "hub", {"type": "Opaque", "data": data})
        if (
            _dig(values, "dask-kubernetes", "enabled")
            and _dig(values, "rbac", "enabled") is not False
        ):
            self.add_dask_kubernetes_rbac(ns)
        self.put(
            ns,
            "events",
            "hub.1",
            {
                "involvedObject": {"kind": "Pod", "name": "hub-5d8f7c9b4-x2x7q"},
                "reason": "Started",
                "message": "Started container hub",
                "type": "Normal",
                "lastTimestamp": "2026-11-28T12:00:05Z",
            },
        )
        self.put(
            ns,
            "events",
            "hub.0",
            {
                "involvedObject": {"kind": "Pod", "name": "hub-5d8f7c9b4-x2x7q"},
                "reason": "Pulled",
                "message": "Container image pulled",
                "type": "Normal",
                "lastTimestamp": "2026-11-28T12:00:01Z",
            },
        )
        revision = self.releases.get((ns, release), {}).get("version", 0) + 1
        self.releases[(ns, release)] = {
            "name": release,
            "namespace": ns,
            "chart": chart,
            "version": revision,
            "info": {"status": "deployed"},
        }

    def add_pod(
        self,
        ns: str,
        name: str,
        container: str,
        labels: dict[str, str],
        waiting: str | None = None,
        annotations: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        account: str = "default",
    ) -> None:
        state = (
            {"waiting": {"reason": waiting, "message": "back-off"}} if waiting else {"running": {}}
        )
        self.put(
            ns,
            "pods",
            name,
            {
                "spec": {
                    "serviceAccountName": account,
                    "containers": [
                        {
                            "name": container,
                            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                        }
                    ],
                },
                "status": {
                    "phase": "Pending" if waiting else "Running",
                    "containerStatuses": [
                        {
                            "name": container,
                            "image": f"{container}:1",
                            "imageID": "",
                            "ready": not waiting,
                            "restartCount": 3 if waiting else 0,
                            "state": state,
                        }
                    ],
                },
            },
            labels,
        )
        self.objects[(ns, "pods", name)]["metadata"]["annotations"] = annotations or {}
        self.logs[(name, container, False)] = f"[I 2026-11-28 12:00:00] {container} started\n"
        if waiting:
            self.logs[(name, container, True)] = f"{container}: Traceback ... ValueError: boom\n"

    def add_dask_kubernetes_rbac(self, ns: str, verbs: list[str] | None = None) -> None:
        every = verbs or ["get", "list", "watch", "create", "delete"]
        self.put(ns, "serviceaccounts", DASK_KUBERNETES, {})
        self.put(
            ns,
            "roles",
            DASK_KUBERNETES,
            {
                "rules": [
                    {"apiGroups": [""], "resources": ["pods", "services"], "verbs": every},
                    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list"]},
                ]
            },
        )
        self.put(
            ns,
            "rolebindings",
            DASK_KUBERNETES,
            {
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": DASK_KUBERNETES,
                },
                "subjects": [{"kind": "ServiceAccount", "name": DASK_KUBERNETES, "namespace": ns}],
            },
        )

    def uninstall(self, ns: str, release: str) -> None:
        self.releases.pop((ns, release), None)
        for key in [k for k in self.objects if k[0] == ns]:
            del self.objects[key]

    def token(self, ns: str, service: str) -> str:
        data = self.objects[(ns, "secrets", "hub")]["data"]
        return base64.b64decode(data[f"hub.services.{service}.apiToken"]).decode()
