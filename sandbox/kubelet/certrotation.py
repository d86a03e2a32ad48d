"""The kubelet's client certificate manager: rotation of its client certificate after start-up.

As the kubelet with ``rotateCertificates: true`` (kubeadm sets it): pkg/kubelet/certificate/kubelet.go
``NewKubeletClientCertificateManager`` over client-go's util/certificate manager.

Reads: ``/etc/kubernetes/kubelet.conf`` (server, CA, and on an init node the embedded client certificate
and key kubeadm wrote), the store's ``kubelet-client-current.pem`` (``certstore``).
Writes: the store (``kubelet-client-<ts>.pem`` + the current link); certificates.k8s.io/v1
CertificateSigningRequests through the API server, authenticated with the current certificate.

At start (getCurrentCertificateOrBootstrap):
- the store holds a valid pair: it is the current one; rotation is due at a random 70-90 % of its
  lifetime (nextRotationDeadline);
- otherwise kubelet.conf's embedded pair (kubeadm's init node: "a higher privileged certificate as initial
  data that will then be rotated immediately") is written to the store as the current pair, and
  rotated at once. That is what gives ``kubelet-finalize`` its work: ``kubelet-client-current.pem``
  exists from the kubelet's start;
- neither: nothing to manage yet (a joining node gets its pair from the TLS bootstrap, ``tlsbootstrap``).

A rotation: a new ECDSA P-256 key, a CSR ``CN=system:node:<node>, O=system:nodes`` posted with
``generateName: csr-``, signer ``kubernetes.io/kube-apiserver-client-kubelet``, usages digital signature
and client auth, as ``system:node:<node>`` itself, so the controller manager's approver recognizes a
self node client request (``selfnodeclient``, which kubeadm's ClusterRoleBinding
``kubeadm:node-autoapprove-certificate-rotation`` grants to ``system:nodes``). The key lives in memory
only, as the real manager's: a kubelet restarted meanwhile keeps its current pair and rotates at that
pair's deadline. A failed attempt is retried with a doubling backoff.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from kubeboot.config import constants as c
from kubeboot.sandbox.kubelet import certstore, kubeclient, tlsbootstrap
from kubeboot.sandbox.kubelet.layout import node_path
from kubeboot.tasks.kubeconfig import KubeconfigError, parse

log = logging.getLogger("kubeboot.sandbox.kubelet")

KUBELET_CONF = f"{c.KUBERNETES_DIR}/{c.KUBELET_CONF}"
WAIT_SECONDS = 1.0  # for kubelet.conf to appear
CERTIFICATE_WAIT = 15 * 60.0  # client-go's certificateWaitTimeout for one CSR
RETRY_FIRST, RETRY_MAX = 2.0, 32.0  # client-go: 2, 4, 8, 16 s, then every 32 s


def rotation_deadline(pair: certstore.Pair, rand: Callable[[], float] = random.random) -> datetime:
    """nextRotationDeadline: between 70 % and 90 % of the certificate's lifetime."""
    start, end = pair.cert.not_valid_before_utc, pair.cert.not_valid_after_utc
    return start + (end - start) * (0.7 + 0.2 * rand())


def seed_from_kubeconfig(root: Path) -> certstore.Pair | None:
    """kubelet.conf's embedded pair, written to the store as current; None when it has none."""
    try:
        conf = parse(node_path(root, KUBELET_CONF).read_text())
    except (OSError, KubeconfigError):
        return None
    if not conf.client_cert_data or not conf.client_key_data:
        return None
    try:
        pair = certstore.load_pair(conf.client_cert_data, conf.client_key_data)
    except ValueError:
        return None
    path = certstore.update(root, pair.cert_pem, pair.key_pem)
    log.info("client certificate from %s written to %s (kubeadm's initial pair, rotated at once)", KUBELET_CONF,
             path.name)
    return pair


class ClientCertificateManager:
    def __init__(self, root: Path, node_name: str, address: str,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.root, self.node_name, self.address, self.now = root, node_name, address, now

    def start(self) -> datetime | None:
        """The first rotation deadline (now when the pair must be rotated at once); None: no pair yet."""
        pair = certstore.current(self.root)
        if certstore.valid(pair, self.now()):
            assert pair is not None
            deadline = rotation_deadline(pair)
            log.info("Certificate expiration is %s, rotation deadline is %s", pair.cert.not_valid_after_utc,
                     deadline)
            return deadline
        return self.now() if seed_from_kubeconfig(self.root) is not None else None

    def rotate(self, stop: threading.Event) -> bool:
        """One rotation: True once a new pair is in the store; False when stopped meanwhile."""
        log.info("Rotating certificates")
        key = ec.generate_private_key(ec.SECP256R1())
        body = tlsbootstrap.csr_object(key, self.node_name)
        body["metadata"] = {"generateName": "csr-"}
        from kubernetes import client

        with kubeclient.api_client(self.root, KUBELET_CONF, self.address,
                                   client_pem=c.KUBELET_CLIENT_CURRENT_PEM) as api_client:
            api = client.CertificatesV1Api(api_client)
            created = json.loads(api.create_certificate_signing_request(body, _preload_content=False).data)
            name = str(created["metadata"]["name"])
            log.info("posted certificate signing request %s for system:node:%s (rotation)", name, self.node_name)
            cert = tlsbootstrap.signed_certificate(api, name, stop, timeout=CERTIFICATE_WAIT)
        if cert is None:
            return False
        path = certstore.update(self.root, cert, certstore.key_pem(key))
        log.info("Certificate rotation: wrote %s, %s points to it", path.name, certstore.current_path(self.root).name)
        return True

    def run(self, stop: threading.Event) -> None:
        deadline = None
        while deadline is None:
            deadline = self.start()
            if deadline is None and stop.wait(WAIT_SECONDS):
                return
        delay = RETRY_FIRST
        while not stop.is_set():
            wait = (deadline - self.now()).total_seconds()
            if wait > 0:
                stop.wait(min(wait, 3600.0))
                continue
            try:
                if not self.rotate(stop):
                    return
            except Exception as e:  # an API server not answering, a denied CSR: try again later
                log.info("certificate rotation failed (will retry in %.0fs): %s", delay,
                         f"{type(e).__name__}: {e}".splitlines()[0][:300])
                deadline, delay = self.now() + timedelta(seconds=delay), min(RETRY_MAX, delay * 2)
                continue
            pair = certstore.current(self.root)
            assert pair is not None
            deadline, delay = rotation_deadline(pair), RETRY_FIRST
            log.info("Certificate expiration is %s, rotation deadline is %s", pair.cert.not_valid_after_utc,
                     deadline)


def start(root: Path, node_name: str, address: str, stop: threading.Event) -> threading.Thread:
    """The certificate manager in its own thread."""
    manager = ClientCertificateManager(root, node_name, address)
    log.info("Client rotation is on, will bootstrap in background")
    thread = threading.Thread(target=manager.run, args=(stop,), name="client-cert-rotation", daemon=True)
    thread.start()
    return thread
