"""The certs phase converges: re-runs change nothing, half-written state is completed, foreign state is refused."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import certlist, pki
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import certs
from kubeboot.tasks.phases.context import NodeContext

V4 = "kubeadm.k8s.io/v1beta4"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
PKI = "etc/kubernetes/pki"
MARKER = "var/lib/kubeboot/node.json"


def make_cfg(cluster: dict[str, Any] | None = None) -> InitConfig:
    return build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp-1"},
         "localAPIEndpoint": {"advertiseAddress": "192.168.0.10"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256",
         "clusterName": "prod-eu", **(cluster or {})},
    ])


def run_all(root: Path, cfg: InitConfig | None = None, now: datetime = NOW) -> list[str]:
    cfg = cfg or make_cfg()
    lines: list[str] = []
    ctx = NodeContext(cfg, NodeFS(root), out=lines.append, now=now)
    certs.run_certs(ctx)
    for r in certlist.cert_table(cfg):
        certs.run_cert(ctx, r.name)
    certs.run_sa(ctx)
    return lines


def run_one(root: Path, name: str, cfg: InitConfig | None = None, now: datetime = NOW) -> list[str]:
    lines: list[str] = []
    ctx = NodeContext(cfg or make_cfg(), NodeFS(root), out=lines.append, now=now)
    certs.run_cert(ctx, name)
    return lines


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under the node root: (bytes, st_mtime_ns)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def changed(before: dict[str, tuple[bytes, int]], after: dict[str, tuple[bytes, int]]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def cert(root: Path, base: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((root / PKI / f"{base}.crt").read_bytes())


def pki_file(base: str) -> set[str]:
    return {f"{PKI}/{base}.crt", f"{PKI}/{base}.key"}


@pytest.fixture
def node(tmp_path: Path) -> Path:
    run_all(tmp_path)
    return tmp_path


# --- re-runs ----------------------------------------------------------------------------------------


def test_running_the_whole_phase_twice_changes_no_byte_and_no_mtime(node: Path) -> None:
    before = snapshot(node)
    lines = run_all(node, now=NOW + timedelta(minutes=3))
    assert changed(before, snapshot(node)) == set()
    assert not [line for line in lines if "Generating" in line]
    assert "[certs] Using existing ca certificate authority" in lines
    assert "[certs] Using existing etcd/server certificate and key on disk" in lines
    assert '[certs] Using the existing "sa" key' in lines
    assert len(before) == 23  # 10 pairs, sa.key, sa.pub, the node marker


def test_files_have_kubeadms_modes(node: Path) -> None:
    def mode(rel: str) -> int:
        return stat.S_IMODE(os.stat(node / rel).st_mode)

    for r in certlist.CERTS:
        assert mode(f"{PKI}/{r.base_name}.key") == 0o600, r.base_name
        assert mode(f"{PKI}/{r.base_name}.crt") == 0o644, r.base_name
    assert (mode(f"{PKI}/sa.key"), mode(f"{PKI}/sa.pub")) == (0o600, 0o600)  # keyutil.WriteKey writes both
    assert (mode(PKI), mode(f"{PKI}/etcd")) == (0o755, 0o755)
    assert (mode(MARKER), mode("var/lib/kubeboot")) == (0o600, 0o700)


# --- half-written state ----------------------------------------------------------------------------


def test_a_deleted_leaf_is_the_only_file_generated_again(node: Path) -> None:
    (node / PKI / "apiserver.crt").unlink()
    before = snapshot(node)
    lines = run_all(node)
    assert changed(before, snapshot(node)) == pki_file("apiserver")
    assert [line for line in lines if "Generating" in line] == ['[certs] Generating "apiserver" certificate and key']
    cert(node, "apiserver").verify_directly_issued_by(cert(node, "ca"))


def test_a_corrupt_certificate_is_generated_again(node: Path) -> None:
    (node / PKI / "front-proxy-client.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n")
    before = snapshot(node)
    lines = run_all(node)
    assert changed(before, snapshot(node)) == pki_file("front-proxy-client")
    assert '[certs] Generating "front-proxy-client" certificate and key' in lines
    cert(node, "front-proxy-client").verify_directly_issued_by(cert(node, "front-proxy-ca"))


def test_a_key_that_no_longer_matches_its_certificate_is_replaced_with_a_new_pair(node: Path) -> None:
    # What a crash between writing the new key and the new certificate leaves behind.
    (node / PKI / "etcd/peer.key").write_bytes(pki.key_to_pem(pki.generate_key("ECDSA-P256")))
    lines = run_one(node, "etcd-peer")
    assert lines[0] == "[certs] Existing etcd/peer certificate does not match its private key: generating it again"
    key = pki.load_key((node / PKI / "etcd/peer.key").read_bytes())
    assert pki.key_matches_cert(key, cert(node, "etcd/peer"))


def test_an_expired_leaf_is_generated_again_under_the_same_ca(node: Path) -> None:
    ca_before = cert(node, "ca")
    later = NOW + timedelta(days=400)  # past the 1-year leaf validity, inside the 10-year CA's
    lines = run_one(node, "apiserver-kubelet-client", now=later)
    assert lines[0].startswith("[certs] Existing apiserver-kubelet-client certificate is not usable now "
                               "(the certificate has expired")
    assert cert(node, "apiserver-kubelet-client").not_valid_before_utc == later - timedelta(minutes=5)
    assert cert(node, "ca") == ca_before


def test_a_ca_key_left_without_its_certificate_gets_its_certificate_back_with_the_same_hash(tmp_path: Path) -> None:
    run_one(tmp_path, "ca")
    marker_before = (tmp_path / MARKER).read_bytes()
    (tmp_path / PKI / "ca.crt").unlink()
    lines = run_one(tmp_path, "ca")
    assert lines == ['[certs] Generating "ca" certificate for the existing key ca.key']
    assert (tmp_path / MARKER).read_bytes() == marker_before


# --- config changes ----------------------------------------------------------------------------------


def test_a_new_cert_san_regenerates_only_the_apiserver_certificate(node: Path) -> None:
    before = snapshot(node)
    lines = run_all(node, make_cfg({"apiServer": {"certSANs": ["new.example.com", "10.9.9.9"]}}))
    assert changed(before, snapshot(node)) == pki_file("apiserver")
    assert ("[certs] Existing apiserver certificate is not valid for DNS names [new.example.com] and IPs [10.9.9.9]: "
            "generating it again") in lines
    names = cert(node, "apiserver").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "new.example.com" in names.get_values_for_type(x509.DNSName)


def test_an_existing_key_of_another_algorithm_is_kept(node: Path) -> None:
    before = snapshot(node)
    lines = run_all(node, make_cfg({"encryptionAlgorithm": "RSA-2048"}))
    assert changed(before, snapshot(node)) == set()
    assert not [line for line in lines if "Generating" in line]


# --- what kubeboot refuses, like kubeadm -------------------------------------------------------------


def test_a_leaf_signed_by_another_ca_is_refused_and_left_alone(node: Path) -> None:
    foreign_key = pki.generate_key("ECDSA-P256")
    foreign = pki.build_certificate(pki.CertSpec("kubernetes", is_ca=True), foreign_key.public_key(), foreign_key,
                                    None, NOW)
    leaf_key = pki.generate_key("ECDSA-P256")
    leaf = pki.build_certificate(certlist.row("apiserver").spec(make_cfg()), leaf_key.public_key(), foreign_key,
                                 foreign, NOW)
    (node / PKI / "apiserver.crt").write_bytes(pki.cert_to_pem(leaf))
    (node / PKI / "apiserver.key").write_bytes(pki.key_to_pem(leaf_key))
    before = snapshot(node)
    with pytest.raises(PermanentError, match=r"^certificate apiserver not signed by CA certificate ca: x509: "):
        run_one(node, "apiserver")
    assert changed(before, snapshot(node)) == set()


def test_a_deleted_ca_is_minted_again_but_its_old_leaves_are_refused(node: Path) -> None:
    (node / PKI / "ca.crt").unlink()
    (node / PKI / "ca.key").unlink()
    assert run_one(node, "ca") == ['[certs] Generating "ca" certificate and key']
    with pytest.raises(PermanentError, match="certificate apiserver not signed by CA certificate ca"):
        run_one(node, "apiserver")


def test_a_leaf_without_its_ca_cannot_be_issued(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match=r"couldn't load CA certificate etcd-ca: couldn't load etcd/ca "
                                             r"certificate authority from /etc/kubernetes/pki"):
        run_one(tmp_path, "etcd-server")
    assert not (tmp_path / PKI / "etcd/server.crt").exists()


def test_a_ca_file_that_is_not_a_ca_is_refused(node: Path) -> None:
    (node / PKI / "front-proxy-ca.crt").write_bytes((node / PKI / "front-proxy-client.crt").read_bytes())
    with pytest.raises(PermanentError, match="certificate front-proxy-ca is not a CA"):
        run_one(node, "front-proxy-ca")


# --- external CA mode ---------------------------------------------------------------------------------


def test_without_the_ca_key_existing_leaves_are_used_and_nothing_is_minted(node: Path) -> None:
    (node / PKI / "ca.key").unlink()
    before = snapshot(node)
    lines = run_all(node)
    assert changed(before, snapshot(node)) == set()
    assert "[certs] Using existing ca keyless certificate authority" in lines
    assert "[certs] Using existing apiserver certificate and key on disk" in lines
    assert not [line for line in lines if "Generating" in line]


def test_without_the_ca_key_a_missing_leaf_is_an_error_naming_it(node: Path) -> None:
    (node / PKI / "ca.key").unlink()
    (node / PKI / "apiserver-kubelet-client.crt").unlink()
    message = ("invalid or incomplete external CA: failure loading certificate for API server kubelet client: "
               "couldn't load the certificate file /etc/kubernetes/pki/apiserver-kubelet-client.crt: no such file")
    with pytest.raises(PermanentError) as e:
        run_one(node, "ca")
    assert str(e.value) == message
    with pytest.raises(PermanentError, match="invalid or incomplete external CA: failure loading certificate"):
        run_one(node, "apiserver-kubelet-client")


def test_without_the_ca_key_a_missing_san_is_a_warning_not_a_new_certificate(node: Path) -> None:
    (node / PKI / "ca.key").unlink()
    before = snapshot(node)
    lines = run_one(node, "apiserver", make_cfg({"apiServer": {"certSANs": ["new.example.com"]}}))
    assert changed(before, snapshot(node)) == set()
    assert lines == [
        "[certs] WARNING: existing apiserver certificate is not valid for DNS names [new.example.com] and IPs []; "
        "keeping it (external CA mode)",
        "[certs] Using existing apiserver certificate and key on disk",
    ]


def test_without_the_ca_key_a_leaf_whose_key_does_not_match_is_an_error(node: Path) -> None:
    (node / PKI / "ca.key").unlink()
    (node / PKI / "apiserver.key").write_bytes(pki.key_to_pem(pki.generate_key("ECDSA-P256")))
    with pytest.raises(PermanentError, match="invalid or incomplete external CA: certificate apiserver does not match"):
        run_one(node, "apiserver")


# --- external etcd -------------------------------------------------------------------------------------


def test_with_external_etcd_the_etcd_sub_phases_skip_like_kubeadm(tmp_path: Path) -> None:
    cfg = make_cfg({"etcd": {"external": {"endpoints": ["https://10.0.0.9:2379"]}}})
    assert run_one(tmp_path, "etcd-ca", cfg) == [
        "[certs] External etcd mode: Skipping etcd/ca certificate authority generation"]
    assert run_one(tmp_path, "apiserver-etcd-client", cfg) == [
        "[certs] External etcd mode: Skipping apiserver-etcd-client certificate generation"]
    assert not (tmp_path / PKI).exists()


# --- sa key ------------------------------------------------------------------------------------------


def test_sa_pub_is_the_pkix_public_half_of_sa_key(node: Path) -> None:
    pub_pem = (node / PKI / "sa.pub").read_bytes()
    assert pub_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    key = pki.load_key((node / PKI / "sa.key").read_bytes())
    assert pki.public_key_der(pki.load_public_key(pub_pem)) == pki.public_key_der(key.public_key())


def test_a_missing_sa_pub_is_derived_again_from_the_existing_sa_key(node: Path) -> None:
    key_before = (node / PKI / "sa.key").read_bytes()
    pub_before = (node / PKI / "sa.pub").read_bytes()
    (node / PKI / "sa.pub").unlink()
    lines: list[str] = []
    certs.run_sa(NodeContext(make_cfg(), NodeFS(node), out=lines.append, now=NOW))
    assert lines == ['[certs] Using the existing "sa" key']
    assert ((node / PKI / "sa.key").read_bytes(), (node / PKI / "sa.pub").read_bytes()) == (key_before, pub_before)


# --- node marker and key prefetch -------------------------------------------------------------------


def test_the_node_marker_names_cluster_node_and_ca_hash(node: Path) -> None:
    assert certs.read_node_marker(NodeFS(node)) == {
        "clusterName": "prod-eu", "node": "cp-1", "caCertHash": pki.ca_cert_hash(cert(node, "ca"))}


@pytest.mark.parametrize("content", [None, b"{not json", b"[1, 2]"], ids=["missing", "not JSON", "not an object"])
def test_an_unreadable_node_marker_reads_as_none(tmp_path: Path, content: bytes | None) -> None:
    if content is not None:
        (tmp_path / MARKER).parent.mkdir(parents=True)
        (tmp_path / MARKER).write_bytes(content)
    assert certs.read_node_marker(NodeFS(tmp_path)) is None


def test_the_parent_phase_generates_ahead_only_the_keys_that_are_missing(node: Path) -> None:
    (node / PKI / "etcd/healthcheck-client.key").unlink()
    (node / PKI / "sa.key").unlink()
    (node / PKI / "sa.pub").unlink()
    ctx = NodeContext(make_cfg(), NodeFS(node), out=lambda _: None, now=NOW)
    certs.run_certs(ctx)
    alg, futures = ctx.scratch[certs.SCRATCH_KEYS]
    assert (alg, sorted(futures)) == ("ECDSA-P256", ["etcd/healthcheck-client", "sa"])
    for r in certlist.cert_table(ctx.cfg):
        certs.run_cert(ctx, r.name)
    certs.run_sa(ctx)
    assert futures == {}  # every key generated ahead was used


def test_the_parent_phase_prepares_no_key_for_a_keyless_ca_or_its_leaves(node: Path) -> None:
    (node / PKI / "front-proxy-ca.key").unlink()
    (node / PKI / "front-proxy-client.key").unlink()
    (node / PKI / "etcd/ca.crt").unlink()
    (node / PKI / "etcd/peer.crt").unlink()
    (node / PKI / "apiserver.crt").unlink()
    ctx = NodeContext(make_cfg(), NodeFS(node), out=lambda _: None, now=NOW)
    certs.run_certs(ctx)
    # etcd/ca.key survives alone and is reused; front-proxy-client cannot be signed without its CA key.
    assert sorted(ctx.scratch[certs.SCRATCH_KEYS][1]) == ["apiserver", "etcd/peer"]
