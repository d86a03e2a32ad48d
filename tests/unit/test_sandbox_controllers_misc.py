"""Service-account tokens, flags, garbage-collection decisions and health bodies of the emulated
kube-controller-manager."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kubeboot.sandbox.controllermanager import client, gc, satokens
from kubeboot.sandbox.controllermanager.flags import Flags, enabled, parse_duration
from kubeboot.sandbox.controllermanager.health import health_body
from kubeboot.tasks import kubeconfig, pki


def _segment(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jwt(token: str, public: pki.PublicKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a JWT's signature with the public key as an API server would (sa.pub), return header, claims."""
    head, claims, sig = token.split(".")
    signed, raw = f"{head}.{claims}".encode(), _segment(sig)
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(raw, signed, padding.PKCS1v15(), hashes.SHA256())
    else:
        half = len(raw) // 2
        digest = hashes.SHA384() if public.curve.key_size == 384 else hashes.SHA256()
        der = encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
        public.verify(der, signed, ec.ECDSA(digest))
    return json.loads(_segment(head)), json.loads(_segment(claims))


@pytest.mark.parametrize(("algorithm", "alg"), [
    pytest.param("RSA-2048", "RS256", id="rsa"),
    pytest.param("ECDSA-P256", "ES256", id="p256"),
    pytest.param("ECDSA-P384", "ES384", id="p384"),
])
def test_service_account_tokens_verify_with_the_public_key(algorithm: str, alg: str) -> None:
    key = pki.generate_key(algorithm)
    # Through PEM, as the API server reads sa.pub.
    public = pki.load_public_key(pki.public_key_to_pem(key.public_key()))
    header, claims = verify_jwt(satokens.mint(key, "kube-system", "bootstrap-signer", 1_700_000_000), public)
    assert header == {"alg": alg, "kid": satokens.key_id(key)}
    assert claims == {
        "iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:kube-system:bootstrap-signer",
        "kubernetes.io/serviceaccount/namespace": "kube-system",
        "kubernetes.io/serviceaccount/service-account.name": "bootstrap-signer",
        "iat": 1_700_000_000, "exp": 1_700_003_600}


def test_a_token_signed_by_another_key_does_not_verify() -> None:
    key, other = pki.generate_key("ECDSA-P256"), pki.generate_key("ECDSA-P256")
    with pytest.raises(InvalidSignature):
        verify_jwt(satokens.mint(key, "kube-system", "token-cleaner", 0), other.public_key())


def test_the_token_source_re_mints_only_when_the_token_nears_expiry() -> None:
    now = [1_700_000_000.0]
    source = satokens.TokenSource(pki.generate_key("ECDSA-P256"), "kube-system", "token-cleaner", lambda: now[0])
    first = source.token()
    now[0] += 60
    assert source.token() == first
    now[0] += satokens.TOKEN_LIFETIME - satokens.REFRESH_MARGIN
    renewed = source.token()
    assert renewed != first
    _, claims = verify_jwt(renewed, source.key.public_key())
    assert claims["exp"] == int(now[0]) + satokens.TOKEN_LIFETIME
    assert source.username == "system:serviceaccount:kube-system:token-cleaner"


# --- flags ---------------------------------------------------------------------------------------

KUBEADM = ["*", "bootstrapsigner", "tokencleaner"]


@pytest.mark.parametrize(("name", "controllers", "on"), [
    pytest.param("bootstrapsigner", KUBEADM, True, id="kubeadm-enables-bootstrapsigner"),
    pytest.param("tokencleaner", KUBEADM, True, id="kubeadm-enables-tokencleaner"),
    pytest.param("csrsigning", KUBEADM, True, id="star-enables-csrsigning"),
    pytest.param("bootstrapsigner", ["*"], False, id="bootstrapsigner-off-by-default"),
    pytest.param("garbagecollector", ["*", "-garbagecollector"], False, id="minus-disables"),
    pytest.param("csrapproving", ["csrsigning"], False, id="only-named-ones"),
])
def test_controllers_flag_semantics(name: str, controllers: list[str], on: bool) -> None:
    assert enabled(name, controllers) is on


def test_flags_in_every_pflag_form() -> None:
    flags = Flags.parse(["--kubeconfig=/k.conf", "--secure-port", "10300", "--leader-elect",
                         "--controllers=*,bootstrapsigner,tokencleaner", "--cluster-signing-key-file="])
    assert flags.get("kubeconfig") == "/k.conf"
    assert flags.port(10257) == 10300
    assert flags.boolean("leader-elect")
    assert flags.controllers() == KUBEADM
    assert flags.get("cluster-signing-key-file", "unset") == ""
    assert flags.bind_address() == "0.0.0.0"


@pytest.mark.parametrize(("text", "expected"), [
    ("8760h0m0s", timedelta(days=365)), ("30m", timedelta(minutes=30)), ("1h30m", timedelta(minutes=90)),
    ("1.5h", timedelta(minutes=90)), ("90s", timedelta(seconds=90)),
])
def test_go_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "1y", "h", "5"])
def test_bad_go_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# --- garbage collection --------------------------------------------------------------------------

SECRET = gc.BY_KIND[("", "Secret")]
CONFIGMAP = gc.BY_KIND[("", "ConfigMap")]
NODE = gc.BY_KIND[("", "Node")]


