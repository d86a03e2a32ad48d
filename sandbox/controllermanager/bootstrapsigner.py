"""Controller ``bootstrapsigner`` (pkg/controller/bootstrap/bootstrapsigner.go).

Reads: bootstrap token Secrets in kube-system, ConfigMap ``kube-public/cluster-info``.
Writes: ``jws-kubeconfig-<token-id>`` keys of cluster-info, one per token that may sign (valid name,
matching ``token-id``, a ``token-secret``, not expired, ``usage-bootstrap-signing: "true"``), each the
detached JWS of the ``kubeconfig`` value; signatures of tokens that are gone are removed. The ConfigMap
is updated only when a signature changed, appeared or disappeared; a conflict is retried next pass.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kubernetes.client as k8s
from kubernetes.client.rest import ApiException

from kubeboot.sandbox import jws
from kubeboot.sandbox.controllermanager import bootstraptokens as bt
from kubeboot.sandbox.controllermanager.base import Controller
from kubeboot.sandbox.controllermanager.client import NAMESPACE, body, items

PUBLIC_NAMESPACE = "kube-public"
CLUSTER_INFO = "cluster-info"
KUBECONFIG_KEY = "kubeconfig"
SIGNATURE_PREFIX = "jws-kubeconfig-"


def signing_token(secret: dict[str, Any], now: datetime) -> tuple[str, str] | None:
    """validateSecretForSigning: (token id, token secret) when this Secret may sign cluster-info."""
    if not bt.is_token_secret(secret):
        return None
    name_id = bt.parse_name(str((secret.get("metadata") or {}).get("name") or ""))
    token_id, token_secret = bt.data(secret, "token-id"), bt.data(secret, "token-secret")
    if name_id is None or not token_id or name_id != token_id or not token_secret:
        return None
    if bt.has_expired(secret, now) or bt.data(secret, "usage-bootstrap-signing") != "true":
        return None
    return token_id, token_secret


def signing_tokens(secrets: list[dict[str, Any]], now: datetime) -> dict[str, str]:
    """getTokens: token id -> secret; the first Secret wins for a duplicated id."""
    tokens: dict[str, str] = {}
    for secret in secrets:
        found = signing_token(secret, now)
        if found and found[0] not in tokens:
            tokens[found[0]] = found[1]
    return tokens


def signed_data(cm_data: dict[str, str], tokens: dict[str, str]) -> dict[str, str] | None:
    """signConfigMap: the new data of cluster-info, or None when nothing has to change
    (no kubeconfig to sign, or every signature already current and none stale)."""
    content = cm_data.get(KUBECONFIG_KEY)
    if content is None:
        return None
    new = {k: v for k, v in cm_data.items() if not k.startswith(SIGNATURE_PREFIX)}
    for token_id, token_secret in sorted(tokens.items()):
        new[SIGNATURE_PREFIX + token_id] = jws.detached_sign(content, token_id, token_secret)
    return None if new == cm_data else new


class BootstrapSigner(Controller):
    name = "bootstrapsigner"
    account = "bootstrap-signer"
    # The real one's informers: token Secrets of kube-system and the cluster-info ConfigMap.
    watches = ((f"/api/v1/namespaces/{NAMESPACE}/secrets", {"fieldSelector": f"type={bt.SECRET_TYPE}"}),
               (f"/api/v1/namespaces/{PUBLIC_NAMESPACE}/configmaps",
                {"fieldSelector": f"metadata.name={CLUSTER_INFO}"}))

    def sync(self) -> None:
        core = k8s.CoreV1Api(self.api)
        try:
            cm = body(core.read_namespaced_config_map(CLUSTER_INFO, PUBLIC_NAMESPACE, _preload_content=False))
        except ApiException as e:
            if e.status == 404:  # not uploaded yet (phase bootstrap-token): nothing to sign
                return
            raise
        secrets = [s for s in items(core.list_namespaced_secret(NAMESPACE, _preload_content=False))
                   if bt.is_token_secret(s)]
        new = signed_data(dict(cm.get("data") or {}), signing_tokens(secrets, datetime.now(UTC)))
        if new is None:
            return
        cm["data"] = new
        try:
            core.replace_namespaced_config_map(CLUSTER_INFO, PUBLIC_NAMESPACE, cm, _preload_content=False)
        except ApiException as e:
            if e.status in (404, 409):  # changed or gone meanwhile: the next pass sees the new state
                return
            raise
        signed = sorted(k[len(SIGNATURE_PREFIX):] for k in new if k.startswith(SIGNATURE_PREFIX))
        self.log.info('"Updated cluster-info signatures" configMap="%s/%s" tokens=%s',
                      PUBLIC_NAMESPACE, CLUSTER_INFO, signed)
