"""RootlessControlPlane as kubeadm does it: users and groups created or reused as its users package does
(users_linux.go, cases from its users_linux_test.go), files chowned and Pods run as non-root as
RunComponentAsNonRoot does (staticpod/utils_linux.go); dry-run only announces; patches apply after.

On a control-plane join, as kubeadm applies it there: control-plane-prepare's manifests go through the
same CreateStaticPodFiles as init's, and etcd-join's etcd.yaml through prepareAndWriteEtcdStaticPod, which
runs RunComponentAsNonRoot (phases/etcd/local.go) — users and groups created or reused, keys, kubeconfigs
and the etcd data directory chowned, Pods run as non-root."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeboot.config import constants as c
from kubeboot.config.join import build_join_config
from kubeboot.config.loader import build_init_config
from kubeboot.config.models import Patches, dump
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import copycerts
from kubeboot.tasks import users as u
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import certs, controlplane, etcd, joinetcd, joinprepare, kubeconfig
from kubeboot.tasks.phases.context import NodeContext
from kubeboot.tasks.phases.joincontext import CLUSTER, JoinNodeContext

PASSWD = "root:x:0:0:root:/root:/bin/bash\n_apt:x:100:65534::/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nsystemd-journal:x:101:\n"
LIMITS = u.Limits()


def node(tmp_path: Path, passwd: str = PASSWD, group: str = GROUP, login_defs: str | None = None) -> NodeFS:
    fs = NodeFS(tmp_path / "root")
    fs.write(c.ETC_PASSWD, passwd)
    fs.write(c.ETC_GROUP, group)
    if login_defs is not None:
        fs.write(c.ETC_LOGIN_DEFS, login_defs)
    return fs


# --- the users package ----------------------------------------------------------------------------------


def test_login_defs_give_the_system_ranges_and_default_to_100_999() -> None:
    assert u.parse_login_defs("") == u.Limits(100, 999, 100, 999)
    text = "# comment\nSYS_UID_MIN\t\t  201\nSYS_UID_MAX 300\n#SYS_GID_MIN 1\nSYS_GID_MAX   400\n"
    assert u.parse_login_defs(text) == u.Limits(201, 300, 100, 400)
    with pytest.raises(u.UsersError, match="could not parse value for SYS_UID_MIN at line 0"):
        u.parse_login_defs("SYS_UID_MIN many\n")


def test_entries_with_the_wrong_number_of_fields_are_an_error() -> None:
    with pytest.raises(u.UsersError, match="entry must have 7 fields separated by ':', got 3 at line 1: a:b:c"):
        u.parse_entries("root:x:0:0:root:/root:/bin/bash\na:b:c\n", u.USER_FIELDS)


def test_no_managed_entries_means_every_user_and_group_is_created() -> None:
    users, groups = u.missing_entries([], [], LIMITS)
    assert [e.name for e in users] == ["kubeadm-etcd", "kubeadm-kas", "kubeadm-kcm", "kubeadm-ks"]
    assert [(e.name, e.members) for e in groups][-1] == ("kubeadm-sa-key-readers", ("kubeadm-kas", "kubeadm-kcm"))


def test_existing_valid_users_mapped_to_groups_are_reused() -> None:
    users = [u.Entry("kubeadm-etcd", 100, 102, shell="/bin/false"),
             u.Entry("kubeadm-kas", 101, 103, shell="/bin/false")]
    groups = [u.Entry("kubeadm-etcd", 102, members=("kubeadm-etcd",)),
              u.Entry("kubeadm-kas", 103, members=("kubeadm-kas",)),
              u.Entry("kubeadm-sa-key-readers", 104, members=("kubeadm-kas", "kubeadm-kcm"))]
    new_users, new_groups = u.missing_entries(users, groups, LIMITS)
    assert [e.name for e in new_users] == ["kubeadm-kcm", "kubeadm-ks"]
    assert [e.name for e in new_groups] == ["kubeadm-kcm", "kubeadm-ks"]


@pytest.mark.parametrize(("users", "groups", "message"), [
    ([u.Entry("kubeadm-etcd", 1000, 102, shell="/bin/false")], [], 'UID 1000 for user "kubeadm-etcd" is outside'),
    ([u.Entry("kubeadm-etcd", 100, 102, shell="/bin/sh")], [], 'has unexpected shell "/bin/sh"; expected "/bin/false"'),
    ([u.Entry("kubeadm-etcd", 100, 102, shell="/bin/false")], [], "could not find group with GID 102"),
    ([u.Entry("kubeadm-etcd", 100, 102, shell="/bin/false")], [u.Entry("other", 102)],
     'has GID 102 but the group with that GID is not named "kubeadm-etcd"'),
    ([], [u.Entry("kubeadm-sa-key-readers", 104, members=("kubeadm-kas",))],
     'expected users "kubeadm-kas,kubeadm-kcm" for group "kubeadm-sa-key-readers"; got "kubeadm-kas"'),
], ids=["uid out of range", "wrong shell", "no primary group", "primary group of another name", "wrong members"])
def test_existing_entries_that_do_not_fit_are_an_error(
    users: list[u.Entry], groups: list[u.Entry], message: str
) -> None:
    with pytest.raises(u.UsersError, match=message):
        u.missing_entries(users, groups, LIMITS)


def test_ids_are_the_lowest_free_ones_in_range() -> None:
    assert u.allocate_ids([u.Entry("a", 100), u.Entry("b", 102)], 100, 104, 2) == [101, 103]
    with pytest.raises(u.UsersError, match="could not allocate 3 IDs based on existing entries in the range: 100 - 1"):
        u.allocate_ids([], 100, 101, 3)


def test_a_node_gets_the_users_and_groups_once(tmp_path: Path) -> None:
    fs = node(tmp_path, passwd=PASSWD.rstrip("\n"))  # a file without its last newline, as kubeadm handles
    os.chmod(fs.path(c.ETC_GROUP), 0o640)
    ug = u.add_users_and_groups(fs)
    assert fs.read_text(c.ETC_PASSWD) == PASSWD + (
        "kubeadm-etcd:x:101:100:::/bin/false\nkubeadm-kas:x:102:102:::/bin/false\n"
        "kubeadm-kcm:x:103:103:::/bin/false\nkubeadm-ks:x:104:104:::/bin/false\n")
    assert fs.read_text(c.ETC_GROUP) == GROUP + (
        "kubeadm-etcd:x:100:kubeadm-etcd\nkubeadm-kas:x:102:kubeadm-kas\nkubeadm-kcm:x:103:kubeadm-kcm\n"
        "kubeadm-ks:x:104:kubeadm-ks\nkubeadm-sa-key-readers:x:105:kubeadm-kas,kubeadm-kcm\n")
    assert stat.S_IMODE(fs.path(c.ETC_GROUP).stat().st_mode) == 0o640
    assert (ug.uid("kubeadm-etcd"), ug.gid("kubeadm-etcd"), ug.gid("kubeadm-sa-key-readers")) == (101, 100, 105)
    mtimes = [fs.path(p).stat().st_mtime_ns for p in (c.ETC_PASSWD, c.ETC_GROUP)]
    assert u.add_users_and_groups(fs) == ug
    assert [fs.path(p).stat().st_mtime_ns for p in (c.ETC_PASSWD, c.ETC_GROUP)] == mtimes


def test_login_defs_ranges_are_honoured(tmp_path: Path) -> None:
    fs = node(tmp_path, login_defs="SYS_UID_MIN 500\nSYS_GID_MIN 600\n")
    ug = u.add_users_and_groups(fs)
    assert ug.uid("kubeadm-etcd") == 500 and ug.gid("kubeadm-etcd") == 600


def test_a_node_without_passwd_fails_as_kubeadm_does(tmp_path: Path) -> None:
    fs = NodeFS(tmp_path)
    with pytest.raises(PermanentError, match="failed to create users and groups: open /etc/passwd: no such file"):
        u.add_users_and_groups(fs)


# --- the phases -----------------------------------------------------------------------------------------


def make_cfg(**cluster: Any) -> InitConfig:
    return build_init_config([
        {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "localAPIEndpoint": {"advertiseAddress": "10.0.0.10"}},
        {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256",
         "featureGates": {"RootlessControlPlane": True}, **cluster},
    ])


def run_node(fs: NodeFS, cfg: InitConfig) -> list[str]:
    lines: list[str] = []
    ctx = NodeContext(cfg=cfg, fs=fs, out=lines.append, now=datetime.now(UTC), workers=1)
    certs.run_certs(ctx)
    for r in certs.cert_table(cfg):
        certs.run_cert(ctx, r.name)
    certs.run_sa(ctx)
    for name in ("admin", "super-admin", "kubelet", "controller-manager", "scheduler"):
        kubeconfig.run_kubeconfig_file(ctx, name)
    if not cfg.cluster.is_external_etcd:
        etcd.run_etcd_local(ctx)
    for component in c.CONTROL_PLANE_COMPONENTS:
        controlplane.run_control_plane(ctx, component)
    return lines


def owner(fs: NodeFS, path: str) -> tuple[int, int, int]:
    st = fs.path(path).stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


KAS, KCM, KS, ETCD, READERS = (102, 102), (103, 103), (104, 104), (101, 100), 105
OWNERS = [
    ("/etc/kubernetes/pki/sa.pub", (*KAS, 0o600)), ("/etc/kubernetes/pki/sa.key", (0, READERS, 0o640)),
    ("/etc/kubernetes/pki/apiserver.key", (*KAS, 0o600)),
    ("/etc/kubernetes/pki/apiserver-kubelet-client.key", (*KAS, 0o600)),
    ("/etc/kubernetes/pki/front-proxy-client.key", (*KAS, 0o600)),
    ("/etc/kubernetes/pki/apiserver-etcd-client.key", (*KAS, 0o600)),
    ("/etc/kubernetes/controller-manager.conf", (*KCM, 0o600)), ("/etc/kubernetes/pki/ca.key", (*KCM, 0o600)),
    ("/etc/kubernetes/scheduler.conf", (*KS, 0o600)),
    ("/etc/kubernetes/pki/etcd/server.key", (*ETCD, 0o600)), ("/etc/kubernetes/pki/etcd/peer.key", (*ETCD, 0o600)),
    ("/var/lib/etcd", (*ETCD, 0o700)),
    ("/etc/kubernetes/admin.conf", (0, 0, 0o600)), ("/etc/kubernetes/pki/front-proxy-ca.key", (0, 0, 0o600)),
]


@pytest.fixture(scope="module")
def rootless_node(tmp_path_factory: pytest.TempPathFactory) -> NodeFS:
    fs = node(tmp_path_factory.mktemp("rootless"))
    run_node(fs, make_cfg())
    return fs


@pytest.mark.parametrize(("path", "want"), OWNERS, ids=[o[0] for o in OWNERS])
def test_each_component_owns_what_it_reads(rootless_node: NodeFS, path: str, want: tuple[int, int, int]) -> None:
    assert owner(rootless_node, path) == want


def _pod(fs: NodeFS, component: str) -> dict[str, Any]:

    return yaml.safe_load(fs.read_text(f"/etc/kubernetes/manifests/{component}.yaml") or "")


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
def test_each_pod_runs_as_its_user(rootless_node: NodeFS, component: str, pod_sc: dict[str, Any],
                                   container_sc: dict[str, Any]) -> None:
    pod = _pod(rootless_node, component)
    assert pod["spec"]["securityContext"] == pod_sc
    assert pod["spec"]["containers"][0]["securityContext"] == container_sc


def test_external_ca_and_external_etcd_leave_ca_key_and_etcd_client_key_alone(tmp_path: Path) -> None:
    fs = node(tmp_path)
    ext = {"etcd": {"external": {"endpoints": ["https://10.0.0.50:2379"], "caFile": "/etc/etcd/ca.crt",
                                 "certFile": "/etc/etcd/c.crt", "keyFile": "/etc/etcd/c.key"}}}
    cfg = make_cfg(**ext)
    run_node(fs, cfg)
    assert owner(fs, "/etc/kubernetes/pki/apiserver.key")[:2] == KAS
    assert not fs.exists("/etc/kubernetes/pki/apiserver-etcd-client.key")
    fs.remove("/etc/kubernetes/pki/ca.key")  # External CA mode from now on
    lines: list[str] = []
    controlplane.run_control_plane(NodeContext(cfg=cfg, fs=fs, out=lines.append), c.KUBE_CONTROLLER_MANAGER)
    assert not fs.exists("/etc/kubernetes/pki/ca.key")


def test_dry_run_only_announces(tmp_path: Path) -> None:
    fs = node(tmp_path)
    cfg = make_cfg()
    cfg.init.dryRun = True
    lines = run_node(fs, cfg)
    assert '[etcd] Would create users and groups for "etcd" to run as non-root' in lines
    assert '[control-plane] Would update static pod manifest for "kube-apiserver" to run run as non-root' in lines
    assert fs.read_text(c.ETC_PASSWD) == PASSWD
    assert "runAsUser" not in fs.read_text("/etc/kubernetes/manifests/kube-apiserver.yaml")


def test_a_patch_applies_after_the_rootless_changes(tmp_path: Path) -> None:
    fs = node(tmp_path)
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "kube-scheduler+merge.yaml").write_text("spec:\n  securityContext:\n    runAsUser: 4242\n")
    cfg = make_cfg()
    cfg.init.patches = Patches(directory=str(patches))
    run_node(fs, cfg)
    assert _pod(fs, "kube-scheduler")["spec"]["securityContext"]["runAsUser"] == 4242
    assert _pod(fs, "kube-scheduler")["spec"]["securityContext"]["runAsGroup"] == 104


def test_the_gate_off_changes_no_owner_and_no_pod(tmp_path: Path) -> None:
    fs = node(tmp_path)
    cfg = make_cfg(featureGates={})
    run_node(fs, cfg)
    assert fs.read_text(c.ETC_PASSWD) == PASSWD
    assert owner(fs, "/etc/kubernetes/pki/sa.key") == (0, 0, 0o600)
    assert _pod(fs, "kube-apiserver")["spec"]["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}


def test_a_missing_key_stops_the_phase_with_kubeadms_message(tmp_path: Path) -> None:
    fs = node(tmp_path)
    ctx = NodeContext(cfg=make_cfg(), fs=fs, out=lambda _line: None)
    with pytest.raises(PermanentError) as err:
        controlplane.run_control_plane(ctx, c.KUBE_SCHEDULER)
    assert str(err.value) == ('failed to run component "kube-scheduler" as non-root: failed to update owner of '
                              '"/etc/kubernetes/scheduler.conf" to uid: 104 and gid: 104: no such file or directory')
    assert not fs.exists("/etc/kubernetes/manifests/kube-scheduler.yaml")


# --- a control-plane join ----------------------------------------------------------------------------
ROOTLESS = {"RootlessControlPlane": True}
# --initial-cluster as etcd-join computes it from the member list: the first member, then this one
MEMBERS = "cp1=https://10.0.0.10:2380,cp2=https://10.0.0.11:2380"


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


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory) -> JoinNodeContext:
    ctx = join_node(tmp_path_factory.mktemp("rootless-join"))
    prepare_and_write_etcd(ctx)
    return ctx


# init's, and what only a joining etcd member has: its data from an earlier start, and the etcd CA's key
JOIN_OWNERS = [*OWNERS, ("/var/lib/etcd/member/snap/db", (*ETCD, 0o600)),
               ("/etc/kubernetes/pki/etcd/ca.key", (0, 0, 0o600))]


@pytest.mark.parametrize(("path", "want"), JOIN_OWNERS, ids=[o[0] for o in JOIN_OWNERS])
def test_each_component_of_a_joined_control_plane_owns_what_it_reads(
        joined: JoinNodeContext, path: str, want: tuple[int, int, int]) -> None:
    assert owner(joined.fs, path) == want


@pytest.mark.parametrize(("component", "pod_sc", "container_sc"), POD_SECURITY, ids=[p[0] for p in POD_SECURITY])
def test_each_pod_of_a_joined_control_plane_runs_as_its_user(
        joined: JoinNodeContext, component: str, pod_sc: dict[str, Any], container_sc: dict[str, Any]) -> None:
    spec = _pod(joined.fs, component)["spec"]
    assert spec["securityContext"] == pod_sc
    assert spec["containers"][0]["securityContext"] == container_sc


def test_the_joining_etcd_member_keeps_its_member_list(joined: JoinNodeContext) -> None:
    command = _pod(joined.fs, "etcd")["spec"]["containers"][0]["command"]
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
    assert _pod(ctx.fs, "etcd")["spec"]["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}


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
    spec = _pod(ctx.fs, "etcd")["spec"]
    assert "runAsUser" not in spec["securityContext"]
    assert "--initial-cluster=cp2=https://10.0.0.11:2380" in spec["containers"][0]["command"]  # no member list
    assert not ctx.fs.exists("/var/lib/etcd")
