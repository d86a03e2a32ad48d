"""Controller ``tokencleaner`` (pkg/controller/bootstrap/tokencleaner.go).

Reads: Secrets of type ``bootstrap.kubernetes.io/token`` in kube-system. Writes: deletes those whose
``expiration`` has passed (or does not parse), with a UID precondition so a token re-created under the
same name meanwhile is not deleted; NotFound and Conflict mean someone else already acted.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import kubernetes.client as k8s
from kubernetes.client.rest import ApiException

from kubeboot.sandbox.controllermanager import bootstraptokens as bt
from kubeboot.sandbox.controllermanager.base import Controller
from kubeboot.sandbox.controllermanager.client import NAMESPACE, items


def expired_tokens(secrets: list[dict[str, Any]], now: datetime) -> list[tuple[str, str]]:
    """(name, uid) of the expired bootstrap token Secrets among ``secrets``."""
    out = []
    for secret in secrets:
        if bt.is_token_secret(secret) and bt.has_expired(secret, now):
            meta = secret.get("metadata") or {}
            out.append((str(meta.get("name") or ""), str(meta.get("uid") or "")))
    return out


class TokenCleaner(Controller):
    name = "tokencleaner"
    account = "token-cleaner"
    interval = 1.0
    watches = ((f"/api/v1/namespaces/{NAMESPACE}/secrets", {"fieldSelector": f"type={bt.SECRET_TYPE}"}),)

    def sync(self) -> None:
        core = k8s.CoreV1Api(self.api)
        secrets = items(core.list_namespaced_secret(NAMESPACE, _preload_content=False))
        now = datetime.now(UTC)
        # As the real one queues each token again at its expiration: the next pass is then.
        soonest = bt.next_expiration(secrets, now)
        self.wake_at = None if soonest is None else time.monotonic() + (soonest - now).total_seconds()
        for name, uid in expired_tokens(secrets, now):
            options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
            if uid:
                options["preconditions"] = {"uid": uid}
            try:
                core.delete_namespaced_secret(name, NAMESPACE, body=options, _preload_content=False)
            except ApiException as e:
                if e.status in (404, 409):
                    continue
                raise
            self.log.info('"Deleted expired bootstrap token" secret="%s/%s"', NAMESPACE, name)
