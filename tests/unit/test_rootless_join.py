"""RootlessControlPlane on a control-plane join, as kubeadm applies it there: control-plane-prepare's
manifests go through the same CreateStaticPodFiles as init's, and etcd-join's etcd.yaml through
prepareAndWriteEtcdStaticPod, which runs RunComponentAsNonRoot (phases/etcd/local.go) — users and
groups created or reused, keys, kubeconfigs and the etcd data directory chowned, Pods run as non-root."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeboot.config import constants as c
from kubeboot.config.join import build_join_config
from kubeboot.config.loader import build_init_config
from kubeboot.config.models import dump
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import copycerts
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import certs, joinetcd, joinprepare
from kubeboot.tasks.phases.context import NodeContext
from kubeboot.tasks.phases.joincontext import CLUSTER, JoinNodeContext

PASSWD = "root:x:0:0:root:/root:/bin/bash\n_apt:x:100:65534::/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nsystemd-journal:x:101:\n"
ROOTLESS = {"RootlessControlPlane": True}
# --initial-cluster as etcd-join computes it from the member list: the first member, then this one
MEMBERS = "cp1=https://10.0.0.10:2380,cp2=https://10.0.0.11:2380"
KAS, KCM, KS, ETCD, READERS = (102, 102), (103, 103), (104, 104), (101, 100), 105


def cluster_cfg(gates: dict[str, bool]) -> InitConfig:
    """The first control plane's configuration: what its kubeadm-config holds."""
    return build_init_config([
        {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "localAPIEndpoint": {"advertiseAddress": "10.0.0.10"}},
        {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256",
         "featureGates": gates},
    ])


def shared_certs(tmp: Path, cfg: InitConfig) -> dict[str, bytes]:
    """The CAs and sa keys of the first control plane (what kubeadm-certs carries), made by the certs phase."""
    fs = NodeFS(tmp / "cp1")
    ctx = NodeContext(cfg=cfg, fs=fs, out=lambda _line: None)
    certs.run_certs(ctx)
    for row in certs.cert_table(cfg):
        if row.ca is None:
            certs.run_cert(ctx, row.name)
    certs.run_sa(ctx)
    return copycerts.read_files(fs, cfg)


def join_node(tmp: Path, *, gates: dict[str, bool] = ROOTLESS, dry_run: bool = False) -> JoinNodeContext:
    """cp2 joining as a control plane, its shared certificates copied in (no --certificate-key) and
    discovery done: the cluster's configuration is in the run, as ensure_cluster leaves it."""
    cluster = cluster_cfg(gates)
    fs = NodeFS(tmp / "cp2")
    fs.write(c.ETC_PASSWD, PASSWD)
    fs.write(c.ETC_GROUP, GROUP)
    files = shared_certs(tmp, cluster)
    for name, path in copycerts.certs_to_transfer(cluster).items():
        fs.write(path, files[name], mode=0o600)
    join = build_join_config([{
        "apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration", "dryRun": dry_run,
        "nodeRegistration": {"name": "cp2"}, "controlPlane": {"localAPIEndpoint": {"advertiseAddress": "10.0.0.11"}},
        "discovery": {"bootstrapToken": {"token": "abcdef.0123456789abcdef", "apiServerEndpoint": "10.0.0.10:6443",
                                         "unsafeSkipCAVerification": True}}}])
    lines: list[str] = []
    ctx = JoinNodeContext(join.provisional_init_config(), fs, join=join, out=lines.append)
    ctx.secrets.put(CLUSTER, json.dumps({"ClusterConfiguration": dump(cluster.cluster), "kubelet": {}}).encode())
    return ctx


def prepare_and_write_etcd(ctx: JoinNodeContext) -> None:
    """control-plane-prepare, then the part of etcd-join that writes etcd.yaml (its member list given)."""
    for phase in (joinprepare.run_certs, joinprepare.run_kubeconfig, joinprepare.run_control_plane):
        phase(ctx)
    ctx.fs.mkdir(ctx.cfg.cluster.local_etcd.dataDir, mode=0o700)
    ctx.fs.write(f"{ctx.cfg.cluster.local_etcd.dataDir}/member/snap/db", b"", mode=0o600)  # a restarted member's
    joinetcd.write_manifest(ctx, ctx.cfg, MEMBERS)


def owner(fs: NodeFS, path: str) -> tuple[int, int, int]:
    st = fs.path(path).stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def pod(fs: NodeFS, component: str) -> dict[str, Any]:
    return dict(yaml.safe_load(fs.read_text(f"{c.MANIFESTS_DIR}/{component}.yaml") or ""))


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory) -> JoinNodeContext:
    ctx = join_node(tmp_path_factory.mktemp("rootless-join"))
    prepare_and_write_etcd(ctx)
    return ctx


OWNERS = [
    ("/etc/kubernetes/pki/sa.pub", (*KAS, 0o600)), ("/etc/kubernetes/pki/sa.key", (0, READERS, 0o640)),
    ("/etc/kubernetes/pki/apiserver.key", (*KAS, 0o600)),
    ("/etc/kubernetes/pki/apiserver-kubelet-client.key", (*KAS, 0o600)),
    ("/etc/kubernetes/pki/front-proxy-client.key", (*KAS, 0o600)),
    ("/etc/kubernetes/pki/apiserver-etcd-client.key", (*KAS, 0o600)),
    ("/etc/kubernetes/controller-manager.conf", (*KCM, 0o600)), ("/etc/kubernetes/pki/ca.key", (*KCM, 0o600)),
    ("/etc/kubernetes/scheduler.conf", (*KS, 0o600)),
    ("/etc/kubernetes/pki/etcd/server.key", (*ETCD, 0o600)), ("/etc/kubernetes/pki/etcd/peer.key", (*ETCD, 0o600)),
    ("/var/lib/etcd", (*ETCD, 0o700)), ("/var/lib/etcd/member/snap/db", (*ETCD, 0o600)),
    ("/etc/kubernetes/admin.conf", (0, 0, 0o600)), ("/etc/kubernetes/pki/etcd/ca.key", (0, 0, 0o600)),
]


