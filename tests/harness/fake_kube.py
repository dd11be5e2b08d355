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
import copy
import json
import re
import secrets
import time
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from fixtures.kube import DASK_KUBERNETES
from tests.harness import renders

_OBJECT = re.compile(
    r"^/(?:api/v1|apis/[^/]+/v1[a-z0-9]*)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?(?:/(log))?$"
)
_CLUSTER_OBJECT = re.compile(r"^/apis/[^/]+/v1[a-z0-9]*/((?!namespaces)[^/]+)/([^/]+)$")
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
        #: Seconds a created Pod's image takes to pull; pulls under way: (ns, pod) -> (end, image)
        self.pull_seconds = 1.0
        #: Seconds a deleted namespace stays Terminating (0: gone at once)
        self.terminating_seconds = 0.0
        self.terminating: dict[str, float] = {}
        self.pull_error = ""  # a registry's final answer for created Pods' images
        self.pulls: dict[tuple[str, str], tuple[float, str]] = {}
        #: The address a LoadBalancer Service gets (None: it stays pending, as on kind).
        self.lb_address: str | None = None
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
        self._advance_pulls()
        for name, gone_at in list(self.terminating.items()):
            if time.monotonic() >= gone_at:
                self.namespaces.pop(name, None)
                del self.terminating[name]
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
            if name in self.terminating:
                return _status(
                    409,
                    "AlreadyExists",
                    f'object is being deleted: namespaces "{name}" already exists',
                )
            if name in self.namespaces:
                return _status(409, "AlreadyExists", f'namespaces "{name}" already exists')
            self.add_namespace(name, body["metadata"].get("labels") or {})
            return _json(self.namespaces[name], 201)
        namespace = re.fullmatch(r"/api/v1/namespaces/([^/]+)", path)
        if namespace:
            return self._namespace(method, namespace.group(1))
        found = _OBJECT.match(path)
        cluster_scoped = _CLUSTER_OBJECT.match(path)
        if not found and cluster_scoped:
            obj = self.objects.get(("", cluster_scoped.group(1), cluster_scoped.group(2)))
            if obj is None:
                return _status(404, "NotFound", f"{cluster_scoped.group(1)} not found")
            return _json(obj)
        if not found:
            return _status(404, "NotFound", f"the fake API does not serve {path}")
        ns, resource, name, log = found.groups()
        if log:
            previous = request.args.get("previous") == "true"
            text = self.logs.get((name, request.args.get("container", ""), previous))
            if text is None:
                return _status(400, "BadRequest", "previous terminated container not found")
            return Response(text, content_type="text/plain")
        if name is None and method == "POST" and resource == "pods":
            return self._create_pod(ns, json.loads(request.get_data()))
        if name is None:
            return _json(self._list(ns, resource, request.args.get("labelSelector")))
        obj = self.objects.get((ns, resource, name))
        if obj is None:
            return _status(404, "NotFound", f'{resource} "{name}" not found')
        return _json(obj)

    def _create_pod(self, ns: str, body: dict[str, Any]) -> Response:
        """A Pod as the node runs it: its image is pulled for ``pull_seconds`` (Pending, a
        'Pulling' event), then it runs to completion."""
        name = body["metadata"]["name"]
        if (ns, "pods", name) in self.objects:
            return _status(409, "AlreadyExists", f'pods "{name}" already exists')
        image = body["spec"]["containers"][0]["image"]
        self.put(ns, "pods", name, {"spec": body["spec"], "status": {"phase": "Pending"}})
        if self.pull_error:  # a pull no retry brings
            self.objects[(ns, "pods", name)]["status"]["containerStatuses"] = [
                {
                    "name": "pull",
                    "image": image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ErrImagePull", "message": self.pull_error}},
                }
            ]
        else:
            self.pulls[(ns, name)] = (time.monotonic() + self.pull_seconds, image)
        self.put(
            ns,
            "events",
            f"{name}.pulling",
            {
                "involvedObject": {"kind": "Pod", "name": name},
                "reason": "Pulling",
                "message": f'Pulling image "{image}"',
                "type": "Normal",
                "lastTimestamp": "2026-11-28T12:00:02Z",
            },
        )
        return _json(self.objects[(ns, "pods", name)], 201)

    def _advance_pulls(self) -> None:
        for (ns, name), (done_at, image) in list(self.pulls.items()):
            pod = self.objects.get((ns, "pods", name))
            if pod is None or time.monotonic() < done_at:
                continue
            pod["status"] = {
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": "pull",
                        "image": image,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                    }
                ],
            }
            self.put(
                ns,
                "events",
                f"{name}.pulled",
                {
                    "involvedObject": {"kind": "Pod", "name": name},
                    "reason": "Pulled",
                    "message": f'Successfully pulled image "{image}"',
                    "type": "Normal",
                    "lastTimestamp": "2026-11-28T12:03:02Z",
                },
            )
            del self.pulls[(ns, name)]

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
            for key in [k for k in self.objects if k[0] == name]:
                del self.objects[key]
            for key in [k for k in self.releases if k[0] == name]:
                del self.releases[key]
            if self.terminating_seconds:  # Terminating while its finalizers run
                self.namespaces[name]["status"]["phase"] = "Terminating"
                self.terminating.setdefault(name, time.monotonic() + self.terminating_seconds)
            else:
                del self.namespaces[name]
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
            self.install(
                body["namespace"],
                body["release"],
                body["values"],
                body.get("chart") or "dask/daskhub",
                body.get("version"),
            )
            self.installed.append(body)
            if self.slow_pod:
                deployment = self.objects[(body["namespace"], "deployments", self.slow_pod)]
                deployment["status"]["availableReplicas"] = 0
            if self.break_pod:
                broken = self.objects[(body["namespace"], "deployments", self.break_pod)]
                template = broken["spec"]["template"]
                self.add_pod(
                    body["namespace"],
                    f"{self.break_pod}-5d8f7c9b4-x2x7q",
                    template["spec"]["containers"][0]["name"],
                    template["metadata"].get("labels") or {},
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

    def install(
        self,
        ns: str,
        release: str,
        values: dict[str, Any],
        chart: str = "dask/daskhub",
        version: str | None = "2024.1.1",
    ) -> None:
        """What ``helm upgrade --install`` of DaskHub leaves in a cluster, all healthy: the
        REAL objects of the render case these values are (tests/harness/renders.py), with a
        running pod per Deployment replica, ready endpoints, NodePorts and, when
        ``lb_address`` is set, LoadBalancer addresses. Tokens the values do not give are kept
        from an existing ``hub`` Secret, as the chart's ``lookup`` keeps them."""
        if ns not in self.namespaces:
            self.add_namespace(ns)
        old = self._secret_tokens(ns) if self.lookup else {}
        given = renders.tokens_of(values)
        tokens = {
            role: given[role] or old.get(role) or secrets.token_hex(32)
            for role in renders.TOKEN_ROLES
        }
        made = renders.objects(
            renders.version_for(chart, version),
            renders.case_for(values, release),
            release,
            ns,
            tokens,
        )
        for obj in renders.with_values_applied(made, values):
            self.put_object(obj)
        self._simulate_workloads(ns)
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

    def _secret_tokens(self, ns: str) -> dict[str, str]:
        data = self.objects.get((ns, "secrets", "hub"), {}).get("data") or {}
        keys = {
            "proxy": "hub.config.ConfigurableHTTPProxy.auth_token",
            "gateway": "hub.services.dask-gateway.apiToken",
            "harness": "hub.services.daskhub-e2e.apiToken",
        }
        return {
            role: base64.b64decode(data[key]).decode() for role, key in keys.items() if key in data
        }

    def put_object(self, obj: dict[str, Any]) -> None:
        """Store an object as the API server holds it (cluster-scoped ones under "")."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("labels", {})
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", "2026-11-28T12:00:00Z")
        ns = "" if obj["kind"] in renders.CLUSTER_SCOPED else meta["namespace"]
        self.objects[(ns, renders.resource_of(obj["kind"]), meta["name"])] = obj

    def _simulate_workloads(self, ns: str) -> None:
        """What the cluster does with the objects: pods for Deployments, ready endpoints for
        Services that select them, node ports and load balancer addresses."""
        for (n, resource, name), obj in list(self.objects.items()):
            if n != ns or resource != "deployments":
                continue
            spec = obj["spec"]
            replicas = spec.get("replicas", 1)
            obj["status"] = {
                "observedGeneration": obj["metadata"]["generation"],
                "replicas": replicas,
                "availableReplicas": replicas,
            }
            template = spec["template"]
            labels = template["metadata"].get("labels") or {}
            containers = [c["name"] for c in template["spec"].get("containers") or []]
            for replica in range(replicas):
                suffix = "x2x7q" if replica == 0 else f"x2x7{replica}"
                self.add_pod(ns, f"{name}-5d8f7c9b4-{suffix}", containers[0], labels)
                pod = self.objects[(ns, "pods", f"{name}-5d8f7c9b4-{suffix}")]
                pod["spec"]["containers"] = [
                    {**c, "env": c.get("env") or []} for c in template["spec"]["containers"]
                ]
                pod["status"]["containerStatuses"] = [
                    {**pod["status"]["containerStatuses"][0], "name": c} for c in containers
                ]
        for (n, resource, name), service in list(self.objects.items()):
            if n != ns or resource != "services":
                continue
            spec = service["spec"]
            spec.setdefault("clusterIP", "10.96.0.10")
            for number, entry in enumerate(spec.get("ports") or []):
                if spec.get("type") in ("NodePort", "LoadBalancer"):
                    entry.setdefault("nodePort", 31000 + number)
            service["status"] = {"loadBalancer": {}}
            if spec.get("type") == "LoadBalancer" and self.lb_address:
                service["status"]["loadBalancer"] = {"ingress": [{"ip": self.lb_address}]}
            selector = spec.get("selector") or {}
            backing = [
                pod
                for (m, r, _), pod in self.objects.items()
                if m == ns
                and r == "pods"
                and selector
                and selector.items() <= (pod["metadata"].get("labels") or {}).items()
            ]
            subsets = (
                [
                    {
                        "addresses": [{"ip": "10.244.0.9"} for _ in backing],
                        "ports": [{"port": p["port"]} for p in spec.get("ports") or []],
                    }
                ]
                if backing
                else []
            )
            self.put(ns, "endpoints", name, {"subsets": subsets})

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
