"""A small JSON client of the API server, for what must stay light: the leader-election Lease.

Reads: a component's kubeconfig (``--kubeconfig``: server URL, cluster CA, the component's client
certificate or token). Writes nothing on disk (the certificate chain goes to ``ssl`` through
``tasks.fsutil.load_cert_chain_pem``, no key left behind).

The official ``kubernetes`` client costs an emulated component ~50 MiB of memory to import; the emulated
kube-scheduler needs three requests on one Lease, so it uses this instead (``http.client`` over TLS
verified with the cluster CA, one connection per request, a timeout on each).
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubeboot.tasks import kubeconfig as kc
from kubeboot.tasks.fsutil import load_cert_chain_pem


@dataclass(frozen=True)
class ClusterAccess:
    server: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    token: str


def load_access(path: str) -> ClusterAccess:
    text = Path(path).read_text()
    conf = kc.parse(text)
    ca = conf.ca_data
    if not ca and conf.ca_file:
        ca = Path(conf.ca_file).read_bytes()
    return ClusterAccess(conf.server, ca, conf.client_cert_data, conf.client_key_data, conf.token)


class ApiError(Exception):
    """A non-2xx answer: its HTTP status and the Status message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"({status}) {message}")
        self.status = status


class Rest:
    def __init__(self, access: ClusterAccess, timeout: float) -> None:
        url = urlsplit(access.server)
        self.host, self.port = url.hostname or "", url.port or 443
        self.timeout = timeout
        self.token = access.token
        self.ctx = ssl.create_default_context(cadata=access.ca_pem.decode()) if access.ca_pem \
            else ssl.create_default_context()
        if access.cert_pem and access.key_pem:
            load_cert_chain_pem(self.ctx, access.cert_pem, access.key_pem)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json", "User-Agent": "kubeboot-sandbox"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=self.timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            doc = {"message": raw[:200].decode(errors="replace")}
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, str(doc.get("message") or resp.reason))
        return dict(doc)
