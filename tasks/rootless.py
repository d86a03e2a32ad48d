"""RootlessControlPlane: the static Pods run as the kubeadm-* users, as kubeadm's RunComponentAsNonRoot
makes them (cmd/kubeadm/app/util/staticpod/utils_linux.go).

Reads: the configuration (feature gate, certificatesDir, external etcd or CA), the node's users and
groups (``tasks.users``). Writes: owner and mode of the files each component reads, then the Pod:

* etcd: the data directory (recursively) and etcd/server.key, etcd/peer.key owned etcd:etcd (keys 0600);
  Pod runAsUser/runAsGroup etcd; container drops ALL capabilities, no privilege escalation.
* kube-apiserver: sa.pub, apiserver.key, apiserver-kubelet-client.key, front-proxy-client.key and (local
  etcd only) apiserver-etcd-client.key owned kas:kas 0600, sa.key root:sa-key-readers 0640; Pod runs as
  kas with supplementalGroups [sa-key-readers]; container drops ALL and adds NET_BIND_SERVICE.
* kube-controller-manager: controller-manager.conf and (unless External CA) ca.key owned kcm:kcm 0600,
  sa.key root:sa-key-readers 0640; Pod runs as kcm with supplementalGroups [sa-key-readers]; container
  drops ALL, no privilege escalation.
* kube-scheduler: scheduler.conf owned ks:ks 0600; Pod runs as ks; container drops ALL, no escalation.

The seccomp profile every control-plane Pod has stays. Like kubeadm, this is done before the user's
patches, and in dry-run only announced. The node worker must run as root to chown (as kubeadm must).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from kubeboot.config import constants as c
from kubeboot.config.paths import go_join
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.users import UsersAndGroups

Pod = dict[str, Any]
_NO_ESCALATION: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
# kube-apiserver's binary carries the cap_net_bind_service file capability: running it as non-root
# needs the capability added even when it binds no low port (utils_linux.go).
_APISERVER: dict[str, Any] = {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}}
USER_OF = {c.ETCD: c.NONROOT_ETCD_USER, c.KUBE_APISERVER: c.NONROOT_APISERVER_USER,
           c.KUBE_CONTROLLER_MANAGER: c.NONROOT_KCM_USER, c.KUBE_SCHEDULER: c.NONROOT_SCHEDULER_USER}


def enabled(cfg: InitConfig) -> bool:
    return cfg.cluster.featureGates.get(c.FEATURE_ROOTLESS_CONTROL_PLANE, False)


def owned_files(cfg: InitConfig, component: str, *, external_ca: bool) -> list[tuple[str, str | None, str, int]]:
    """(node path, owning user or None for root, group, mode) for each file ``component`` must read."""
    pki, user = cfg.pki_dir, USER_OF[component]
    sa_key = (go_join(pki, "sa.key"), None, c.NONROOT_SA_KEY_READERS_GROUP, 0o640)
    if component == c.ETCD:
        return [(go_join(pki, f"etcd/{n}.key"), user, user, 0o600) for n in ("server", "peer")]
    if component == c.KUBE_APISERVER:
        files = [(go_join(pki, "sa.pub"), user, user, 0o600), sa_key]
        keys = ["apiserver.key", "apiserver-kubelet-client.key", "front-proxy-client.key"]
        if not cfg.cluster.is_external_etcd:
            keys.append("apiserver-etcd-client.key")
        return files + [(go_join(pki, k), user, user, 0o600) for k in keys]
    if component == c.KUBE_CONTROLLER_MANAGER:
        files = [(f"{c.KUBERNETES_DIR}/{c.CONTROLLER_MANAGER_CONF}", user, user, 0o600), sa_key]
        return files if external_ca else [*files, (go_join(pki, "ca.key"), user, user, 0o600)]
    return [(f"{c.KUBERNETES_DIR}/{c.SCHEDULER_CONF}", user, user, 0o600)]


def _chown(fs: NodeFS, path: str, uid: int, gid: int, mode: int | None) -> None:
    try:
        fs.chown(path, uid, gid, mode)
    except OSError as e:
        raise PermanentError(f'failed to update owner of "{path}" to uid: {uid} and gid: {gid}: '
                             f"{(e.strerror or str(e)).lower()}") from None


def _chown_tree(fs: NodeFS, path: str, uid: int, gid: int) -> None:
    """UpdatePathOwner: ``chown -R`` of the etcd data directory (symlinks themselves, never their targets)."""
    top = fs.path(path)
    _chown(fs, path, uid, gid, None)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames]:
            try:
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
            except OSError as e:
                raise PermanentError(f'failed to update owner of "{os.path.join(dirpath, name)}" to uid: {uid} '
                                     f"and gid: {gid}: {(e.strerror or str(e)).lower()}") from None


def run_as_non_root(fs: NodeFS, cfg: InitConfig, component: str, pod: Pod, ug: UsersAndGroups, *,
                    external_ca: bool) -> Pod:
    """RunComponentAsNonRoot: the files chowned, the Pod's security contexts set (``pod`` is changed)."""
    user = USER_OF[component]
    uid, gid = ug.uid(user), ug.gid(user)
    try:
        if component == c.ETCD:
            _chown_tree(fs, cfg.cluster.local_etcd.dataDir, uid, gid)
        for path, owner, group, mode in owned_files(cfg, component, external_ca=external_ca):
            _chown(fs, path, ug.uid(owner) if owner else 0, ug.gid(group), mode)
    except PermanentError as e:
        raise PermanentError(f'failed to run component "{component}" as non-root: {e}') from None
    pod_sc = pod["spec"].setdefault("securityContext", {})
    pod_sc.update(runAsUser=uid, runAsGroup=gid)
    if component in (c.KUBE_APISERVER, c.KUBE_CONTROLLER_MANAGER):
        pod_sc["supplementalGroups"] = [ug.gid(c.NONROOT_SA_KEY_READERS_GROUP)]
    container_sc = _APISERVER if component == c.KUBE_APISERVER else _NO_ESCALATION
    pod["spec"]["containers"][0]["securityContext"] = {k: dict(v) if isinstance(v, dict) else v
                                                       for k, v in container_sc.items()}
    return pod


def apply(fs: NodeFS, cfg: InitConfig, component: str, pod: Pod, log: Callable[[str], None], *,
          external_ca: bool = False) -> Pod:
    """The gate's effect on one component's Pod, as the etcd and control-plane phases apply it."""
    if not enabled(cfg):
        return pod
    if cfg.init.dryRun:
        what = f'"{component}"' if component == c.ETCD else f"[{component}]"
        log(f"Would create users and groups for {what} to run as non-root")
        log(f'Would update static pod manifest for "{component}" to run run as non-root')
        return pod
    from kubeboot.tasks.users import add_users_and_groups

    return run_as_non_root(fs, cfg, component, pod, add_users_and_groups(fs), external_ca=external_ca)
