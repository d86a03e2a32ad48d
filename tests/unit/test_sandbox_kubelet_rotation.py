"""The sandbox kubelet's client certificate store and the start of its certificate manager: what is current,
what kubeadm's embedded pair becomes on an init node, when the next rotation is due."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from kubeboot.sandbox.kubelet import certstore
from kubeboot.sandbox.kubelet.certrotation import ClientCertificateManager, rotation_deadline
from kubeboot.sandbox.kubelet.kubeclient import with_client_pem
from kubeboot.tasks import pki

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
PKI = "var/lib/kubelet/pki"


def pair(node: str = "cp1", *, start: datetime = NOW, days: float = 365) -> tuple[bytes, bytes]:
    ca_key = pki.generate_key("ECDSA-P256")
    ca = pki.build_certificate(pki.CertSpec("kubernetes", is_ca=True), ca_key.public_key(), ca_key, None, start)
    key = pki.generate_key("ECDSA-P256")
    spec = pki.CertSpec(f"system:node:{node}", ("system:nodes",), usages=(pki.CLIENT_AUTH,),
                        validity_seconds=days * 86400)
    cert = pki.build_certificate(spec, key.public_key(), ca_key, ca, start)
    return pki.cert_to_pem(cert), pki.key_to_pem(key)


def kubelet_conf(root: Path, cert_pem: bytes | None, key_pem: bytes | None) -> None:
    user = {"client-certificate-data": base64.b64encode(cert_pem).decode(),
            "client-key-data": base64.b64encode(key_pem).decode()} if cert_pem and key_pem else \
        {"client-certificate": "/var/lib/kubelet/pki/kubelet-client-current.pem",
         "client-key": "/var/lib/kubelet/pki/kubelet-client-current.pem"}
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "system:node:cp1@kubernetes",
           "clusters": [{"name": "kubernetes", "cluster": {"server": "https://127.77.0.1:6443",
                                                           "certificate-authority-data": "Q0E="}}],
           "contexts": [{"name": "system:node:cp1@kubernetes",
                         "context": {"cluster": "kubernetes", "user": "system:node:cp1"}}],
           "users": [{"name": "system:node:cp1", "user": user}]}
    path = root / "etc/kubernetes/kubelet.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))


def test_an_update_writes_a_timestamped_pem_and_moves_the_relative_current_link(tmp_path: Path) -> None:
    cert_pem, key_pem = pair()
    first = certstore.update(tmp_path, cert_pem, key_pem, NOW)
    assert first == tmp_path / PKI / "kubelet-client-2026-12-01-12-00-00.pem"
    assert first.read_bytes() == cert_pem.rstrip(b"\n") + b"\n" + key_pem
    assert first.stat().st_mode & 0o777 == 0o600
    second_cert, second_key = pair()
    second = certstore.update(tmp_path, second_cert, second_key, NOW + timedelta(seconds=3))
    link = tmp_path / PKI / "kubelet-client-current.pem"
    assert link.is_symlink() and str(link.readlink()) == second.name  # relative: the root is not /
    assert first.exists()  # the earlier pair stays, as the FileStore leaves it
    current = certstore.current(tmp_path)
    assert current is not None and current.cert_pem.strip() == second_cert.strip()


def test_a_current_file_that_does_not_load_is_no_current_pair(tmp_path: Path) -> None:
    link = tmp_path / PKI / "kubelet-client-current.pem"
    link.parent.mkdir(parents=True)
    assert certstore.current(tmp_path) is None
    cert_pem, _ = pair()
    _, other_key = pair()
    link.write_bytes(cert_pem + other_key)  # a key of another certificate
    assert certstore.current(tmp_path) is None


def test_on_an_init_node_kubeadms_embedded_pair_becomes_current_and_is_rotated_at_once(tmp_path: Path) -> None:
    cert_pem, key_pem = pair()
    kubelet_conf(tmp_path, cert_pem, key_pem)
    manager = ClientCertificateManager(tmp_path, "cp1", "127.77.0.1", now=lambda: NOW + timedelta(hours=1))
    assert manager.start() == NOW + timedelta(hours=1)  # due now
    current = certstore.current(tmp_path)
    assert current is not None and current.cert_pem == cert_pem and current.key_pem == key_pem
    assert len(list((tmp_path / PKI).glob("kubelet-client-2*.pem"))) == 1


def test_a_valid_current_pair_is_kept_and_rotated_at_70_to_90_percent_of_its_lifetime(tmp_path: Path) -> None:
    certstore.update(tmp_path, *pair(start=NOW, days=100), NOW)
    kubelet_conf(tmp_path, *pair())  # ignored: the store's pair wins
    manager = ClientCertificateManager(tmp_path, "cp1", "127.77.0.1", now=lambda: NOW + timedelta(days=1))
    deadline = manager.start()
    assert deadline is not None
    start = NOW - timedelta(seconds=pki.CERTIFICATE_BACKDATE_SECONDS)
    lifetime = timedelta(days=100, seconds=pki.CERTIFICATE_BACKDATE_SECONDS)
    assert start + lifetime * 0.7 <= deadline <= start + lifetime * 0.9
    assert len(list((tmp_path / PKI).glob("kubelet-client-2*.pem"))) == 1  # nothing written


def test_an_expired_current_pair_falls_back_to_the_embedded_one(tmp_path: Path) -> None:
    certstore.update(tmp_path, *pair(start=NOW - timedelta(days=20), days=10), NOW - timedelta(days=20))
    kubelet_conf(tmp_path, *pair())
    manager = ClientCertificateManager(tmp_path, "cp1", "127.77.0.1", now=lambda: NOW)
    assert manager.start() == NOW


def test_no_pair_anywhere_means_nothing_to_manage_yet(tmp_path: Path) -> None:
    kubelet_conf(tmp_path, None, None)  # a joining node before its TLS bootstrap
    assert ClientCertificateManager(tmp_path, "w1", "127.77.0.2", now=lambda: NOW).start() is None
    assert not (tmp_path / PKI).exists()


@pytest.mark.parametrize("rand", [0.0, 0.5, 1.0])
def test_the_rotation_deadline_is_between_70_and_90_percent(rand: float) -> None:
    current = certstore.load_pair(*pair(days=10))
    start, end = current.cert.not_valid_before_utc, current.cert.not_valid_after_utc
    assert rotation_deadline(current, lambda: rand) == start + (end - start) * (0.7 + 0.2 * rand)


def test_the_rotation_client_authenticates_with_the_current_pem() -> None:
    doc = {"current-context": "ctx", "contexts": [{"name": "ctx", "context": {"user": "node"}}],
           "users": [{"name": "node", "user": {"client-certificate-data": "x", "client-key-data": "y"}},
                     {"name": "other", "user": {"token": "t"}}]}
    out = with_client_pem(doc, "/var/lib/kubelet/pki/kubelet-client-current.pem")
    assert out["users"][0]["user"] == {"client-certificate": "/var/lib/kubelet/pki/kubelet-client-current.pem",
                                       "client-key": "/var/lib/kubelet/pki/kubelet-client-current.pem"}
    assert out["users"][1] == {"name": "other", "user": {"token": "t"}}
    assert doc["users"][0]["user"] == {"client-certificate-data": "x", "client-key-data": "y"}  # a copy