def obj(name: str, uid: str, owners: list[dict[str, Any]] | None = None, namespace: str = "kube-system",
        deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": uid}
    if namespace:
        meta["namespace"] = namespace
    if owners:
        meta["ownerReferences"] = owners
    if deleting:
        meta["deletionTimestamp"] = "2025-06-01T12:00:00Z"
    return {"metadata": meta}


def ref(kind: str, name: str, uid: str, api_version: str = "v1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}


TOKEN_REF = ref("Secret", "bootstrap-token-abcdef", "u-token")
KUBEADM_CERTS = obj("kubeadm-certs", "u-certs", [TOKEN_REF])

GC_CASES = [
    pytest.param([(SECRET, KUBEADM_CERTS)], ["kubeadm-certs"], id="kubeadm-certs-after-its-token-expired"),
    pytest.param([(SECRET, obj("bootstrap-token-abcdef", "u-token")), (SECRET, KUBEADM_CERTS)], [],
                 id="kubeadm-certs-while-its-token-lives"),
    pytest.param([(SECRET, obj("bootstrap-token-abcdef", "u-new")), (SECRET, KUBEADM_CERTS)], ["kubeadm-certs"],
                 id="owner-recreated-with-another-uid"),
    pytest.param([(SECRET, obj("a", "u-a")),
                  (CONFIGMAP, obj("dep", "u-d", [ref("Secret", "a", "u-a"), ref("Secret", "gone", "u-g")]))], [],
                 id="one-owner-left-keeps-it"),
    pytest.param([(CONFIGMAP, obj("dep", "u-d", [ref("Widget", "w", "u-w", "example.com/v1")]))], [],
                 id="owner-of-unknown-kind-keeps-it"),
    pytest.param([(CONFIGMAP, obj("dep", "u-d", [TOKEN_REF], deleting=True))], [], id="already-being-deleted"),
    pytest.param([(CONFIGMAP, obj("plain", "u-p"))], [], id="no-owners"),
    pytest.param([(CONFIGMAP, obj("dep", "u-d", [ref("Node", "w1", "u-n")]))], ["dep"],
                 id="cluster-scoped-owner-gone"),
    pytest.param([(NODE, obj("n", "u-n", [TOKEN_REF], namespace=""))], [],
                 id="namespaced-owner-of-cluster-object-is-ignored"),
    pytest.param([(CONFIGMAP, obj("dep", "u-d", [ref("Deployment", "d", "u-x", "apps/v1beta2")]))], ["dep"],
                 id="owner-matched-by-group-not-version"),
]


@pytest.mark.parametrize(("objects", "collected"), GC_CASES)
def test_which_objects_the_garbage_collector_deletes(objects: list[tuple[gc.Kind, dict[str, Any]]],
                                                     collected: list[str]) -> None:
    assert [o["metadata"]["name"] for _, o in gc.orphan_candidates(objects)] == collected


@pytest.mark.parametrize(("found", "absent"), [
    pytest.param(None, True, id="not-found"),
    pytest.param(obj("bootstrap-token-abcdef", "u-other"), True, id="other-uid"),
    pytest.param(obj("bootstrap-token-abcdef", "u-token"), False, id="same-uid"),
])
def test_an_owner_is_absent_when_missing_or_recreated(found: dict[str, Any] | None, absent: bool) -> None:
    assert gc.owner_absent(TOKEN_REF, found) is absent


def test_kind_paths_follow_the_api_layout() -> None:
    assert SECRET.path("kube-system", "x") == "/api/v1/namespaces/kube-system/secrets/x"
    assert SECRET.path() == "/api/v1/secrets"
    assert NODE.path("ignored", "w1") == "/api/v1/nodes/w1"
    assert gc.BY_KIND[("apps", "DaemonSet")].path("kube-system") == "/apis/apps/v1/namespaces/kube-system/daemonsets"


# --- health --------------------------------------------------------------------------------------


def test_health_is_ok_when_every_check_passes() -> None:
    assert health_body({"controllers": lambda: None}, verbose=False) == (200, "ok")


def test_a_failing_check_makes_health_500_and_names_it() -> None:
    code, text = health_body({"controllers": lambda: "not started"}, verbose=False)
    assert code == 500
    assert text == "[+]ping ok\n[-]controllers failed: reason withheld\nhealthz check failed\n"


def test_verbose_health_lists_every_check() -> None:
    assert health_body({"controllers": lambda: None}, verbose=True) == (
        200, "[+]ping ok\n[+]controllers ok\nhealthz check passed\n")


# --- client identities ---------------------------------------------------------------------------


def test_clients_take_server_ca_and_certificate_from_the_kubeconfig(tmp_path: Path) -> None:
    conf = kubeconfig.kubeconfig_with_certs("https://127.77.0.1:6443", "kubernetes", "system:kube-controller-manager",
                                            b"CA PEM", b"KEY PEM", b"CERT PEM")
    path = tmp_path / "controller-manager.conf"
    path.write_text(kubeconfig.dump(conf))
    creds = client.Credentials(client.load_access(str(path)))
    try:
        own = creds.own_client().configuration
        assert own.host == "https://127.77.0.1:6443"
        assert Path(own.ssl_ca_cert).read_bytes() == b"CA PEM"
        assert Path(own.cert_file).read_bytes() == b"CERT PEM"
        assert Path(own.key_file).stat().st_mode & 0o777 == 0o600
        assert own.auth_settings() == {}
    finally:
        creds.close()
    assert not creds.dir.exists()


def test_a_controller_client_sends_its_service_account_token_as_bearer(tmp_path: Path) -> None:
    access = client.ClusterAccess("https://127.77.0.1:6443", b"CA", b"", b"", "")
    source = satokens.TokenSource(pki.generate_key("ECDSA-P256"), "kube-system", "token-cleaner")
    creds = client.Credentials(access)
    try:
        conf = creds.token_client(source).configuration
        assert conf.cert_file is None
        assert conf.auth_settings()["BearerToken"]["value"] == f"Bearer {source.token()}"
    finally:
        creds.close()
