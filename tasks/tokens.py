"""Bootstrap tokens as kubeadm handles them (cluster-bootstrap token/util, kubeadm apis/bootstraptoken/v1).

Reads: the InitConfiguration's ``bootstrapTokens`` and the run's secrets. Writes: the run secret
``bootstrap-token.<i>`` when a token is generated (before anything uses it, so a retry or a resume of
the run reuses it and never mints a second token). Builds the ``bootstrap-token-<id>`` Secret as a dict:

    type: bootstrap.kubernetes.io/token
    data (base64): token-id, token-secret, [description], [expiration: RFC 3339 UTC],
                   usage-bootstrap-<usage>: "true" per usage, [auth-extra-groups: comma-joined groups]
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from kubeboot.config import constants as c
from kubeboot.config.duration import parse_duration
from kubeboot.config.models import TOKEN_RE, BootstrapToken

TOKEN_CHARS: Final = "0123456789abcdefghijklmnopqrstuvwxyz"  # cluster-bootstrap validBootstrapTokenChars
TOKEN_ID_LENGTH: Final = 6
TOKEN_SECRET_LENGTH: Final = 16


class Secrets(Protocol):
    def put(self, name: str, value: bytes) -> None: ...

    def get(self, name: str) -> bytes | None: ...


@dataclass(frozen=True)
class TokenString:
    """``<id>.<secret>``; the id names the Secret, the secret is what a joining node proves."""

    id: str
    secret: str = field(repr=False)  # a traceback or debug print shows the id only

    def __str__(self) -> str:
        return f"{self.id}.{self.secret}"


def parse_token(text: str) -> TokenString:
    """ValueError unless ``text`` is ``[a-z0-9]{6}.[a-z0-9]{16}``."""
    m = TOKEN_RE.match(text)
    if not m:
        raise ValueError(f"the bootstrap token {text!r} was not of the form '[a-z0-9]{{6}}.[a-z0-9]{{16}}'")
    return TokenString(m.group(1), m.group(2))


def _random(n: int) -> str:
    return "".join(secrets.choice(TOKEN_CHARS) for _ in range(n))


def generate_token() -> TokenString:
    """A new random token from the OS's CSPRNG, as ``kubeadm token generate``."""
    return TokenString(_random(TOKEN_ID_LENGTH), _random(TOKEN_SECRET_LENGTH))


def secret_name(token_id: str) -> str:
    return f"{c.BOOTSTRAP_TOKEN_SECRET_PREFIX}{token_id}"


def run_secret_name(index: int) -> str:
    return c.SECRET_BOOTSTRAP_TOKEN.format(index=index)


def resolve_tokens(tokens: list[BootstrapToken], store: Secrets) -> list[TokenString]:
    """The token strings of this run: configured, else kept from an earlier attempt, else generated
    and stored before use."""
    out = []
    for index, spec in enumerate(tokens):
        if spec.token:
            out.append(parse_token(spec.token))
            continue
        kept = store.get(run_secret_name(index))
        if kept:
            out.append(parse_token(kept.decode()))
            continue
        token = generate_token()
        store.put(run_secret_name(index), str(token).encode())
        out.append(token)
    return out


def rfc3339(moment: datetime) -> str:
    """Go's ``t.UTC().Format(time.RFC3339)``: seconds precision, ``Z``."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def expiration(spec: BootstrapToken, now: datetime) -> str | None:
    """``expires`` wins over ``ttl``; a ttl of 0 means the token never expires (no key)."""
    if spec.expires:
        return rfc3339(datetime.fromisoformat(spec.expires.replace("Z", "+00:00")))
    ttl = parse_duration(spec.ttl) if spec.ttl else 0.0
    return rfc3339(now + timedelta(seconds=ttl)) if ttl > 0 else None


def token_data(token: TokenString, *, description: str = "", expires: str | None = None,
               usages: list[str] | tuple[str, ...] = (), groups: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """The Secret's data as strings (kubeadm encodeTokenSecretData)."""
    data = {"token-id": token.id, "token-secret": token.secret}
    if description:
        data["description"] = description
    if expires:
        data["expiration"] = expires
    for usage in usages:
        data[f"usage-bootstrap-{usage}"] = "true"
    if groups:
        data["auth-extra-groups"] = ",".join(groups)
    return data


def token_secret(token: TokenString, data: dict[str, str]) -> dict[str, Any]:
    """The ``bootstrap-token-<id>`` Secret in kube-system, data base64-encoded as the API stores it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(token.id), "namespace": c.NAMESPACE_SYSTEM},
        "type": c.BOOTSTRAP_TOKEN_SECRET_TYPE,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def secret_for(spec: BootstrapToken, token: TokenString, now: datetime, *,
               default_description: str = "") -> dict[str, Any]:
    """The Secret for one configured token (``now`` is the run's start, so retries build the same one)."""
    data = token_data(token, description=spec.description or default_description, expires=expiration(spec, now),
                      usages=spec.usages, groups=spec.groups)
    return token_secret(token, data)


def decode_data(secret: dict[str, Any]) -> dict[str, str]:
    """A Secret's data as strings (the reverse of ``token_secret``)."""
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
