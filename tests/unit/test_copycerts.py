"""The kubeadm-certs sealing: kubeadm's certificate key, its nonce || AES-256-GCM format checked by a
decryption written here from the spec alone, the files carried, and the reuse of still-valid values
(kubeadm-spec 2.9; kubeadm util/crypto and phases/copycerts)."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import certlist, copycerts
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import certs, uploadcerts
from kubeboot.tasks.phases.context import NodeContext

V4 = "kubeadm.k8s.io/v1beta4"
PKI = "/etc/kubernetes/pki"
KEY_HEX = "0f" * 32


def spec_decrypt(sealed: bytes, key_hex: str) -> bytes:
    """Independent of the code under test: nonce = first 12 bytes, then AES-256-GCM ciphertext whose
    last 16 bytes are the tag, no additional data, key = the hex-decoded certificate key."""
    key = bytes.fromhex(key_hex)
    assert len(key) == 32
    nonce, body = sealed[:12], sealed[12:]
    ciphertext, tag = body[:-16], body[-16:]
    dec = Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
    return dec.update(ciphertext) + dec.finalize()


def make_cfg(**cluster: object) -> InitConfig:
    return build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "localAPIEndpoint": {"advertiseAddress": "10.0.0.10"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256", **cluster}])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> NodeFS:
    """A node whose PKI was made by kubeboot's own certs phase."""
    fs = NodeFS(tmp_path_factory.mktemp("node"))
    cfg = make_cfg()
    ctx = NodeContext(cfg, fs, out=lambda _line: None)
    for row in certlist.cert_table(cfg):
        certs.run_cert(ctx, row.name)
    certs.run_sa(ctx)
    return fs


def test_a_certificate_key_is_32_random_bytes_in_lowercase_hex() -> None:
    keys = {copycerts.create_certificate_key() for _ in range(20)}
    assert len(keys) == 20
    assert all(re.fullmatch(r"[0-9a-f]{64}", k) for k in keys)


def test_a_sealed_value_is_a_12_byte_nonce_then_ciphertext_then_a_16_byte_tag() -> None:
    data = b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n"
    sealed = copycerts.encrypt_bytes(data, bytes.fromhex(KEY_HEX))
    assert len(sealed) == 12 + len(data) + 16
    assert spec_decrypt(sealed, KEY_HEX) == data


def test_each_sealing_uses_a_fresh_nonce() -> None:
    key = bytes.fromhex(KEY_HEX)
    first, second = (copycerts.encrypt_bytes(b"same", key) for _ in range(2))
    assert first[:12] != second[:12]


def test_the_spec_decryption_of_the_uploaded_data_yields_the_node_files_byte_for_byte(node: NodeFS) -> None:
    cfg = make_cfg()
    sealed = copycerts.seal_files(copycerts.read_files(node, cfg), bytes.fromhex(KEY_HEX))
    for name, path in copycerts.certs_to_transfer(cfg).items():
        original = node.read_bytes(path)
        assert original, path
        assert spec_decrypt(sealed[name], KEY_HEX) == original, name


def test_a_wrong_key_does_not_open_the_data(node: NodeFS) -> None:
    sealed = copycerts.seal_files(copycerts.read_files(node, make_cfg()), bytes.fromhex(KEY_HEX))
    wrong = "1e" * 32
    with pytest.raises(InvalidTag):
        spec_decrypt(sealed["ca.key"], wrong)
    with pytest.raises(copycerts.CertificateKeyError, match=r"^cipher: message authentication failed$"):
        copycerts.open_files(sealed, bytes.fromhex(wrong))


def test_the_code_opens_what_the_spec_describes() -> None:
    key = bytes.fromhex(KEY_HEX)
    nonce = bytes(range(12))
    enc = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    body = enc.update(b"sa.key contents") + enc.finalize()
    assert copycerts.decrypt_bytes(nonce + body + enc.tag, key) == b"sa.key contents"


@pytest.mark.parametrize("key_hex, message", [
    pytest.param("zz" * 32, "not hexadecimal", id="not hex"),
    pytest.param("ab" * 16, "16 bytes, want 32", id="AES-128 sized"),
])
def test_a_malformed_certificate_key_is_refused(key_hex: str, message: str) -> None:
    with pytest.raises(copycerts.CertificateKeyError, match=message):
        copycerts.decode_key(key_hex)


def test_data_shorter_than_a_nonce_is_refused_like_kubeadm() -> None:
    with pytest.raises(copycerts.CertificateKeyError, match="size of data is less than the nonce"):
        copycerts.decrypt_bytes(b"short", bytes.fromhex(KEY_HEX))


def test_local_etcd_sends_the_cluster_front_proxy_sa_and_etcd_cas() -> None:
    assert copycerts.certs_to_transfer(make_cfg()) == {
        "ca.crt": f"{PKI}/ca.crt", "ca.key": f"{PKI}/ca.key",
        "front-proxy-ca.crt": f"{PKI}/front-proxy-ca.crt", "front-proxy-ca.key": f"{PKI}/front-proxy-ca.key",
        "sa.pub": f"{PKI}/sa.pub", "sa.key": f"{PKI}/sa.key",
        "etcd-ca.crt": f"{PKI}/etcd/ca.crt", "etcd-ca.key": f"{PKI}/etcd/ca.key",
    }


