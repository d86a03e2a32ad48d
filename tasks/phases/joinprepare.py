"""Phases ``control-plane-prepare/*`` of a control-plane join (kubeadm cmd/phases/join/controlplaneprepare.go).

- ``download-certs``: GET ``kube-system/kubeadm-certs`` with the bootstrap token (Role
  ``kubeadm:kubeadm-certs``), open every value with the certificate key (``tasks.copycerts``, kubeadm's
  AES-GCM), write the CA keys, ``sa.*``, ``front-proxy-ca.*`` and ``etcd/ca.*`` (private keys 0600,
  certificates and ``sa.pub`` 0644, as kubeadm's writeCertOrKey decides by the content). Without
  ``--certificate-key`` the phase does nothing (the files must be here already). When the files are
  already here and ``ca.crt`` is the discovered CA (an earlier attempt downloaded them),
  nothing is fetched: the Secret may have expired since.
- ``certs``: this node's own leaves signed by those CAs (its name and address in the SANs) with the
  init helpers; the CAs and ``sa`` are reused ("Using existing ...").
- ``kubeconfig``: ``admin.conf``, ``controller-manager.conf``, ``scheduler.conf`` (no super-admin.conf,
  no kubelet.conf: the kubelet's comes from its TLS bootstrap); admin.conf goes to the run secrets for
  the control worker's ``mark-control-plane``.
- ``control-plane``: the three static Pod manifests.
A worker join's plan leaves these phases out; called on one anyway they return at once, as kubeadm's do.
"""

from __future__ import annotations

import base64
from typing import Any

from kubeboot.config import constants as c
from kubeboot.tasks import copycerts, kubeapi, pki
from kubeboot.tasks.certlist import cert_table
from kubeboot.tasks.errors import PermanentError, TemporaryError
from kubeboot.tasks.nodemarker import marker_record, write_node_marker
from kubeboot.tasks.phases import certs as certs_phase
from kubeboot.tasks.phases import controlplane as cp_phase
from kubeboot.tasks.phases import kubeconfig as kubeconfig_phase
from kubeboot.tasks.phases.joincluster import bootstrap_client, ensure_cluster, trusted_cluster
from kubeboot.tasks.phases.joincontext import JoinNodeContext

CERTS_SECRET = "kubeadm-certs"
KEY_MODE, CERT_MODE = 0o600, 0o644
JOIN_KUBECONFIGS = ("admin", "controller-manager", "scheduler")  # CreateJoinControlPlaneKubeConfigFiles
REUPLOAD = ("run `kubeadm init phase upload-certs --upload-certs` (or `kubeboot init phase upload-certs "
            "--upload-certs --config FILE`) on a control-plane node and join with the certificate key it prints")


def _mode(data: bytes) -> int:
    """kubeadm's writeCertOrKey: a private key is written 0600, anything else (certificates, sa.pub) 0644."""
    return KEY_MODE if pki.load_key_or_none(data) is not None else CERT_MODE


def _already_here(ctx: JoinNodeContext, files: dict[str, str], ca_hash: str) -> bool:
    ca = pki.load_cert_or_none(ctx.fs.read_bytes(f"{ctx.cfg.pki_dir}/ca.crt"))
    return ca is not None and pki.ca_cert_hash(ca) == ca_hash and all(
        ctx.fs.exists(path) for path in files.values() if path)


def _fetch_sealed(ctx: JoinNodeContext, api: Any) -> dict[str, bytes]:
    what = f'error downloading the secret "{CERTS_SECRET}"'
    path = kubeapi.object_path("Secret", c.NAMESPACE_SYSTEM, CERTS_SECRET)
    try:
        secret = kubeapi.call(lambda: kubeapi.request(api, "GET", path), what)
    except kubeapi.ApiException as e:
        if e.status == 404:
            raise PermanentError(f'Secret "{CERTS_SECRET}" was not found in the "{c.NAMESPACE_SYSTEM}" Namespace. '
                                 f"This Secret might have expired. Please, {REUPLOAD}") from None
        if e.status == 401:
            raise PermanentError(f"{what}: the bootstrap token was refused (401 Unauthorized): it is unknown to the "
                                 "cluster or has expired") from None
        raise TemporaryError(f"{what}: {kubeapi.describe(e)}") from e
    return {k: base64.b64decode(v or "") for k, v in (secret.get("data") or {}).items()}


