"""Authentication of the emulated API server: bootstrap tokens, service-account JWTs, certificates, anonymous."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeboot.sandbox.apiserver.authn import ANONYMOUS, Authenticator, AuthError
from kubeboot.sandbox.apiserver.flags import ApiServerFlags, FlagError, parse
from kubeboot.sandbox.apiserver.types import UserInfo

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ISSUER = "https://kubernetes.default.svc.cluster.local"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def token_secret(token_id: str = "abcdef", secret: str = "0123456789abcdef", **extra: str) -> dict:
    data = {"token-id": token_id, "token-secret": secret, "usage-bootstrap-authentication": "true", **extra}
    return {"kind": "Secret", "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
            "type": "bootstrap.kubernetes.io/token", "data": {k: b64(v) for k, v in data.items() if v}}


@pytest.fixture
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class SecretsReader:
    """The authenticator's view of stored Secrets (an ObjectReader; the server gives it its informer cache)."""

    def __init__(self, secrets: tuple[dict, ...]) -> None:
        self.secrets = {(s["metadata"].get("namespace", ""), s["metadata"]["name"]): s for s in secrets}

    def get(self, resource: str, namespace: str, name: str) -> dict | None:
        return self.secrets.get((namespace, name)) if resource == "/secrets" else None

    def list(self, resource: str, namespace: str | None = None) -> list[dict]:
        return [s for (ns, _), s in self.secrets.items() if resource == "/secrets" and namespace in (None, ns)]


def authenticator(tmp_path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *secrets: dict,
                  bootstrap: bool = True) -> Authenticator:
    pub = tmp_path / "sa.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    flags = parse([f"--service-account-key-file={pub}", f"--service-account-issuer={ISSUER}",
                   f"--enable-bootstrap-token-auth={str(bootstrap).lower()}", "--etcd-servers=https://127.0.0.1:2379"])
    return Authenticator(flags, SecretsReader(secrets), now=lambda: NOW)


def jwt(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, **claims: object) -> str:
    def enc(doc: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    signed = f"{enc({'alg': alg, 'kid': 'k'})}.{enc(claims)}".encode()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = utils.decode_dss_signature(key.sign(signed, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32) + s.to_bytes(32)
    else:
        sig = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    return f"{signed.decode()}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def sa_claims(**over: object) -> dict:
    return {"iss": ISSUER, "sub": "system:serviceaccount:kube-system:bootstrap-signer",
            "iat": int(NOW.timestamp()) - 10, "exp": int(NOW.timestamp()) + 3600, **over}


def test_a_valid_bootstrap_token_authenticates_as_system_bootstrap_with_its_extra_groups(tmp_path: Path,
                                                                                         ec_key) -> None:
    auth = authenticator(tmp_path, ec_key, token_secret(**{
        "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
        "expiration": (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}))
    user = auth.authenticate(None, "Bearer abcdef.0123456789abcdef")
    assert user == UserInfo("system:bootstrap:abcdef", ("system:bootstrappers",
                            "system:bootstrappers:kubeadm:default-node-token", "system:authenticated"))


@pytest.mark.parametrize(("secret", "token"), [
    pytest.param(token_secret(expiration="2026-03-01T11:59:59Z"), "abcdef.0123456789abcdef", id="expired"),
    pytest.param(token_secret(), "abcdef.0123456789abcdee", id="wrong-secret"),
    pytest.param(token_secret(**{"usage-bootstrap-authentication": ""}), "abcdef.0123456789abcdef",
                 id="without-the-authentication-usage"),
    pytest.param(token_secret(**{"auth-extra-groups": "system:masters"}), "abcdef.0123456789abcdef",
                 id="with-an-extra-group-outside-system-bootstrappers"),
    pytest.param(token_secret(token_id="zzzzzz"), "abcdef.0123456789abcdef", id="with-no-secret-for-the-id"),
])
def test_a_bootstrap_token_that_does_not_qualify_is_refused(tmp_path: Path, ec_key, secret: dict,
                                                            token: str) -> None:
    with pytest.raises(AuthError):
        authenticator(tmp_path, ec_key, secret).authenticate(None, f"Bearer {token}")


def test_bootstrap_tokens_are_refused_without_enable_bootstrap_token_auth(tmp_path: Path, ec_key) -> None:
    with pytest.raises(AuthError):
        authenticator(tmp_path, ec_key, token_secret(), bootstrap=False).authenticate(
            None, "Bearer abcdef.0123456789abcdef")


def test_a_service_account_token_signed_with_the_sa_key_authenticates_the_account(tmp_path: Path, ec_key) -> None:
    user = authenticator(tmp_path, ec_key).authenticate(None, f"Bearer {jwt(ec_key, **sa_claims())}")
    assert user == UserInfo("system:serviceaccount:kube-system:bootstrap-signer", (
        "system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"))


def test_an_rs256_service_account_token_verifies_with_an_rsa_key(tmp_path: Path) -> None:
    key = rsa.generate_private_key(65537, 2048)
    user = authenticator(tmp_path, key).authenticate(None, f"Bearer {jwt(key, **sa_claims())}")
    assert user.name == "system:serviceaccount:kube-system:bootstrap-signer"


def test_the_legacy_issuer_is_accepted_too(tmp_path: Path, ec_key) -> None:
    token = jwt(ec_key, **sa_claims(iss="kubernetes/serviceaccount"))
    assert authenticator(tmp_path, ec_key).authenticate(None, f"Bearer {token}").name.endswith(":bootstrap-signer")


@pytest.mark.parametrize("claims", [
    pytest.param(sa_claims(iss="https://elsewhere"), id="another-issuer"),
    pytest.param(sa_claims(exp=int(NOW.timestamp()) - 1), id="expired"),
    pytest.param(sa_claims(sub="system:node:n1"), id="not-a-service-account-subject"),
])
def test_a_service_account_token_that_does_not_qualify_is_refused(tmp_path: Path, ec_key, claims: dict) -> None:
    with pytest.raises(AuthError):
        authenticator(tmp_path, ec_key).authenticate(None, f"Bearer {jwt(ec_key, **claims)}")


def test_a_token_signed_by_another_key_is_refused(tmp_path: Path, ec_key) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AuthError):
        authenticator(tmp_path, ec_key).authenticate(None, f"Bearer {jwt(other, **sa_claims())}")


def test_a_garbage_token_is_refused_and_not_taken_for_anonymous(tmp_path: Path, ec_key) -> None:
    with pytest.raises(AuthError):
        authenticator(tmp_path, ec_key).authenticate(None, "Bearer nope")


def test_no_credentials_is_anonymous(tmp_path: Path, ec_key) -> None:
    user = authenticator(tmp_path, ec_key).authenticate(None, None)
    assert user is ANONYMOUS
    assert user == UserInfo("system:anonymous", ("system:unauthenticated",))


def client_cert(key: ec.EllipticCurvePrivateKey, usage: x509.ObjectIdentifier) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "system:node:n1")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def test_a_client_certificate_maps_cn_to_the_user_and_o_to_groups(tmp_path: Path, ec_key) -> None:
    user = authenticator(tmp_path, ec_key).authenticate(client_cert(ec_key, ExtendedKeyUsageOID.CLIENT_AUTH), None)
    assert user == UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))


