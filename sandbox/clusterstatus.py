"""What runs in a sandbox cluster's control plane, asked the way an operator would ask it.

Reads: each control-plane node's ``/etc/kubernetes/pki/ca.crt`` and etcd's healthcheck-client certificate
(``/etc/kubernetes/pki/etcd/{ca,healthcheck-client}.{crt,key}``), under the node's root. Writes nothing.

- an **API server** is up when ``GET https://<node address>:6443/readyz`` answers 200, its certificate
  verified with the node's cluster CA (a node that has no CA yet runs no API server);
- the **etcd members** are the cluster's member list, asked through etcd's JSON gateway
  (``POST /v3/cluster/member/list``) of the first node's etcd that answers, with the healthcheck-client
  certificate, as ``etcdctl member list`` does; a member is up when ``GET <its client URL>/health``
  says ``{"health":"true"}``. No etcd answering: no members known;
- the **leaders** are the ``holderIdentity`` (``<node>_<uuid>``) of the Leases ``kube-system/kube-controller-manager``
  and ``kube-system/kube-scheduler``, read as ``kubectl get lease`` would with the node's ``admin.conf``,
  through the API server of the first node that answers; "" for a lease nobody holds (or none yet), and
  nothing known (None) when no API server answers.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubeboot.config import constants as c
from kubeboot.sandbox.controllermanager import rest

TIMEOUT = 2.0
PKI = c.DEFAULT_CERTS_DIR.lstrip("/")
LEASES = ("kube-controller-manager", "kube-scheduler")  # what --leader-elect=true makes them hold


@dataclass(frozen=True)
class ControlPlaneNode:
    name: str
    address: str
    root: Path


def _request(host: str, port: int, method: str, path: str, ctx: ssl.SSLContext,
             body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def apiserver_up(node: ControlPlaneNode, port: int = c.APISERVER_PORT) -> bool:
    ca = node.root / PKI / "ca.crt"
    if not ca.exists():
        return False
    try:
        return _request(node.address, port, "GET", "/readyz", ssl.create_default_context(cafile=str(ca)))[0] == 200
    except (OSError, ssl.SSLError):
        return False


def _etcd_context(node: ControlPlaneNode) -> ssl.SSLContext | None:
    pki = node.root / PKI / "etcd"
    files = [pki / "ca.crt", pki / "healthcheck-client.crt", pki / "healthcheck-client.key"]
    if not all(f.exists() for f in files):
        return None
    ctx = ssl.create_default_context(cafile=str(files[0]))
    ctx.load_cert_chain(str(files[1]), str(files[2]))
    return ctx


def _member_list(node: ControlPlaneNode, ctx: ssl.SSLContext) -> list[dict[str, Any]] | None:
    try:
        code, body = _request(node.address, c.ETCD_CLIENT_PORT, "POST", "/v3/cluster/member/list", ctx, b"{}")
    except (OSError, ssl.SSLError):
        return None
    if code != 200:
        return None
    return list(json.loads(body).get("members") or [])


def _healthy(url: str, ctx: ssl.SSLContext) -> bool:
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    try:
        code, body = _request(parts.hostname, parts.port or c.ETCD_CLIENT_PORT, "GET", "/health", ctx)
        return code == 200 and json.loads(body).get("health") == "true"
    except (OSError, ssl.SSLError, ValueError):
        return False


def etcd_members(nodes: list[ControlPlaneNode]) -> list[dict[str, Any]]:
    """``[{"name", "clientURL", "learner", "up"}]`` of the cluster's etcd, from the first node that answers."""
    for node in nodes:
        ctx = _etcd_context(node)
        members = _member_list(node, ctx) if ctx is not None else None
        if members is None or ctx is None:
            continue
        out = []
        for m in members:
            urls = list(m.get("clientURLs") or [])
            out.append({"name": m.get("name") or "(unstarted)", "clientURL": urls[0] if urls else "",
                        "learner": bool(m.get("isLearner")), "up": bool(urls) and _healthy(urls[0], ctx)})
        return out
    return []


def leaders(nodes: list[ControlPlaneNode], port: int = c.APISERVER_PORT) -> dict[str, str] | None:
    """``{lease: holderIdentity}`` of LEASES, through the first node's API server that answers."""
    for node in nodes:
        admin = node.root / c.KUBERNETES_DIR.lstrip("/") / c.ADMIN_CONF
        try:
            # This node's own API server, not admin.conf's server (the endpoint: maybe a load balancer).
            api = rest.Rest(replace(rest.load_access(str(admin)), server=f"https://{node.address}:{port}"), TIMEOUT)
            return {name: _holder(api, name) for name in LEASES}
        except (OSError, ssl.SSLError, ValueError, rest.ApiError):
            continue
    return None


def _holder(api: rest.Rest, name: str) -> str:
    try:
        lease = api.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}")
    except rest.ApiError as e:
        if e.status == 404:
            return ""
        raise
    return str((lease.get("spec") or {}).get("holderIdentity") or "")
