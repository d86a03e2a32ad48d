"""Clients of the API server for the controller manager, built on the official ``kubernetes`` client.

Reads: ``--kubeconfig`` (controller-manager.conf): server URL, cluster CA, the manager's own client
certificate (``system:kube-controller-manager``). Writes: the CA and that certificate/key into a private
temporary directory (the client library wants files), removed when the manager exits.

Two kinds of identity, as a real kube-controller-manager has: the manager's certificate (used to make
sure the controllers' ServiceAccounts exist) and, with ``--use-service-account-credentials``, one
service-account token per controller (see satokens). Controllers read objects as plain dicts
(``_preload_content=False`` + JSON) so their decision logic stays pure functions over API objects.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
from kubernetes.client.rest import ApiException

# The kubeconfig is read in ``rest`` (light enough for the scheduler); load_access is used through this module.
from kubeboot.sandbox.controllermanager.rest import ClusterAccess, load_access  # noqa: F401
from kubeboot.sandbox.controllermanager.satokens import TokenSource

NAMESPACE = "kube-system"


class Credentials:
    """The files the client library reads, in one private directory (mode 0700, removed by ``close``)."""

    def __init__(self, access: ClusterAccess) -> None:
        self.access = access
        self.dir = Path(tempfile.mkdtemp(prefix="kcm-creds-"))
        self.ca_file = self._write("ca.crt", access.ca_pem) if access.ca_pem else None
        self.cert_file = self._write("client.crt", access.cert_pem) if access.cert_pem else None
        self.key_file = self._write("client.key", access.key_pem) if access.key_pem else None

    def _write(self, name: str, data: bytes) -> str:
        path = self.dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return str(path)

    def _config(self) -> k8s.Configuration:
        conf = k8s.Configuration()
        conf.host = self.access.server
        conf.ssl_ca_cert = self.ca_file
        conf.verify_ssl = True
        conf.retries = False  # a failed call is retried by the controller's next poll, not inside it
        return conf

    def own_client(self) -> k8s.ApiClient:
        """The manager's own identity from its kubeconfig (certificate, or token if that is what it has)."""
        conf = self._config()
        conf.cert_file, conf.key_file = self.cert_file, self.key_file
        if self.access.token:
            set_bearer(conf, self.access.token)
        return k8s.ApiClient(conf)

    def token_client(self, source: TokenSource) -> k8s.ApiClient:
        """A client that authenticates as ``source``'s service account, its token refreshed per request."""
        conf = self._config()

        def refresh(c: k8s.Configuration) -> None:
            set_bearer(c, source.token())

        conf.refresh_api_key_hook = refresh
        refresh(conf)
        return k8s.ApiClient(conf)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def set_bearer(conf: k8s.Configuration, token: str) -> None:
    """``Authorization: Bearer <token>`` on every request. The client looks the key up as
    "BearerToken" since v36 and as "authorization" before, the prefix under the same name."""
    conf.api_key = {"BearerToken": token, "authorization": token}
    conf.api_key_prefix = {"BearerToken": "Bearer", "authorization": "Bearer"}


def body(response: Any) -> dict[str, Any]:
    """The JSON object of a raw (``_preload_content=False``) response."""
    data = json.loads(response.data or b"{}")
    return data if isinstance(data, dict) else {}


def items(response: Any) -> list[dict[str, Any]]:
    return list(body(response).get("items") or [])


def ensure_service_accounts(api: k8s.ApiClient, names: list[str]) -> list[str]:
    """Create kube-system ServiceAccounts that are missing (what the manager's SA controller
    and client builder do before a controller starts); returns the names created."""
    core = k8s.CoreV1Api(api)
    created = []
    for name in names:
        try:
            core.read_namespaced_service_account(name, NAMESPACE, _preload_content=False)
            continue
        except ApiException as e:
            if e.status != 404:
                raise
        try:
            core.create_namespaced_service_account(
                NAMESPACE, {"apiVersion": "v1", "kind": "ServiceAccount",
                            "metadata": {"name": name, "namespace": NAMESPACE}}, _preload_content=False)
            created.append(name)
        except ApiException as e:
            if e.status != 409:  # created meanwhile by someone else: fine
                raise
    return created


def request(api: k8s.ApiClient, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """One call by URL path (for the garbage collector's kind-generic reads and deletes)."""
    response = api.call_api(
        path, method, header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body=payload, auth_settings=["BearerToken"], _return_http_data_only=True, _preload_content=False)
    return body(response)
