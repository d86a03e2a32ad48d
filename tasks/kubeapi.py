"""Kubernetes API access for control phases: a client from kubeconfig bytes and kubeadm's idempotent
write helpers (``cmd/kubeadm/app/util/apiclient/idempotency.go``) over the official ``kubernetes`` client.

Reads: a kubeconfig's bytes (from ``ctx.kubeconfig("admin.conf")``). Writes: nothing on disk — the
client certificate is loaded into an SSL context through a private temporary directory removed at once.

Error mapping (one API call, ``call``): connection errors, 5xx, 429 and 403 (RBAC not settled yet while
the control plane starts) are retried under ``tasks.retry.api_call_policy`` (0.5 s apart, bounded) and
then become ``TemporaryError("<what>: <last real error>")`` so the phase is retried later; 400/422 are
``PermanentError`` (the object itself is wrong); other API statuses (404, 409 ...) are re-raised as
``ApiException`` for the caller to decide.

Objects are plain dicts (what kubeadm would marshal): ``ensure`` creates or updates, ``ensure_retained``
creates or leaves alone, ``get``/``delete`` by kind and name, ``patch_node`` mutates a Node.

The ``kubernetes`` package (and urllib3) is imported on first use, not with this module: node phase
modules import this one, and a node worker that only writes files and drives the kubelet must not carry
the client (~40 MiB per process). ``kubeapi.ApiException`` is resolved on first access for the same reason.
"""

from __future__ import annotations

import copy
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from kubeboot.tasks import goyaml
from kubeboot.tasks.errors import PermanentError, TemporaryError
from kubeboot.tasks.fsutil import load_cert_chain_pem
from kubeboot.tasks.retry import api_call_policy

if TYPE_CHECKING:
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

__all__ = [
    "ApiException", "api_client", "call", "create_or_retain", "create_or_update", "delete", "ensure",
    "ensure_retained", "get", "is_transient", "object_path", "patch_node", "preload", "request", "subset",
]

T = TypeVar("T")
Obj = dict[str, Any]

# Per-request bound (connect, read): a hung connection must not hold a worker (the phase is retried instead).
_TIMEOUT: Final = (5.0, 30.0)
_RETRIED_STATUSES: Final = frozenset({403, 429, 500, 502, 503, 504})
_PERMANENT_STATUSES: Final = frozenset({400, 422})
_CONFLICT_TRIES: Final = 5  # kubeadm retries an update on Conflict until its API-call timeout

