"""preflight: kubeadm's init checks with kubeadm's names and texts, the ignore list, and resuming a node
left by an earlier kubeboot run of the same cluster (kubeadm-spec 2.1, 5.1).

The machine is a ``FakeHost``: a healthy host whose facts each test breaks one at a time."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubeboot.config.loader import build_init_config
from kubeboot.tasks import pki
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.hostfacts import HostFacts, proxy_for
from kubeboot.tasks.phases import preflight as phase
from kubeboot.tasks.phases.context import NodeContext

V4 = "kubeadm.k8s.io/v1beta4"
MARKER = "/var/lib/kubeboot/node.json"
MANIFESTS = "/etc/kubernetes/manifests"


@dataclass
class FakeHost(HostFacts):
    """A healthy control-plane machine; tests change one fact to make one check fail."""

    uid: int = 0
    cpus: int = 4
    files: dict[str, bytes] = field(default_factory=lambda: {
        "/proc/meminfo": b"MemTotal:        8048576 kB\nMemFree:  100 kB\n",
        "/proc/swaps": b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
        "/proc/sys/net/ipv4/ip_forward": b"1\n",
        "/proc/sys/net/ipv6/conf/default/forwarding": b"1\n",
    })
    missing: set[str] = field(default_factory=set)
    held_ports: set[int] = field(default_factory=set)
    addresses: list[str] = field(default_factory=lambda: ["10.0.0.10"])
    lookup_error: str = ""
    env: dict[str, str] = field(default_factory=dict)
    has_systemctl: bool = True
    units: dict[str, tuple[bool, bool, bool]] = field(default_factory=lambda: {"kubelet": (True, True, False)})
    kubelet: tuple[str, str] = ("1.36.1", "")
    cri: str = ""
    probes: list[str] = field(default_factory=list)

    def euid(self) -> int:
        self.probes.append("euid")
        return self.uid

    def cpu_count(self) -> int:
        self.probes.append("cpu")
        return self.cpus

    def read_file(self, path: str) -> bytes | None:
        return self.files.get(path)

    def which(self, executable: str) -> str | None:
        return None if executable in self.missing else f"/usr/bin/{executable}"

    def port_in_use(self, host: str, port: int) -> bool:
        return port in self.held_ports

    def lookup_host(self, name: str) -> tuple[list[str], str]:
        return self.addresses, self.lookup_error

    def environ(self) -> dict[str, str]:
        return self.env

    def systemctl(self) -> str | None:
        return "/usr/bin/systemctl" if self.has_systemctl else None

    def service_exists(self, name: str) -> bool:
        return name in self.units

    def service_enabled(self, name: str) -> bool:
        return self.units.get(name, (False, False, False))[1]

    def service_active(self, name: str) -> bool:
        return self.units.get(name, (False, False, False))[2]

    def kubelet_version(self) -> tuple[str, str]:
        return self.kubelet

    def cri_error(self, endpoint: str) -> str:
        return self.cri


def make_cfg(*, adv: str = "10.0.0.10", ignore: list[str] | None = None, etcd: dict[str, Any] | None = None,
             **cluster: Any):
    init = {"apiVersion": V4, "kind": "InitConfiguration",
            "nodeRegistration": {"name": "cp1", "ignorePreflightErrors": ignore or []},
            "localAPIEndpoint": {"advertiseAddress": adv}}
    cc = {"apiVersion": V4, "kind": "ClusterConfiguration", "clusterName": "prod", **cluster}
    if etcd is not None:
        cc["etcd"] = etcd
    return build_init_config([init, cc])


def preflight(tmp_path: Path, host: FakeHost, cfg=None, ignore: frozenset[str] = frozenset()) -> list[str]:
    lines: list[str] = []
    ctx = NodeContext(cfg=cfg or make_cfg(), fs=NodeFS(tmp_path / "node"), out=lines.append,
                      ignore_preflight_errors=ignore)
    phase.run_preflight(ctx, host=host)
    return lines


def fatal(tmp_path: Path, host: FakeHost, cfg=None, ignore: frozenset[str] = frozenset()) -> str:
    with pytest.raises(PermanentError) as err:
        preflight(tmp_path, host, cfg, ignore)
    return str(err.value)


def test_a_healthy_host_passes_with_only_the_opening_line(tmp_path: Path) -> None:
    assert preflight(tmp_path, FakeHost()) == ["[preflight] Running pre-flight checks"]


def test_the_check_list_is_kubeadms_init_list_in_kubeadms_order() -> None:
    names = [c.name for c in phase.init_node_checks(make_cfg(networking={"podSubnet": "10.244.0.0/16"}))]
    assert names == [
        "NumCPU", "Mem", "KubernetesVersion", "Firewalld", "Port-6443", "Port-10259", "Port-10257",
        "FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml",
        "FileAvailable--etc-kubernetes-manifests-kube-controller-manager.yaml",
        "FileAvailable--etc-kubernetes-manifests-kube-scheduler.yaml",
        "FileAvailable--etc-kubernetes-manifests-etcd.yaml",
        "HTTPProxy", "HTTPProxyCIDR", "HTTPProxyCIDR", "CRI", "Swap",
        "FileExisting-ip", "FileExisting-iptables", "FileExisting-mount", "FileExisting-nsenter",
        "FileExisting-ebtables", "FileExisting-ethtool", "FileExisting-socat", "FileExisting-tc", "FileExisting-touch",
        "Hostname", "KubeletVersion", "Service-Kubelet", "Port-10250",
        "FileContent--proc-sys-net-ipv4-ip_forward", "Port-2379", "Port-2380", "DirAvailable--var-lib-etcd",
    ]


def test_external_etcd_drops_the_etcd_ports_and_data_dir_and_ipv6_adds_forwarding() -> None:
    cfg = make_cfg(adv="fd00::10", etcd={"external": {"endpoints": ["https://etcd:2379"]}},
                   networking={"serviceSubnet": "fd00:96::/108"})
    names = [c.name for c in phase.init_node_checks(cfg)]
    assert not {"Port-2379", "Port-2380", "DirAvailable--var-lib-etcd"} & set(names)
    assert names[-1] == "FileContent--proc-sys-net-ipv6-conf-default-forwarding"
    assert "FileContent--proc-sys-net-ipv4-ip_forward" not in names


def _set(**facts: Any):
    def apply(host: FakeHost) -> None:
        for k, v in facts.items():
            setattr(host, k, v)
    return apply


def _file(path: str, data: bytes | None):
    def apply(host: FakeHost) -> None:
        if data is None:
            host.files.pop(path)
        else:
            host.files[path] = data
    return apply


ERRORS = [
    ("not root", _set(uid=1000), "IsPrivilegedUser", "user is not running as root"),
    ("one CPU", _set(cpus=1), "NumCPU", "the number of available CPUs 1 is less than the required 2"),
    ("1 GiB of RAM", _file("/proc/meminfo", b"MemTotal: 1048576 kB\n"), "Mem",
     "the system RAM (1024 MB) is less than the minimum 1700 MB"),
    ("API port taken", _set(held_ports={6443}), "Port-6443", "Port 6443 is in use"),
    ("scheduler port taken", _set(held_ports={10259}), "Port-10259", "Port 10259 is in use"),
    ("kubelet port taken", _set(held_ports={10250}), "Port-10250", "Port 10250 is in use"),
    ("etcd peer port taken", _set(held_ports={2380}), "Port-2380", "Port 2380 is in use"),
    ("no container runtime", _set(cri="dial unix /run/c.sock: connect: no such file or directory"), "CRI",
     "dial unix /run/c.sock: connect: no such file or directory"),
    ("no iptables", _set(missing={"iptables"}), "FileExisting-iptables", "iptables not found in system path"),
    ("no nsenter", _set(missing={"nsenter"}), "FileExisting-nsenter", "nsenter not found in system path"),
    ("no kubelet", _set(kubelet=("", "cannot execute 'kubelet --version': executable file not found in $PATH")),
     "KubeletVersion",
     "couldn't get kubelet version: cannot execute 'kubelet --version': executable file not found in $PATH"),
    ("kubelet too old", _set(kubelet=("1.32.4", "")), "KubeletVersion",
     'Kubelet version "v1.32.4" is lower than kubeadm can support. Please upgrade kubelet'),
    ("ip_forward off", _file("/proc/sys/net/ipv4/ip_forward", b"0\n"), "FileContent--proc-sys-net-ipv4-ip_forward",
     "/proc/sys/net/ipv4/ip_forward contents are not set to 1"),
    ("no /proc/sys", _file("/proc/sys/net/ipv4/ip_forward", None), "FileContent--proc-sys-net-ipv4-ip_forward",
     "/proc/sys/net/ipv4/ip_forward does not exist"),
]


@pytest.mark.parametrize(("breakage", "name", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_each_failing_check_is_a_fatal_error_with_kubeadms_name_and_text(tmp_path: Path, breakage, name: str,
                                                                          message: str) -> None:
    host = FakeHost()
    breakage(host)
    assert fatal(tmp_path, host) == (
        "[preflight] Some fatal errors occurred:\n"
        f"\t[ERROR {name}]: {message}\n"
        "[preflight] If you know what you are doing, you can make a check non-fatal with "
        "`--ignore-preflight-errors=...`")


@pytest.mark.parametrize(("breakage", "name", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_an_ignored_check_prints_its_error_as_a_warning(tmp_path: Path, breakage, name: str, message: str) -> None:
    host = FakeHost()
    breakage(host)
    lines = preflight(tmp_path, host, ignore=frozenset({name.lower()}))
    assert lines[1:] == [f"\t[WARNING {name}]: {message}"]


WARNINGS = [
    ("swap on", _file("/proc/swaps", b"Filename Type Size Used Priority\n/swap.img file 4G 0 -2\n"), "Swap",
     "swap is supported for cgroup v2 only. The kubelet must be properly configured to use swap. Please refer to "
     "https://kubernetes.io/docs/concepts/architecture/nodes/#swap-memory, or disable swap on the node"),
    ("no socat", _set(missing={"socat"}), "FileExisting-socat", "socat not found in system path"),
    ("firewalld running", _set(units={"kubelet": (True, True, False), "firewalld": (True, True, True)}),
     "Firewalld", "firewalld is active, please ensure ports [6443 10250] are open or your cluster may not function "
     "correctly"),
    ("kubelet unit disabled", _set(units={"kubelet": (True, False, False)}), "Service-Kubelet",
     "kubelet service is not enabled, please run 'systemctl enable kubelet.service'"),
    ("no kubelet unit", _set(units={}), "Service-Kubelet", "kubelet service does not exist"),
    ("advertise address behind a proxy", _set(env={"HTTPS_PROXY": "http://proxy:3128"}), "HTTPProxy",
     'Connection to "https://10.0.0.10" uses proxy "http://proxy:3128". If that is not intended, adjust your proxy '
     "settings"),
]


@pytest.mark.parametrize(("breakage", "name", "message"), [w[1:] for w in WARNINGS], ids=[w[0] for w in WARNINGS])
def test_each_warning_check_warns_and_lets_init_go_on(tmp_path: Path, breakage, name: str, message: str) -> None:
    host = FakeHost()
    breakage(host)
    assert f"\t[WARNING {name}]: {message}" in preflight(tmp_path, host)


def test_an_unresolvable_node_name_warns_twice_like_kubeadm(tmp_path: Path) -> None:
    host = FakeHost(addresses=[], lookup_error="Name or service not known")
    assert preflight(tmp_path, host)[1:] == ['\t[WARNING Hostname]: hostname "cp1" could not be reached',
                                             '\t[WARNING Hostname]: hostname "cp1": lookup cp1: Name or service '
                                             "not known"]


def test_without_systemd_the_service_checks_warn_instead_of_failing(tmp_path: Path) -> None:
    lines = preflight(tmp_path, FakeHost(has_systemctl=False))
    msg = "no supported init system detected, skipping checking for services"
    assert lines[1:] == [f"\t[WARNING Firewalld]: {msg}", f"\t[WARNING Service-Kubelet]: {msg}"]


def test_a_proxy_on_the_service_cidr_warns_unless_no_proxy_covers_it(tmp_path: Path) -> None:
    host = FakeHost(env={"https_proxy": "proxy:3128", "NO_PROXY": "10.0.0.0/8"})
    assert preflight(tmp_path, host) == ["[preflight] Running pre-flight checks"]
    host.env = {"https_proxy": "proxy:3128", "NO_PROXY": "10.0.0.10"}
    assert ('\t[WARNING HTTPProxyCIDR]: connection to "10.96.0.0/12" uses proxy "http://proxy:3128". This may lead '
            "to malfunctional cluster setup. Make sure that Pod and Services IP ranges specified correctly as "
            "exceptions in proxy configuration") in preflight(tmp_path, host)


def test_every_error_is_listed_before_failing(tmp_path: Path) -> None:
    message = fatal(tmp_path, FakeHost(cpus=1, held_ports={6443, 2379}))
    assert [line.split("]")[0] for line in message.splitlines()[1:-1]] == [
        "\t[ERROR NumCPU", "\t[ERROR Port-6443", "\t[ERROR Port-2379"]


def test_not_being_root_fails_before_any_other_check_probes_the_host(tmp_path: Path) -> None:
    host = FakeHost(uid=1000, cpus=1)
    message = fatal(tmp_path, host)
    assert "IsPrivilegedUser" in message
    assert "NumCPU" not in message
    assert host.probes == ["euid"]


@pytest.mark.parametrize(("ignore_flag", "ignore_cfg"), [
    (frozenset({"all"}), []),
    (frozenset({"numcpu", "port-6443"}), []),
    (frozenset(), ["NumCPU", "Port-6443"]),
    (frozenset({"NUMCPU"}), ["port-6443"]),
], ids=["all", "names from the flag", "names from nodeRegistration", "flag and config together, any case"])
def test_ignored_names_turn_errors_into_warnings(tmp_path: Path, ignore_flag: frozenset[str],
                                                 ignore_cfg: list[str]) -> None:
    lines = preflight(tmp_path, FakeHost(cpus=1, held_ports={6443}), make_cfg(ignore=ignore_cfg), ignore_flag)
    assert lines[1:] == ["\t[WARNING NumCPU]: the number of available CPUs 1 is less than the required 2",
                         "\t[WARNING Port-6443]: Port 6443 is in use"]


# --- files left by an earlier run: resume or conflict ----------------------------------------------

def _ca() -> tuple[bytes, str]:
    key = pki.generate_key("ECDSA-P256")
    cert = pki.build_certificate(pki.CertSpec("kubernetes", is_ca=True), key.public_key(), key, None,
                                 datetime(2026, 1, 1, tzinfo=UTC))
    return pki.cert_to_pem(cert), pki.ca_cert_hash(cert)


def left_behind(tmp_path: Path, *, marker_cluster: str = "prod", marker_ca: str | None = None) -> tuple[NodeFS, str]:
    """A node where a run got as far as static Pods and a started etcd."""
    fs = NodeFS(tmp_path / "node")
    ca_pem, ca_hash = _ca()
    fs.write("/etc/kubernetes/pki/ca.crt", ca_pem)
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        fs.write(f"{MANIFESTS}/{name}.yaml", "kind: Pod\n")
    fs.write("/var/lib/etcd/member/snap/db", b"\0")
    record = {"clusterName": marker_cluster, "node": "cp1", "caCertHash": marker_ca or ca_hash}
    fs.write(MARKER, json.dumps(record))
    return fs, ca_hash


def test_a_node_left_by_this_clusters_earlier_run_is_resumed(tmp_path: Path) -> None:
    _, ca_hash = left_behind(tmp_path)
    lines = preflight(tmp_path, FakeHost(held_ports={6443, 2379, 2380, 10257, 10259}))
    prev = f'a previous kubeboot run of cluster "prod" (CA {ca_hash})'
    assert lines[1:] == [
        f"[preflight] Resuming: port 6443 is in use, taken to be the kube-apiserver of {prev}",
        f"[preflight] Resuming: port 10259 is in use, taken to be the kube-scheduler of {prev}",
        f"[preflight] Resuming: port 10257 is in use, taken to be the kube-controller-manager of {prev}",
        f'[preflight] Resuming: "{MANIFESTS}/kube-apiserver.yaml" was written by {prev}',
        f'[preflight] Resuming: "{MANIFESTS}/kube-controller-manager.yaml" was written by {prev}',
        f'[preflight] Resuming: "{MANIFESTS}/kube-scheduler.yaml" was written by {prev}',
        f'[preflight] Resuming: "{MANIFESTS}/etcd.yaml" was written by {prev}',
        f"[preflight] Resuming: port 2379 is in use, taken to be the etcd of {prev}",
        f"[preflight] Resuming: port 2380 is in use, taken to be the etcd of {prev}",
        f'[preflight] Resuming: "/var/lib/etcd" was written by {prev}',
    ]


def test_without_a_marker_leftover_files_fail_exactly_as_in_kubeadm(tmp_path: Path) -> None:
    fs, _ = left_behind(tmp_path)
    fs.remove(MARKER)
    message = fatal(tmp_path, FakeHost())
    assert f"\t[ERROR FileAvailable--etc-kubernetes-manifests-etcd.yaml]: {MANIFESTS}/etcd.yaml already exists\n" \
        in message
    assert "\t[ERROR DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty\n" in message


@pytest.mark.parametrize("marker", [{"marker_ca": "sha256:" + "0" * 64}, {"marker_cluster": "staging"}],
                         ids=["another CA", "another cluster name"])
def test_files_of_another_cluster_stay_errors_and_say_whose_they_are(tmp_path: Path, marker: dict[str, str]) -> None:
    left_behind(tmp_path, **marker)
    message = fatal(tmp_path, FakeHost(held_ports={6443}))
    assert "\t[ERROR Port-6443]: Port 6443 is in use\n" in message
    assert (f"\t[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: {MANIFESTS}/kube-apiserver.yaml "
            "already exists and belongs to another cluster: the kubeboot marker /var/lib/kubeboot/node.json "
            "records cluster ") in message
    assert "this run is cluster \"prod\", node \"cp1\" with CA sha256:" in message
    assert "Resuming" not in message


def test_a_held_port_whose_component_left_no_manifest_is_still_an_error_on_resume(tmp_path: Path) -> None:
    fs, _ = left_behind(tmp_path)
    fs.remove(f"{MANIFESTS}/kube-scheduler.yaml")
    assert "\t[ERROR Port-10259]: Port 10259 is in use\n" in fatal(tmp_path, FakeHost(held_ports={10259}))


def test_an_empty_etcd_data_dir_is_available(tmp_path: Path) -> None:
    (tmp_path / "node/var/lib/etcd").mkdir(parents=True)
    assert preflight(tmp_path, FakeHost()) == ["[preflight] Running pre-flight checks"]


# --- the real host's facts ---------------------------------------------------------------------------

def test_a_port_held_on_127_0_0_1_is_detected_and_a_free_one_is_not() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        assert HostFacts().port_in_use("127.0.0.1", port) is True
    assert HostFacts().port_in_use("127.0.0.1", port) is False


def test_the_port_check_binds_the_advertise_address_so_loopback_nodes_do_not_collide() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.2", 0))
        held.listen(1)
        port = held.getsockname()[1]
        assert HostFacts().port_in_use("127.0.0.3", port) is False
        assert HostFacts().port_in_use("127.0.0.2", port) is True


@pytest.mark.parametrize(("host", "env", "proxy"), [
    ("10.96.0.1", {"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
    ("10.96.0.1", {"https_proxy": "p:3128"}, "http://p:3128"),
    ("10.96.0.1", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "10.96.0.0/12"}, ""),
    ("10.96.0.1", {"HTTPS_PROXY": "http://p:3128", "no_proxy": "*"}, ""),
    ("api.corp.example", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": ".corp.example"}, ""),
    ("127.0.0.1", {"HTTPS_PROXY": "http://p:3128"}, ""),
    ("10.96.0.1", {"HTTP_PROXY": "http://p:3128"}, ""),
], ids=["HTTPS_PROXY", "scheme-less lower-case proxy", "NO_PROXY CIDR", "NO_PROXY star", "NO_PROXY domain suffix",
        "loopback never proxied", "HTTP_PROXY does not apply to https"])
def test_proxy_selection_follows_gos_proxy_from_environment(host: str, env: dict[str, str], proxy: str) -> None:
    assert proxy_for(host, "https", env) == proxy
