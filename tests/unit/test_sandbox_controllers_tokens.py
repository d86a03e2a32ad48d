"""Bootstrap signer and token cleaner decisions over API objects (sandbox.controllermanager)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from kubeboot.sandbox.controllermanager.bootstrapsigner import signed_data, signing_tokens
from kubeboot.sandbox.controllermanager.tokencleaner import expired_tokens

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
KUBECONFIG = ("apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: LS0t\n"
              "    server: https://127.77.0.1:6443\n  name: \"\"\ncontexts: null\nkind: Config\n")


def token_secret(token_id: str = "abcdef", secret: str = "0123456789abcdef", *, name: str | None = None,
                 expiration: str | None = None, signing: str | None = "true",
                 kind: str = "bootstrap.kubernetes.io/token", uid: str = "uid-1") -> dict[str, Any]:
    data = {"token-id": token_id, "token-secret": secret, "usage-bootstrap-authentication": "true"}
    if signing is not None:
        data["usage-bootstrap-signing"] = signing
    if expiration is not None:
        data["expiration"] = expiration
    return {"metadata": {"name": name or f"bootstrap-token-{token_id}", "namespace": "kube-system", "uid": uid},
            "type": kind, "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def kubeadm_verifies(kubeconfig: str, value: str, token_id: str, token_secret: str) -> bool:
    """kubeadm's discovery check written from the spec (3.1), independently of sandbox.jws:
    header {"alg":"HS256","kid":<id>}, HMAC-SHA256 keyed with the secret over
    b64url(header) "." b64url(kubeconfig), stored as <header>..<signature>."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head, dots, _sig = value.partition("..")
    padded = head + "=" * (-len(head) % 4)
    if not dots or json.loads(base64.urlsafe_b64decode(padded)).get("alg") != "HS256":
        return False
    header = b64(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    mac = hmac.new(token_secret.encode(), f"{header}.{b64(kubeconfig.encode())}".encode(), hashlib.sha256)
    return hmac.compare_digest(value, f"{header}..{b64(mac.digest())}")


SIGNING_CASES = [
    pytest.param(token_secret(), True, id="valid-signing-token"),
    pytest.param(token_secret(expiration="2025-06-01T13:00:00Z"), True, id="expires-later"),
    pytest.param(token_secret(expiration="2025-06-01T14:00:00+02:00"), False, id="expired-other-zone"),
    pytest.param(token_secret(expiration="2025-06-01T11:59:59Z"), False, id="expired"),
    pytest.param(token_secret(expiration="2025-06-01T12:00:00Z"), False, id="expires-this-instant"),
    pytest.param(token_secret(expiration="tomorrow"), False, id="unparseable-expiration-counts-expired"),
    pytest.param(token_secret(expiration="2025-06-02T12:00:00"), False, id="expiration-without-zone"),
    pytest.param(token_secret(signing=None), False, id="no-signing-usage"),
    pytest.param(token_secret(signing="yes"), False, id="signing-usage-not-true"),
    pytest.param(token_secret(name="bootstrap-token-zzzzzz"), False, id="name-and-token-id-differ"),
    pytest.param(token_secret(name="my-token"), False, id="not-a-token-name"),
    pytest.param(token_secret(kind="Opaque"), False, id="not-a-token-type"),
    pytest.param(token_secret(secret=""), False, id="no-token-secret"),
]


@pytest.mark.parametrize(("secret", "signs"), SIGNING_CASES)
def test_which_bootstrap_tokens_sign_cluster_info(secret: dict[str, Any], signs: bool) -> None:
    assert signing_tokens([secret], NOW) == ({"abcdef": "0123456789abcdef"} if signs else {})


def test_the_first_secret_of_a_duplicated_token_id_wins() -> None:
    first = token_secret(secret="0123456789abcdef")
    second = token_secret(secret="fedcba9876543210")
    assert signing_tokens([first, second], NOW) == {"abcdef": "0123456789abcdef"}


def test_every_signing_token_gets_a_signature_kubeadm_accepts() -> None:
    tokens = {"abcdef": "0123456789abcdef", "uvwxyz": "aaaaaaaaaaaaaaaa"}
    new = signed_data({"kubeconfig": KUBECONFIG}, tokens)
    assert new is not None
    assert sorted(new) == ["jws-kubeconfig-abcdef", "jws-kubeconfig-uvwxyz", "kubeconfig"]
    for token_id, secret in tokens.items():
        assert kubeadm_verifies(KUBECONFIG, new[f"jws-kubeconfig-{token_id}"], token_id, secret)


def test_kubeadm_refuses_the_signature_for_a_wrong_token() -> None:
    new = signed_data({"kubeconfig": KUBECONFIG}, {"abcdef": "0123456789abcdef"})
    assert new is not None
    value = new["jws-kubeconfig-abcdef"]
    assert not kubeadm_verifies(KUBECONFIG, value, "abcdef", "0123456789abcdeX")
    assert not kubeadm_verifies(KUBECONFIG, value, "abcdeX", "0123456789abcdef")
    assert not kubeadm_verifies(KUBECONFIG.replace("127.77.0.1", "10.0.0.1"), value, "abcdef", "0123456789abcdef")


def test_current_signatures_mean_no_update() -> None:
    current = signed_data({"kubeconfig": KUBECONFIG}, {"abcdef": "0123456789abcdef"})
    assert current is not None
    assert signed_data(current, {"abcdef": "0123456789abcdef"}) is None


def test_the_signature_of_a_token_that_is_gone_is_removed() -> None:
    current = signed_data({"kubeconfig": KUBECONFIG}, {"abcdef": "0123456789abcdef", "uvwxyz": "a" * 16})
    assert current is not None
    assert signed_data(current, {"abcdef": "0123456789abcdef"}) == {
        "kubeconfig": KUBECONFIG, "jws-kubeconfig-abcdef": current["jws-kubeconfig-abcdef"]}


def test_a_changed_kubeconfig_is_signed_again() -> None:
    current = signed_data({"kubeconfig": KUBECONFIG}, {"abcdef": "0123456789abcdef"})
    assert current is not None
    moved = {**current, "kubeconfig": KUBECONFIG.replace("6443", "7443")}
    new = signed_data(moved, {"abcdef": "0123456789abcdef"})
    assert new is not None
    assert kubeadm_verifies(moved["kubeconfig"], new["jws-kubeconfig-abcdef"], "abcdef", "0123456789abcdef")


def test_other_keys_of_cluster_info_are_kept() -> None:
    new = signed_data({"kubeconfig": KUBECONFIG, "note": "x"}, {"abcdef": "0123456789abcdef"})
    assert new is not None
    assert new["note"] == "x"


def test_cluster_info_without_a_kubeconfig_is_left_alone() -> None:
    assert signed_data({"jws-kubeconfig-abcdef": "stale"}, {}) is None


@pytest.mark.parametrize(("secret", "deleted"), [
    pytest.param(token_secret(expiration="2025-06-01T11:00:00Z"), True, id="expired"),
    pytest.param(token_secret(expiration="not-a-time"), True, id="unparseable-expiration"),
    pytest.param(token_secret(expiration="2025-06-01T13:00:00Z"), False, id="not-yet-expired"),
    pytest.param(token_secret(), False, id="no-expiration"),
    pytest.param(token_secret(expiration="2025-06-01T11:00:00Z", kind="Opaque"), False, id="expired-but-not-a-token"),
])
def test_which_token_secrets_the_cleaner_deletes(secret: dict[str, Any], deleted: bool) -> None:
    assert expired_tokens([secret], NOW) == ([("bootstrap-token-abcdef", "uid-1")] if deleted else [])
