"""Controller ``garbagecollector`` (pkg/controller/garbagecollector), background propagation only.

Reads: every object of the kinds kubeadm and the sandbox create (table ``KINDS``). An object whose
``ownerReferences`` all name owners that no longer exist (no object of that kind and name, or one with
another UID) is deleted, with a UID precondition. Owners are matched by UID against the listed objects
first; before deleting, every owner is looked up again by name, so an owner created after the listing
never loses its dependent. An owner of a kind outside the table keeps its dependents (absence cannot be
proven). Example: ``kube-system/kubeadm-certs`` goes once its upload-certs bootstrap token expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kubernetes.client as k8s
from kubernetes.client.rest import ApiException

from kubeboot.sandbox.controllermanager.base import Controller
from kubeboot.sandbox.controllermanager.client import request


@dataclass(frozen=True)
class Kind:
    api_version: str  # "v1", "apps/v1"
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        ns = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{base}{ns}/{self.plural}" + (f"/{name}" if name else "")


KINDS = (
    Kind("v1", "Namespace", "namespaces", False),
    Kind("v1", "Node", "nodes", False),
    Kind("v1", "ConfigMap", "configmaps", True),
    Kind("v1", "Secret", "secrets", True),
    Kind("v1", "ServiceAccount", "serviceaccounts", True),
    Kind("v1", "Service", "services", True),
    Kind("v1", "Pod", "pods", True),
    Kind("apps/v1", "Deployment", "deployments", True),
    Kind("apps/v1", "DaemonSet", "daemonsets", True),
    Kind("rbac.authorization.k8s.io/v1", "Role", "roles", True),
    Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True),
    Kind("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
    Kind("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
    Kind("certificates.k8s.io/v1", "CertificateSigningRequest", "certificatesigningrequests", False),
)
BY_KIND = {(k.api_version.split("/")[0] if "/" in k.api_version else "", k.kind): k for k in KINDS}


def kind_of(ref: dict[str, Any]) -> Kind | None:
    """The table entry of an owner reference (matched by group and kind; the version may differ)."""
    api_version = str(ref.get("apiVersion") or "")
    group = api_version.split("/", maxsplit=1)[0] if "/" in api_version else ""
    return BY_KIND.get((group, str(ref.get("kind") or "")))


def orphan_candidates(objects: list[tuple[Kind, dict[str, Any]]]) -> list[tuple[Kind, dict[str, Any]]]:
    """Dependents none of whose owners is among ``objects`` (by UID) and all of whose owners are of a
    known kind; objects already being deleted are left to their deleter."""
    uids = {str((o.get("metadata") or {}).get("uid") or "") for _, o in objects}
    out = []
    for kind, obj in objects:
        meta = obj.get("metadata") or {}
        refs = meta.get("ownerReferences") or []
        if not refs or meta.get("deletionTimestamp"):
            continue
        if any(str(r.get("uid") or "") in uids or kind_of(r) is None for r in refs):
            continue
        # A namespaced owner of a cluster-scoped object is invalid: its absence cannot be looked up.
        if not meta.get("namespace") and any(k.namespaced for k in map(kind_of, refs) if k):
            continue
        out.append((kind, obj))
    return out


def owner_absent(ref: dict[str, Any], found: dict[str, Any] | None) -> bool:
    """An owner is absent when nothing has its name, or what has it has another UID (re-created)."""
    return found is None or str((found.get("metadata") or {}).get("uid") or "") != str(ref.get("uid") or "")


class GarbageCollector(Controller):
    name = "garbagecollector"
    account = "generic-garbage-collector"
    # Fourteen lists per pass, and nothing kubeadm does waits on collection: passes at least 2 s apart
    # keep the API server's load per node low. Woken by a change of any collected kind, as the real
    # graph builder's informers wake it.
    interval = 2.0
    watches = tuple((kind.path(), {}) for kind in KINDS)

    def __init__(self, api: k8s.ApiClient) -> None:
        super().__init__(api)
        self.unserved: set[str] = set()  # kinds the API server does not serve: not listed again

    def list_kind(self, kind: Kind, namespaces: list[str]) -> list[dict[str, Any]]:
        try:
            return list(request(self.api, "GET", kind.path()).get("items") or [])
        except ApiException as e:
            if e.status != 404 or not kind.namespaced:
                raise
        # No cluster-wide list for this kind: namespace by namespace.
        out: list[dict[str, Any]] = []
        for ns in namespaces:
            out += request(self.api, "GET", kind.path(ns)).get("items") or []
        return out

    def snapshot(self) -> list[tuple[Kind, dict[str, Any]]]:
        # Namespaces first (KINDS[0]): collected like any kind, and the list the namespaced kinds fall
        # back to; read once per pass.
        listed = list(request(self.api, "GET", KINDS[0].path()).get("items") or [])
        namespaces = [str(n["metadata"]["name"]) for n in listed]
        objects: list[tuple[Kind, dict[str, Any]]] = [(KINDS[0], n) for n in listed]
        for kind in KINDS[1:]:
            if kind.kind in self.unserved:
                continue
            try:
                objects += [(kind, o) for o in self.list_kind(kind, namespaces)]
            except ApiException as e:
                if e.status not in (404, 405):
                    raise
                self.unserved.add(kind.kind)
                self.log.info('"Resource not served, not collected" kind="%s"', kind.kind)
        return objects

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return request(self.api, "GET", kind.path(namespace, name))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def sync(self) -> None:
        for kind, obj in orphan_candidates(self.snapshot()):
            meta = obj["metadata"]
            namespace = str(meta.get("namespace") or "")
            refs = meta["ownerReferences"]
            owners = [(r, kind_of(r)) for r in refs]
            if not all(owner_absent(r, self.get(k, namespace, str(r.get("name") or ""))) for r, k in owners if k):
                continue
            options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background",
                       "preconditions": {"uid": meta.get("uid")}}
            try:
                request(self.api, "DELETE", kind.path(namespace, str(meta["name"])), options)
            except ApiException as e:
                if e.status in (404, 409):
                    continue
                raise
            self.log.info('"Deleted object whose owners are gone" kind="%s" object="%s" owners=%s',
                          kind.kind, f"{namespace}/{meta['name']}" if namespace else meta["name"],
                          [f"{r.get('kind')}/{r.get('name')}" for r in refs])
