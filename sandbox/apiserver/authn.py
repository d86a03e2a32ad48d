"""Authentication of the emulated kube-apiserver, in the order of the real authenticator chain.

Reads: the verified TLS client certificate (the TLS layer already checked it against --client-ca-file),
the ``Authorization: Bearer`` header, bootstrap-token Secrets in kube-system through the object
reader, and the public keys of --service-account-key-file (or of --service-account-signing-key-file).
Writes nothing. Outcomes: a client certificate → CN / O groups; a bootstrap token (with
--enable-bootstrap-token-auth) → ``system:bootstrap:<id>``; a service-account JWT → ``system:serviceaccount:
<ns>:<name>``; no credentials → ``system:anonymous``. Credentials that do not authenticate are a 401,
never anonymous (kube-apiserver's union.NewFailOnError).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeboot.sandbox.apiserver.flags import ApiServerFlags
from kubeboot.sandbox.apiserver.types import ObjectReader, UserInfo

AUTHENTICATED = "system:authenticated"
ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))
BOOTSTRAP_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
BOOTSTRAP_GROUP = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----\s*", re.DOTALL)
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class AuthError(Exception):
    """Credentials were presented and did not authenticate (logged; the client sees 401 Unauthorized)."""


def load_public_keys(pem: bytes) -> list[PublicKey]:
    """keyutil.ParsePublicKeysPEM: public keys, private keys (their public half) and certificates."""
    keys: list[PublicKey] = []
    for m in _PEM.finditer(pem):
        block, kind = m[0], m[1].decode()
        if kind == "CERTIFICATE":
            key: Any = x509.load_pem_x509_certificate(block).public_key()
        elif kind.endswith("PRIVATE KEY"):
            key = serialization.load_pem_private_key(block, None).public_key()
        else:
            key = serialization.load_pem_public_key(block)
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            keys.append(key)
    return keys


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _verify_jws(key: PublicKey, alg: str, signed: bytes, sig: bytes) -> bool:
    hash_alg = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}.get(alg[2:])
    if hash_alg is None:
        return False
    try:
        if alg.startswith("RS") and isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, signed, padding.PKCS1v15(), hash_alg)
            return True
        if alg.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey):
            half = len(sig) // 2
            der = utils.encode_dss_signature(int.from_bytes(sig[:half]), int.from_bytes(sig[half:]))
            key.verify(der, signed, ec.ECDSA(hash_alg))
            return True
    except InvalidSignature:
        return False
    return False


class Authenticator:
    def __init__(self, flags: ApiServerFlags, reader: ObjectReader,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.flags, self.reader, self.now = flags, reader, now
        files = flags.service_account_key_files or (
            [flags.service_account_signing_key_file] if flags.service_account_signing_key_file else [])
        self.sa_keys = [k for f in files for k in load_public_keys(Path(f).read_bytes())]

    def authenticate(self, client_cert_der: bytes | None, authorization: str | None) -> UserInfo:
        """The request's user; AuthError for credentials that do not authenticate."""
        if client_cert_der:
            user = self.from_certificate(x509.load_der_x509_certificate(client_cert_der))
            if user is not None:
                return _with_authenticated(user)
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return _with_authenticated(self.from_token(token.strip()))
        if client_cert_der:
            raise AuthError("x509: certificate specifies an incompatible key usage")
        if not self.flags.anonymous_auth:
            raise AuthError("anonymous requests are disabled")
        return ANONYMOUS

    @staticmethod
    def from_certificate(cert: x509.Certificate) -> UserInfo | None:
        """The x509 authenticator: CN is the user, O values the groups; the certificate must allow client auth."""
        try:
            usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if not {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(usages):
                return None
        except x509.ExtensionNotFound:
            pass
        cn = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        orgs = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
        return UserInfo(cn[0] if cn else "", orgs)

    def from_token(self, token: str) -> UserInfo:
        m = BOOTSTRAP_TOKEN.match(token)
        if m and self.flags.enable_bootstrap_token_auth:
            return self.from_bootstrap_token(m[1], m[2])
        if token.count(".") == 2:
            return self.from_service_account_token(token)
        raise AuthError("invalid bearer token")

    def from_bootstrap_token(self, token_id: str, secret: str) -> UserInfo:
        """k8s.io/kubernetes/plugin/pkg/auth/authenticator/token/bootstrap."""
        obj = self.reader.get("/secrets", "kube-system", f"bootstrap-token-{token_id}")
        if obj is None or obj.get("type") != "bootstrap.kubernetes.io/token":
            raise AuthError(f"no bootstrap token secret for token id {token_id!r}")
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            raise AuthError(f"bootstrap token {token_id!r} is being deleted")
        data = {k: _decode(v) for k, v in (obj.get("data") or {}).items()}
        if data.get("token-id") != token_id or not hmac.compare_digest(data.get("token-secret", ""), secret):
            raise AuthError(f"bootstrap token {token_id!r}: secret does not match")
        if data.get("usage-bootstrap-authentication") != "true":
            raise AuthError(f"bootstrap token {token_id!r} is not usable for authentication")
        expiration = data.get("expiration")
        if expiration and _parse_time(expiration) <= self.now():
            raise AuthError(f"bootstrap token {token_id!r} expired at {expiration}")
        extra = [g.strip() for g in data.get("auth-extra-groups", "").split(",") if g.strip()]
        bad = [g for g in extra if not BOOTSTRAP_GROUP.match(g)]
        if bad:
            raise AuthError(f"bootstrap token {token_id!r} has invalid auth-extra-groups {bad}")
        return UserInfo(f"system:bootstrap:{token_id}", ("system:bootstrappers", *extra))

    def from_service_account_token(self, token: str) -> UserInfo:
        head_b64, claims_b64, sig_b64 = token.split(".")
        try:
            header, claims = json.loads(_b64url(head_b64)), json.loads(_b64url(claims_b64))
            sig = _b64url(sig_b64)
        except (ValueError, binascii.Error) as e:
            raise AuthError(f"malformed JWT: {e}") from None
        signed = f"{head_b64}.{claims_b64}".encode()
        alg = str(header.get("alg", ""))
        if not any(_verify_jws(k, alg, signed, sig) for k in self.sa_keys):
            raise AuthError("service account token: invalid signature")
        if claims.get("iss") not in self.flags.issuers:
            raise AuthError(f"service account token: unknown issuer {claims.get('iss')!r}")
        now = self.now().timestamp()
        if "exp" in claims and float(claims["exp"]) <= now:
            raise AuthError("service account token has expired")
        if "nbf" in claims and float(claims["nbf"]) > now + 60:
            raise AuthError("service account token is not valid yet")
        parts = str(claims.get("sub", "")).split(":")
        if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"] or not all(parts[2:]):
            raise AuthError(f"service account token: bad subject {claims.get('sub')!r}")
        ns, name = parts[2], parts[3]
        uid = str(((claims.get("kubernetes.io") or {}).get("serviceaccount") or {}).get("uid", ""))
        return UserInfo(f"system:serviceaccount:{ns}:{name}",
                        ("system:serviceaccounts", f"system:serviceaccounts:{ns}"), uid)


def _decode(value: Any) -> str:
    try:
        return base64.b64decode(str(value)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AuthError(f"bootstrap token has an invalid expiration {text!r}") from None


def _with_authenticated(user: UserInfo) -> UserInfo:
    if AUTHENTICATED in user.groups:
        return user
    return UserInfo(user.name, (*user.groups, AUTHENTICATED), user.uid)
