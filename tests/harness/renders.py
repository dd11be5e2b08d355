"""The real objects the DaskHub chart creates, from the workspace's ``shared/chart-renders``
(rendered by Helm's own engine): what the loopback Kubernetes API installs, so that every
self-test meets the chart's real names, ports, labels, selectors, rules and policies.

The renders are third-party data and are read from the workspace, never copied. A case is
chosen from the values an install gets (kind NodePorts or not, dask-kubernetes mode or not,
a release named like ``*dask-gateway*``); placeholders are substituted as text (release,
namespace) and inside Secret data (the tokens, base64). What the project's values add beyond
what the render was made with (an egress rule of the singleuser policy) is applied the way
the chart's template applies it.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
from pathlib import Path
from typing import Any

import yaml

from tests.harness.runner import REPO

RENDERS = REPO.parent / "shared" / "chart-renders"
PLACEHOLDER_RELEASE = "zrelz"
PLACEHOLDER_NAMESPACE = "znsz"
#: Which token each placeholder stands for (index.json: proxy, gateway service, harness).
TOKEN_ROLES = ("proxy", "gateway", "harness")
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "PriorityClass"}


@functools.cache
def index() -> dict[str, Any]:
    return dict(json.loads((RENDERS / "index.json").read_text()))


def resource_of(kind: str) -> str:
    """The API's plural resource name of a kind (NetworkPolicy -> networkpolicies)."""
    lower = kind.lower()
    return lower[:-1] + "ies" if lower.endswith("y") else lower + "s"


def _dig(values: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        values = (values or {}).get(key) or {}
    return values or None


def case_for(values: dict[str, Any], release: str) -> str:
    """The render case that an install with these (merged) values and release name is."""
    kind = _dig(values, "jupyterhub", "proxy", "service", "type") == "NodePort"
    dask_kubernetes = bool(_dig(values, "dask-kubernetes", "enabled"))
    if not values:
        return "chart-defaults"
    if kind and "dask-gateway" in release:
        return "kind-release-named-dask-gateway"
    if kind and (values.get("dask-gateway") or {}).get("enabled") is False:
        return "kind-gateway-disabled"
    return f"{'kind' if kind else 'existing'}-{'dask-kubernetes' if dask_kubernetes else 'gateway'}"


def version_for(chart: str, version: str | None) -> str:
    """``daskhub-<v>`` folder of the chart being installed: a local chart is main."""
    return "2024.1.1" if chart.startswith("dask/") and version == "2024.1.1" else "main"


def placeholder_tokens() -> dict[str, str]:
    return {role: index()["tokens"][role] for role in TOKEN_ROLES}


def tokens_of(values: dict[str, Any]) -> dict[str, str | None]:
    """The tokens an install's values give (None where the values give none)."""
    services = _dig(values, "jupyterhub", "hub", "services") or {}
    return {
        "proxy": _dig(values, "jupyterhub", "proxy", "secretToken"),
        "gateway": (services.get("dask-gateway") or {}).get("apiToken"),
        "harness": (services.get("daskhub-e2e") or {}).get("apiToken"),
    }


def objects(
    version: str, case: str, release: str, namespace: str, tokens: dict[str, str]
) -> list[dict[str, Any]]:
    """The render of ``daskhub-<version>/<case>`` for this release, namespace and tokens."""
    meta = index()["cases"][f"daskhub-{version}/{case}"]
    text = (RENDERS / f"daskhub-{version}" / f"{case}.yaml").read_text()
    placeholder = meta["release"]
    if placeholder != PLACEHOLDER_RELEASE:  # the *dask-gateway case: zrelz-dask-gateway
        if not release.endswith(placeholder[len(PLACEHOLDER_RELEASE) :]):
            raise ValueError(f"case {case} needs a release ending like {placeholder}")
        release = release[: len(release) - len(placeholder) + len(PLACEHOLDER_RELEASE)]
    text = text.replace(PLACEHOLDER_RELEASE, release).replace(PLACEHOLDER_NAMESPACE, namespace)
    swap = {placeholder_tokens()[role]: tokens[role] for role in TOKEN_ROLES if role in tokens}
    for old, new in swap.items():
        text = text.replace(old, new)
    made = [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]
    for obj in made:
        if obj.get("kind") == "Secret":
            obj["data"] = {
                key: _swap_b64(value, swap) for key, value in (obj.get("data") or {}).items()
            }
        if obj.get("kind") not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
    return made


def _swap_b64(value: str, swap: dict[str, str]) -> str:
    text = base64.b64decode(value).decode()
    for old, new in swap.items():
        text = text.replace(old, new)
    return base64.b64encode(text.encode()).decode()


def with_values_applied(made: list[dict[str, Any]], values: dict[str, Any]) -> list[dict[str, Any]]:
    """What the values add that the render was not made with: extra egress rules of the
    singleuser NetworkPolicy, appended as jupyterhub's singleuser/netpol.yaml appends
    ``singleuser.networkPolicy.egress``."""
    extra = _dig(values, "jupyterhub", "singleuser", "networkPolicy", "egress") or []
    result = copy.deepcopy(made)
    for obj in result:
        if obj.get("kind") == "NetworkPolicy" and obj["metadata"]["name"] == "singleuser":
            egress = obj["spec"].setdefault("egress", [])
            egress.extend(copy.deepcopy(rule) for rule in extra if rule not in egress)
    return result


def apply_set(values: dict[str, Any], pair: str) -> None:
    """``--set a.b=c`` applied to ``values`` as helm does for plain keys (true/false typed)."""
    key, _, value = pair.partition("=")
    *path, last = key.split(".")
    place = values
    for part in path:
        place = place.setdefault(part, {})
    place[last] = {"false": False, "true": True}.get(value, value)


def project_values(files: list[str]) -> dict[str, Any]:
    """The project's values files of a case, merged in order."""
    from fixtures.values import VALUES_DIR, merge_all  # noqa: PLC0415

    return merge_all([yaml.safe_load((VALUES_DIR / f).read_text()) or {} for f in files])


def render_path(version: str, case: str) -> Path:
    return RENDERS / f"daskhub-{version}" / f"{case}.yaml"
