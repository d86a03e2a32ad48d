"""kubelet-start: kubeadm-flags.env, instance-config.yaml and config.yaml as kubeadm v1.34-v1.36 write them,
the kubelet driver called around the writes, and convergence (kubeadm-spec 2.6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeboot.config.loader import build_init_config
from kubeboot.config.models import Patches
from kubeboot.tasks import kubeletconfig as kc
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import kubeletstart as phase
from kubeboot.tasks.phases.context import NodeContext

V4 = "kubeadm.k8s.io/v1beta4"
ENV = "/var/lib/kubelet/kubeadm-flags.env"
INSTANCE = "/var/lib/kubelet/instance-config.yaml"
CONFIG = "/var/lib/kubelet/config.yaml"
CONTAINERD = "unix:///var/run/containerd/containerd.sock"

# A real /var/lib/kubelet/config.yaml of kubeadm v1.3x with containerd, no systemd-resolved.
KUBEADM_CONFIG_YAML = """\
apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 0s
    cacheUnauthorizedTTL: 0s
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
clusterDomain: cluster.local
containerRuntimeEndpoint: unix:///var/run/containerd/containerd.sock
cpuManagerReconcilePeriod: 0s
crashLoopBackOff: {}
evictionPressureTransitionPeriod: 0s
fileCheckFrequency: 0s
healthzBindAddress: 127.0.0.1
healthzPort: 10248
httpCheckFrequency: 0s
imageMaximumGCAge: 0s
imageMinimumGCAge: 0s
kind: KubeletConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
    text:
      infoBufferSize: "0"
  verbosity: 0
