"""Phase ``upload-certs`` (kubeadm-spec 2.9; kubeadm phases/copycerts/copycerts.go UploadCerts and
cmd/phases/init/uploadcerts.go). Runs only when the run asks for it (``--upload-certs``): the workflow
decides; called, this phase always uploads.

Reads: the node's CA files (``tasks.copycerts.certs_to_transfer``), ``admin.conf`` for the API, the run
secrets ``certificate-key`` and ``upload-certs-token``.
Writes (API, kube-system): the 2-hour bootstrap token Secret ``bootstrap-token-<id>`` (description "Proxy
for managing TTL for the kubeadm-certs secret", no usages, no extra groups, as kubeadm makes it);
Secret ``kubeadm-certs`` (every file sealed with the certificate key, owned by that token's Secret through
a controller reference, so the garbage collector removes it when the token cleaner removes the expired
token); Role and RoleBinding ``kubeadm:kubeadm-certs`` (get that Secret; group
``system:bootstrappers:kubeadm:default-node-token``). Run secrets: ``certificate-key`` when generated,
``upload-certs-token``.

Convergence, where kubeboot differs from kubeadm on purpose: kubeadm mints a new token and re-seals every
file on each run. Here the certificate key is chosen once per run (config, else the run's secret, else
generated and stored BEFORE anything is uploaded, so a retry seals with the same key), the token is
reused while the owning token of the existing Secret still has ``TOKEN_REUSE_MIN_SECONDS`` to live (a
retry or a second run creates no second token; a nearly expired one is replaced so the printed key works
for a useful while), and a sealed value that still opens to the current file is kept, so a re-run writes
nothing when nothing changed.
"""

from __future__ import annotations

import base64
import secrets
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubeboot.config import constants as c
from kubeboot.tasks import copycerts, dryrun, kubeapi
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.phases.context import NodeContext

PHASE = "upload-certs"
NAMESPACE = "kube-system"
CERTS_SECRET = "kubeadm-certs"  # kubeadm constants.KubeadmCertsSecret
CERTS_ROLE = "kubeadm:kubeadm-certs"  # kubeadm constants.KubeadmCertsClusterRoleName
TOKEN_TTL_SECONDS = 2 * 60 * 60  # kubeadm constants.DefaultCertTokenDuration
TOKEN_REUSE_MIN_SECONDS = 60 * 60
TOKEN_DESCRIPTION = "Proxy for managing TTL for the kubeadm-certs secret"
TOKEN_SECRET_TYPE = "bootstrap.kubernetes.io/token"
KEY_SECRET = "certificate-key"  # run secrets
TOKEN_RUN_SECRET = "upload-certs-token"
_TOKEN_CHARS = string.ascii_lowercase + string.digits  # cluster-bootstrap's validBootstrapTokenChars

Clock = Callable[[], datetime]
Obj = dict[str, Any]


def certificate_key(ctx: NodeContext) -> str:
    """The configured key, else this run's, else a new one stored before first use. The key used is
    always in the run's secrets: show-join-command prints it in the control-plane join command."""
    if ctx.cfg.init.certificateKey:
        ctx.secrets.put(KEY_SECRET, ctx.cfg.init.certificateKey.encode())
        return ctx.cfg.init.certificateKey
    stored = ctx.secrets.get(KEY_SECRET)
    if stored:
        return stored.decode()
    key = copycerts.create_certificate_key()
    ctx.secrets.put(KEY_SECRET, key.encode())
    return key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(data: Obj | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v or "") for k, v in (data or {}).items()}


# --- the short-lived token ------------------------------------------------------------------------


def _random_chars(n: int) -> str:
    return "".join(secrets.choice(_TOKEN_CHARS) for _ in range(n))


def new_token() -> str:
    """cluster-bootstrap's GenerateBootstrapToken: ``[a-z0-9]{6}.[a-z0-9]{16}``."""
    return f"{_random_chars(6)}.{_random_chars(16)}"


def token_secret(token: str, now: datetime) -> Obj:
    """kubeadm's BootstrapTokenToSecret for the upload-certs token (no usages, no groups)."""
    token_id, token_value = token.split(".")
    expiration = (now + timedelta(seconds=TOKEN_TTL_SECONDS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = {"token-id": token_id, "token-secret": token_value, "description": TOKEN_DESCRIPTION,
            "expiration": expiration}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": TOKEN_SECRET_TYPE,
        "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": NAMESPACE},
        "data": {k: _b64(v.encode()) for k, v in data.items()},
    }


