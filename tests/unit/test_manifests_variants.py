"""Static Pod manifests under configuration variants (kubeadm-spec 2.4/2.5): extraArgs, extraVolumes, extraEnvs,
external etcd, IPv6, podSubnet, External CA, etcd 3.5 image tags, host CA directories; and the etcd/local and
control-plane phases: kubeadm's log lines, file modes, and convergence (bytes and mtimes kept)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import pki
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import controlplane as cp
from kubeboot.tasks.phases import etcd
from kubeboot.tasks.phases.context import NodeContext

V4 = "kubeadm.k8s.io/v1beta4"
ADV = "192.168.10.5"
PKI = "/etc/kubernetes/pki"
MANIFESTS = "/etc/kubernetes/manifests"
DEBIAN_CA_DIRS = ("/etc/ca-certificates", "/usr/share/ca-certificates", "/usr/local/share/ca-certificates")


def make_cfg(*, init: dict[str, Any] | None = None, cluster: dict[str, Any] | None = None) -> InitConfig:
    return build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "localAPIEndpoint": {"advertiseAddress": ADV}, **(init or {})},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "kubernetesVersion": "v1.36.1", **(cluster or {})},
    ])


def node_root(tmp_path: Path, ca_dirs: tuple[str, ...] = DEBIAN_CA_DIRS) -> NodeFS:
    fs = NodeFS(tmp_path / "node")
    for d in ca_dirs:
        fs.path(d).mkdir(parents=True)
    return fs


def build(cfg: InitConfig, component: str, fs: NodeFS, environ: dict[str, str] | None = None) -> dict[str, Any]:
    if component == "etcd":
        return etcd.etcd_pod(cfg)
    return cp.node_pod(NodeContext(cfg=cfg, fs=fs, out=lambda _l: None), component, environ or {})


def default_flags(tmp_path: Path, component: str) -> list[str]:
    """The default command line, asserted flag by flag against the spec in test_manifests."""
    return command(build(make_cfg(), component, node_root(tmp_path / "defaults")))[1:]


def command(pod: dict[str, Any]) -> list[str]:
    return list(pod["spec"]["containers"][0]["command"])


def flags_of(pod: dict[str, Any], prefix: str) -> list[str]:
    return [f for f in command(pod) if f.startswith(prefix)]


def volume_names(pod: dict[str, Any]) -> list[str]:
    return [v["name"] for v in pod["spec"]["volumes"]]


# --- extraArgs ------------------------------------------------------------------------------------------


def test_extra_args_replace_a_default_by_name_and_add_new_flags_in_sorted_place(tmp_path: Path) -> None:
    cfg = make_cfg(cluster={"apiServer": {"extraArgs": [
        {"name": "secure-port", "value": "7443"}, {"name": "audit-log-maxage", "value": "7"}]}})
    got = command(build(cfg, "kube-apiserver", node_root(tmp_path)))
    want = sorted([f for f in default_flags(tmp_path, "kube-apiserver") if not f.startswith("--secure-port=")]
                  + ["--secure-port=7443", "--audit-log-maxage=7"])
    assert got == ["kube-apiserver", *want]


def test_a_repeated_extra_arg_name_is_kept_every_time_sorted_by_value(tmp_path: Path) -> None:
    cfg = make_cfg(cluster={"apiServer": {"extraArgs": [
        {"name": "enable-admission-plugins", "value": "PodSecurity"},
        {"name": "enable-admission-plugins", "value": "NodeRestriction"}]}})
    got = flags_of(build(cfg, "kube-apiserver", node_root(tmp_path)), "--enable-admission-plugins=")
    assert got == ["--enable-admission-plugins=NodeRestriction", "--enable-admission-plugins=PodSecurity"]


def test_an_authorization_config_drops_the_default_authorization_mode(tmp_path: Path) -> None:
    cfg = make_cfg(cluster={"apiServer": {"extraArgs": [{"name": "authorization-config", "value": "/etc/a.yaml"}]}})
    pod = build(cfg, "kube-apiserver", node_root(tmp_path))
    assert flags_of(pod, "--authorization-") == ["--authorization-config=/etc/a.yaml"]


def test_the_apiserver_talks_to_the_advertise_client_urls_the_user_gave_etcd(tmp_path: Path) -> None:
    cfg = make_cfg(cluster={"etcd": {"local": {"extraArgs": [
        {"name": "advertise-client-urls", "value": "https://10.1.1.1:2379"}]}}})
    assert flags_of(build(cfg, "kube-apiserver", node_root(tmp_path)), "--etcd-servers=") == [
        "--etcd-servers=https://10.1.1.1:2379"]


def test_etcd_probes_follow_the_first_listen_metrics_url(tmp_path: Path) -> None:
    cfg = make_cfg(cluster={"etcd": {"local": {"extraArgs": [
        {"name": "listen-metrics-urls", "value": "https://10.0.0.9:2382,http://127.0.0.1:2381"}]}}})
    box = build(cfg, "etcd", node_root(tmp_path))["spec"]["containers"][0]
    assert box["ports"] == [{"containerPort": 2382, "name": "probe-port", "protocol": "TCP"}]
    assert box["livenessProbe"]["httpGet"] == {"host": "10.0.0.9", "path": "/livez", "port": "probe-port",
                                               "scheme": "HTTPS"}


@pytest.mark.parametrize(("component", "bind", "host"), [
    pytest.param("kube-controller-manager", "0.0.0.0", None, id="KCM on all IPv4 addresses probes the pod IP"),
    pytest.param("kube-scheduler", "::", None, id="scheduler on all IPv6 addresses probes the pod IP"),
    pytest.param("kube-scheduler", "10.0.0.7", "10.0.0.7", id="scheduler on one address probes it"),
])
def test_probe_host_follows_the_bind_address(tmp_path: Path, component: str, bind: str, host: str | None) -> None:
    key = "controllerManager" if component == "kube-controller-manager" else "scheduler"
    cfg = make_cfg(cluster={key: {"extraArgs": [{"name": "bind-address", "value": bind}]}})
    box = build(cfg, component, node_root(tmp_path))["spec"]["containers"][0]
    for probe in ("livenessProbe", "startupProbe"):
        assert box[probe]["httpGet"].get("host") == host


def test_the_flexvolume_mount_follows_flex_volume_plugin_dir(tmp_path: Path) -> None:
    cfg = make_cfg(cluster={"controllerManager": {"extraArgs": [
        {"name": "flex-volume-plugin-dir", "value": "/opt/flex"}]}})
    pod = build(cfg, "kube-controller-manager", node_root(tmp_path))
    flex = next(v for v in pod["spec"]["volumes"] if v["name"] == "flexvolume-dir")
    assert flex["hostPath"] == {"path": "/opt/flex", "type": "DirectoryOrCreate"}


# --- extraVolumes, extraEnvs ------------------------------------------------------------------------------


def test_extra_volumes_are_mounted_as_given_and_override_a_default_of_the_same_name(tmp_path: Path) -> None:
    cfg = make_cfg(cluster={"scheduler": {"extraVolumes": [
        {"name": "audit", "hostPath": "/var/log/audit", "mountPath": "/audit", "pathType": "DirectoryOrCreate"},
        {"name": "kubeconfig", "hostPath": "/srv/sched.conf", "mountPath": "/etc/kubernetes/scheduler.conf",
         "readOnly": True, "pathType": "File"},
        {"name": "policy", "hostPath": "/etc/policy.json", "mountPath": "/policy.json", "readOnly": True}]}})
    pod = build(cfg, "kube-scheduler", node_root(tmp_path))
    assert pod["spec"]["volumes"] == [
        {"hostPath": {"path": "/var/log/audit", "type": "DirectoryOrCreate"}, "name": "audit"},
        {"hostPath": {"path": "/srv/sched.conf", "type": "File"}, "name": "kubeconfig"},
        {"hostPath": {"path": "/etc/policy.json", "type": ""}, "name": "policy"},
    ]
    assert pod["spec"]["containers"][0]["volumeMounts"] == [
        {"mountPath": "/audit", "name": "audit"},
        {"mountPath": "/etc/kubernetes/scheduler.conf", "name": "kubeconfig", "readOnly": True},
        {"mountPath": "/policy.json", "name": "policy", "readOnly": True},
    ]


def test_proxy_variables_and_extra_envs_merge_by_name_sorted(tmp_path: Path) -> None:
    cfg = make_cfg(cluster={"apiServer": {"extraEnvs": [
        {"name": "NO_PROXY", "value": "10.0.0.0/8"}, {"name": "GOMAXPROCS", "value": "2"},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}})
    environ = {"HTTPS_PROXY": "http://proxy:3128", "no_proxy": "localhost", "NO_PROXY": "x", "EMPTY_PROXY": "",
               "PATH": "/bin"}
    env = build(cfg, "kube-apiserver", node_root(tmp_path), environ)["spec"]["containers"][0]["env"]
    assert env == [
        {"name": "GOMAXPROCS", "value": "2"},
        {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
        {"name": "NO_PROXY", "value": "10.0.0.0/8"},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "no_proxy", "value": "localhost"},
    ]


def test_etcd_gets_its_extra_envs_but_not_the_proxy_variables(tmp_path: Path) -> None:
    cfg = make_cfg(cluster={"etcd": {"local": {"extraEnvs": [{"name": "ETCD_LOG_LEVEL", "value": "warn"}]}}})
    pod = etcd.etcd_pod(cfg)
    assert pod["spec"]["containers"][0]["env"] == [{"name": "ETCD_LOG_LEVEL", "value": "warn"}]


# --- topology variants ------------------------------------------------------------------------------------


def test_external_etcd_gives_the_apiserver_its_endpoints_files_and_cert_directories(tmp_path: Path) -> None:
    cfg = make_cfg(cluster={"etcd": {"external": {
        "endpoints": ["https://10.0.0.21:2379", "https://10.0.0.22:2379"],
        "caFile": "/srv/etcd/ca.crt", "certFile": "/srv/etcd/client/apiserver.crt",
        "keyFile": "/opt/keys/apiserver.key"}}})
    pod = build(cfg, "kube-apiserver", node_root(tmp_path))
    assert flags_of(pod, "--etcd-") == [
        "--etcd-cafile=/srv/etcd/ca.crt", "--etcd-certfile=/srv/etcd/client/apiserver.crt",
        "--etcd-keyfile=/opt/keys/apiserver.key", "--etcd-servers=https://10.0.0.21:2379,https://10.0.0.22:2379"]
    etcd_volumes = [v for v in pod["spec"]["volumes"] if v["name"].startswith("etcd-certs")]
    assert etcd_volumes == [
        {"hostPath": {"path": "/opt/keys", "type": "DirectoryOrCreate"}, "name": "etcd-certs-0"},
        {"hostPath": {"path": "/srv/etcd", "type": "DirectoryOrCreate"}, "name": "etcd-certs-1"},
    ]
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert {"mountPath": "/srv/etcd", "name": "etcd-certs-1", "readOnly": True} in mounts


def test_external_etcd_files_in_already_mounted_directories_add_no_volume(tmp_path: Path) -> None:
    cfg = make_cfg(cluster={"etcd": {"external": {
        "endpoints": ["https://10.0.0.21:2379"], "caFile": "/etc/ssl/certs/etcd-ca.pem",
        "certFile": f"{PKI}/etcd-client.crt", "keyFile": f"{PKI}/etcd-client.key"}}})
    pod = build(cfg, "kube-apiserver", node_root(tmp_path))
    assert not [n for n in volume_names(pod) if n.startswith("etcd-certs")]


def test_an_ipv6_node_uses_the_ipv6_loopback_everywhere(tmp_path: Path) -> None:
    adv = "fd00::5"
    cfg = make_cfg(init={"localAPIEndpoint": {"advertiseAddress": adv}})
    pod = etcd.etcd_pod(cfg)
    assert f"--listen-client-urls=https://[::1]:2379,https://[{adv}]:2379" in command(pod)
    assert "--listen-metrics-urls=http://[::1]:2381" in command(pod)
    assert f"--initial-cluster=cp1=https://[{adv}]:2380" in command(pod)
    assert pod["spec"]["containers"][0]["livenessProbe"]["httpGet"]["host"] == "::1"
    api = build(cfg, "kube-apiserver", node_root(tmp_path))
    assert flags_of(api, "--etcd-servers=") == ["--etcd-servers=https://[::1]:2379"]
    assert api["metadata"]["annotations"] == {
        "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": f"[{adv}]:6443"}


def test_a_pod_subnet_makes_the_controller_manager_allocate_node_cidrs(tmp_path: Path) -> None:
    cfg = make_cfg(cluster={"networking": {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.112.0.0/12"}})
    got = command(build(cfg, "kube-controller-manager", node_root(tmp_path)))
    base = default_flags(tmp_path, "kube-controller-manager")
    assert got == ["kube-controller-manager", *sorted([*base, "--allocate-node-cidrs=true",
                                                       "--cluster-cidr=10.244.0.0/16",
                                                       "--service-cluster-ip-range=10.112.0.0/12"])]


def write_ca(fs: NodeFS, *, with_key: bool) -> None:
    key = pki.generate_key("ECDSA-P256")
    cert = pki.build_certificate(pki.CertSpec("kubernetes", is_ca=True), key.public_key(), key, None,
                                 datetime.now(UTC))
    fs.write(f"{PKI}/ca.crt", pki.cert_to_pem(cert))
    if with_key:
        fs.write(f"{PKI}/ca.key", pki.key_to_pem(key), mode=0o600)


@pytest.mark.parametrize(("with_key", "signing"), [
    pytest.param(True, [f"--cluster-signing-cert-file={PKI}/ca.crt", f"--cluster-signing-key-file={PKI}/ca.key"],
                 id="CA key present: the controller-manager signs"),
    pytest.param(False, ["--cluster-signing-cert-file=", "--cluster-signing-key-file="],
                 id="External CA: empty signing files"),
])
def test_external_ca_mode_empties_the_cluster_signing_flags(tmp_path: Path, with_key: bool,
                                                            signing: list[str]) -> None:
    fs = node_root(tmp_path)
    write_ca(fs, with_key=with_key)
    assert flags_of(build(make_cfg(), "kube-controller-manager", fs), "--cluster-signing-") == signing


@pytest.mark.parametrize(("tag", "flags"), [
    pytest.param("3.5.21-0", ["--experimental-initial-corrupt-check=true",
                              "--experimental-watch-progress-notify-interval=5s"], id="etcd 3.5 spelling"),
    pytest.param("3.6.0-0", ["--experimental-initial-corrupt-check=true",
                             "--experimental-watch-progress-notify-interval=5s"], id="a 3.6.0 pre-release is older"),
    pytest.param("v3.6.1", ["--feature-gates=InitialCorruptCheck=true", "--watch-progress-notify-interval=5s"],
                 id="etcd 3.6 spelling"),
])
def test_etcd_flags_follow_the_version_of_the_image_tag(tag: str, flags: list[str]) -> None:
    pod = etcd.etcd_pod(make_cfg(cluster={"etcd": {"local": {"imageTag": tag}}}))
    assert [f for f in command(pod) if "corrupt" in f.lower() or "progress" in f] == flags
    assert pod["spec"]["containers"][0]["image"] == f"registry.k8s.io/etcd:{tag}"


@pytest.mark.parametrize(("dirs", "names"), [
    pytest.param((), ["ca-certs", "k8s-certs"], id="no optional CA directory"),
    pytest.param(("/etc/pki/ca-trust", "/etc/pki/tls/certs"), ["ca-certs", "etc-pki-ca-trust", "etc-pki-tls-certs",
                                                                 "k8s-certs"], id="RHEL family"),
])
def test_optional_ca_directories_are_mounted_only_when_the_node_has_them(tmp_path: Path, dirs: tuple[str, ...],
                                                                         names: list[str]) -> None:
    assert volume_names(build(make_cfg(), "kube-apiserver", node_root(tmp_path, dirs))) == names


@pytest.mark.parametrize(("timeout", "failures"), [("4m0s", 24), ("5m", 30), ("95s", 10)])
def test_the_startup_probe_covers_the_whole_component_health_check_timeout(timeout: str, failures: int) -> None:
    cfg = make_cfg(init={"timeouts": {"controlPlaneComponentHealthCheck": timeout}})
    assert etcd.etcd_pod(cfg)["spec"]["containers"][0]["startupProbe"]["failureThreshold"] == failures


# --- the phases ---------------------------------------------------------------------------------------------


def run_all(fs: NodeFS, cfg: Any, lines: list[str] | None = None) -> None:
    ctx = NodeContext(cfg=cfg, fs=fs, out=(lines.append if lines is not None else (lambda _l: None)))
    etcd.run_etcd_local(ctx)
    cp.run_control_plane_prepare(ctx)
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        cp.run_control_plane(ctx, component)


def snapshot(fs: NodeFS) -> dict[str, tuple[bytes, int]]:
    out = {}
    for p in sorted(fs.path(MANIFESTS).iterdir()):
        out[p.name] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


def test_the_phases_print_kubeadms_lines_and_write_0600_files_in_a_0700_folder(tmp_path: Path) -> None:
    fs, lines = node_root(tmp_path), []
    run_all(fs, make_cfg(), lines)
    assert lines == [
        '[etcd] Creating static Pod manifest for local etcd in "/etc/kubernetes/manifests"',
        '[control-plane] Using manifest folder "/etc/kubernetes/manifests"',
        '[control-plane] Creating static Pod manifest for "kube-apiserver"',
        '[control-plane] Creating static Pod manifest for "kube-controller-manager"',
        '[control-plane] Creating static Pod manifest for "kube-scheduler"',
    ]
    assert fs.path(MANIFESTS).stat().st_mode & 0o777 == 0o700
    files = sorted(fs.path(MANIFESTS).iterdir())
    assert [p.name for p in files] == ["etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml",
                                       "kube-scheduler.yaml"]
    assert {p.stat().st_mode & 0o777 for p in files} == {0o600}
    assert "    - --advertise-address=192.168.10.5\n" in files[1].read_text()
    assert files[0].read_text().count("\n    - --") == len(default_flags(tmp_path, "etcd"))


def test_a_second_run_changes_neither_bytes_nor_mtimes(tmp_path: Path) -> None:
    fs = node_root(tmp_path)
    run_all(fs, make_cfg())
    for p in fs.path(MANIFESTS).iterdir():
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))  # an old mtime: any rewrite would show
    before = snapshot(fs)
    run_all(fs, make_cfg())
    assert snapshot(fs) == before


def test_changing_one_extra_arg_rewrites_only_that_manifest(tmp_path: Path) -> None:
    fs = node_root(tmp_path)
    run_all(fs, make_cfg())
    for p in fs.path(MANIFESTS).iterdir():
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(fs)
    run_all(fs, make_cfg(cluster={"scheduler": {"extraArgs": [{"name": "v", "value": "4"}]}}))
    after = snapshot(fs)
    assert [name for name in before if before[name] != after[name]] == ["kube-scheduler.yaml"]
    assert "    - --v=4\n" in after["kube-scheduler.yaml"][0].decode()


def test_etcd_local_refuses_a_cluster_with_external_etcd(tmp_path: Path) -> None:
    cfg = make_cfg(cluster={"etcd": {"external": {"endpoints": ["https://10.0.0.21:2379"]}}})
    ctx = NodeContext(cfg=cfg, fs=node_root(tmp_path), out=lambda _l: None)
    with pytest.raises(PermanentError, match="cannot be generated for cluster using external etcd"):
        etcd.run_etcd_local(ctx)
    assert not ctx.fs.exists(f"{MANIFESTS}/etcd.yaml")


def test_the_manifests_say_what_the_spec_says_about_the_advertise_address(tmp_path: Path) -> None:
    fs = node_root(tmp_path)
    run_all(fs, make_cfg())
    text = fs.path(f"{MANIFESTS}/kube-apiserver.yaml").read_text()
    assert f"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: {ADV}:6443\n" in text
