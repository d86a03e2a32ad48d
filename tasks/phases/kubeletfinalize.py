"""Phase ``kubelet-finalize/enable-client-cert-rotation`` (kubeadm-spec 2.12; kubeadm
cmd/phases/init/kubeletfinalize.go).

Reads: ``<kubelet cert dir>/kubelet-client-current.pem`` (the cert dir is ``/var/lib/kubelet/pki`` unless
``nodeRegistration.kubeletExtraArgs`` sets ``cert-dir``) and ``/etc/kubernetes/kubelet.conf``.
Writes: ``kubelet.conf`` (0600) with the current context's user pointing ``client-certificate`` and
``client-key`` at that PEM file, embedded ``client-*-data`` removed; then restarts the kubelet through
``ctx.kubelet``. That lets the kubelet rotate its client certificate: the PEM is the kubelet's own
symlink to its latest certificate + key.

No PEM → nothing to do (kubeadm: "client certificate rotation is disabled"). kubeadm rewrites the file
and restarts the kubelet on every run; here a file that already points at the PEM is left alone and
the kubelet is not restarted, so a re-run changes nothing. The kubeadm line is printed either way, as
kubeadm prints it whenever the PEM exists.
"""

from __future__ import annotations

import logging
import posixpath
from typing import Any

import yaml

from kubeboot.config import constants as c
from kubeboot.tasks import goyaml
from kubeboot.tasks import kubeconfig as kc
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.manifests import arg_value
from kubeboot.tasks.phases.context import NodeContext

PHASE = "kubelet-finalize"
KUBELET_CONF_PATH = f"{c.KUBERNETES_DIR}/{c.KUBELET_CONF}"
CURRENT_PEM = posixpath.basename(c.KUBELET_CLIENT_CURRENT_PEM)
FILE_MODE = 0o600  # clientcmd.WriteToFile
RESTART_PENDING = "kubelet-finalize.restart-pending"  # run secret: b"1" between the rewrite and the restart
log = logging.getLogger("kubeboot.kubelet-finalize")


def client_pem_path(ctx: NodeContext) -> str:
    """kubeadm: ``--cert-dir`` from kubeletExtraArgs (the last one) wins over ``<kubelet dir>/pki``."""
    cert_dir = arg_value(ctx.cfg.init.nodeRegistration.kubeletExtraArgs, "cert-dir")
    return posixpath.join(cert_dir, CURRENT_PEM) if cert_dir is not None else c.KUBELET_CLIENT_CURRENT_PEM


def _load(text: str) -> dict[str, Any]:
    try:
        doc = goyaml.load(text)
    except yaml.YAMLError as e:
        raise PermanentError(f'could not load "{KUBELET_CONF_PATH}": {e}') from None
    if not isinstance(doc, dict):
        raise PermanentError(f'could not load "{KUBELET_CONF_PATH}": not a kubeconfig document')
    return doc


def _named_entry(doc: dict[str, Any], key: str, name: str) -> dict[str, Any] | None:
    for entry in doc.get(key) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return None


def _current_user(doc: dict[str, Any], node_name: str) -> dict[str, Any]:
    """The current context's user entry, validated with kubeadm's messages (a corrupted kubelet.conf)."""
    current = str(doc.get("current-context") or "")
    if not current:
        raise PermanentError(f'the file "{KUBELET_CONF_PATH}" does not have current context set')
    context = _named_entry(doc, "contexts", current)
    if context is None:
        raise PermanentError(f'the file "{KUBELET_CONF_PATH}" is not a valid kubeconfig: "{current}" set as '
                             "current-context, but not found in context list")
    user_name = str((context.get("context") or {}).get("user") or "")
    if not user_name:
        raise PermanentError(f'the file "{KUBELET_CONF_PATH}" is not a valid kubeconfig: empty username for '
                             "current context")
    user = _named_entry(doc, "users", user_name)
    if user is None:
        raise PermanentError(f'the file "{KUBELET_CONF_PATH}" does not contain authentication for user '
                             f'"{node_name}"')
    if not isinstance(user.get("user"), dict):
        user["user"] = {}
    auth: dict[str, Any] = user["user"]
    return auth


def point_at_pem(doc: dict[str, Any], pem_path: str, node_name: str) -> bool:
    """Make the current user use ``pem_path`` for certificate and key; False if it already does."""
    auth = _current_user(doc, node_name)
    wanted = {"client-certificate": pem_path, "client-key": pem_path}
    embedded = [k for k in ("client-certificate-data", "client-key-data") if k in auth]
    if not embedded and all(auth.get(k) == v for k, v in wanted.items()):
        return False
    for k in embedded:
        del auth[k]
    auth.update(wanted)
    return True


def run_kubelet_finalize(ctx: NodeContext) -> None:
    pem_path = client_pem_path(ctx)
    if not ctx.fs.exists(pem_path):
        log.debug('[kubelet-finalize] Assuming that kubelet client certificate rotation is disabled: "%s" '
                  "does not exist", pem_path)
        return
    ctx.log(PHASE, f'Updating "{KUBELET_CONF_PATH}" to point to a rotatable kubelet client certificate and key')
    if ctx.cfg.init.dryRun:
        return
    text = ctx.fs.read_text(KUBELET_CONF_PATH)
    if text is None:
        raise PermanentError(f'could not load "{KUBELET_CONF_PATH}": no such file or directory')
    doc = _load(text)
    if point_at_pem(doc, pem_path, ctx.cfg.node_name):
        # Remember the restart before writing: an attempt that dies between the write and the restart
        # finds the file already right on retry and must still restart the kubelet.
        ctx.secrets.put(RESTART_PENDING, b"1")
        ctx.fs.write(KUBELET_CONF_PATH, kc.dump(doc), mode=FILE_MODE)
    if ctx.secrets.get(RESTART_PENDING) == b"1":
        if ctx.kubelet is not None:
            log.info("[kubelet-finalize] Restarting the kubelet to enable client certificate rotation")
            ctx.kubelet.restart(ctx.out)
        ctx.secrets.put(RESTART_PENDING, b"")