def _usable(secret: Obj | None, now: datetime, token: str | None = None) -> bool:
    """A token Secret of this phase that lives long enough (and holds ``token``, when given)."""
    if secret is None or secret.get("type") != TOKEN_SECRET_TYPE:
        return False
    data = {k: v.decode(errors="replace") for k, v in _unb64(secret.get("data")).items()}
    if data.get("description") != TOKEN_DESCRIPTION:
        return False
    if token is not None and f"{data.get('token-id')}.{data.get('token-secret')}" != token:
        return False
    try:
        expires = datetime.strptime(data.get("expiration", ""), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return False
    return expires - now >= timedelta(seconds=TOKEN_REUSE_MIN_SECONDS)


def _owner_token(api: Any, certs: Obj | None, now: datetime) -> Obj | None:
    """The token Secret that owns an existing kubeadm-certs, if it is still usable."""
    for ref in ((certs or {}).get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Secret" and ref.get("controller"):
            secret = kubeapi.get(api, "Secret", str(ref.get("name")), NAMESPACE)
            uid = ((secret or {}).get("metadata") or {}).get("uid")
            if uid == ref.get("uid") and _usable(secret, now):
                return secret
    return None


def ensure_token(ctx: NodeContext, api: Any, certs: Obj | None, now: datetime) -> Obj:
    """The token Secret that owns kubeadm-certs: the current owner, this run's token, or a new one."""
    owner = _owner_token(api, certs, now)
    if owner is not None:
        return owner
    stored = ctx.secrets.get(TOKEN_RUN_SECRET)
    token = stored.decode() if stored else ""
    for _ in range(2):
        if not token:
            token = new_token()
            ctx.secrets.put(TOKEN_RUN_SECRET, token.encode())  # before creating: a retry finds it
        desired = token_secret(token, now)
        name = desired["metadata"]["name"]
        kubeapi.ensure_retained(api, desired, "error creating token")
        secret = kubeapi.get(api, "Secret", name, NAMESPACE)
        if _usable(secret, now, token):
            assert secret is not None
            return secret
        token = ""  # expired, nearly expired or not ours: mint another
    raise PermanentError("error creating token: the new upload-certs token Secret is not readable as created")


def owner_reference(secret: Obj) -> Obj:
    """metav1.NewControllerRef(secret, v1 Secret)."""
    meta = secret["metadata"]
    return {"apiVersion": "v1", "kind": "Secret", "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


# --- the Secret and its RBAC ----------------------------------------------------------------------


def certs_secret(sealed: dict[str, bytes], owner: Obj) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": CERTS_SECRET, "namespace": NAMESPACE, "ownerReferences": [owner]},
        "data": {k: _b64(v) for k, v in sorted(sealed.items())},
    }


def rbac_objects() -> list[Obj]:
    rbac = "rbac.authorization.k8s.io"
    meta = {"name": CERTS_ROLE, "namespace": NAMESPACE}
    role = {"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": dict(meta),
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"],
                       "resourceNames": [CERTS_SECRET]}]}
    binding = {"apiVersion": f"{rbac}/v1", "kind": "RoleBinding", "metadata": dict(meta),
               "roleRef": {"apiGroup": rbac, "kind": "Role", "name": CERTS_ROLE},
               "subjects": [{"apiGroup": rbac, "kind": "Group", "name": c.DEFAULT_TOKEN_GROUP}]}
    return [role, binding]


def upload_certs(ctx: NodeContext, *, clock: Clock) -> None:
    ctx.log(PHASE, f'Storing the certificates in Secret "{CERTS_SECRET}" in the "{NAMESPACE}" Namespace')
    key_hex = certificate_key(ctx)
    try:
        key = copycerts.decode_key(key_hex)
    except copycerts.CertificateKeyError as e:
        raise PermanentError(str(e)) from None
    if ctx.cfg.init.dryRun and dryrun.current() is None:
        # No fake API to print the writes to (a phase run without a dry-run session): only announce.
        ctx.log(PHASE, ctx.shown(f"Using certificate key:\n{key_hex}"))
        return
    admin = ctx.kubeconfig(c.ADMIN_CONF)
    if admin is None:
        raise PermanentError(f'could not load "{c.KUBERNETES_DIR}/{c.ADMIN_CONF}": no such file or directory')
    api = kubeapi.api_client(admin)
    existing = kubeapi.get(api, "Secret", CERTS_SECRET, NAMESPACE)
    owner = ensure_token(ctx, api, existing, clock())
    plain = copycerts.read_files(ctx.fs, ctx.cfg)
    sealed = copycerts.seal_files(plain, key, _unb64((existing or {}).get("data")))
    kubeapi.ensure(api, certs_secret(sealed, owner_reference(owner)))
    for obj in rbac_objects():
        kubeapi.ensure(api, obj)
    ctx.log(PHASE, ctx.shown(f"Using certificate key:\n{key_hex}"))


def _now() -> datetime:
    return datetime.now(UTC)


def run_upload_certs(ctx: NodeContext) -> None:
    upload_certs(ctx, clock=_now)
