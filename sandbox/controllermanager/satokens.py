"""Service-account JWTs for the controllers' own identities (``--use-service-account-credentials``).

A real kube-controller-manager gives every controller its own ServiceAccount in kube-system; this one
mints that account's token itself with ``--service-account-private-key-file`` (the key whose public half
the API server reads from ``--service-account-key-file``): RS256 for RSA keys, ES256/ES384 for P-256/P-384.
Claims: the legacy issuer ``kubernetes/serviceaccount``, ``sub`` ``system:serviceaccount:<ns>:<name>``,
the ``kubernetes.io/serviceaccount/*`` names, ``iat`` and ``exp`` (one hour). ``kid`` is the key id a
real API server puts in its tokens: unpadded base64url of the SHA-256 of the DER public key.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from kubeboot.sandbox.jws import b64url
from kubeboot.tasks.pki import PrivateKey, public_key_der

LEGACY_ISSUER = "kubernetes/serviceaccount"
TOKEN_LIFETIME = 3600
# Re-mint when less than this is left, so no request ever carries a token about to expire.
REFRESH_MARGIN = 600


def algorithm(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    return {256: "ES256", 384: "ES384"}.get(key.curve.key_size, "ES512")


def key_id(key: PrivateKey) -> str:
    return b64url(hashlib.sha256(public_key_der(key.public_key())).digest())


def claims(namespace: str, name: str, now: int, lifetime: int = TOKEN_LIFETIME) -> dict[str, Any]:
    return {
        "iss": LEGACY_ISSUER,
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/service-account.name": name,
        "iat": now,
        "exp": now + lifetime,
    }


def _sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    size = (key.curve.key_size + 7) // 8
    digest = {256: hashes.SHA256(), 384: hashes.SHA384()}.get(key.curve.key_size, hashes.SHA512())
    # JWS wants the raw r||s pair (RFC 7518 3.4), not the DER sequence cryptography returns.
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def mint(key: PrivateKey, namespace: str, name: str, now: int, lifetime: int = TOKEN_LIFETIME) -> str:
    """A compact JWS (JWT) for the service account ``namespace/name``."""
    header = {"alg": algorithm(key), "kid": key_id(key)}
    segments = [b64url(json.dumps(part, separators=(",", ":")).encode())
                for part in (header, claims(namespace, name, now, lifetime))]
    signing_input = ".".join(segments).encode("ascii")
    return f"{signing_input.decode()}.{b64url(_sign(key, signing_input))}"


class TokenSource:
    """The current token of one service account; re-minted shortly before it expires."""

    def __init__(self, key: PrivateKey, namespace: str, name: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.key, self.namespace, self.name, self._clock = key, namespace, name, clock
        self._token, self._expires = "", 0
        self._lock = threading.Lock()

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    def token(self) -> str:
        with self._lock:
            now = int(self._clock())
            if now + REFRESH_MARGIN >= self._expires:
                self._token = mint(self.key, self.namespace, self.name, now)
                self._expires = now + TOKEN_LIFETIME
            return self._token
