"""Detached JWS (HS256) over a cluster-info kubeconfig, as the bootstrap signer writes it and
``kubeadm join`` checks it (kubeadm-spec 3.1; k8s.io/cluster-bootstrap/token/jws).

Kubernetes signs with go-jose: the protected header is Go's JSON of ``{"alg":"HS256","kid":<id>}``
(map keys sorted, no spaces), the signing input is ``b64url(header) "." b64url(kubeconfig)``
(unpadded), the key is the token secret (the 16 characters after the dot) zero-padded to 32 bytes,
and the stored value is the compact serialisation with the payload elided: ``<header>..<signature>``.
Verification recomputes that value and compares, exactly like ``DetachedTokenIsValid``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

ALGORITHM = "HS256"
# go-jose refuses HS256 keys shorter than 32 bytes, so ComputeDetachedSignature pads with zeros.
# (HMAC pads short keys with zeros to its block size anyway: the padding changes no signature.)
_MIN_KEY_BYTES = 32


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def protected_header(token_id: str) -> bytes:
    """The header bytes go-jose emits: Go's encoding/json of a map, so keys sorted, no whitespace."""
    return json.dumps({"alg": ALGORITHM, "kid": token_id}, separators=(",", ":"), sort_keys=True).encode()


def _key(token_secret: str) -> bytes:
    return token_secret.encode().ljust(_MIN_KEY_BYTES, b"\0")


def detached_sign(kubeconfig_text: str, token_id: str, token_secret: str) -> str:
    """``jws-kubeconfig-<token_id>``'s value for ``kubeconfig_text`` (ComputeDetachedSignature)."""
    header = b64url(protected_header(token_id))
    signing_input = f"{header}.{b64url(kubeconfig_text.encode())}".encode("ascii")
    signature = hmac.new(_key(token_secret), signing_input, hashlib.sha256).digest()
    return f"{header}..{b64url(signature)}"


def header_algorithm(jws: str) -> str | None:
    """The ``alg`` of a compact (detached) JWS, or None when the header does not parse."""
    head = jws.split(".", 1)[0]
    try:
        header = json.loads(_b64url_decode(head))
    except (ValueError, binascii.Error):
        return None
    alg = header.get("alg") if isinstance(header, dict) else None
    return alg if isinstance(alg, str) else None


def verify_detached(kubeconfig_text: str, jws: str, token_id: str, token_secret: str) -> bool:
    """True when ``jws`` is the HS256 detached signature of ``kubeconfig_text`` by this token.

    Anything but HS256 is refused before any comparison (a forged ``none`` or asymmetric header
    must never pass); then the value must equal the recomputed one byte for byte.
    """
    parts = jws.split(".")
    if len(parts) != 3 or parts[1] != "" or header_algorithm(jws) != ALGORITHM:
        return False
    expected = detached_sign(kubeconfig_text, token_id, token_secret)
    return hmac.compare_digest(expected.encode(), jws.encode())