def test_external_etcd_sends_its_client_files_instead_of_an_etcd_ca() -> None:
    cfg = make_cfg(etcd={"external": {"endpoints": ["https://10.0.0.5:2379"], "caFile": "/etc/etcd/ca.pem",
                                      "certFile": "/etc/etcd/client.pem", "keyFile": "/etc/etcd/client-key.pem"}})
    files = copycerts.certs_to_transfer(cfg)
    assert {k: v for k, v in files.items() if "etcd" in k} == {
        "external-etcd-ca.crt": "/etc/etcd/ca.pem", "external-etcd.crt": "/etc/etcd/client.pem",
        "external-etcd.key": "/etc/etcd/client-key.pem",
    }


def test_a_missing_file_is_sent_as_an_empty_value_not_sealed(tmp_path: Path) -> None:
    fs = NodeFS(tmp_path)
    fs.write(f"{PKI}/ca.crt", b"CA")
    sealed = copycerts.seal_files(copycerts.read_files(fs, make_cfg()), bytes.fromhex(KEY_HEX))
    assert sealed["ca.key"] == b""
    assert spec_decrypt(sealed["ca.crt"], KEY_HEX) == b"CA"
    assert copycerts.open_files(sealed, bytes.fromhex(KEY_HEX))["ca.key"] == b""


def test_a_value_that_still_opens_to_the_current_file_is_kept_as_it_is() -> None:
    key = bytes.fromhex(KEY_HEX)
    first = copycerts.seal_files({"ca.crt": b"CA", "sa.key": b"SA"}, key)
    again = copycerts.seal_files({"ca.crt": b"CA", "sa.key": b"SA"}, key, existing=first)
    assert again == first


@pytest.mark.parametrize("change", [
    pytest.param("file", id="the file changed"),
    pytest.param("key", id="the key changed"),
])
def test_a_value_that_no_longer_matches_is_sealed_again(change: str) -> None:
    key, other = bytes.fromhex(KEY_HEX), bytes.fromhex("2d" * 32)
    first = copycerts.seal_files({"ca.crt": b"CA"}, key)
    plain = {"ca.crt": b"NEW CA"} if change == "file" else {"ca.crt": b"CA"}
    use = key if change == "file" else other
    again = copycerts.seal_files(plain, use, existing=first)
    assert again["ca.crt"] != first["ca.crt"]
    assert spec_decrypt(again["ca.crt"], use.hex()) == plain["ca.crt"]


# --- the phase's choices that need no API server (tasks.phases.uploadcerts) ------------------------


def upload_ctx(tmp_path: Path, **init: object) -> tuple[NodeContext, list[str]]:
    cfg = build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"}, **init},
        {"apiVersion": V4, "kind": "ClusterConfiguration"}])
    lines: list[str] = []
    return NodeContext(cfg, NodeFS(tmp_path), out=lines.append), lines


def test_the_configured_certificate_key_wins_over_the_runs_own(tmp_path: Path) -> None:
    ctx, _ = upload_ctx(tmp_path, certificateKey=KEY_HEX)
    ctx.secrets.put("certificate-key", b"ab" * 32)
    assert uploadcerts.certificate_key(ctx) == KEY_HEX


def test_a_generated_certificate_key_is_stored_first_so_a_retry_reuses_it(tmp_path: Path) -> None:
    ctx, _ = upload_ctx(tmp_path)
    key = uploadcerts.certificate_key(ctx)
    assert ctx.secrets.get("certificate-key") == key.encode()
    assert uploadcerts.certificate_key(ctx) == key


def test_dry_run_prints_kubeadms_lines_and_talks_to_no_api_server(tmp_path: Path) -> None:
    ctx, lines = upload_ctx(tmp_path, dryRun=True, certificateKey=KEY_HEX)
    uploadcerts.run_upload_certs(ctx)
    assert lines == ['[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace',
                     f"[upload-certs] Using certificate key:\n{KEY_HEX}"]


def test_the_upload_token_is_kubeadms_two_hour_proxy_token_without_usages_or_groups() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    token = uploadcerts.new_token()
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token)
    secret = uploadcerts.token_secret(token, now)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"token-id": token[:6], "token-secret": token[7:],
                    "description": "Proxy for managing TTL for the kubeadm-certs secret",
                    "expiration": "2026-03-01T14:00:00Z"}
    assert (secret["type"], secret["metadata"]) == (
        "bootstrap.kubernetes.io/token", {"name": f"bootstrap-token-{token[:6]}", "namespace": "kube-system"})


@pytest.mark.parametrize("age_minutes, usable", [
    pytest.param(0, True, id="fresh"),
    pytest.param(59, True, id="61 minutes left"),
    pytest.param(61, False, id="59 minutes left: replaced"),
    pytest.param(130, False, id="expired"),
])
def test_an_owner_token_is_reused_only_while_it_has_an_hour_to_live(age_minutes: int, usable: bool) -> None:
    made = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    secret = uploadcerts.token_secret(uploadcerts.new_token(), made)
    assert uploadcerts._usable(secret, made + timedelta(minutes=age_minutes)) is usable
