"""Token and file discovery as kubeadm does it: JWS over cluster-info, CA pinning, the TLS re-fetch.

cluster-info is signed by the sandbox's bootstrap-signer code (the signer side, written separately from
the verifier under test), then tampered with one way per test.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from kubeboot.sandbox.jws import b64url, detached_sign
from kubeboot.tasks import discovery as d
from kubeboot.tasks import kubeconfig as kc
from kubeboot.tasks import pki

TOKEN_ID, SECRET = "abcdef", "0123456789abcdef"
TOKEN = f"{TOKEN_ID}.{SECRET}"
SERVER = "https://10.0.0.1:6443"


def make_ca(cn: str = "kubernetes") -> bytes:
    key = pki.generate_key("ECDSA-P256")
    cert = pki.build_certificate(pki.CertSpec(cn, is_ca=True), key.public_key(), key, None, datetime.now(UTC))
    return pki.cert_to_pem(cert)


CA = make_ca()
CA_HASH = pki.ca_cert_hash(pki.load_cert(CA))


def cluster_info(ca: bytes = CA, *, sign: bool = True, secret: str = SECRET) -> dict[str, Any]:
    text = kc.dump(kc.kubeconfig_without_user(SERVER, ca))
    data = {"kubeconfig": text}
    if sign:
        data[f"jws-kubeconfig-{TOKEN_ID}"] = detached_sign(text, TOKEN_ID, secret)
    return {"kind": "ConfigMap", "data": data}


class FakeServer:
    """Answers cluster-info: ``insecure`` to the unverified fetch, ``secure`` to the CA-verified one."""

    def __init__(self, insecure: dict[str, Any], secure: dict[str, Any] | None = None) -> None:
        self.insecure, self.secure = insecure, secure if secure is not None else insecure
        self.calls: list[bytes | None] = []

    def __call__(self, endpoint: str, ca: bytes | None) -> dict[str, Any]:
        assert endpoint == "10.0.0.1:6443"
        self.calls.append(ca)
        return copy.deepcopy(self.insecure if ca is None else self.secure)


def test_a_signed_cluster_info_with_a_pinned_ca_is_trusted_and_fetched_again_over_tls() -> None:
    server = FakeServer(cluster_info())
    info = d.token_discovery("10.0.0.1:6443", TOKEN, [CA_HASH], server)
    assert (info.server, info.ca_pem) == (SERVER, CA)
    assert info.ca_hash == CA_HASH
    assert server.calls == [None, CA]  # insecure first, then verified with the discovered CA


def test_the_pin_is_case_insensitive_hex() -> None:
    info = d.token_discovery("10.0.0.1:6443", TOKEN, [CA_HASH.upper().replace("SHA256", "sha256")],
                             FakeServer(cluster_info()))
    assert info.server == SERVER


def test_a_wrong_ca_hash_is_refused_at_once_naming_the_ca_found() -> None:
    wrong = "sha256:" + "00" * 32
    with pytest.raises(d.DiscoveryError, match=f'none of the public keys "{CA_HASH}" are pinned'):
        d.token_discovery("10.0.0.1:6443", TOKEN, [wrong], FakeServer(cluster_info()))


def test_a_tampered_kubeconfig_fails_the_signature() -> None:
    cm = cluster_info()
    cm["data"]["kubeconfig"] = cm["data"]["kubeconfig"].replace("10.0.0.1", "10.6.6.6")
    with pytest.raises(d.DiscoveryError, match="failed to verify JWS signature"):
        d.token_discovery("10.0.0.1:6443", TOKEN, [CA_HASH], FakeServer(cm))


def test_a_signature_made_with_another_secret_is_refused() -> None:
    with pytest.raises(d.DiscoveryError, match="failed to verify JWS signature"):
        d.token_discovery("10.0.0.1:6443", TOKEN, [CA_HASH], FakeServer(cluster_info(secret="ffffffffffffffff")))


def test_a_signature_under_the_whole_token_is_refused() -> None:
    """The HMAC key is the secret alone, not ``<id>.<secret>``."""
    with pytest.raises(d.DiscoveryError, match="failed to verify JWS signature"):
        d.token_discovery("10.0.0.1:6443", TOKEN, [CA_HASH], FakeServer(cluster_info(secret=TOKEN)))


@pytest.mark.parametrize("alg", ["none", "HS512", "RS256"])
def test_a_header_with_another_algorithm_is_refused(alg: str) -> None:
    cm = cluster_info()
    good = cm["data"][f"jws-kubeconfig-{TOKEN_ID}"]
    header = b64url(f'{{"alg":"{alg}","kid":"{TOKEN_ID}"}}'.encode())
    cm["data"][f"jws-kubeconfig-{TOKEN_ID}"] = header + good[good.index("."):]
    with pytest.raises(d.DiscoveryError, match="failed to verify JWS signature"):
        d.token_discovery("10.0.0.1:6443", TOKEN, [CA_HASH], FakeServer(cm))


def test_no_signature_for_the_token_keeps_polling_with_kubeadms_message() -> None:
    with pytest.raises(d.DiscoveryPending, match='for token ID "abcdef"'):
        d.token_discovery("10.0.0.1:6443", TOKEN, [CA_HASH], FakeServer(cluster_info(sign=False)))


def test_cluster_info_without_a_kubeconfig_is_not_a_token_bootstrapping_server() -> None:
    with pytest.raises(d.DiscoveryError, match="isn't set up for token bootstrapping"):
        d.token_discovery("10.0.0.1:6443", TOKEN, [CA_HASH], FakeServer({"data": {}}))


def test_a_second_copy_that_differs_is_refused() -> None:
    other = cluster_info()
    other["data"]["kubeconfig"] += "# changed\n"
    with pytest.raises(d.DiscoveryError, match="was different from the first"):
        d.token_discovery("10.0.0.1:6443", TOKEN, [CA_HASH], FakeServer(cluster_info(), other))


def test_unsafe_skip_ca_verification_trusts_the_signed_copy_without_a_second_fetch() -> None:
    server = FakeServer(cluster_info(make_ca("someone-else")))
    info = d.token_discovery("10.0.0.1:6443", TOKEN, [], server)
    assert info.server == SERVER
    assert server.calls == [None]


def test_a_bundle_passes_when_any_of_its_cas_is_pinned() -> None:
    bundle = make_ca("old") + CA
    info = d.token_discovery("10.0.0.1:6443", TOKEN, [CA_HASH], FakeServer(cluster_info(bundle)))
    assert info.ca_pem == bundle


def test_file_discovery_prefers_cluster_info_read_with_the_files_ca() -> None:
    text = kc.dump(kc.kubeconfig_without_user("https://10.0.0.1:6443", CA))
    server = FakeServer(cluster_info())
    info = d.file_discovery(text, "discovery.conf", server)
    assert info.ca_pem == CA and server.calls == [CA]


def test_file_discovery_keeps_the_file_when_cluster_info_cannot_be_read() -> None:
    text = kc.dump(kc.kubeconfig_without_user("https://10.0.0.1:6443", CA))

    def down(endpoint: str, ca: bytes | None) -> dict[str, Any]:
        raise d.DiscoveryPending("connection refused")

    assert d.file_discovery(text, "discovery.conf", down).kubeconfig == text


def test_the_bootstrap_kubeconfig_names_the_cluster_and_carries_the_token() -> None:
    info = d.token_discovery("10.0.0.1:6443", TOKEN, [CA_HASH], FakeServer(cluster_info()))
    parsed = kc.parse(d.bootstrap_kubeconfig(info, TOKEN, "prod", server="https://10.0.0.2:6443"))
    assert (parsed.cluster_name, parsed.server, parsed.token) == ("prod", "https://10.0.0.2:6443", TOKEN)
    assert parsed.user_name == "tls-bootstrap-token-user"
    assert parsed.current_context == "tls-bootstrap-token-user@kubernetes"
    assert parsed.ca_data == CA


def test_an_unreachable_endpoint_is_pending_in_gos_words() -> None:
    with pytest.raises(d.DiscoveryPending, match=r'Get "https://127.0.0.1:1/api/v1/namespaces/kube-public/configmaps/'
                                                 r'cluster-info\?timeout=10s": dial tcp 127.0.0.1:1: connect: '
                                                 "connection refused"):
        d.http_fetch("127.0.0.1:1", None)
