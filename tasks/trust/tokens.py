"""The signed authorisation a task carries, and the signature over a run's metadata.

**Task tokens.** Every phase task (and a run's finish task) is sent with a keyword argument ``auth``,
a token the control side (the submitter, or the control worker when it starts child runs, resumes or
re-sends) signs with its Ed25519 key; node workers hold the public key only. Tokens are not secret:
Flower shows them. The signature covers these claims, as canonical JSON (sorted keys, no spaces)::

    {"run": "r-1a2b3c4d", "cluster": "demo", "node": "cp1", "queue": "node.cp1",
     "task": "kubeboot.init.certs.ca", "digest": "<the run's spec digest>", "iat": 1764600000.123,
     "exp": 1764603600.123}

but the token carries only what its message does not say: ``kb2:<queue>:<iat>:<exp>:<base64url
signature>`` (~140 characters). The task, run and node are the message's own (its task name and
arguments), the cluster and config digest the run's verified metadata: the worker rebuilds the claims
from them and verifies the signature over those, so a token made for another task, run, node, cluster
or config does not verify. (Carrying the claims too, as ``kb1`` tokens did, tripled the token, and every
message carries the tokens of all the links after it: that cost a measurable share of each hop.)

``iat`` is Redis's clock when the chain was signed (one clock for every signer), ``exp`` = ``iat`` +
``KUBEBOOT_TASK_TTL``. A worker runs a task only if its token verifies for this task, run, node, the
run's cluster and config digest and one of the worker's own queues, and has not expired (``SKEW``
allowed). What Celery's own message signing (``task_serializer='auth'``) would add is covered here, and
it would not fit: Celery signs each message as it is sent, so a node worker forwarding a chain's next
link would have to hold a signing key, and nothing in it says which node a message is for or until when.

**Run metadata.** The fields of a run's record that decide what runs where (``META_FIELDS``: kind,
cluster, spec digest, plan, nodes, route, lock, parent, batch ...) are signed when the run is created;
the signature is the record's ``auth`` field. Every reader holding a key verifies it before use
(``RunStore.get_run``, ``RunStore.meta``): an edit in Redis (``kind: batch``, a dropped ``lock``, a
changed route) is refused. ``status`` and the phase records are not signed: node workers write them
(one Lua script per transition) and hold no key; what protects against a forged status is the token's
expiry and the node's own journal of the newest dispatch it ran (``tasks.trust.journal``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PREFIX = "kb1"  # run metadata signatures (stored in run records)
TOKEN_PREFIX = "kb2"  # task tokens
SKEW = 60.0  # seconds of clock difference between signer and worker tolerated on expiry
META_FIELDS = ("id", "kind", "cluster", "spec_digest", "created", "nodes", "plan", "route", "lock", "parent",
               "batch", "dry_run")
META_SIGNATURE = "auth"


class Refused(Exception):
    """A task or a run record that must not be acted on; the message says why (no secret in it)."""


@dataclass(frozen=True)
class TaskToken:
    run: str
    cluster: str
    node: str
    queue: str
    task: str
    digest: str
    iat: float
    exp: float

    def body(self) -> bytes:
        """The canonical bytes the signature covers."""
        # vars(), not dataclasses.asdict: the same flat dict without asdict's deep copy (a chain signs dozens)
        return json.dumps(vars(self), separators=(",", ":"), sort_keys=True).encode()

    def sign(self, key: Ed25519PrivateKey) -> str:
        if ":" in self.queue:
            raise ValueError(f"a queue name holds no ':': {self.queue!r}")
        return f"{TOKEN_PREFIX}:{self.queue}:{self.iat!r}:{self.exp!r}:{_enc(key.sign(self.body()))}"

    @classmethod
    def verify(cls, text: str, key: Ed25519PublicKey, *, now: float, task: str, run: str, node: str,
               cluster: str, digest: str) -> TaskToken:
        """The token of ``task`` of ``run`` on ``node`` (``cluster`` and ``digest``: the run's verified
        metadata) if its signature holds for exactly these and it has not expired, else ``Refused``."""
        token, signature = cls.parse(text, task=task, run=run, node=node, cluster=cluster, digest=digest)
        try:
            key.verify(signature, token.body())
        except InvalidSignature:
            raise Refused(f"its token does not verify with the pinned control key for {task} of run {run} on node "
                          f"{node or '-'} (cluster {cluster}, its config): not this task's token, or forged"
                          ) from None
        if now > token.exp + SKEW:
            raise Refused(f"the authorisation token expired {now - token.exp:.0f}s ago (KUBEBOOT_TASK_TTL)")
        return token

    @classmethod
    def parse(cls, text: str, **claims: str) -> tuple[TaskToken, bytes]:
        """The claims (the ones the token carries, the rest from ``claims``) and the signature, unverified."""
        parts = text.split(":") if isinstance(text, str) else []
        try:
            if len(parts) != 5 or parts[0] != TOKEN_PREFIX or not parts[1]:
                raise ValueError(text)
            iat, exp, signature = float(parts[2]), float(parts[3]), _dec(parts[4])
            if not (math.isfinite(iat) and math.isfinite(exp)):
                raise ValueError(text)
        except (ValueError, binascii.Error):
            raise Refused(f"no valid authorisation token ({TOKEN_PREFIX}:<queue>:<iat>:<exp>:<signature>)") from None
        return cls(queue=parts[1], iat=iat, exp=exp, **claims), signature


def meta_bytes(fields: Mapping[str, Any]) -> bytes:
    """The canonical bytes the metadata signature covers: every ``META_FIELDS`` value as stored."""
    values = [[name, _text(fields.get(name))] for name in META_FIELDS]
    return json.dumps(values, separators=(",", ":")).encode()


def sign_meta(fields: Mapping[str, Any], key: Ed25519PrivateKey) -> str:
    return f"{PREFIX}.{_enc(key.sign(meta_bytes(fields)))}"


def verify_meta(fields: Mapping[str, Any], key: Ed25519PublicKey, run_id: str) -> None:
    """``Refused`` unless the record's ``auth`` field signs its ``META_FIELDS`` as they are now."""
    stored = _text(fields.get(META_SIGNATURE))
    if not stored.startswith(PREFIX + "."):
        raise Refused(f"run {run_id}: its record carries no metadata signature (edited in Redis?)")
    try:
        key.verify(_dec(stored.split(".", 1)[1]), meta_bytes(fields))
    except (InvalidSignature, ValueError, binascii.Error):
        raise Refused(f"run {run_id}: its metadata (kind, cluster, plan, route, lock ...) does not match its "
                      "signature: edited in Redis") from None


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _enc(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _dec(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs the tokens of one chain of one run: same ``iat`` and ``exp`` for every link."""

    def __init__(self, key: Ed25519PrivateKey, *, run: str, cluster: str, digest: str, iat: float, ttl: float) -> None:
        self._key = key
        self._claims = {"run": run, "cluster": cluster, "digest": digest, "iat": iat, "exp": iat + ttl}

    def __call__(self, task: str, node: str, queue: str) -> str:
        return TaskToken(task=task, node=node, queue=queue, **self._claims).sign(self._key)  # type: ignore[arg-type]
