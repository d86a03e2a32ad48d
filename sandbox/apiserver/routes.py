"""URL routing of the emulated kube-apiserver: which resource a path names, or which non-resource answer.

Reads and writes nothing. ``parse`` turns ``/api/v1/[namespaces/<ns>/]<plural>[/<name>[/<sub>]]`` and
``/apis/<group>/<version>/...`` into a ``Route`` (404 for a path the server does not serve); health
(``/livez``, ``/readyz``, ``/healthz``, each with ``/<check>`` and ``?verbose``), ``/version`` and the
discovery documents are answered by ``non_resource``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from kubeboot.sandbox.apiserver import discovery, errors
from kubeboot.sandbox.apiserver.resources import ResourceType, lookup

HEALTH_CHECKS = {
    "livez": ("ping", "log", "etcd", "poststarthook/start-apiserver-admission-initializer",
              "poststarthook/rbac/bootstrap-roles", "poststarthook/bootstrap-controller"),
    "readyz": ("ping", "log", "etcd", "etcd-readiness", "informer-sync", "poststarthook/rbac/bootstrap-roles",
               "poststarthook/bootstrap-controller", "shutdown"),
    "healthz": ("ping", "log", "etcd", "poststarthook/rbac/bootstrap-roles", "poststarthook/bootstrap-controller"),
}
VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class Route:
    rt: ResourceType
    namespace: str  # "" for cluster-scoped resources and for lists across all namespaces
    name: str
    sub: str

    def verb(self, method: str, watch: bool) -> str:
        if method == "GET" and watch:
            return "watch"  # of a collection, or of one object (a field selector on its name)
        if method == "GET" and not self.name:
            return "list"
        if method == "DELETE" and not self.name:
            return "deletecollection"
        return VERBS.get(method, method.lower())


def is_resource_path(path: str) -> bool:
    parts = path.strip("/").split("/")
    return (parts[0] == "api" and len(parts) > 2) or (parts[0] == "apis" and len(parts) > 3)


def parse(path: str) -> Route:
    # Segments are percent-decoded after splitting, as the real server does: clients send
    # "kubeadm%3Acluster-admins" for names with a colon.
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], parts[2], parts[3:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3 and lookup(group, version, rest[2]) is not None:
        namespace, rest = rest[1], rest[2:]
    rt = lookup(group, version, rest[0])
    if rt is None or len(rest) > 3 or "" in rest:
        raise errors.path_not_found()
    name, sub = [*rest[1:], "", ""][:2]
    if (namespace and not rt.namespaced) or (rt.namespaced and not namespace and name):
        raise errors.path_not_found()
    return Route(rt, namespace, name, sub)


def health(path: str, verbose: bool, failing: dict[str, str] | None = None) -> tuple[int, str] | None:
    """(status, text) for a health path, None when the path is not one. ``failing`` names the checks that
    fail now, with why (k8s.io/apiserver/pkg/server/healthz: the reason is withheld from the listing)."""
    endpoint, _, check = path.strip("/").partition("/")
    checks = HEALTH_CHECKS.get(endpoint)
    if checks is None:
        return None
    failing = failing or {}
    if check:
        if check not in checks:
            return 404, "404 page not found\n"
        return (500, f"internal server error: {failing[check]}\n") if check in failing else (200, "ok")
    if not failing and not verbose:
        return 200, "ok"
    lines = [f"[-]{c} failed: reason withheld" if c in failing else f"[+]{c} ok" for c in checks]
    if failing:
        return 500, "\n".join([*lines, f"{endpoint} check failed"])
    return 200, "\n".join([*lines, f"{endpoint} check passed", ""])


def non_resource(path: str, server_address: str) -> dict[str, Any]:
    """The JSON document of /version or a discovery path; 404 Status otherwise."""
    parts = [p for p in path.strip("/").split("/") if p]
    doc: dict[str, Any] | None = None
    if parts == ["version"]:
        doc = dict(discovery.version_info())
    elif parts == ["api"]:
        doc = discovery.api_versions(server_address)
    elif parts == ["apis"]:
        doc = discovery.api_group_list()
    elif len(parts) == 2 and parts[0] == "api":
        doc = discovery.resource_list("", parts[1])
    elif len(parts) == 2 and parts[0] == "apis":
        doc = discovery.api_group(parts[1])
    elif len(parts) == 3 and parts[0] == "apis":
        doc = discovery.resource_list(parts[1], parts[2])
    if doc is None:
        raise errors.path_not_found()
    return doc