memorySwap: {}
nodeStatusReportFrequency: 0s
nodeStatusUpdateFrequency: 0s
rotateCertificates: true
runtimeRequestTimeout: 0s
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
staticPodPath: /etc/kubernetes/manifests
streamingConnectionIdleTimeout: 0s
syncFrequency: 0s
volumeStatsAggPeriod: 0s
"""


def make_cfg(version: str = "v1.36.1", *, kubelet: dict[str, Any] | None = None, extra_args=(),
             cri: str = CONTAINERD, **cluster: Any):
    init = {"apiVersion": V4, "kind": "InitConfiguration",
            "nodeRegistration": {"name": "cp1", "criSocket": cri,
                                 "kubeletExtraArgs": [{"name": n, "value": v} for n, v in extra_args]},
            "localAPIEndpoint": {"advertiseAddress": "10.0.0.10"}}
    docs = [init, {"apiVersion": V4, "kind": "ClusterConfiguration", "kubernetesVersion": version, **cluster}]
    if kubelet is not None:
        docs.append({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", **kubelet})
    return build_init_config(docs)


def node(tmp_path: Path, hostname: str | None = "cp1") -> NodeFS:
    fs = NodeFS(tmp_path / "node")
    if hostname is not None:
        fs.write("/etc/hostname", hostname + "\n")
    return fs


class FakeKubelet:
    """Records what kubelet-start asks of the kubelet, and which files existed at that moment."""

    def __init__(self, fs: NodeFS) -> None:
        self.fs = fs
        self.calls: list[tuple[str, bool]] = []

    @property
    def healthz_url(self) -> str:
        return "http://127.0.0.1:10248/healthz"

    def stop(self, out) -> None:
        self.calls.append(("stop", self.fs.exists(CONFIG)))

    def start(self, out) -> None:
        self.calls.append(("start", self.fs.exists(CONFIG)))

    def restart(self, out) -> None:
        self.calls.append(("restart", self.fs.exists(CONFIG)))

    def is_active(self) -> bool:
        return bool(self.calls) and self.calls[-1][0] != "stop"


def run(tmp_path: Path, cfg, fs: NodeFS | None = None, kubelet: FakeKubelet | None = None) -> list[str]:
    lines: list[str] = []
    fs = fs or node(tmp_path)
    phase.run_kubelet_start(NodeContext(cfg=cfg, fs=fs, out=lines.append, kubelet=kubelet))
    return lines


# --- kubeadm-flags.env ---------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "expected"), [
    ("v1.34.2", 'KUBELET_KUBEADM_ARGS="--pod-infra-container-image=registry.k8s.io/pause:3.10.1"\n'),
    ("v1.35.0", 'KUBELET_KUBEADM_ARGS=""\n'),
    ("v1.36.1", 'KUBELET_KUBEADM_ARGS=""\n'),
], ids=["v1.34 still passes the pause image", "v1.35 writes no flags", "v1.36 writes no flags"])
def test_flags_env_holds_exactly_the_flags_of_each_minor(tmp_path: Path, version: str, expected: str) -> None:
    fs = node(tmp_path)
    run(tmp_path, make_cfg(version), fs)
    assert fs.read_text(ENV) == expected


def test_a_node_name_other_than_the_hostname_adds_hostname_override(tmp_path: Path) -> None:
    fs = node(tmp_path, hostname="machine-7")
    run(tmp_path, make_cfg("v1.36.1"), fs)
    assert fs.read_text(ENV) == 'KUBELET_KUBEADM_ARGS="--hostname-override=cp1"\n'


def test_a_hostname_is_compared_trimmed_and_lowercased_like_kubeadm(tmp_path: Path) -> None:
    fs = node(tmp_path, hostname="  CP1 ")
    run(tmp_path, make_cfg("v1.36.1"), fs)
    assert fs.read_text(ENV) == 'KUBELET_KUBEADM_ARGS=""\n'


def test_kubelet_extra_args_override_by_name_and_everything_is_sorted(tmp_path: Path) -> None:
    cfg = make_cfg("v1.34.2", extra_args=[("v", "4"), ("pod-infra-container-image", "my.registry/pause:9"),
                                          ("node-ip", "10.0.0.10")])
    fs = node(tmp_path, hostname="machine-7")
    run(tmp_path, cfg, fs)
    assert fs.read_text(ENV) == ('KUBELET_KUBEADM_ARGS="--hostname-override=cp1 --node-ip=10.0.0.10 '
                                 '--pod-infra-container-image=my.registry/pause:9 --v=4"\n')


def test_a_hostname_override_extra_arg_names_the_node_and_wins(tmp_path: Path) -> None:
    cfg = make_cfg("v1.36.1", extra_args=[("hostname-override", "other")])
    fs = node(tmp_path, hostname="cp1")
    run(tmp_path, cfg, fs)
    assert fs.read_text(ENV) == 'KUBELET_KUBEADM_ARGS="--hostname-override=other"\n'


def test_quotes_in_flag_values_are_escaped_like_go_percent_q() -> None:
    cfg = make_cfg("v1.36.1", extra_args=[("node-labels", 'a="b"')])
    assert kc.flags_env(cfg, "cp1") == 'KUBELET_KUBEADM_ARGS="--node-labels=a=\\"b\\""\n'


# --- instance-config.yaml and config.yaml --------------------------------------------------------

@pytest.mark.parametrize("version", ["v1.34.2", "v1.35.0", "v1.36.1"])
def test_instance_config_is_kubeadms_one_line_patch(tmp_path: Path, version: str) -> None:
    fs = node(tmp_path)
    run(tmp_path, make_cfg(version, cri="unix:///run/crio/crio.sock"), fs)
    assert fs.read_text(INSTANCE) == 'containerRuntimeEndpoint: "unix:///run/crio/crio.sock"\n'


@pytest.mark.parametrize("version", ["v1.34.2", "v1.35.0", "v1.36.1"])
def test_config_yaml_is_byte_for_byte_kubeadms_defaulted_configuration(tmp_path: Path, version: str) -> None:
    fs = node(tmp_path)
    run(tmp_path, make_cfg(version), fs)
    assert fs.read_text(CONFIG) == KUBEADM_CONFIG_YAML


def test_resolv_conf_is_set_only_when_systemd_resolved_runs_on_the_node(tmp_path: Path) -> None:
    fs = node(tmp_path)
    fs.write("/run/systemd/resolve/resolv.conf", "nameserver 10.0.0.1\n")
    run(tmp_path, make_cfg(), fs)
    doc = yaml.safe_load(fs.read_text(CONFIG) or "")
    assert doc["resolvConf"] == "/run/systemd/resolve/resolv.conf"
    assert "resolvConf" not in KUBEADM_CONFIG_YAML


def test_cluster_dns_domain_and_ca_follow_the_cluster_configuration(tmp_path: Path) -> None:
    fs = node(tmp_path)
    cfg = make_cfg(networking={"serviceSubnet": "10.100.0.0/16", "dnsDomain": "corp.example"},
                   certificatesDir="/srv/pki")
    run(tmp_path, cfg, fs)
    doc = yaml.safe_load(fs.read_text(CONFIG) or "")
    assert doc["clusterDNS"] == ["10.100.0.10"]
    assert doc["clusterDomain"] == "corp.example"
    assert doc["authentication"]["x509"]["clientCAFile"] == "/srv/pki/ca.crt"


def test_the_users_kubelet_configuration_wins_except_for_certificate_rotation(tmp_path: Path) -> None:
    fs = node(tmp_path)
    user = {"cgroupDriver": "cgroupfs", "clusterDNS": ["169.254.20.10"], "maxPods": 50,
            "rotateCertificates": False, "authentication": {"webhook": {"cacheTTL": "2m0s"}},
            "featureGates": {"KubeletTracing": True}}
    run(tmp_path, make_cfg(kubelet=user), fs)
    doc = yaml.safe_load(fs.read_text(CONFIG) or "")
    assert (doc["cgroupDriver"], doc["clusterDNS"], doc["maxPods"]) == ("cgroupfs", ["169.254.20.10"], 50)
    assert doc["authentication"]["webhook"] == {"cacheTTL": "2m0s", "enabled": True}
    assert doc["featureGates"] == {"KubeletTracing": True}
    assert doc["rotateCertificates"] is True


def test_user_patches_apply_before_the_instance_patch_so_the_cri_socket_wins() -> None:
    cfg = make_cfg(kubelet={})
    cfg.init.patches = Patches(directory="/patches")
    seen: list[tuple[str, Path]] = []

    def patcher(target: str, obj: dict[str, Any], patches_dir: Path, out) -> dict[str, Any]:
        seen.append((target, patches_dir))
        out('[patches] Applied patch of type "application/merge-patch+json" to target "kubeletconfiguration"')
        return {**obj, "maxPods": 42, "containerRuntimeEndpoint": "unix:///wrong.sock"}

    lines: list[str] = []
    doc = kc.node_kubelet_config(kc.cluster_kubelet_config(cfg, resolved_active=False), cfg, lines.append,
                                 patcher=patcher)
    assert seen == [("kubeletconfiguration", Path("/patches"))]
    assert (doc["maxPods"], doc["containerRuntimeEndpoint"]) == (42, CONTAINERD)
    assert lines == ['[patches] Applied patch of type "application/merge-patch+json" to target "kubeletconfiguration"',
                     '[patches] Applied patch of type "application/strategic-merge-patch+json" to target '
                     '"kubeletconfiguration"']


# --- the phase: order, driver, modes, convergence ------------------------------------------------

def test_the_phase_prints_kubeadms_lines_in_kubeadms_order(tmp_path: Path) -> None:
    fs = node(tmp_path)
    lines = run(tmp_path, make_cfg(), fs, FakeKubelet(fs))
    assert lines == [
        '[kubelet-start] Writing kubelet environment file with flags to file "/var/lib/kubelet/kubeadm-flags.env"',
        '[kubelet-start] Writing kubelet configuration to file "/var/lib/kubelet/instance-config.yaml"',
        '[patches] Applied patch of type "application/strategic-merge-patch+json" to target "kubeletconfiguration"',
        '[kubelet-start] Writing kubelet configuration to file "/var/lib/kubelet/config.yaml"',
        "[kubelet-start] Starting the kubelet",
    ]


def test_the_kubelet_is_stopped_before_the_files_and_started_after_them(tmp_path: Path) -> None:
    fs = node(tmp_path)
    kubelet = FakeKubelet(fs)
    run(tmp_path, make_cfg(), fs, kubelet)
    assert kubelet.calls == [("stop", False), ("start", True)]


def test_the_kubelet_is_restarted_on_every_run_like_kubeadm(tmp_path: Path) -> None:
    fs = node(tmp_path)
    kubelet = FakeKubelet(fs)
    run(tmp_path, make_cfg(), fs, kubelet)
    run(tmp_path, make_cfg(), fs, kubelet)
    assert [name for name, _ in kubelet.calls] == ["stop", "start", "stop", "start"]


def test_without_a_driver_the_files_are_written_and_starting_is_reported_as_skipped(tmp_path: Path) -> None:
    fs = node(tmp_path)
    lines = run(tmp_path, make_cfg(), fs, None)
    assert fs.exists(CONFIG)
    assert lines[-1] == "[kubelet-start] Not starting the kubelet: no kubelet driver is configured (--kubelet none)"


def test_dry_run_writes_the_files_but_leaves_the_kubelet_alone(tmp_path: Path) -> None:
    fs = node(tmp_path)
    kubelet = FakeKubelet(fs)
    cfg = make_cfg()
    cfg.init.dryRun = True
    lines = run(tmp_path, cfg, fs, kubelet)
    assert kubelet.calls == []
    assert fs.exists(CONFIG)
    assert "[kubelet-start] Starting the kubelet" not in lines


def test_files_are_0644_in_a_0700_kubelet_directory(tmp_path: Path) -> None:
    fs = node(tmp_path)
    run(tmp_path, make_cfg(), fs)
    assert {p: fs.path(p).stat().st_mode & 0o777 for p in (ENV, INSTANCE, CONFIG)} == dict.fromkeys(
        (ENV, INSTANCE, CONFIG), 0o644)
    assert fs.path("/var/lib/kubelet").stat().st_mode & 0o777 == 0o700


def test_a_second_run_changes_no_byte_and_no_mtime(tmp_path: Path) -> None:
    fs = node(tmp_path)
    run(tmp_path, make_cfg(), fs)
    before = {p: (fs.path(p).stat().st_mtime_ns, fs.read_bytes(p)) for p in (ENV, INSTANCE, CONFIG)}
    run(tmp_path, make_cfg(), fs)
    assert {p: (fs.path(p).stat().st_mtime_ns, fs.read_bytes(p)) for p in (ENV, INSTANCE, CONFIG)} == before


def test_a_hand_edited_file_is_rewritten_to_the_configured_content(tmp_path: Path) -> None:
    fs = node(tmp_path)
    run(tmp_path, make_cfg(), fs)
    fs.write(CONFIG, "maxPods: 3\n")
    run(tmp_path, make_cfg(), fs)
    assert fs.read_text(CONFIG) == KUBEADM_CONFIG_YAML
