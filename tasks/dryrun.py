"""Dry runs as kubeadm means them: node files go to a temporary root, API writes are printed and not
sent, nothing on a node or in a cluster changes (kubeadm ``cmd/kubeadm/app/util/apiclient/dryrun.go``).

Reads and writes only under the dry-run directory of one *scope* (``<KUBEBOOT_STATE_DIR>/dry-run/<scope>``;
the scope is the run, or for the children of a cluster run the cluster run, so its nodes share one
fake API as they would share one cluster):

| path                              | what                                                             |
|-----------------------------------|------------------------------------------------------------------|
| ``<scope>/nodes/<node>/``         | the node root the node phases write into (``/etc/kubernetes`` ...)  |
| ``<scope>/api/<group>/<plural>/`` | the objects the dry run "wrote": ``<namespace or _>/<name>.json``  |
|                                   | (kubeadm's fake client tracker)                                  |

``DryRunApi`` stands in for the ``kubernetes`` client wherever a phase calls ``kubeapi.api_client``
while a ``session`` is active (the phase runner opens one for a run with ``dryRun: true``). Like
kubeadm's fake client it prints every request (``[dryrun] Would perform action CREATE on resource
"configmaps" in API group "core/v1"``, the object attached as YAML), keeps writes in its tracker, and
answers reads: first from the tracker (what this scope's runs would have created; kubeadm reads the
real cluster there), then from kubeadm's reactors (a Node of any name; for a join also cluster-info,
kubeadm-config, kubeadm-certs, kubelet-config and kube-proxy), else 404 NotFound. A Secret is printed
with its data values hidden unless the output is the user's terminal.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import yaml

from kubeboot.config import constants as c
from kubeboot.tasks.fsutil import atomic_write

Obj = dict[str, Any]
DRY_RUN_DIR: Final = "dry-run"
DRY_RUN_CRI_SOCKET: Final = "dry-run-cri-socket"
# kubeadm's fake cluster-info: its API server and the token its JWS is made for (discovery's mutation).
FAKE_ENDPOINT: Final = "192.168.0.101:6443"
_PATH = re.compile(r"^/(?:api/(?P<v1>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                   r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$")
_VERBS: Final = {"POST": "CREATE", "PUT": "UPDATE", "PATCH": "PATCH", "DELETE": "DELETE"}
_DUMPER: Final = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's when the wheel has it


def scope_dir(base: Path, scope: str) -> Path:
    return base / scope


def node_root(base: Path, scope: str, node: str) -> Path:
    """The temporary root of ``node`` in a dry run of ``scope``."""
    return scope_dir(base, scope) / "nodes" / node


@dataclass(frozen=True)
class Request:
    method: str
    group: str  # "core" for the legacy group, as kubeadm prints it
    version: str
    plural: str
    namespace: str
    name: str

    @classmethod
    def parse(cls, method: str, path: str) -> Request:
        m = _PATH.match(path.split("?", 1)[0])
        if m is None:
            raise ValueError(f"dry run: cannot read the API path {path!r}")
        group, version = ("core", "v1") if m["v1"] else (m["group"], m["version"])
        return cls(method.upper(), group, version, m["plural"], m["ns"] or "", m["name"] or "")

    @property
    def verb(self) -> str:
        if self.method == "GET":
            return "GET" if self.name else "LIST"
        return _VERBS.get(self.method, self.method)


class Tracker:
    """The objects a dry run wrote, one JSON file each (kubeadm's fake clientset tracker)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _path(self, r: Request, name: str | None = None) -> Path:
        return self.dir / r.group / r.plural / (r.namespace or "_") / f"{name or r.name}.json"

    def get(self, r: Request) -> Obj | None:
        try:
            found = json.loads(self._path(r).read_text())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def list(self, r: Request) -> list[Obj]:
        folder = self.dir / r.group / r.plural
        files = sorted(folder.glob(f"{r.namespace or '*'}/*.json")) if folder.is_dir() else []
        return [json.loads(p.read_text()) for p in files]

    def put(self, r: Request, obj: Obj) -> None:
        name = str((obj.get("metadata") or {}).get("name") or r.name)
        atomic_write(self._path(r, name), json.dumps(obj, sort_keys=True), 0o600, dir_mode=0o700, durable=False)

    def delete(self, r: Request) -> bool:
        path = self._path(r)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed


class Session:
    """One phase's dry run: where the fake API lives, where it prints, which reactors answer."""

    def __init__(self, api_dir: Path, out: Callable[[str], None], *, workflow: str, show_secrets: bool) -> None:
        self.tracker = Tracker(api_dir)
        self.out = out
        self.workflow = workflow
        self.show_secrets = show_secrets

    def client(self) -> DryRunApi:
        return DryRunApi(self)


_CURRENT: contextvars.ContextVar[Session | None] = contextvars.ContextVar("kubeboot_dry_run", default=None)


@contextlib.contextmanager
def session(api_dir: Path, out: Callable[[str], None], *, workflow: str, show_secrets: bool) -> Iterator[Session]:
    """While active, ``kubeapi.api_client`` hands out ``DryRunApi`` clients of this session."""
    token = _CURRENT.set(Session(api_dir, out, workflow=workflow, show_secrets=show_secrets))
    try:
        yield _CURRENT.get()  # type: ignore[misc]  # just set
    finally:
        _CURRENT.reset(token)


def current() -> Session | None:
    return _CURRENT.get()


def _api_error(status: int, reason: str, message: str) -> Exception:
    from kubernetes.client.exceptions import ApiException

    err: Exception = ApiException(status=status, reason=reason)
    err.body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",  # type: ignore[attr-defined]
                           "message": message, "reason": reason, "code": status})
    return err


