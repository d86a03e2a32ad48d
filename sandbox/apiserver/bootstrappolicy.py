"""Kubernetes' default RBAC policy, overlaid with the stored RBAC objects, for the emulated API server.

Reads: the package data file sandbox/data/kubernetes-default-rbac-v1.28.yaml (the roles and bindings a
real v1.28 kube-apiserver creates at start), once per process; stored Roles, ClusterRoles and bindings
through an ObjectReader. Writes: nothing.

A real API server stores its defaults in etcd at start (the rbac/bootstrap-roles post-start hook) and
reconciles them on every restart. The emulated one serves them in addition to the stored objects, and a
stored object of the same kind, namespace and name wins over the default (what a user's edit of a default
role does until the next reconciliation). ClusterRoles with an aggregationRule get the rules of every
ClusterRole their label selectors match, as the clusterrole-aggregation controller would write them, so
user ClusterRoles labelled e.g. rbac.authorization.k8s.io/aggregate-to-view: "true" extend view/edit/admin.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

import yaml

from kubeboot.sandbox.apiserver.types import ObjectReader

DATA_FILE = "kubernetes-default-rbac-v1.28.yaml"
RBAC_GROUP = "rbac.authorization.k8s.io"
CLUSTER_ROLES = f"{RBAC_GROUP}/clusterroles"
CLUSTER_ROLE_BINDINGS = f"{RBAC_GROUP}/clusterrolebindings"
ROLES = f"{RBAC_GROUP}/roles"
ROLE_BINDINGS = f"{RBAC_GROUP}/rolebindings"
_RESOURCE_OF_KIND = {
    "ClusterRole": CLUSTER_ROLES,
    "ClusterRoleBinding": CLUSTER_ROLE_BINDINGS,
    "Role": ROLES,
    "RoleBinding": ROLE_BINDINGS,
}

Obj = dict[str, Any]
Rule = dict[str, Any]


@functools.cache
def _defaults_by_resource() -> dict[str, dict[tuple[str, str], Obj]]:
    text = resources.files("kubeboot.sandbox").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    table: dict[str, dict[tuple[str, str], Obj]] = {resource: {} for resource in _RESOURCE_OF_KIND.values()}
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        meta = doc["metadata"]
        table[_RESOURCE_OF_KIND[doc["kind"]]][(meta.get("namespace", ""), meta["name"])] = doc
    return table


def default_objects() -> list[Obj]:
    """Every default object (copies), e.g. for an API server that wants to store them at start."""
    return [copy.deepcopy(obj) for table in _defaults_by_resource().values() for obj in table.values()]


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", "") or "", meta.get("name", "")


def _merged(reader: ObjectReader, resource: str, namespace: str | None) -> list[Obj]:
    """Defaults overlaid with stored objects (stored wins), sorted by name so decisions are deterministic."""
    objs = {key: obj for key, obj in _defaults_by_resource()[resource].items() if namespace in (None, key[0])}
    for obj in reader.list(resource, namespace):
        objs[_key(obj)] = obj
    return [objs[key] for key in sorted(objs, key=lambda k: (k[1], k[0]))]


def _get(reader: ObjectReader, resource: str, namespace: str, name: str) -> Obj | None:
    stored = reader.get(resource, namespace, name)
    if stored is not None:
        return stored
    return _defaults_by_resource()[resource].get((namespace, name))


def cluster_role_bindings(reader: ObjectReader) -> list[Obj]:
    return _merged(reader, CLUSTER_ROLE_BINDINGS, None)


def role_bindings(reader: ObjectReader, namespace: str) -> list[Obj]:
    return _merged(reader, ROLE_BINDINGS, namespace)


def cluster_roles(reader: ObjectReader) -> list[Obj]:
    return _merged(reader, CLUSTER_ROLES, None)


def role_rules(reader: ObjectReader, namespace: str, name: str) -> list[Rule] | None:
    """The rules of Role namespace/name, None when there is no such Role."""
    role = _get(reader, ROLES, namespace, name)
    return None if role is None else list(role.get("rules") or [])


def cluster_role_rules(reader: ObjectReader, name: str) -> list[Rule] | None:
    """The effective rules of ClusterRole name (aggregated if it aggregates), None when it does not exist."""
    role = _get(reader, CLUSTER_ROLES, "", name)
    if role is None:
        return None
    if not role.get("aggregationRule"):
        return list(role.get("rules") or [])
    return _aggregated_rules(role, cluster_roles(reader), frozenset())


def _aggregated_rules(role: Obj, all_roles: list[Obj], seen: frozenset[str]) -> list[Rule]:
    # The controller unions the rules of every matching ClusterRole (itself excluded), in name order,
    # without duplicates. Aggregated roles selected by another (edit inside admin) contribute their own
    # aggregated rules: the controller converges to that.
    name = _key(role)[1]
    selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
    rules: list[Rule] = []
    for other in all_roles:
        other_name = _key(other)[1]
        if other_name == name or other_name in seen:
            continue
        labels = (other.get("metadata") or {}).get("labels") or {}
        if not any(selector_matches(selector, labels) for selector in selectors):
            continue
        if other.get("aggregationRule"):
            contributed = _aggregated_rules(other, all_roles, seen | {name})
        else:
            contributed = list(other.get("rules") or [])
        rules.extend(rule for rule in contributed if rule not in rules)
    return rules


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics: matchLabels and matchExpressions ANDed; an empty selector matches all."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, operator, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def node_rules() -> list[Rule]:
    """The static rules the Node authorizer applies to kubelets (bootstrappolicy.NodeRules in Kubernetes)."""
    role = _defaults_by_resource()[CLUSTER_ROLES][("", "system:node")]
    return copy.deepcopy(list(role.get("rules") or []))