# kind → (group-version path prefix, plural, namespaced)
_KINDS: Final[dict[str, tuple[str, str, bool]]] = {
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Service": ("/api/v1", "services", True),
    "Node": ("/api/v1", "nodes", False),
    "Namespace": ("/api/v1", "namespaces", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "DaemonSet": ("/apis/apps/v1", "daemonsets", True),
}


# --- the client, imported on first use ------------------------------------------------------------------

def __getattr__(name: str) -> Any:
    """``kubeapi.ApiException`` for callers (``except kubeapi.ApiException``), imported when first asked."""
    if name == "ApiException":
        return _api_exception()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def preload() -> None:
    """Import the client now. A control worker calls this before its pool forks: every child then
    shares the imported pages, and no phase pays the ~0.4 s import inside a run."""
    import urllib3  # noqa: F401 - imported for its side effect: loaded before the fork
    from kubernetes import client  # noqa: F401


def _api_exception() -> type[ApiException]:
    from kubernetes.client.exceptions import ApiException

    return cast("type[ApiException]", ApiException)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Errors of the connection itself (refused, reset, TLS): worth a retry."""
    import urllib3

    return urllib3.exceptions.HTTPError, OSError, ssl.SSLError


def _named(doc: Obj, section: str, name: str, inner: str) -> Obj:
    for entry in doc.get(section) or []:
        if entry.get("name") == name:
            body = entry.get(inner)
            return body if isinstance(body, dict) else {}
    raise PermanentError(f"kubeconfig: no {inner} named {name!r}")


def _pem(body: Obj, key: str) -> bytes | None:
    """Embedded ``<key>-data`` (base64 of PEM) or the file ``<key>`` names."""
    import base64

    if body.get(f"{key}-data"):
        return base64.b64decode(body[f"{key}-data"])
    if body.get(key):
        return Path(str(body[key])).read_bytes()
    return None


def _ssl_context(cluster: Obj, user: Obj) -> ssl.SSLContext:
    ca = _pem(cluster, "certificate-authority")
    context = ssl.create_default_context(cadata=ca.decode() if ca else None)
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert, key = _pem(user, "client-certificate"), _pem(user, "client-key")
    if cert and key:
        load_cert_chain_pem(context, cert, key)
    return context


def api_client(kubeconfig: bytes) -> k8s.ApiClient:
    """An ApiClient authenticated as the kubeconfig's current context says (embedded certs or a token).
    In a dry run (``tasks.dryrun.session``) the fake client that prints writes and sends nothing."""
    from kubeboot.tasks import dryrun

    dry = dryrun.current()
    if dry is not None:
        return cast("k8s.ApiClient", dry.client())
    doc = goyaml.load(kubeconfig)
    if not isinstance(doc, dict):
        raise PermanentError("kubeconfig: not a YAML mapping")
    context = _named(doc, "contexts", str(doc.get("current-context") or ""), "context")
    cluster = _named(doc, "clusters", str(context.get("cluster")), "cluster")
    user = _named(doc, "users", str(context.get("user")), "user")
    import urllib3
    from kubernetes import client as k8s

    conf = k8s.Configuration()
    conf.host = str(cluster.get("server") or "").rstrip("/")
    if user.get("token"):
        # The client looks the key up as "BearerToken" since v36 and "authorization" before.
        conf.api_key = {"BearerToken": user["token"], "authorization": user["token"]}
        conf.api_key_prefix = {"BearerToken": "Bearer", "authorization": "Bearer"}
    api = k8s.ApiClient(conf)
    pool_args: Obj = {"ssl_context": _ssl_context(cluster, user), "timeout": urllib3.Timeout(*_TIMEOUT),
                      "retries": False}
    if cluster.get("tls-server-name"):
        pool_args["server_hostname"] = cluster["tls-server-name"]
    api.rest_client.pool_manager = urllib3.PoolManager(num_pools=4, maxsize=4, **pool_args)
    return api


# --- one call under the retry policy -----------------------------------------------------------------

def is_transient(exc: BaseException) -> bool:
    """Worth another try within a second or two: the server is (re)starting or overloaded."""
    if isinstance(exc, _api_exception()):
        return exc.status in _RETRIED_STATUSES or not exc.status
    return isinstance(exc, _transport_errors())


def describe(exc: BaseException) -> str:
    """The last real error in one line: the API's Status message when there is one."""
    if isinstance(exc, _api_exception()):
        try:
            message = json.loads(exc.body or "{}").get("message")
        except (ValueError, AttributeError):
            message = None
        return f"{exc.status} {exc.reason}: {message}" if message else f"{exc.status} {exc.reason}"
    reason = getattr(exc, "reason", None)  # urllib3's MaxRetryError wraps the socket error
    return f"{type(exc).__name__}: {reason or exc}"


def call(fn: Callable[[], T], what: str) -> T:
    """``fn()`` (one API request) retried briefly on transient errors; see the module docstring."""
    import tenacity

    api_error = _api_exception()
    try:
        for attempt in tenacity.Retrying(retry=tenacity.retry_if_exception(is_transient), **api_call_policy()):
            with attempt:
                return fn()
    except api_error as e:
        if e.status in _PERMANENT_STATUSES:
            raise PermanentError(f"{what}: {describe(e)}") from e
        if is_transient(e):
            raise TemporaryError(f"{what}: {describe(e)}") from e
        raise
    except _transport_errors() as e:
        raise TemporaryError(f"{what}: {describe(e)}") from e
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


def create_or_update(create: Callable[[], T], update: Callable[[], T], what: str) -> T:
    """kubeadm CreateOrUpdate: create; when it already exists, ``update`` (which re-reads and replaces
    with the read resourceVersion); an update losing a race (409 Conflict) is tried again."""
    api_error = _api_exception()
    try:
        return call(create, what)
    except api_error as e:
        if e.status != 409:
            raise
    for _ in range(_CONFLICT_TRIES - 1):
        try:
            return call(update, what)
        except api_error as e:
            if e.status != 409:
                raise
    try:
        return call(update, what)
    except api_error as e:
        raise TemporaryError(f"{what}: {describe(e)}") from e


def create_or_retain(create: Callable[[], object], what: str) -> None:
    """kubeadm CreateOrRetain: AlreadyExists is success and the existing object is left untouched."""
    try:
        call(create, what)
    except _api_exception() as e:
        if e.status != 409:
            raise


# --- dict objects by kind ----------------------------------------------------------------------------

def object_path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    prefix, plural, namespaced = _KINDS[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespaced else f"{prefix}/{plural}"
    return f"{path}/{name}" if name else path


def _path_of(obj: Obj, with_name: bool = True) -> str:
    meta = obj.get("metadata") or {}
    return object_path(obj["kind"], meta.get("namespace"), meta["name"] if with_name else None)


def request(api: k8s.ApiClient, method: str, path: str, body: Obj | None = None,
            content_type: str = "application/json") -> Obj:
    """One raw request by path (no retry), the JSON body of the answer as a dict."""
    from kubeboot.tasks.dryrun import DryRunApi

    if isinstance(api, DryRunApi):
        return api.request(method, path, body)
    response = api.call_api(
        path, method, header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body, auth_settings=["BearerToken"], _return_http_data_only=True, _preload_content=False)
    data = json.loads(response.data or b"{}")
    return data if isinstance(data, dict) else {}


def _what(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']} {where}{meta.get('name')}"


def get(api: k8s.ApiClient, kind: str, name: str, namespace: str | None = None) -> Obj | None:
    """The object, or None when it does not exist."""
    try:
        return call(lambda: request(api, "GET", object_path(kind, namespace, name)),
                    f"unable to get {kind} {name}")
    except _api_exception() as e:
        if e.status == 404:
            return None
        raise TemporaryError(f"unable to get {kind} {name}: {describe(e)}") from e


def delete(api: k8s.ApiClient, kind: str, name: str, namespace: str | None = None) -> bool:
    """Delete; False when it was already gone."""
    try:
        call(lambda: request(api, "DELETE", object_path(kind, namespace, name)), f"unable to delete {kind} {name}")
        return True
    except _api_exception() as e:
        if e.status == 404:
            return False
        raise TemporaryError(f"unable to delete {kind} {name}: {describe(e)}") from e


def subset(want: Any, have: Any) -> bool:
    """Every field of ``want`` is in ``have`` with the same value (extra fields in ``have`` are the
    server's defaults). Lists must match element by element."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and subset(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(map(subset, want, have))
    return bool(want == have)


def _unchanged(desired: Obj, existing: Obj) -> bool:
    body = {k: v for k, v in desired.items() if k not in ("metadata", "apiVersion", "kind", "status")}
    meta = desired.get("metadata") or {}
    have_meta = existing.get("metadata") or {}
    same_meta = all(subset(meta.get(k) or {}, have_meta.get(k) or {}) for k in ("labels", "annotations"))
    same_owners = "ownerReferences" not in meta or subset(meta["ownerReferences"], have_meta.get("ownerReferences"))
    return same_meta and same_owners and subset(body, existing)


def _replace(api: k8s.ApiClient, desired: Obj) -> Obj:
    """Re-read and replace with the read resourceVersion, unless nothing would change."""
    existing = request(api, "GET", _path_of(desired))
    if _unchanged(desired, existing):
        return existing
    body = copy.deepcopy(desired)
    meta = body.setdefault("metadata", {})
    have_meta = existing.get("metadata") or {}
    meta["resourceVersion"] = have_meta.get("resourceVersion")
    # Keep what others added (the bootstrap signer's JWS keys live in data, not here; labels added by
    # people survive as kubeadm's Update would drop them — we only add ours).
    meta["labels"] = {**(have_meta.get("labels") or {}), **(meta.get("labels") or {})} or None
    meta["annotations"] = {**(have_meta.get("annotations") or {}), **(meta.get("annotations") or {})} or None
    meta = {k: v for k, v in meta.items() if v is not None}
    body["metadata"] = meta
    return request(api, "PUT", _path_of(desired), body)


def ensure(api: k8s.ApiClient, desired: Obj, what: str | None = None) -> Obj:
    """Create ``desired`` or bring the existing object to it; an object already as desired is not
    written at all (its resourceVersion stays). Returns the object as the server has it."""
    return create_or_update(lambda: request(api, "POST", _path_of(desired, with_name=False), desired),
                            lambda: _replace(api, desired), what or f"unable to create or update {_what(desired)}")


def ensure_retained(api: k8s.ApiClient, desired: Obj, what: str | None = None) -> None:
    """Create ``desired`` unless an object of that name exists (left untouched)."""
    create_or_retain(lambda: request(api, "POST", _path_of(desired, with_name=False), desired),
                     what or f"unable to create {_what(desired)}")


def patch_node(api: k8s.ApiClient, name: str, mutate: Callable[[Obj], bool], what: str) -> bool:
    """kubeadm PatchNode: read the Node, let ``mutate`` change the dict (True when it did), and send the
    change as a strategic-merge patch of labels and taints guarded by the read resourceVersion; a lost
    race is retried. A Node not registered yet is a TemporaryError (its kubelet registers it soon).
    Returns whether anything was patched."""
    path = object_path("Node", None, name)
    api_error = _api_exception()

    def once() -> bool:
        try:
            node = request(api, "GET", path)
        except api_error as e:
            if e.status == 404:
                raise TemporaryError(f"{what}: node {name!r} is not registered yet", delay=2.0) from e
            raise
        changed = copy.deepcopy(node)
        if not mutate(changed):
            return False
        meta = changed.get("metadata") or {}
        patch = {"metadata": {"resourceVersion": meta.get("resourceVersion"), "labels": meta.get("labels") or {}},
                 "spec": {"taints": (changed.get("spec") or {}).get("taints") or []}}
        request(api, "PATCH", path, patch, content_type="application/strategic-merge-patch+json")
        return True

    for _ in range(_CONFLICT_TRIES):
        try:
            return call(once, what)
        except api_error as e:
            if e.status != 409:
                raise TemporaryError(f"{what}: {describe(e)}") from e
    raise TemporaryError(f"{what}: the Node kept changing under the patch (409 Conflict)")