class DryRunApi:
    """A stand-in for ``kubernetes.client.ApiClient`` that ``kubeapi.request`` talks to (module docstring)."""

    def __init__(self, s: Session) -> None:
        self.s = s

    def request(self, method: str, path: str, body: Obj | None = None) -> Obj:
        r = Request.parse(method, path)
        self._log(r, body)
        if r.verb == "GET":
            return self._get(r)
        if r.verb == "LIST":
            return {"kind": "List", "apiVersion": "v1", "items": self.s.tracker.list(r) or _list_reactor(r)}
        if r.verb == "DELETE":
            if not self.s.tracker.delete(r) and not r.name.startswith(c.BOOTSTRAP_TOKEN_SECRET_PREFIX):
                raise _api_error(404, "NotFound", f'{r.plural} "{r.name}" not found')
            return {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        return self._write(r, body or {})

    def _get(self, r: Request) -> Obj:
        found = self.s.tracker.get(r) or _reactor(self.s.workflow, r)
        if found is None:
            raise _api_error(404, "NotFound", f'{r.plural} "{r.name}" not found')
        self._attach(found)
        return found

    def _write(self, r: Request, body: Obj) -> Obj:
        name = str((body.get("metadata") or {}).get("name") or r.name)
        target = Request(r.method, r.group, r.version, r.plural, r.namespace, name)
        existing = self.s.tracker.get(target)
        if r.verb == "CREATE" and existing is not None:
            raise _api_error(409, "AlreadyExists", f'{r.plural} "{name}" already exists')
        if r.verb == "PATCH":
            if r.plural == "nodes":  # kubeadm's PatchNodeReactor: the Node as it would be, not stored
                return _merge(existing or _fake_node(name), body)
            if existing is None:
                raise _api_error(404, "NotFound", f'{r.plural} "{name}" not found')
            body = _merge(existing, body)
        elif r.verb == "UPDATE" and existing is None and r.plural != "nodes":
            raise _api_error(404, "NotFound", f'{r.plural} "{name}" not found')
        stored = dict(body)
        meta = dict(stored.get("metadata") or {})
        if r.namespace:
            meta.setdefault("namespace", r.namespace)
        meta["resourceVersion"] = str(int((existing or {}).get("metadata", {}).get("resourceVersion", "0")) + 1)
        # What an API server fills in and callers read back (an owner reference needs the uid).
        meta.setdefault("uid", ((existing or {}).get("metadata") or {}).get("uid") or str(uuid.uuid4()))
        stored["metadata"] = meta
        self.s.tracker.put(target, stored)
        return stored

    # --- what kubeadm prints ---------------------------------------------------------------------------
    def _log(self, r: Request, body: Obj | None) -> None:
        self.s.out(f'[dryrun] Would perform action {r.verb} on resource "{r.plural}" in API group '
                   f'"{r.group}/{r.version}"')
        name = str(((body or {}).get("metadata") or {}).get("name") or r.name)
        if name:
            self.s.out(f'[dryrun] Resource name "{name}", namespace "{r.namespace}"')
        if body:
            self._attach(body)

    def _attach(self, obj: Obj) -> None:
        shown = obj if self.s.show_secrets else _hide_secret_data(obj)
        # One output call for the whole object: in a worker's log it is one record, not one per line.
        self.s.out("[dryrun] Attached object:\n" + yaml.dump(shown, Dumper=_DUMPER, sort_keys=True).rstrip("\n"))


def _hide_secret_data(obj: Obj) -> Obj:
    if obj.get("kind") != "Secret" and "token-secret" not in (obj.get("data") or {}):
        return obj
    shown = dict(obj)
    for key in ("data", "stringData"):
        if isinstance(shown.get(key), dict):
            shown[key] = dict.fromkeys(shown[key], "<redacted>")
    return shown


def _merge(base: Obj, patch: Obj) -> Obj:
    out = dict(base)
    for k, v in patch.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# --- kubeadm's reactors -------------------------------------------------------------------------------------

def _fake_node(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name},
                         "annotations": {"kubeadm.alpha.kubernetes.io/cri-socket": DRY_RUN_CRI_SOCKET}}}


