"""The kubelet's TLS bootstrap: from ``bootstrap-kubelet.conf`` to a signed client certificate and ``kubelet.conf``.

Reads: ``/etc/kubernetes/bootstrap-kubelet.conf`` (a bootstrap token and the cluster CA), the pending key
``/var/lib/kubelet/pki/kubelet-client.key.tmp`` of an earlier attempt.
Writes: ``/var/lib/kubelet/pki/kubelet-client-<YYYY-MM-DD-HH-MM-SS>.pem`` (certificate then key, 0600), the
symlink ``kubelet-client-current.pem`` to it, and ``/etc/kubernetes/kubelet.conf`` (0600) naming that file.

As the kubelet (pkg/kubelet/certificate/bootstrap): an ECDSA P-256 key (kept in ``kubelet-client.key.tmp``
until the certificate arrives, so a retry posts the same request), a CSR for ``CN=system:node:<node>``,
``O=system:nodes`` posted as a certificates.k8s.io/v1 CertificateSigningRequest with signer
``kubernetes.io/kube-apiserver-client-kubelet`` and usages digital signature + client auth (+ key
encipherment for an RSA key), named ``node-csr-<digest>`` so the same request gets the same name; then
wait until the CSR is approved and signed. The symlink is relative (a node root is not ``/``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kubeboot.config import constants as c
from kubeboot.sandbox.kubelet import certstore, kubeclient
from kubeboot.sandbox.kubelet.layout import node_path
from kubeboot.tasks import goyaml
from kubeboot.tasks.fsutil import atomic_write
from kubeboot.tasks.kubeconfig import KubeconfigError, parse

log = logging.getLogger("kubeboot.sandbox.kubelet")

SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
NODES_GROUP = "system:nodes"
BOOTSTRAP_CONF = f"{c.KUBERNETES_DIR}/{c.BOOTSTRAP_KUBELET_CONF}"
KUBELET_CONF = f"{c.KUBERNETES_DIR}/{c.KUBELET_CONF}"
PENDING_KEY = f"{c.KUBELET_PKI_DIR}/kubelet-client.key.tmp"
WATCH_SECONDS = 5  # the longest one watch of a CSR lasts before it is read and watched again

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def csr_pem(key: PrivateKey, node_name: str) -> bytes:
    """The PEM ``CERTIFICATE REQUEST`` the kubelet makes: O=system:nodes, CN=system:node:<node>."""
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODES_GROUP),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def usages(key: PrivateKey) -> list[str]:
    # The kubelet: key encipherment only where the key can encipher (RSA); ECDSA keys only sign.
    return ["digital signature", "key encipherment", "client auth"] if isinstance(key, rsa.RSAPrivateKey) \
        else ["digital signature", "client auth"]


def csr_name(key: PrivateKey, node_name: str) -> str:
    """``node-csr-<digest>`` of the public key, subject and usages: a retry asks under the same name."""
    h = hashlib.sha512()
    h.update(key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    h.update(f"O={NODES_GROUP},CN=system:node:{node_name}".encode())
    for usage in usages(key):
        h.update(usage.encode())
    return "node-csr-" + base64.urlsafe_b64encode(h.digest()).decode().rstrip("=")


def csr_object(key: PrivateKey, node_name: str) -> dict[str, Any]:
    """The CertificateSigningRequest the kubelet posts."""
    return {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": csr_name(key, node_name)},
        "spec": {"request": base64.b64encode(csr_pem(key, node_name)).decode(), "signerName": SIGNER,
                 "usages": usages(key)},
    }


def kubelet_kubeconfig(server: str, ca_data: bytes, pem_path: str) -> dict[str, Any]:
    """The kubeconfig the kubelet writes after bootstrapping (names as in writeKubeconfigFromBootstrapping)."""
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "default-cluster", "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca_data).decode()}}],
        "contexts": [{"name": "default-context", "context": {
            "cluster": "default-cluster", "namespace": "default", "user": "default-auth"}}],
        "current-context": "default-context",
        "users": [{"name": "default-auth", "user": {"client-certificate": pem_path, "client-key": pem_path}}],
    }


def _pending_key(root: Path) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    path = node_path(root, PENDING_KEY)
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(loaded, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            return loaded
    except (FileNotFoundError, ValueError):
        pass
    key = ec.generate_private_key(ec.SECP256R1())
    atomic_write(path, certstore.key_pem(key), 0o600, dir_mode=0o700)  # 0600 from the start, never half-written
    return key


def issued(csr: dict[str, Any]) -> bytes | None:
    """The certificate of a CSR (raw JSON) once issued; a denied or failed request is an error."""
    name = (csr.get("metadata") or {}).get("name", "")
    status = csr.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Denied", "Failed") and cond.get("status") == "True":
            raise RuntimeError(f"certificate signing request {name} {cond['type'].lower()}: {cond.get('message', '')}")
    return base64.b64decode(status["certificate"]) if status.get("certificate") else None


def signed_certificate(api: client.CertificatesV1Api, name: str, stop: threading.Event,
                       timeout: float | None = None) -> bytes | None:
    """Wait until the CSR ``name`` has its certificate (PEM); None when stopped meanwhile. A denied or
    failed request, or none issued within ``timeout`` seconds, is an error.

    As the kubelet's csr.WaitForCertificate: a read, then a watch of that one CSR (field selector on its
    name) from the version read. Each watch asks at most ``WATCH_SECONDS``, so a stop or the deadline is
    noticed; the next round reads again (a 410 or a broken stream costs one read)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not stop.is_set():
        # Raw JSON, not the client's models: only the fields read here must be there.
        csr = json.loads(api.read_certificate_signing_request(name, _preload_content=False).data)
        cert = issued(csr)
        if cert is not None:
            return cert
        left = WATCH_SECONDS if deadline is None else min(WATCH_SECONDS, deadline - time.monotonic())
        if left <= 0:
            raise TimeoutError(f"certificate signing request {name} not issued within {timeout:.0f}s")
        cert = _watch_for_certificate(api, name, csr["metadata"]["resourceVersion"], max(1, int(left)), stop)
        if cert is not None:
            return cert
    return None


