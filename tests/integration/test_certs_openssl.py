"""The certs phase's output, checked by the real ``openssl`` binary rather than by our own library."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kubeboot.config.loader import build_init_config
from kubeboot.tasks import certlist, pki
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import certs
from kubeboot.tasks.phases.context import NodeContext

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def openssl_binary() -> None:
    """openssl is the independent verifier here: a machine without it fails these tests, never skips them."""
    if shutil.which("openssl") is None:
        pytest.fail("these tests verify the chain with the openssl binary, which is not on PATH: install openssl")

V4 = "kubeadm.k8s.io/v1beta4"
PKI = "etc/kubernetes/pki"


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module", params=["RSA-2048", "ECDSA-P384"])
def pki_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full certs phase run at the real current time (openssl checks validity against the clock)."""
    cfg = build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp-1"},
         "localAPIEndpoint": {"advertiseAddress": "192.168.0.10"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": request.param,
         "controlPlaneEndpoint": "lb.example.com:6443"},
    ])
    root = tmp_path_factory.mktemp(request.param)
    ctx = NodeContext(cfg, NodeFS(root), out=lambda _: None)
    certs.run_certs(ctx)
    for r in certlist.cert_table(cfg):
        certs.run_cert(ctx, r.name)
    certs.run_sa(ctx)
    return root / PKI


def purpose(r: certlist.CertRow) -> str:
    return "sslserver" if r.usages and r.usages[0] == pki.SERVER_AUTH else "sslclient"


@pytest.mark.parametrize("r", certlist.CERTS, ids=[r.name for r in certlist.CERTS])
def test_openssl_verifies_each_certificate_against_its_ca_strictly(r: certlist.CertRow, pki_dir: Path) -> None:
    ca = r if r.ca is None else certlist.row(r.ca)
    args = ["verify", "-x509_strict", "-CAfile", str(pki_dir / f"{ca.base_name}.crt")]
    if r.ca is not None:
        args += ["-purpose", purpose(r)]
    done = openssl(*args, str(pki_dir / f"{r.base_name}.crt"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith(": OK")


@pytest.mark.parametrize("r", certlist.CERTS, ids=[r.name for r in certlist.CERTS])
def test_openssl_reads_each_key_and_finds_it_matches_its_certificate(r: certlist.CertRow, pki_dir: Path) -> None:
    from_key = openssl("pkey", "-in", str(pki_dir / f"{r.base_name}.key"), "-pubout")
    from_cert = openssl("x509", "-in", str(pki_dir / f"{r.base_name}.crt"), "-noout", "-pubkey")
    assert from_key.returncode == 0, from_key.stderr
    assert from_key.stdout == from_cert.stdout


@pytest.mark.parametrize("flag,name", [("-verify_hostname", "lb.example.com"),
                                       ("-verify_hostname", "kubernetes.default.svc.cluster.local"),
                                       ("-verify_ip", "10.96.0.1"), ("-verify_ip", "192.168.0.10")])
def test_openssl_accepts_the_apiserver_certificate_for_its_names(flag: str, name: str, pki_dir: Path) -> None:
    done = openssl("verify", "-CAfile", str(pki_dir / "ca.crt"), flag, name, str(pki_dir / "apiserver.crt"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_openssl_rejects_a_certificate_checked_against_the_wrong_ca(pki_dir: Path) -> None:
    done = openssl("verify", "-CAfile", str(pki_dir / "etcd/ca.crt"), str(pki_dir / "apiserver.crt"))
    assert done.returncode != 0


def test_openssl_reads_sa_pub_as_the_public_half_of_sa_key(pki_dir: Path) -> None:
    derived = openssl("pkey", "-in", str(pki_dir / "sa.key"), "-pubout")
    assert derived.returncode == 0, derived.stderr
    assert derived.stdout == (pki_dir / "sa.pub").read_text()