def _config_map(namespace: str, name: str, data: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": data}


def _kubeadm_config() -> Obj:
    cluster = {"apiVersion": c.V1BETA4, "kind": "ClusterConfiguration", "clusterName": c.DEFAULT_CLUSTER_NAME,
               "controlPlaneEndpoint": FAKE_ENDPOINT, "networking": {"podSubnet": "192.168.0.0/16"}}
    data = {"ClusterConfiguration": yaml.safe_dump(cluster)}
    return _config_map(c.NAMESPACE_SYSTEM, c.KUBEADM_CONFIG_CONFIGMAP, data)


def _kubelet_config() -> Obj:
    kubelet = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
               "cgroupDriver": "systemd", "clusterDNS": ["10.96.0.10"], "clusterDomain": "cluster.local",
               "rotateCertificates": True, "staticPodPath": "/etc/kubernetes/manifests"}
    return _config_map(c.NAMESPACE_SYSTEM, c.KUBELET_CONFIG_CONFIGMAP, {c.KUBELET_CONFIG_KEY: yaml.safe_dump(kubelet)})


def _kube_proxy_config() -> Obj:
    return _config_map(c.NAMESPACE_SYSTEM, "kube-proxy", {"config.conf": "kind: KubeProxyConfiguration\n"})


def _kubeadm_certs() -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kubeadm-certs",
                                                               "namespace": c.NAMESPACE_SYSTEM}, "data": {}}


# The GETs kubeadm's join dry-run client answers with made-up objects (GetKubeadmConfigReactor ...).
_JOIN_REACTORS: Final[dict[tuple[str, str, str], Callable[[], Obj]]] = {
    ("configmaps", c.NAMESPACE_SYSTEM, c.KUBEADM_CONFIG_CONFIGMAP): _kubeadm_config,
    ("configmaps", c.NAMESPACE_SYSTEM, c.KUBELET_CONFIG_CONFIGMAP): _kubelet_config,
    ("configmaps", c.NAMESPACE_SYSTEM, "kube-proxy"): _kube_proxy_config,
    ("secrets", c.NAMESPACE_SYSTEM, "kubeadm-certs"): _kubeadm_certs,
}


def _reactor(workflow: str, r: Request) -> Obj | None:
    if r.plural == "nodes":
        return _fake_node(r.name)  # GetNodeReactor: init and join
    make = _JOIN_REACTORS.get((r.plural, r.namespace, r.name)) if workflow == "join" else None
    return make() if make else None


def _list_reactor(r: Request) -> list[Obj]:
    return []


# --- discovery in a dry run ---------------------------------------------------------------------------------

@cache
def fake_ca() -> tuple[bytes, str]:
    """A CA of kubeadm's fake cluster-info (made once per process, never trusted by anything): PEM, pin."""
    from datetime import UTC, datetime

    from kubeboot.tasks import pki

    key = pki.generate_key("ECDSA-P256")
    spec = pki.CertSpec(common_name="kubernetes", is_ca=True, validity_seconds=10 * 365 * 24 * 3600)
    cert = pki.build_certificate(spec, key.public_key(), key, None, datetime.now(UTC))
    return pki.cert_to_pem(cert), pki.ca_cert_hash(cert)


def cluster_info_fetch(tracker: Tracker, endpoint: str, token: str) -> Callable[[str, bytes | None], Obj]:
    """Discovery's fetch in a dry run: the cluster-info this scope's init created (signed for ``token``
    as the bootstrap signer would), else kubeadm's fake one (a made-up CA at ``endpoint``)."""
    from kubeboot.tasks import kubeconfig as kc
    from kubeboot.tasks.discovery import JWS_PREFIX, detached_jws

    def fetch(_endpoint: str, _ca: bytes | None) -> Obj:
        request = Request("GET", "core", "v1", "configmaps", c.NAMESPACE_PUBLIC, c.CLUSTER_INFO_CONFIGMAP)
        found = tracker.get(request)
        if found is None:
            ca_pem, _ = fake_ca()
            text = kc.dump(kc.kubeconfig_without_user(f"https://{endpoint}", ca_pem))
            found = _config_map(c.NAMESPACE_PUBLIC, c.CLUSTER_INFO_CONFIGMAP, {c.CLUSTER_INFO_KUBECONFIG_KEY: text})
        data = dict(found.get("data") or {})
        token_id, _, secret = token.partition(".")
        data[JWS_PREFIX + token_id] = detached_jws(str(data.get(c.CLUSTER_INFO_KUBECONFIG_KEY, "")), token_id, secret)
        return {**found, "data": data}

    return fetch


def has_cluster_info(tracker: Tracker) -> bool:
    return tracker.get(Request("GET", "core", "v1", "configmaps", c.NAMESPACE_PUBLIC,
                               c.CLUSTER_INFO_CONFIGMAP)) is not None
