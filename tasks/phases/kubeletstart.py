"""Phase ``kubelet-start``: write the kubelet's files and (re)start it (kubeadm-spec 2.6).

Reads: ``ctx.cfg``, the node root's ``/etc/hostname`` and ``/run/systemd/resolve/resolv.conf``, the
patches directory. Writes (0644, in kubeadm's order, directory ``/var/lib/kubelet`` 0700):
``kubeadm-flags.env``, ``instance-config.yaml`` (NodeLocalCRISocket, every supported minor), ``config.yaml``.
Then starts the kubelet through ``ctx.kubelet``.

Like kubeadm, the kubelet is stopped before the files are written and restarted afterwards on every
run, even when no byte changed: a restart is harmless (static Pods keep running) and it is the only
way to be sure a kubelet started by hand reads the current files. Files themselves are written only
when different, so a re-run leaves bytes and mtimes alone. Dry-run (``dryRun: true``) leaves the
kubelet alone, as kubeadm does.
"""

from __future__ import annotations

from kubeboot.config import constants as c
from kubeboot.tasks import kubeletconfig as kc
from kubeboot.tasks.phases.context import NodeContext

PHASE = "kubelet-start"
FILE_MODE = 0o644
KUBELET_DIR_MODE = 0o700


def _write(ctx: NodeContext, path: str, data: str) -> None:
    ctx.fs.write(path, data, mode=FILE_MODE, dir_mode=KUBELET_DIR_MODE)


def write_kubelet_files(ctx: NodeContext) -> None:
    cfg = ctx.cfg
    ctx.log(PHASE, f'Writing kubelet environment file with flags to file "{c.KUBELET_FLAGS_ENV_FILE}"')
    _write(ctx, c.KUBELET_FLAGS_ENV_FILE, kc.flags_env(cfg, kc.os_hostname(ctx.fs)))

    if cfg.profile.node_local_cri_socket:
        ctx.log(PHASE, f'Writing kubelet configuration to file "{c.KUBELET_INSTANCE_CONFIG_FILE}"')
        _write(ctx, c.KUBELET_INSTANCE_CONFIG_FILE, kc.instance_config(cfg))
    else:
        ctx.log(PHASE, "Skipping writing instance kubelet configuration file as the NodeLocalCRISocket "
                "feature gate is disabled")

    resolved = kc.systemd_resolved_active(ctx.fs)
    # upload-config (on the control worker, which cannot see this node) uploads the same cluster
    # KubeletConfiguration, resolvConf included: it learns the node's fact from the run.
    ctx.secrets.put(c.SECRET_SYSTEMD_RESOLVED, b"1" if resolved else b"0")
    cluster_doc = kc.cluster_kubelet_config(cfg, resolved_active=resolved)
    node_doc = kc.node_kubelet_config(cluster_doc, cfg, ctx.out)
    ctx.log(PHASE, f'Writing kubelet configuration to file "{c.KUBELET_CONFIG_FILE}"')
    _write(ctx, c.KUBELET_CONFIG_FILE, kc.dump_yaml(node_doc))


def run_kubelet_start(ctx: NodeContext) -> None:
    dry_run = ctx.cfg.init.dryRun
    if ctx.kubelet is not None and not dry_run:
        # kubeadm: "Try to stop the kubelet service so no race conditions occur when configuring it".
        ctx.kubelet.stop(ctx.out)
    write_kubelet_files(ctx)
    if not dry_run:
        start_kubelet(ctx)


def start_kubelet(ctx: NodeContext) -> None:
    """Start the kubelet through the node's driver (init and join alike); without one, say so."""
    if ctx.kubelet is None:
        ctx.log(PHASE, "Not starting the kubelet: no kubelet driver is configured (--kubelet none)")
        return
    ctx.log(PHASE, "Starting the kubelet")
    ctx.kubelet.start(ctx.out)
