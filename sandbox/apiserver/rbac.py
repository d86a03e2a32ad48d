"""RBAC authorization for the emulated kube-apiserver, with Kubernetes' semantics and reasons.

Reads: ClusterRoleBindings, RoleBindings of the request namespace, and the Roles/ClusterRoles they refer to,
through an ObjectReader, overlaid on Kubernetes' default policy (see bootstrappolicy). Writes: nothing.

Rule matching follows pkg/apis/rbac/v1/evaluation_helpers.go: "*" verbs/groups/resources, "*/<sub>"
resources, resourceNames (a request without a name, such as list or create, never matches a rule that names
resources), nonResourceURLs with a trailing "*" prefix match. Subjects match as in the rule resolver: User by
name, Group by membership, ServiceAccount as system:serviceaccount:<ns>:<name> (ns defaulting to the
RoleBinding's). Allow reasons name the binding exactly as Kubernetes does, e.g.
`RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to Group "z"`.

Also here: `union` (the --authorization-mode chain: first allow wins, no-opinion reasons are joined with
newlines), the system:masters superuser authorizer every kube-apiserver puts in front of the chain, and
`build_authorizer` which assembles them from the --authorization-mode flag.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from kubeboot.sandbox.apiserver import bootstrappolicy
from kubeboot.sandbox.apiserver.types import Authorizer, ObjectReader, RequestAttributes, UserInfo

Rule = dict[str, Any]
SYSTEM_PRIVILEGED_GROUP = "system:masters"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def verb_matches(rule: Rule, verb: str) -> bool:
    return any(v in ("*", verb) for v in rule.get("verbs") or [])


def api_group_matches(rule: Rule, group: str) -> bool:
    return any(g in ("*", group) for g in rule.get("apiGroups") or [])


def resource_matches(rule: Rule, combined_resource: str, subresource: str) -> bool:
    for resource in rule.get("resources") or []:
        if resource in ("*", combined_resource):
            return True
        if subresource and resource == f"*/{subresource}":
            return True
    return False


def resource_name_matches(rule: Rule, name: str) -> bool:
    names = rule.get("resourceNames") or []
    return not names or name in names


def non_resource_url_matches(rule: Rule, path: str) -> bool:
    for url in rule.get("nonResourceURLs") or []:
        if url in ("*", path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(attrs: RequestAttributes, rule: Rule) -> bool:
    if not verb_matches(rule, attrs.verb):
        return False
    if not attrs.resource_request:
        return non_resource_url_matches(rule, attrs.path)
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    return (
        api_group_matches(rule, attrs.api_group)
        and resource_matches(rule, combined, attrs.subresource)
        and resource_name_matches(rule, attrs.name)
    )


def rules_allow(attrs: RequestAttributes, rules: Sequence[Rule]) -> bool:
    return any(rule_allows(attrs, rule) for rule in rules)


def subject_applies(user: UserInfo, subject: dict[str, Any], namespace: str) -> bool:
    kind: str = subject.get("kind", "")
    name: str = subject.get("name", "")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        sa_namespace = subject.get("namespace") or namespace
        return bool(sa_namespace) and user.name == f"{SERVICE_ACCOUNT_PREFIX}{sa_namespace}:{name}"
    return False


def describe_subject(subject: dict[str, Any], binding_namespace: str) -> str:
    kind, name = subject.get("kind", ""), subject.get("name", "")
    if kind == "ServiceAccount":
        return f'{kind} "{name}/{subject.get("namespace") or binding_namespace}"'
    return f'{kind} "{name}"'


def _role_ref_rules(reader: ObjectReader, role_ref: dict[str, Any], namespace: str) -> list[Rule]:
    """The rules a binding grants; raises LookupError with Kubernetes' message when they cannot be resolved."""
    kind, name = role_ref.get("kind", ""), role_ref.get("name", "")
    if kind == "ClusterRole":
        rules = bootstrappolicy.cluster_role_rules(reader, name)
        if rules is None:
            raise LookupError(f'clusterrole.rbac.authorization.k8s.io "{name}" not found')
        return rules
    if kind == "Role":
        rules = bootstrappolicy.role_rules(reader, namespace, name) if namespace else None
        if rules is None:
            raise LookupError(f'role.rbac.authorization.k8s.io "{name}" not found')
        return rules
    raise LookupError(f'unsupported role reference kind: "{kind}"')