@pytest.mark.parametrize(("path", "want"), OWNERS, ids=[o[0] for o in OWNERS])
def test_each_component_of_a_joined_control_plane_owns_what_it_reads(
        joined: JoinNodeContext, path: str, want: tuple[int, int, int]) -> None:
    assert owner(joined.fs, path) == want


POD_SECURITY = [
    ("etcd", {"runAsGroup": 100, "runAsUser": 101, "seccompProfile": {"type": "RuntimeDefault"}},
     {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}),
    ("kube-apiserver", {"runAsGroup": 102, "runAsUser": 102, "seccompProfile": {"type": "RuntimeDefault"},
                        "supplementalGroups": [105]},
     {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}}),
    ("kube-controller-manager", {"runAsGroup": 103, "runAsUser": 103, "seccompProfile": {"type": "RuntimeDefault"},
                                 "supplementalGroups": [105]},
     {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}),
    ("kube-scheduler", {"runAsGroup": 104, "runAsUser": 104, "seccompProfile": {"type": "RuntimeDefault"}},
     {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}),
]


@pytest.mark.parametrize(("component", "pod_sc", "container_sc"), POD_SECURITY, ids=[p[0] for p in POD_SECURITY])
def test_each_pod_of_a_joined_control_plane_runs_as_its_user(
        joined: JoinNodeContext, component: str, pod_sc: dict[str, Any], container_sc: dict[str, Any]) -> None:
    spec = pod(joined.fs, component)["spec"]
    assert spec["securityContext"] == pod_sc
    assert spec["containers"][0]["securityContext"] == container_sc


def test_the_joining_etcd_member_keeps_its_member_list(joined: JoinNodeContext) -> None:
    command = pod(joined.fs, "etcd")["spec"]["containers"][0]["command"]
    assert f"--initial-cluster={MEMBERS}" in command and "--initial-cluster-state=existing" in command


def test_the_users_and_groups_are_created_once_and_a_retry_changes_nothing(tmp_path: Path) -> None:
    ctx = join_node(tmp_path)
    prepare_and_write_etcd(ctx)
    passwd, group = ctx.fs.read_text(c.ETC_PASSWD), ctx.fs.read_text(c.ETC_GROUP)
    assert passwd == PASSWD + ("kubeadm-etcd:x:101:100:::/bin/false\nkubeadm-kas:x:102:102:::/bin/false\n"
                               "kubeadm-kcm:x:103:103:::/bin/false\nkubeadm-ks:x:104:104:::/bin/false\n")
    assert group is not None and group.endswith("kubeadm-sa-key-readers:x:105:kubeadm-kas,kubeadm-kcm\n")
    manifest = ctx.fs.path(f"{c.MANIFESTS_DIR}/etcd.yaml")
    before = manifest.stat().st_mtime_ns
    prepare_and_write_etcd(ctx)  # a redelivered control-plane-prepare and etcd-join
    assert (ctx.fs.read_text(c.ETC_PASSWD), ctx.fs.read_text(c.ETC_GROUP)) == (passwd, group)
    assert manifest.stat().st_mtime_ns == before
    assert owner(ctx.fs, "/etc/kubernetes/pki/sa.key") == (0, READERS, 0o640)


def test_without_the_gate_a_join_chowns_nothing(tmp_path: Path) -> None:
    ctx = join_node(tmp_path, gates={})
    prepare_and_write_etcd(ctx)
    assert ctx.fs.read_text(c.ETC_PASSWD) == PASSWD
    assert owner(ctx.fs, "/var/lib/etcd") == (0, 0, 0o700)
    assert pod(ctx.fs, "etcd")["spec"]["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}


def test_a_dry_run_join_only_announces_as_kubeadm_does(tmp_path: Path) -> None:
    ctx = join_node(tmp_path, dry_run=True)
    lines: list[str] = []
    ctx.out = lines.append
    joinprepare.run_certs(ctx)
    joinprepare.run_kubeconfig(ctx)
    joinprepare.run_control_plane(ctx)
    joinetcd.run_etcd_join(ctx)
    assert '[control-plane] Would update static pod manifest for "kube-apiserver" to run run as non-root' in lines
    assert lines[-6:] == [  # kubeadm's runEtcdPhase and CreateStackedEtcdStaticPodManifestFile
        '[control-plane-join] Would ensure that "/var/lib/etcd" directory is present',
        "[etcd] Would add etcd member: https://10.0.0.11:2380",
        '[etcd] Creating static Pod manifest for "etcd"',
        '[etcd] Would create users and groups for "etcd" to run as non-root',
        '[etcd] Would update static pod manifest for "etcd" to run run as non-root',
        "[etcd] Would wait for the new etcd member to join the cluster",
    ]
    assert ctx.fs.read_text(c.ETC_PASSWD) == PASSWD
    spec = pod(ctx.fs, "etcd")["spec"]
    assert "runAsUser" not in spec["securityContext"]
    assert "--initial-cluster=cp2=https://10.0.0.11:2380" in spec["containers"][0]["command"]  # no member list
    assert not ctx.fs.exists("/var/lib/etcd")