def run_download_certs(ctx: JoinNodeContext) -> None:
    if not ctx.join.is_control_plane or not ctx.join.certificate_key:
        return  # kubeadm: "[download-certs] Skipping certs download"
    info = trusted_cluster(ctx)
    cfg = ctx.cfg
    files = copycerts.certs_to_transfer(cfg)
    if _already_here(ctx, files, info.ca_hash):
        ctx.log("download-certs", f'Using the certificates already in "{cfg.pki_dir}" (downloaded earlier)')
        return
    ctx.log("download-certs", f'Downloading the certificates in Secret "{CERTS_SECRET}" in the '
                              f'"{c.NAMESPACE_SYSTEM}" Namespace')
    sealed = _fetch_sealed(ctx, bootstrap_client(ctx, info))
    if ctx.join.join.dryRun and not sealed:  # kubeadm's made-up kubeadm-certs: nothing to download
        ctx.log("download-certs", "[dryrun] Would download the certificates shared among control-plane nodes")
        return
    try:
        key = copycerts.decode_key(ctx.join.certificate_key)
        plain = copycerts.open_files(sealed, key)
    except copycerts.CertificateKeyError as e:
        raise PermanentError(f"error downloading certs: error decoding secret data with provided key: {e} (is "
                             "--certificate-key the key printed by the upload, and the latest one?)") from None
    ca = pki.load_cert_or_none(plain.get("ca.crt"))
    if ca is None or pki.ca_cert_hash(ca) != info.ca_hash:
        raise PermanentError(f'error downloading certs: the "{CERTS_SECRET}" ca.crt is not the cluster CA '
                             f"discovery trusted ({info.ca_hash})")
    ctx.log("download-certs", f'Saving the certificates to the folder: "{cfg.pki_dir}"')
    for name, path in files.items():
        if path and plain.get(name):
            ctx.fs.write(path, plain[name], mode=_mode(plain[name]))
    write_node_marker(ctx.fs, marker_record(cfg.cluster.clusterName, cfg.node_name, info.ca_hash))


def run_certs(ctx: JoinNodeContext) -> None:
    if not ctx.join.is_control_plane:
        return
    cfg = ensure_cluster(ctx)
    if not ctx.fs.exists(f"{cfg.pki_dir}/ca.crt"):
        raise PermanentError(f"{cfg.pki_dir}/ca.crt is missing: the shared certificates must be downloaded "
                             "(--certificate-key) or copied here before the node's own are made")
    certs_phase.run_certs(ctx)  # "Using certificateDir folder", keys generated ahead in parallel
    for row in cert_table(cfg):
        certs_phase.run_cert(ctx, row.name)
    certs_phase.run_sa(ctx)


def run_kubeconfig(ctx: JoinNodeContext) -> None:
    if not ctx.join.is_control_plane:
        return
    ensure_cluster(ctx)
    ctx.log("kubeconfig", "Generating kubeconfig files")
    ctx.log("kubeconfig", f'Using kubeconfig folder "{c.KUBERNETES_DIR}"')
    for name in JOIN_KUBECONFIGS:
        kubeconfig_phase.run_kubeconfig_file(ctx, name)


def run_control_plane(ctx: JoinNodeContext) -> None:
    if not ctx.join.is_control_plane:
        return
    ensure_cluster(ctx)
    cp_phase.run_control_plane_prepare(ctx)
    for component in c.CONTROL_PLANE_COMPONENTS:
        cp_phase.run_control_plane(ctx, component)