class RBACAuthorizer:
    """The RBAC mode of --authorization-mode over stored and default roles and bindings."""

    def __init__(self, reader: ObjectReader) -> None:
        self._reader = reader

    def authorize(self, attrs: RequestAttributes) -> tuple[bool, str]:
        errors: list[str] = []
        for source, rules in self._bound_rules(attrs.user, attrs.namespace, errors):
            if rules_allow(attrs, rules):
                return True, f"RBAC: allowed by {source}"
        return False, _rbac_error_reason(errors)

    def _bound_rules(self, user: UserInfo, namespace: str, errors: list[str]) -> Iterator[tuple[str, list[Rule]]]:
        """(source description, rules) of every binding that applies to user, cluster bindings first."""
        for binding in bootstrappolicy.cluster_role_bindings(self._reader):
            found = self._resolve(binding, user, "", errors)
            if found is not None:
                subject, rules = found
                yield (_describe("ClusterRoleBinding", binding, "", subject), rules)
        if not namespace:
            return
        for binding in bootstrappolicy.role_bindings(self._reader, namespace):
            found = self._resolve(binding, user, namespace, errors)
            if found is not None:
                subject, rules = found
                yield (_describe("RoleBinding", binding, namespace, subject), rules)

    def _resolve(
        self, binding: dict[str, Any], user: UserInfo, namespace: str, errors: list[str]
    ) -> tuple[dict[str, Any], list[Rule]] | None:
        subject = next((s for s in binding.get("subjects") or [] if subject_applies(user, s, namespace)), None)
        if subject is None:
            return None
        try:
            return subject, _role_ref_rules(self._reader, binding.get("roleRef") or {}, namespace)
        except LookupError as err:
            errors.append(str(err))
            return None


def _describe(kind: str, binding: dict[str, Any], namespace: str, subject: dict[str, Any]) -> str:
    name = binding["metadata"]["name"] + (f"/{namespace}" if namespace else "")
    ref = binding.get("roleRef") or {}
    return f'{kind} "{name}" of {ref.get("kind", "")} "{ref.get("name", "")}" to {describe_subject(subject, namespace)}'


def _rbac_error_reason(errors: list[str]) -> str:
    # utilerrors.NewAggregate: one message as is, several deduplicated in brackets.
    unique = list(dict.fromkeys(errors))
    if not unique:
        return ""
    return f"RBAC: {unique[0]}" if len(unique) == 1 else f"RBAC: [{', '.join(unique)}]"


class PrivilegedGroups:
    """Allows members of system:masters everything; kube-apiserver puts it before every configured mode."""

    def __init__(self, *groups: str) -> None:
        self._groups = frozenset(groups or (SYSTEM_PRIVILEGED_GROUP,))

    def authorize(self, attrs: RequestAttributes) -> tuple[bool, str]:
        return (not self._groups.isdisjoint(attrs.user.groups)), ""


class AlwaysAllow:
    def authorize(self, attrs: RequestAttributes) -> tuple[bool, str]:
        return True, ""


class AlwaysDeny:
    def authorize(self, attrs: RequestAttributes) -> tuple[bool, str]:
        return False, "Everything is forbidden."


class _Union:
    def __init__(self, authorizers: Sequence[Authorizer]) -> None:
        self._authorizers = tuple(authorizers)

    def authorize(self, attrs: RequestAttributes) -> tuple[bool, str]:
        reasons: list[str] = []
        for authorizer in self._authorizers:
            allowed, reason = authorizer.authorize(attrs)
            if allowed:
                return True, reason
            if reason:
                reasons.append(reason)
        return False, "\n".join(reasons)


def union(*authorizers: Authorizer) -> Authorizer:
    """Authorizers in --authorization-mode order: the first allow wins, otherwise the reasons combined."""
    return _Union(authorizers)


def build_authorizer(modes: str | Sequence[str], reader: ObjectReader) -> Authorizer:
    """The chain of a kube-apiserver started with --authorization-mode=<modes> (e.g. "Node,RBAC")."""
    from kubeboot.sandbox.apiserver.nodeauth import NodeAuthorizer  # nodeauth uses this module's rule matching

    names = [m.strip() for m in modes.split(",")] if isinstance(modes, str) else list(modes)
    if not [name for name in names if name]:
        raise ValueError("at least one authorization mode must be passed")
    chain: list[Authorizer] = [PrivilegedGroups()]
    for name in filter(None, names):
        if name == "Node":
            chain.append(NodeAuthorizer(reader))
        elif name == "RBAC":
            chain.append(RBACAuthorizer(reader))
        elif name == "AlwaysAllow":
            chain.append(AlwaysAllow())
        elif name == "AlwaysDeny":
            chain.append(AlwaysDeny())
        else:
            raise ValueError(f"unknown authorization mode {name} specified")
    return union(*chain)
