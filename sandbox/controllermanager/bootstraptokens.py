"""Reading bootstrap token Secrets as k8s.io/cluster-bootstrap/util/secrets does (pure functions).

A token Secret is ``kube-system/bootstrap-token-<id>`` of type ``bootstrap.kubernetes.io/token`` with
data ``token-id``, ``token-secret``, optional ``expiration`` (RFC 3339; unparseable counts as expired)
and ``usage-bootstrap-*`` flags ("true").
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any

SECRET_TYPE = "bootstrap.kubernetes.io/token"
NAME_PREFIX = "bootstrap-token-"
_NAME = re.compile(r"^bootstrap-token-([a-z0-9]{6})$")


def data(secret: dict[str, Any], key: str) -> str:
    """GetData: the decoded value of ``key`` (API JSON carries Secret data base64-encoded), or ""."""
    raw = (secret.get("data") or {}).get(key)
    if not raw:
        return ""
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, ValueError):
        return ""


def parse_name(name: str) -> str | None:
    match = _NAME.match(name)
    return match.group(1) if match else None


def is_token_secret(secret: dict[str, Any]) -> bool:
    return secret.get("type") == SECRET_TYPE


def parse_rfc3339(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    # Go's time.RFC3339 layout requires a zone; a naive time is a parse error there too.
    return when if when.tzinfo is not None else None


def next_expiration(secrets: list[dict[str, Any]], now: datetime) -> datetime | None:
    """The soonest expiration still ahead among the token Secrets (when a token cleaner has work next)."""
    ahead = [when for s in secrets if is_token_secret(s)
             for when in [parse_rfc3339(data(s, "expiration"))] if when is not None and when > now]
    return min(ahead, default=None)


def has_expired(secret: dict[str, Any], now: datetime) -> bool:
    """GetExpiration's ``isExpired``: no expiration never expires; unparseable is expired."""
    expiration = data(secret, "expiration")
    if not expiration:
        return False
    when = parse_rfc3339(expiration)
    return when is None or when <= now