def test_a_certificate_without_client_auth_usage_is_refused(tmp_path: Path, ec_key) -> None:
    with pytest.raises(AuthError):
        authenticator(tmp_path, ec_key).authenticate(client_cert(ec_key, ExtendedKeyUsageOID.SERVER_AUTH), None)


def test_the_manifest_flags_parse_into_the_settings_the_server_uses() -> None:
    flags = parse(["--advertise-address=10.0.0.10", "--secure-port=6443", "--authorization-mode=Node,RBAC",
                   "--service-cluster-ip-range=10.96.0.0/12", "--enable-bootstrap-token-auth=true",
                   "--service-account-issuer=https://a", "--service-account-issuer=https://b",
                   "--etcd-servers=https://127.0.0.1:2379", "--etcd-cafile=/pki/etcd/ca.crt",
                   "--etcd-certfile=/pki/apiserver-etcd-client.crt", "--etcd-keyfile=/pki/apiserver-etcd-client.key",
                   "--allow-privileged=true"])
    assert (flags.advertise_address, flags.secure_port, flags.authorization_modes) == ("10.0.0.10", 6443,
                                                                                     ["Node", "RBAC"])
    assert str(flags.service_network) == "10.96.0.0/12"
    assert flags.enable_bootstrap_token_auth
    assert flags.issuers == ["https://a", "https://b", "kubernetes/serviceaccount"]
    assert flags.extra == {"allow-privileged": ["true"]}
    assert (flags.etcd_servers, flags.etcd_prefix) == (["https://127.0.0.1:2379"], "/registry")
    assert (flags.etcd_cafile, flags.etcd_certfile, flags.etcd_keyfile) == (
        "/pki/etcd/ca.crt", "/pki/apiserver-etcd-client.crt", "/pki/apiserver-etcd-client.key")
    assert ApiServerFlags().anonymous_auth


def test_without_etcd_servers_the_server_refuses_to_start_as_kube_apiserver_does() -> None:
    with pytest.raises(FlagError) as e:
        parse(["--advertise-address=10.0.0.10"])
    assert str(e.value) == "--etcd-servers must be specified"