def _watch_for_certificate(api: client.CertificatesV1Api, name: str, version: str, seconds: int,
                           stop: threading.Event) -> bytes | None:
    stream = watch.Watch()
    try:
        for event in stream.stream(api.list_certificate_signing_request, field_selector=f"metadata.name={name}",
                                   resource_version=version, timeout_seconds=seconds):
            if stop.is_set():
                return None
            if event.get("type") in ("ADDED", "MODIFIED"):
                cert = issued(event["raw_object"])
                if cert is not None:
                    return cert
    except ApiException as e:
        if e.status != 410:  # expired: read again
            raise
    finally:
        stream.stop()
    return None


def bootstrap(root: Path, node_name: str, address: str, stop: threading.Event) -> bool:
    """Run the TLS bootstrap once; True when ``kubelet.conf`` has been written."""
    boot = parse(node_path(root, BOOTSTRAP_CONF).read_text())
    key = _pending_key(root)
    body = csr_object(key, node_name)
    with kubeclient.api_client(root, BOOTSTRAP_CONF, address) as api_client:
        api = client.CertificatesV1Api(api_client)
        try:
            api.create_certificate_signing_request(body, _preload_content=False)
            log.info("posted certificate signing request %s for system:node:%s", body["metadata"]["name"], node_name)
        except ApiException as e:
            if e.status != 409:  # AlreadyExists: our own earlier request (same key, same name)
                raise
        cert = signed_certificate(api, body["metadata"]["name"], stop)
    if cert is None:
        return False
    _write_credentials(root, boot.server, boot.ca_data, cert, key)
    log.info("TLS bootstrap done: wrote %s and %s", c.KUBELET_CLIENT_CURRENT_PEM, KUBELET_CONF)
    return True


def _write_credentials(root: Path, server: str, ca_data: bytes, cert: bytes, key: PrivateKey) -> None:
    certstore.update(root, cert, certstore.key_pem(key))
    conf = kubelet_kubeconfig(server, ca_data, c.KUBELET_CLIENT_CURRENT_PEM)
    atomic_write(node_path(root, KUBELET_CONF), goyaml.dump(conf).encode(), 0o600)
    node_path(root, PENDING_KEY).unlink(missing_ok=True)


def wait_and_bootstrap(root: Path, node_name: str, address: str, stop: threading.Event) -> bool:
    """Bootstrap when only ``bootstrap-kubelet.conf`` exists; True once ``kubelet.conf`` exists."""
    if node_path(root, KUBELET_CONF).exists():
        return True
    if not node_path(root, BOOTSTRAP_CONF).exists():
        return False
    try:
        return bootstrap(root, node_name, address, stop)
    except KubeconfigError as e:
        raise RuntimeError(f"{BOOTSTRAP_CONF}: {e}") from None

