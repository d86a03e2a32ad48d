"""Detached JWS of cluster-info (sandbox.jws) against Kubernetes' own vectors and kubeadm's check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from kubeboot.sandbox import jws

# cluster-bootstrap/token/jws/jws_test.go: what Kubernetes' ComputeDetachedSignature returns.
CONTENT = "Hello from the other side. I must have called a thousand times."
GO_VECTORS = [
    pytest.param(CONTENT, "my voice is my passcode",
                 "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8",
                 id="content"),
    pytest.param("", "my voice is my passcode",
                 "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk",
                 id="empty-content"),
    pytest.param(CONTENT, "",
                 "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..UfkqvDGiIFxrMnFseDj9LYJOLNrvjW8aHhF71mvvAs8",
                 id="empty-secret"),
]
KUBECONFIG = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.77.0.1:6443\n  name: \"\"\nkind: Config\n"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(("content", "secret", "expected"), GO_VECTORS)
def test_detached_signature_equals_kubernetes_own_test_vectors(content: str, secret: str, expected: str) -> None:
    assert jws.detached_sign(content, "joshua", secret) == expected


@pytest.mark.parametrize(("content", "secret", "expected"), GO_VECTORS)
def test_kubernetes_vectors_verify(content: str, secret: str, expected: str) -> None:
    assert jws.verify_detached(content, expected, "joshua", secret)


def test_the_protected_header_is_gos_compact_json_with_sorted_keys() -> None:
    head = jws.detached_sign(KUBECONFIG, "abcdef", "0123456789abcdef").split(".")[0]
    assert base64.urlsafe_b64decode(head + "==") == b'{"alg":"HS256","kid":"abcdef"}'


def test_the_payload_is_elided_from_the_stored_value() -> None:
    parts = jws.detached_sign(KUBECONFIG, "abcdef", "0123456789abcdef").split(".")
    assert len(parts) == 3
    assert parts[1] == ""


def test_signature_is_hmac_sha256_keyed_with_the_token_secret_only() -> None:
    header = _b64url(b'{"alg":"HS256","kid":"abcdef"}')
    signing_input = f"{header}.{_b64url(KUBECONFIG.encode())}".encode()
    mac = hmac.new(b"0123456789abcdef", signing_input, hashlib.sha256).digest()
    assert jws.detached_sign(KUBECONFIG, "abcdef", "0123456789abcdef") == f"{header}..{_b64url(mac)}"


@pytest.mark.parametrize(("kubeconfig", "token_id", "secret"), [
    pytest.param(KUBECONFIG + "# changed\n", "abcdef", "0123456789abcdef", id="other-kubeconfig"),
    pytest.param(KUBECONFIG, "abcdeg", "0123456789abcdef", id="other-token-id"),
    pytest.param(KUBECONFIG, "abcdef", "0123456789abcdeX", id="wrong-secret"),
    pytest.param(KUBECONFIG, "abcdef", "abcdef.0123456789abcdef", id="whole-token-as-key"),
])
def test_verification_fails_when_anything_differs(kubeconfig: str, token_id: str, secret: str) -> None:
    signed = jws.detached_sign(KUBECONFIG, "abcdef", "0123456789abcdef")
    assert not jws.verify_detached(kubeconfig, signed, token_id, secret)


def _forge(header: dict[str, str], sig: bytes = b"") -> str:
    return f"{_b64url(json.dumps(header, separators=(',', ':')).encode())}..{_b64url(sig)}"


@pytest.mark.parametrize("forged", [
    pytest.param(_forge({"alg": "none", "kid": "abcdef"}), id="alg-none"),
    pytest.param(_forge({"alg": "HS512", "kid": "abcdef"}, b"x" * 64), id="hs512"),
    pytest.param(_forge({"alg": "RS256", "kid": "abcdef"}, b"x" * 256), id="rs256"),
    pytest.param("not-a-jws", id="garbage"),
])
def test_verification_rejects_any_algorithm_but_hs256(forged: str) -> None:
    assert jws.header_algorithm(forged) != "HS256"
    assert not jws.verify_detached(KUBECONFIG, forged, "abcdef", "0123456789abcdef")


def test_a_value_with_the_payload_attached_is_not_a_detached_signature() -> None:
    head, _, sig = jws.detached_sign(KUBECONFIG, "abcdef", "0123456789abcdef").split(".")
    attached = f"{head}.{_b64url(KUBECONFIG.encode())}.{sig}"
    assert not jws.verify_detached(KUBECONFIG, attached, "abcdef", "0123456789abcdef")
