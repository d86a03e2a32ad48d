"""The Node authorizer of the emulated kube-apiserver: what a kubelet may do as system:node:<name>.

Reads: Pods, PersistentVolumeClaims and VolumeAttachments through an ObjectReader (in place of Kubernetes'
node-authorizer graph, the relationships are looked up when asked); the static node rules of the default
policy (the system:node ClusterRole, bootstrappolicy.NodeRules in Kubernetes). Writes: nothing.

Follows plugin/pkg/auth/authorizer/node/node_authorizer.go with AuthorizeNodeWithSelectors on (the
default of the minors kubeboot targets): a node reads only its own Node; creates/updates nodes and
nodes/status; reads pods bound to it, creates/deletes (mirror) pods and updates pods/status; reads the
secrets, configmaps, PVCs and PVs of its pods; creates tokens for its pods' service accounts; manages its
Lease in kube-node-lease and its CSINode; everything else by the static node rules. Anything it does not
allow is "no opinion" (False plus a reason), so the next authorizer (RBAC) decides.

The sandbox has no admission chain, so with node_restriction=True (the default) the NodeRestriction checks
that the request and the stored objects allow are made here: a node may modify only its own Node, and
delete or update the status of only the pods bound to it. Mirror-pod creation would need the request body,
so it stays allowed, as in the authorizer itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from kubeboot.sandbox.apiserver import bootstrappolicy
from kubeboot.sandbox.apiserver.rbac import rules_allow
from kubeboot.sandbox.apiserver.types import ObjectReader, RequestAttributes, UserInfo

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
NODE_LEASE_NAMESPACE = "kube-node-lease"
Decision = tuple[bool, str]
ALLOW: Decision = (True, "")
NO_OPINION: Decision = (False, "")


def node_identity(user: UserInfo) -> tuple[str, bool]:
    """(node name, is a node): the user must be system:node:<name> and in the system:nodes group."""
    if not user.name.startswith(NODE_USER_PREFIX) or NODES_GROUP not in user.groups:
        return "", False
    return user.name.removeprefix(NODE_USER_PREFIX), True


def _field_selector(attrs: RequestAttributes) -> dict[str, str]:
    # RequestAttributes may grow a field_selector ("spec.nodeName=n1,..."); until then there is none.
    raw = str(getattr(attrs, "field_selector", "") or "")
    pairs = (term.replace("==", "=").split("=", 1) for term in raw.split(",") if "=" in term and "!=" not in term)
    return {key.strip(): value.strip() for key, value in pairs}


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(field) or []


def pod_references(pod: dict[str, Any], kind: str) -> set[str]:
    """Names of the objects of kind (secret, configmap, pvc, serviceaccount) a pod refers to."""
    spec = pod.get("spec") or {}
    if kind == "serviceaccount":
        return {spec.get("serviceAccountName") or "default"}
    names: set[str] = set()
    volumes = spec.get("volumes") or []
    if kind == "pvc":
        pod_name = (pod.get("metadata") or {}).get("name", "")
        for volume in volumes:
            names.add((volume.get("persistentVolumeClaim") or {}).get("claimName", ""))
            if "ephemeral" in volume:  # generic ephemeral volumes: PVC <pod>-<volume>
                names.add(f"{pod_name}-{volume.get('name', '')}")
        return names - {""}
    source, key_ref, env_ref = (
        ("secret", "secretKeyRef", "secretRef")
        if kind == "secret"
        else ("configMap", "configMapKeyRef", "configMapRef")
    )
    for volume in volumes:
        names.add((volume.get(source) or {}).get("secretName" if kind == "secret" else "name", ""))
        for projected in (volume.get("projected") or {}).get("sources") or []:
            names.add((projected.get(source) or {}).get("name", ""))
    for container in _containers(spec):
        for env in container.get("env") or []:
            names.add(((env.get("valueFrom") or {}).get(key_ref) or {}).get("name", ""))
        for env_from in container.get("envFrom") or []:
            names.add((env_from.get(env_ref) or {}).get("name", ""))
    if kind == "secret":
        names.update(ref.get("name", "") for ref in spec.get("imagePullSecrets") or [])
    return names - {""}


class NodeAuthorizer:
    """The Node mode of --authorization-mode."""

    def __init__(self, reader: ObjectReader, *, node_restriction: bool = True) -> None:
        self._reader = reader
        self._restrict = node_restriction
        self._static_rules = bootstrappolicy.node_rules()
        self._handlers: dict[tuple[str, str], Callable[[str, RequestAttributes], Decision]] = {
            ("", "secrets"): lambda node, a: self._read_namespaced(node, "secret", a),
            ("", "configmaps"): lambda node, a: self._read_namespaced(node, "configmap", a),
            ("", "persistentvolumeclaims"): self._pvc,
            ("", "persistentvolumes"): lambda node, a: self._get(node, "pv", a),
            ("storage.k8s.io", "volumeattachments"): lambda node, a: self._get(node, "volumeattachment", a),
            ("", "serviceaccounts"): self._create_token,
            ("coordination.k8s.io", "leases"): self._lease,
            ("storage.k8s.io", "csinodes"): self._csinode,
            ("", "nodes"): self._node,
            ("", "pods"): self._pod,
        }

    def authorize(self, attrs: RequestAttributes) -> Decision:
        node, is_node = node_identity(attrs.user)
        if not is_node:
            return NO_OPINION
        if not node:
            return False, f'unknown node for user "{attrs.user.name}"'
        handler = self._handlers.get((attrs.api_group, attrs.resource)) if attrs.resource_request else None
        if handler is not None:
            return handler(node, attrs)
        return ALLOW if rules_allow(attrs, self._static_rules) else NO_OPINION

    def _pods_on(self, node: str, namespace: str | None) -> list[dict[str, Any]]:
        return [p for p in self._reader.list("/pods", namespace) if (p.get("spec") or {}).get("nodeName") == node]

    def _related(self, node: str, kind: str, namespace: str, name: str) -> bool:
        """Whether the object is linked to node as in the node-authorizer graph (node <- pod <- object ...)."""
        if kind == "pod":
            pod = self._reader.get("/pods", namespace, name)
            return pod is not None and (pod.get("spec") or {}).get("nodeName") == node
        if kind == "volumeattachment":
            attachment = self._reader.get("storage.k8s.io/volumeattachments", "", name)
            return attachment is not None and (attachment.get("spec") or {}).get("nodeName") == node
        if kind == "pv":
            for pod in self._pods_on(node, None):
                pod_ns = (pod.get("metadata") or {}).get("namespace", "")
                for claim in pod_references(pod, "pvc"):
                    pvc = self._reader.get("/persistentvolumeclaims", pod_ns, claim) or {}
                    if (pvc.get("spec") or {}).get("volumeName") == name:
                        return True
            return False
        return any(name in pod_references(pod, kind) for pod in self._pods_on(node, namespace))

    def _authorize_related(self, node: str, kind: str, attrs: RequestAttributes) -> Decision:
        if not attrs.name:
            return False, "No Object name found"
        if self._related(node, kind, attrs.namespace, attrs.name):
            return ALLOW
        return False, f"no relationship found between node '{node}' and this object"

    def _read_namespaced(self, node: str, kind: str, attrs: RequestAttributes) -> Decision:
        if attrs.verb not in ("get", "list", "watch"):
            return False, "can only read resources of this type"
        if attrs.subresource:
            return False, "cannot read subresource"
        if not attrs.namespace:
            return False, "can only read namespaced object of this type"
        return self._authorize_related(node, kind, attrs)

    def _get(self, node: str, kind: str, attrs: RequestAttributes) -> Decision:
        if attrs.verb != "get":
            return False, "can only get individual resources of this type"
        if attrs.subresource:
            return False, "cannot get subresource"
        return self._authorize_related(node, kind, attrs)

    def _pvc(self, node: str, attrs: RequestAttributes) -> Decision:
        if attrs.subresource != "status":
            return self._get(node, "pvc", attrs)
        if attrs.verb not in ("update", "patch"):
            return False, "can only get/update/patch this type"
        return self._authorize_related(node, "pvc", attrs)

    def _create_token(self, node: str, attrs: RequestAttributes) -> Decision:
        if attrs.verb != "create" or not attrs.name:
            return False, "can only create tokens for individual service accounts"
        if attrs.subresource != "token":
            return False, "can only create token subresource of serviceaccount"
        return self._authorize_related(node, "serviceaccount", attrs)

    def _lease(self, node: str, attrs: RequestAttributes) -> Decision:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return False, "can only get, create, update, patch, or delete a node lease"
        if attrs.namespace != NODE_LEASE_NAMESPACE:
            return False, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace'
        # On create the name is in the body; NodeRestriction checks it there.
        if attrs.verb != "create" and attrs.name != node:
            return False, "can only access node lease with the same name as the requesting node"
        return ALLOW

    def _csinode(self, node: str, attrs: RequestAttributes) -> Decision:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return False, "can only get, create, update, patch, or delete a CSINode"
        if attrs.subresource:
            return False, "cannot authorize CSINode subresources"
        if attrs.verb != "create" and attrs.name != node:
            return False, "can only access CSINode with the same name as the requesting node"
        return ALLOW

    def _node(self, node: str, attrs: RequestAttributes) -> Decision:
        writes = ("create", "update", "patch") if not attrs.subresource else ("update", "patch")
        if attrs.subresource in ("", "status") and attrs.verb in writes:
            if self._restrict and attrs.name not in ("", node):
                return False, f'node "{node}" is not allowed to modify node "{attrs.name}"'
            return ALLOW
        if not attrs.subresource and attrs.verb in ("get", "list", "watch"):
            # Compared by name, not through the graph, so a kubelet can read its Node before creating it.
            if attrs.name == node or _field_selector(attrs).get("metadata.name") == node:
                return ALLOW
            if not attrs.name:
                return False, f"node '{node}' cannot read all nodes, only its own Node object"
            return False, f"node '{node}' cannot read '{attrs.name}', only its own Node object"
        return NO_OPINION

    def _pod(self, node: str, attrs: RequestAttributes) -> Decision:
        verb, sub = attrs.verb, attrs.subresource
        if not sub and verb == "get":
            return self._get(node, "pod", attrs)
        if not sub and verb in ("list", "watch"):
            return self._list_pods(node, attrs)
        if (not sub and verb in ("create", "delete")) or (sub == "status" and verb in ("update", "patch")):
            return self._restricted_pod_write(node, attrs)
        if sub == "eviction" and verb == "create":
            return ALLOW
        return NO_OPINION

    def _list_pods(self, node: str, attrs: RequestAttributes) -> Decision:
        if _field_selector(attrs).get("spec.nodeName") == node:
            return ALLOW
        if attrs.name:
            return self._authorize_related(node, "pod", attrs)
        return False, "can only list/watch pods with spec.nodeName field selector"

    def _restricted_pod_write(self, node: str, attrs: RequestAttributes) -> Decision:
        # Mirror pods: the node creates and deletes them and reports their status. NodeRestriction limits that
        # to pods bound to the node; the create body is not visible here, existing pods are.
        if not self._restrict or attrs.verb == "create" or not attrs.name:
            return ALLOW
        pod = self._reader.get("/pods", attrs.namespace, attrs.name)
        if pod is None or (pod.get("spec") or {}).get("nodeName") == node:
            return ALLOW  # a missing pod gets its 404 from the server, as NodeRestriction lets it through
        action = "delete pods" if attrs.verb == "delete" else "update pod status for pods"
        return False, f'node "{node}" can only {action} with spec.nodeName set to itself'
