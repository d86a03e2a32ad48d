"""Conformance of the node files with kubeadm v1.34, v1.35 and v1.36, one table row per configuration variant.

Each row is a kubeadm configuration; each runs ``kubeboot init phase local`` in process (``run_init_phase``,
the phases preflight skipped: its host checks are not about the files) into a fresh node root, once per
minor, and the files are checked against what kubeadm's source says:

* invariants every kubeadm init leaves (``check_invariants``): the files and their modes
  (WriteStaticPodToDisk 0600 under a 0700 directory, keys 0600, certificates 0644, kubeconfigs 0600,
  kubelet files 0644, the etcd data directory 0700), every static Pod valid for that minor's API
  (kubernetes-validate, strict) with its flags sorted as ArgumentsToCommand sorts them, no ``//`` in a
  flag, a volume or the kubelet's clientCAFile, the version's images, and ``config.yaml`` decodable into
  the kubelet's Go types with no unknown field;
* the row's own facts (``expect``), written from kubeadm's source: the flags, volumes, SANs, servers,
  owners ... that this variant changes.

Join rows (``JOINS``, section "joins" below) do the same for ``kubeboot join``: a worker and a control plane
joining a cluster an init row made, their node files checked against kubeadm's join (kubelet-start,
control-plane-prepare, etcd-join).

kubernetes-validate has schemas for API objects only; component configurations (KubeletConfiguration)
are not served by the API server, so ``config.yaml`` is decoded with ``config.kubelettypes`` instead —
``test_kubernetes_validate_has_no_component_config_schema`` fails the day that changes.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from kubeboot.config.kubelettypes import KubeletConfiguration
from kubeboot.workers.local_run import run_init_phase

VERSIONS = {"v1.34.3": "1.34.0", "v1.35.0": "1.35.0", "v1.36.1": "1.36.0"}  # -> kubernetes-validate schema
ETCD_IMAGE = {34: "3.6.4-0", 35: "3.6.6-0", 36: "3.6.8-0"}  # constants.SupportedEtcdVersion
ADV = "10.0.0.10"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
KUBECONFIGS = ("admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf")


@dataclass
class Node:
    """The files one run left under its root, read back."""

    root: Path
    version: str
    lines: list[str]
    warnings: list[str]
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: Path | None = None  # the configuration file the node was made from

    @property
    def minor(self) -> int:
        return int(self.version.split(".")[1])

    def path(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    def text(self, node_path: str) -> str:
        return self.path(node_path).read_text()

    def mode(self, node_path: str) -> int:
        return stat.S_IMODE(self.path(node_path).stat().st_mode)

    def command(self, component: str) -> list[str]:
        return list(self.pods[component]["spec"]["containers"][0]["command"])

    def flags(self, component: str) -> dict[str, str]:
        return dict(f[2:].split("=", 1) for f in self.command(component)[1:])

    def volumes(self, component: str) -> dict[str, dict[str, Any]]:
        return {v["name"]: v["hostPath"] for v in self.pods[component]["spec"].get("volumes", [])}

    def mounts(self, component: str) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in self.pods[component]["spec"]["containers"][0].get("volumeMounts", [])}

    def env(self, component: str) -> dict[str, str]:
        return {e["name"]: e.get("value", "") for e in self.pods[component]["spec"]["containers"][0].get("env", [])}

    def kubelet(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.text("/var/lib/kubelet/config.yaml")))

    def kubeconfig_server(self, name: str) -> str:
        return str(yaml.safe_load(self.text(f"/etc/kubernetes/{name}"))["clusters"][0]["cluster"]["server"])

    def cert(self, pki: str, base: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.path(f"{pki}/{base}.crt").read_bytes())

    def sans(self, pki: str, base: str) -> tuple[set[str], set[str]]:
        ext = self.cert(pki, base).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return set(ext.get_values_for_type(x509.DNSName)), {str(i) for i in ext.get_values_for_type(x509.IPAddress)}


# --- running --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    cluster: dict[str, Any] = field(default_factory=dict)
    init: dict[str, Any] = field(default_factory=dict)
    extra_docs: tuple[dict[str, Any], ...] = ()
    setup: Callable[[Path, Path], None] | None = None  # (node root, directory for patches ...)
    env: dict[str, str] = field(default_factory=dict)
    then: Callable[[Path, Callable[[str], tuple[int, str]]], None] | None = None  # a second pass
    expect: Callable[[Node], None] = lambda node: None
    pki: str = "/etc/kubernetes/pki"
    data_dir: str = "/var/lib/etcd"
    external_etcd: bool = False
    etcd_tag: str = ""  # etcd.local.imageTag, when the row pins one


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_variant(v: Variant, version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Node:
    root, work = tmp_path / "root", tmp_path / "work"
    root.mkdir()
    work.mkdir()
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("cp1\n")
    for name in [k for k in os.environ if k.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    for name, value in v.env.items():
        monkeypatch.setenv(name, value)
    if v.setup:
        v.setup(root, work)
    init = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration",
            "nodeRegistration": {"name": "cp1"}, "localAPIEndpoint": {"advertiseAddress": ADV}}
    init = _merge(init, v.init)
    cluster = _merge({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration",
                      "kubernetesVersion": version, "encryptionAlgorithm": "ECDSA-P256"}, v.cluster)
    config = work / "kubeadm.yaml"
    config.write_text(yaml.safe_dump_all([init, cluster, *v.extra_docs]).replace("@WORK@", str(work)))
    lines: list[str] = []
    collect = _Collect()
    logging.getLogger("kubeboot.config").addHandler(collect)

    def phase(path: str) -> tuple[int, str]:
        return run_init_phase(path=path, config_file=str(config), root=str(root), skip=["preflight"],
                              out=lines.append)

    try:
        assert phase("local") == (0, ""), lines
        if v.then:
            v.then(root, phase)
    finally:
        logging.getLogger("kubeboot.config").removeHandler(collect)
    node = Node(root, version, lines, collect.messages, config=config)
    read_pods(node)
    return node


def read_pods(node: Node) -> None:
    for component in COMPONENTS:
        manifest = node.path(f"/etc/kubernetes/manifests/{component}.yaml")
        if manifest.exists():
            node.pods[component] = yaml.safe_load(manifest.read_text())


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, val in over.items():
        out[k] = _merge(out[k], val) if isinstance(val, dict) and isinstance(out.get(k), dict) else val
    return out


# --- what every kubeadm init leaves -------------------------------------------------------------------


def _all_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _all_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_strings(item)


def _no_double_slash(text: str) -> bool:
    return "//" not in text.replace("://", "")


def check_invariants(node: Node, v: Variant) -> None:
    want = set(COMPONENTS) - ({"etcd"} if v.external_etcd else set())
    assert set(node.pods) == want
    assert node.mode("/etc/kubernetes/manifests") == 0o700
    for component, pod in node.pods.items():
        assert node.mode(f"/etc/kubernetes/manifests/{component}.yaml") == 0o600
        kubernetes_validate.validate(pod, VERSIONS[node.version], strict=True)
        names = [f[2:].split("=", 1)[0] for f in node.command(component)[1:]]
        assert names == sorted(names), f"{component}: flags not sorted as ArgumentsToCommand sorts them"
        bad = [s for s in _all_strings(pod["spec"]) if s.startswith("/") and not _no_double_slash(s)]
        bad += [f for f in node.command(component) if not _no_double_slash(f)]
        assert not bad, f"{component}: '//' in {bad}"
        assert set(node.mounts(component)) <= set(node.volumes(component))
        assert pod["spec"]["priorityClassName"] == "system-node-critical"
        assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert node.pods[component]["spec"]["containers"][0]["image"].endswith(f"/{component}:{node.version}")
    if not v.external_etcd:
        tag = v.etcd_tag or ETCD_IMAGE[node.minor]
        assert node.pods["etcd"]["spec"]["containers"][0]["image"].endswith(f"/etcd:{tag}")
        assert node.mode(v.data_dir) == 0o700
    for name in KUBECONFIGS:
        assert node.mode(f"/etc/kubernetes/{name}") == 0o600
    for rel in ("ca", "apiserver", "front-proxy-ca", "front-proxy-client"):
        assert node.mode(f"{v.pki}/{rel}.crt") == 0o644
    for rel in ("kubeadm-flags.env", "config.yaml", "instance-config.yaml"):
        assert node.mode(f"/var/lib/kubelet/{rel}") == 0o644
    kubelet = node.kubelet()
    KubeletConfiguration.model_validate(kubelet)  # Go's types, strict: unknown field or wrong type fails
    assert _no_double_slash(kubelet["authentication"]["x509"]["clientCAFile"])
    assert kubelet["rotateCertificates"] is True
    assert kubelet["staticPodPath"] == "/etc/kubernetes/manifests"
    pause = "--pod-infra-container-image=" in node.text("/var/lib/kubelet/kubeadm-flags.env")
    assert pause == (node.minor == 34), "v1.35 stopped writing --pod-infra-container-image"
    org = node.cert(v.pki, "apiserver-kubelet-client").subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    assert [a.value for a in org] == ([] if node.minor >= 36 else ["kubeadm:cluster-admins"])


# --- the rows -------------------------------------------------------------------------------------------

PKI = "/etc/kubernetes/pki"
LOCAL = f"https://{ADV}:6443"


def defaults(node: Node) -> None:
    f = node.flags("kube-apiserver")
    assert (f["advertise-address"], f["secure-port"], f["client-ca-file"]) == (ADV, "6443", f"{PKI}/ca.crt")
    assert (f["etcd-servers"], f["service-cluster-ip-range"]) == ("https://127.0.0.1:2379", "10.96.0.0/12")
    assert f["authorization-mode"] == "Node,RBAC" and f["enable-admission-plugins"] == "NodeRestriction"
    annotations = node.pods["kube-apiserver"]["metadata"]["annotations"]
    assert annotations["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"] == f"{ADV}:6443"
    assert set(node.volumes("kube-apiserver")) == {"ca-certs", "k8s-certs"}
    assert set(node.volumes("kube-controller-manager")) == {"ca-certs", "flexvolume-dir", "k8s-certs", "kubeconfig"}
    assert set(node.volumes("kube-scheduler")) == {"kubeconfig"}
    assert node.volumes("etcd") == {"etcd-data": {"path": "/var/lib/etcd", "type": "DirectoryOrCreate"},
                                    "etcd-certs": {"path": f"{PKI}/etcd", "type": "DirectoryOrCreate"}}
    e = node.flags("etcd")
    assert (e["feature-gates"], e["watch-progress-notify-interval"]) == ("InitialCorruptCheck=true", "5s")
    assert e["initial-cluster"] == f"cp1=https://{ADV}:2380" and e["data-dir"] == "/var/lib/etcd"
    kubelet = node.kubelet()
    assert kubelet["clusterDNS"] == ["10.96.0.10"] and kubelet["clusterDomain"] == "cluster.local"
    assert kubelet["authentication"]["x509"]["clientCAFile"] == f"{PKI}/ca.crt"
    assert kubelet["containerRuntimeEndpoint"] == "unix:///var/run/containerd/containerd.sock"
    assert node.text("/var/lib/kubelet/instance-config.yaml") == \
        'containerRuntimeEndpoint: "unix:///var/run/containerd/containerd.sock"\n'
    assert all(node.kubeconfig_server(n) == LOCAL for n in KUBECONFIGS)
    assert isinstance(node.cert(PKI, "ca").public_key(), ec.EllipticCurvePublicKey)
    assert node.warnings == []


def rsa(node: Node) -> None:
    key = node.cert(PKI, "apiserver").public_key()
    assert getattr(key, "key_size", 0) == 2048 and not isinstance(key, ec.EllipticCurvePublicKey)


def ecdsa_p384(node: Node) -> None:
    key = node.cert(PKI, "ca").public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    assert node.cert(PKI, "apiserver").signature_hash_algorithm.name == "sha384"


def cert_sans(node: Node) -> None:
    dns, ips = node.sans(PKI, "apiserver")
    assert dns == {"cp1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                   "kubernetes.default.svc.cluster.local", "lb.example.com", "*.apps.example.org"}
    assert ips == {"10.96.0.1", ADV, "10.0.0.100"}
    assert node.sans(PKI, "etcd/server") == ({"cp1", "localhost", "etcd.example.com"},
                                             {ADV, "127.0.0.1", "::1", "10.0.0.200"})
    assert node.sans(PKI, "etcd/peer")[0] == {"cp1", "localhost", "peer.example.com"}


def ipv6(node: Node) -> None:
    f, e = node.flags("kube-apiserver"), node.flags("etcd")
    assert (f["advertise-address"], f["etcd-servers"]) == ("fd00::10", "https://[::1]:2379")
    assert e["listen-client-urls"] == "https://[::1]:2379,https://[fd00::10]:2379"
    assert e["listen-metrics-urls"] == "http://[::1]:2381"
    assert node.pods["etcd"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["host"] == "::1"
    assert node.pods["kube-apiserver"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["host"] == "fd00::10"
    assert node.sans(PKI, "apiserver")[1] == {"fd00:10:96::1", "fd00::10"}
    assert node.kubelet()["clusterDNS"] == ["fd00:10:96::a"]
    assert node.kubeconfig_server("admin.conf") == "https://[fd00::10]:6443"


def dual_stack(node: Node) -> None:
    k = node.flags("kube-controller-manager")
    assert (k["allocate-node-cidrs"], k["cluster-cidr"]) == ("true", "10.244.0.0/16,fd00:10:244::/56")
    assert k["service-cluster-ip-range"] == node.flags("kube-apiserver")["service-cluster-ip-range"] \
        == "10.96.0.0/16,fd00:10:96::/112"
    assert node.sans(PKI, "apiserver")[1] == {"10.96.0.1", ADV}  # the primary (first) family only
    assert node.kubelet()["clusterDNS"] == ["10.96.0.10"]


def external_etcd(node: Node) -> None:
    f = node.flags("kube-apiserver")
    assert f["etcd-servers"] == "https://10.0.0.50:2379,https://10.0.0.51:2379"
    assert (f["etcd-cafile"], f["etcd-certfile"], f["etcd-keyfile"]) == \
        ("/etc/etcd/pki/ca.crt", "/etc/etcd/pki/client.crt", "/etc/etcd/pki/client.key")
    assert node.volumes("kube-apiserver")["etcd-certs-0"] == {"path": "/etc/etcd/pki", "type": "DirectoryOrCreate"}
    assert not node.path(f"{PKI}/etcd").exists() and not node.path(f"{PKI}/apiserver-etcd-client.crt").exists()


def external_ca(node: Node) -> None:
    k = node.flags("kube-controller-manager")
    assert (k["cluster-signing-cert-file"], k["cluster-signing-key-file"]) == ("", "")
    assert not node.path(f"{PKI}/ca.key").exists()


def drop_ca_key_and_rerun(root: Path, phase: Callable[[str], tuple[int, str]]) -> None:
    (root / "etc/kubernetes/pki/ca.key").unlink()
    assert phase("control-plane") == (0, "")


def patches(node: Node) -> None:
    assert node.command("kube-apiserver")[-1] == "--v=4"  # a json patch appends after kubeadm's sorted flags
    assert node.pods["etcd"]["metadata"]["labels"]["patched"] == "yes"
    assert node.kubelet()["maxPods"] == 42
    assert '[patches] Applied patch of type "application/json-patch+json" to target "kube-apiserver"' in node.lines


def write_patches(_root: Path, work: Path) -> None:
    d = work / "patches"
    d.mkdir()
    (d / "kube-apiserver+json.yaml").write_text('[{"op": "add", "path": "/spec/containers/0/command/-", '
                                                '"value": "--v=4"}]\n')
    (d / "etcd.yaml").write_text("metadata:\n  labels:\n    patched: \"yes\"\n")
    (d / "kubeletconfiguration+merge.yaml").write_text("maxPods: 42\n")


def extras(node: Node) -> None:
    f = node.flags("kube-apiserver")
    assert (f["audit-log-maxage"], f["authorization-mode"]) == ("7", "Node,RBAC,Webhook")
    assert node.env("kube-apiserver")["GOMAXPROCS"] == "2"
    assert node.flags("kube-controller-manager")["bind-address"] == "0.0.0.0"
    probe = node.pods["kube-controller-manager"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]
    assert "host" not in probe  # an unspecified bind address probes the pod IP (getProbeAddress)
    assert node.volumes("kube-scheduler")["sched-cfg"] == {"path": "/etc/kubernetes/sched.yaml", "type": "File"}
    assert node.mounts("kube-scheduler")["sched-cfg"] == {"mountPath": "/etc/kubernetes/sched.yaml",
                                                        "name": "sched-cfg", "readOnly": True}
    assert node.flags("etcd")["snapshot-count"] == "5000"


def custom_dirs(node: Node) -> None:
    pki = "/srv/kube/pki"
    f, e = node.flags("kube-apiserver"), node.flags("etcd")
    assert (f["client-ca-file"], f["etcd-cafile"]) == (f"{pki}/ca.crt", f"{pki}/etcd/ca.crt")
    assert node.volumes("kube-apiserver")["k8s-certs"]["path"] == f"{pki}/"  # the field as written, as kubeadm
    assert (e["cert-file"], e["data-dir"]) == (f"{pki}/etcd/server.crt", "/srv/etcd/")
    assert node.volumes("etcd") == {"etcd-data": {"path": "/srv/etcd/", "type": "DirectoryOrCreate"},
                                    "etcd-certs": {"path": f"{pki}/etcd", "type": "DirectoryOrCreate"}}
    assert node.kubelet()["authentication"]["x509"]["clientCAFile"] == f"{pki}/ca.crt"
    assert node.path(f"{pki}/ca.key").exists() and node.mode("/srv/etcd") == 0o700
    assert f'[certs] Using certificateDir folder "{pki}/"' in node.lines


def image_repository(node: Node) -> None:
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        image = node.pods[component]["spec"]["containers"][0]["image"]
        assert image == f"my.registry:5000/k8s/{component}:{node.version}"
    assert node.pods["etcd"]["spec"]["containers"][0]["image"] == "my.registry:5000/k8s/etcd:3.5.21-0"
    e = node.flags("etcd")  # etcd 3.5 spells the two flags kubeadm sets with --experimental-
    assert (e["experimental-initial-corrupt-check"], e["experimental-watch-progress-notify-interval"]) == ("true", "5s")
    flags_env = node.text("/var/lib/kubelet/kubeadm-flags.env")
    assert ("--pod-infra-container-image=my.registry:5000/k8s/pause:3.10.1" in flags_env) == (node.minor == 34)


def kubelet_config(node: Node) -> None:
    k = node.kubelet()
    assert (k["maxPods"], k["cgroupDriver"], k["clusterDNS"]) == (200, "cgroupfs", ["10.96.0.53"])
    assert k["evictionHard"] == {"memory.available": "200Mi"} and "bogusField" not in k
    assert node.warnings == [
        'error unmarshaling configuration schema.GroupVersionKind{Group:"kubelet.config.k8s.io", '
        'Version:"v1beta1", Kind:"KubeletConfiguration"}: strict decoding error: unknown field "bogusField"']


def cri_socket(socket: str, warned: bool) -> Callable[[Node], None]:
    def check(node: Node) -> None:
        want = socket if socket.startswith("unix://") else f"unix://{socket}"
        assert node.kubelet()["containerRuntimeEndpoint"] == want
        assert node.text("/var/lib/kubelet/instance-config.yaml") == f'containerRuntimeEndpoint: "{want}"\n'
        assert bool(node.warnings) == warned
        if warned:
            assert node.warnings[0].startswith("Usage of CRI endpoints without URL scheme is deprecated")
    return check


def bind_port_0(node: Node) -> None:
    assert node.flags("kube-apiserver")["secure-port"] == "6443"
    assert node.pods["kube-apiserver"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 6443
    assert all(node.kubeconfig_server(n) == LOCAL for n in KUBECONFIGS)


def control_plane_endpoint(node: Node) -> None:
    for name in ("admin.conf", "super-admin.conf"):
        assert node.kubeconfig_server(name) == "https://k8s-api.example.com:7443"
    for name in ("kubelet.conf", "controller-manager.conf", "scheduler.conf"):  # local mode, local endpoint
        assert node.kubeconfig_server(name) == LOCAL
    assert "k8s-api.example.com" in node.sans(PKI, "apiserver")[0]


def naming(node: Node) -> None:
    assert node.flags("kube-controller-manager")["cluster-name"] == "prod-eu"
    assert node.flags("kube-apiserver")["service-account-issuer"] == "https://kubernetes.default.svc.corp.local"
    assert "kubernetes.default.svc.corp.local" in node.sans(PKI, "apiserver")[0]
    assert node.kubelet()["clusterDomain"] == "corp.local"
    assert yaml.safe_load(node.text("/etc/kubernetes/admin.conf"))["clusters"][0]["name"] == "prod-eu"


def hostname_override(node: Node) -> None:
    env = node.text("/var/lib/kubelet/kubeadm-flags.env")
    pause = '--pod-infra-container-image=registry.k8s.io/pause:3.10.1 ' if node.minor == 34 else ""
    assert env == f'KUBELET_KUBEADM_ARGS="--hostname-override=cp1 --node-ip={ADV} {pause}--v=2"\n'


def proxies(node: Node) -> None:
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert node.env(component) == {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "10.0.0.0/8"}
    assert node.env("etcd") == {}


def rhel_ca_dirs(node: Node) -> None:
    for component in ("kube-apiserver", "kube-controller-manager"):
        v = node.volumes(component)
        assert v["etc-pki-ca-trust"] == {"path": "/etc/pki/ca-trust", "type": "DirectoryOrCreate"}
        assert v["etc-pki-tls-certs"] == {"path": "/etc/pki/tls/certs", "type": "DirectoryOrCreate"}
    assert set(node.volumes("kube-scheduler")) == {"kubeconfig"}


def short_health_timeout(node: Node) -> None:
    for component in COMPONENTS:  # ceil(2m / 10s periods)
        assert node.pods[component]["spec"]["containers"][0]["startupProbe"]["failureThreshold"] == 12


def resolved(node: Node) -> None:
    assert node.kubelet()["resolvConf"] == "/run/systemd/resolve/resolv.conf"


def rootless(node: Node) -> None:
    for component, uid in (("etcd", 101), ("kube-apiserver", 102), ("kube-controller-manager", 103),
                           ("kube-scheduler", 104)):
        assert node.pods[component]["spec"]["securityContext"]["runAsUser"] == uid
    caps = node.pods["kube-apiserver"]["spec"]["containers"][0]["securityContext"]["capabilities"]
    assert caps == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
    sa = node.path(f"{PKI}/sa.key").stat()
    assert (sa.st_uid, sa.st_gid, stat.S_IMODE(sa.st_mode)) == (0, 105, 0o640)
    assert "kubeadm-sa-key-readers:x:105:kubeadm-kas,kubeadm-kcm" in node.text("/etc/group")


def mkdirs(*dirs: str) -> Callable[[Path, Path], None]:
    return lambda root, _work: [(root / d.lstrip("/")).mkdir(parents=True, exist_ok=True) for d in dirs] and None


def accounts(root: Path, _work: Path) -> None:
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n_apt:x:100:65534::/nonexistent:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\nsystemd-journal:x:101:\n")


def other_hostname(root: Path, _work: Path) -> None:
    (root / "etc/hostname").write_text("machine-7\n")


def systemd_resolved(root: Path, _work: Path) -> None:
    (root / "run/systemd/resolve").mkdir(parents=True)
    (root / "run/systemd/resolve/resolv.conf").write_text("nameserver 127.0.0.53\n")


def kube_proxy_config(node: Node) -> None:
    """No node file carries kube-proxy's configuration: addon/kube-proxy puts it in the kube-proxy
    ConfigMap (kubeadm proxy.go), built here from the configuration as init loaded it."""
    from kubeboot.config.loader import load_init_config
    from kubeboot.tasks.addons import kubeproxy

    assert not node.path("/var/lib/kube-proxy").exists() and node.warnings == []
    assert node.config is not None
    cfg = load_init_config(node.config)
    cm, ds = kubeproxy.config_map(cfg), kubeproxy.daemon_set(cfg, {})
    for obj in (cm, ds):
        kubernetes_validate.validate(obj, VERSIONS[node.version], strict=True)
    conf = yaml.safe_load(cm["data"]["config.conf"])
    assert (conf["mode"], conf["clusterCIDR"], conf["metricsBindAddress"]) == ("ipvs", "10.244.0.0/16", "0.0.0.0:10249")
    assert conf["ipvs"]["scheduler"] == "rr" and conf["ipvs"]["strictARP"] is True
    assert conf["conntrack"]["maxPerCore"] == 65536 and conf["conntrack"]["min"] is None  # a nil *int32
    assert conf["bindAddress"] == "0.0.0.0"  # kubeadm's defaults fill only what the user left unset
    assert conf["clientConnection"]["kubeconfig"] == "/var/lib/kube-proxy/kubeconfig.conf"
    assert "annotations" not in cm["metadata"]  # user-supplied: not signed with the component-config hash
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f"/kube-proxy:{node.version}")


KUBELET_DOC = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"}
PROXY_DOC = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration", "mode": "ipvs",
             "metricsBindAddress": "0.0.0.0:10249", "ipvs": {"scheduler": "rr", "strictARP": True},
             "conntrack": {"maxPerCore": 65536}}
EXT_ETCD = {"external": {"endpoints": ["https://10.0.0.50:2379", "https://10.0.0.51:2379"],
                         "caFile": "/etc/etcd/pki/ca.crt", "certFile": "/etc/etcd/pki/client.crt",
                         "keyFile": "/etc/etcd/pki/client.key"}}

VARIANTS = [
    Variant("defaults (ECDSA-P256)", expect=defaults),
    Variant("RSA-2048, kubeadm's default algorithm", cluster={"encryptionAlgorithm": "RSA-2048"}, expect=rsa),
    Variant("ECDSA-P384", cluster={"encryptionAlgorithm": "ECDSA-P384"}, expect=ecdsa_p384),
    Variant("certificate SANs", cluster={
        "apiServer": {"certSANs": ["lb.example.com", "10.0.0.100", "*.apps.example.org"]},
        "etcd": {"local": {"serverCertSANs": ["etcd.example.com", "10.0.0.200"], "peerCertSANs": ["peer.example.com"]}},
    }, expect=cert_sans),
    Variant("IPv6", init={"localAPIEndpoint": {"advertiseAddress": "fd00::10"}},
            cluster={"networking": {"serviceSubnet": "fd00:10:96::/112"}}, expect=ipv6),
    Variant("dual-stack", cluster={"networking": {"podSubnet": "10.244.0.0/16,fd00:10:244::/56",
                                                  "serviceSubnet": "10.96.0.0/16,fd00:10:96::/112"}},
            expect=dual_stack),
    Variant("external etcd", cluster={"etcd": EXT_ETCD}, external_etcd=True, expect=external_etcd),
    Variant("external CA (ca.key removed)", then=drop_ca_key_and_rerun, expect=external_ca),
    Variant("patches", init={"patches": {"directory": "@WORK@/patches"}}, setup=write_patches, expect=patches),
    Variant("extraArgs, extraVolumes, extraEnvs", cluster={
        "apiServer": {"extraArgs": [{"name": "audit-log-maxage", "value": "7"},
                                    {"name": "authorization-mode", "value": "Node,RBAC,Webhook"}],
                      "extraEnvs": [{"name": "GOMAXPROCS", "value": "2"}]},
        "controllerManager": {"extraArgs": [{"name": "bind-address", "value": "0.0.0.0"}]},
        "scheduler": {"extraVolumes": [{"name": "sched-cfg", "hostPath": "/etc/kubernetes/sched.yaml",
                                        "mountPath": "/etc/kubernetes/sched.yaml", "readOnly": True,
                                        "pathType": "File"}]},
        "etcd": {"local": {"extraArgs": [{"name": "snapshot-count", "value": "5000"}]}},
    }, expect=extras),
    Variant("custom directories with trailing slashes", cluster={
        "certificatesDir": "/srv/kube/pki/", "etcd": {"local": {"dataDir": "/srv/etcd/"}}},
        pki="/srv/kube/pki", data_dir="/srv/etcd", expect=custom_dirs),
    Variant("image repository, etcd 3.5 image tag", cluster={
        "imageRepository": "my.registry:5000/k8s", "etcd": {"local": {"imageTag": "3.5.21-0"}}},
        etcd_tag="3.5.21-0", expect=image_repository),
    Variant("KubeletConfiguration (user values, an unknown field)", extra_docs=({
        **KUBELET_DOC, "maxPods": 200, "cgroupDriver": "cgroupfs", "clusterDNS": ["10.96.0.53"],
        "evictionHard": {"memory.available": "200Mi"}, "bogusField": 1},), expect=kubelet_config),
    Variant("criSocket without scheme", init={"nodeRegistration": {"criSocket": "/run/containerd/containerd.sock"}},
            expect=cri_socket("/run/containerd/containerd.sock", warned=True)),
    Variant("criSocket of CRI-O with scheme", init={"nodeRegistration": {"criSocket": "unix:///var/run/crio/crio.sock"}},
            expect=cri_socket("unix:///var/run/crio/crio.sock", warned=False)),
    Variant("bindPort 0", init={"localAPIEndpoint": {"bindPort": 0}}, expect=bind_port_0),
    Variant("controlPlaneEndpoint", cluster={"controlPlaneEndpoint": "k8s-api.example.com:7443"},
            expect=control_plane_endpoint),
    Variant("clusterName and dnsDomain", cluster={"clusterName": "prod-eu", "networking": {"dnsDomain": "corp.local"}},
            expect=naming),
    Variant("node name other than the hostname, kubeletExtraArgs", setup=other_hostname, init={"nodeRegistration": {
        "kubeletExtraArgs": [{"name": "v", "value": "2"}, {"name": "node-ip", "value": ADV}]}},
        expect=hostname_override),
    Variant("proxy variables", env={"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "10.0.0.0/8"}, expect=proxies),
    Variant("RHEL CA directories on the host", setup=mkdirs("/etc/pki/ca-trust", "/etc/pki/tls/certs"),
            expect=rhel_ca_dirs),
    Variant("controlPlaneComponentHealthCheck 2m", init={"timeouts": {"controlPlaneComponentHealthCheck": "2m0s"}},
            expect=short_health_timeout),
    Variant("systemd-resolved", setup=systemd_resolved, expect=resolved),
    Variant("RootlessControlPlane", cluster={"featureGates": {"RootlessControlPlane": True}}, setup=accounts,
            expect=rootless),
    Variant("KubeProxyConfiguration (user values)", cluster={"networking": {"podSubnet": "10.244.0.0/16"}},
            extra_docs=(PROXY_DOC,), expect=kube_proxy_config),
]


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_node_files_match_kubeadm(variant: Variant, version: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    node = run_variant(variant, version, tmp_path, monkeypatch)
    check_invariants(node, variant)
    variant.expect(node)


def test_kubernetes_validate_has_no_component_config_schema() -> None:
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(KUBELET_DOC, "1.36.0", strict=True)


def test_the_table_covers_every_area_the_issue_names() -> None:
    assert len(VARIANTS) >= 20 and len({v.name for v in VARIANTS}) == len(VARIANTS)
    assert len(JOINS) >= 7 and len({j.name for j in JOINS}) == len(JOINS)
    assert {j.control_plane for j in JOINS} == {True, False}


# --- joins ----------------------------------------------------------------------------------------------
#
# A join needs a cluster: each row first runs an init row above (cp1), then publishes what that cluster's
# control plane would serve, made by the project's own upload-config, bootstrap-token and upload-certs
# builders: cluster-info (signed for the token as the bootstrap signer does, through the dry-run module's
# discovery fetch), kubeadm-config, kubelet-config, the kubeadm-certs Secret sealed with a certificate key,
# and cp1's etcd Pod (etcd-join finds the etcd endpoints in its annotation). The join phases then run in
# process into a fresh root with the dry-run module's fake API (kubeadm's fake client) answering their
# reads, and an etcd fake answering etcd-join (real etcd: tests/integration/test_join_etcd_real.py). The
# phases that need a running kubelet, API server or cluster (preflight's host checks,
# kubelet-wait-bootstrap, mark-control-plane, wait-control-plane) are not about the files and are skipped.

TOKEN = "abcdef.0123456789abcdef"
JOIN_ADV = "10.0.0.11"
NOT_ABOUT_FILES = ["preflight", "kubelet-wait-bootstrap", "control-plane-join", "wait-control-plane"]


@dataclass
class FakeEtcd:
    """The etcd cluster of cp1 as etcd-join sees it: a learner added, started once its manifest is
    written (the kubelet would run it), promoted, healthy."""

    state: list[Any]  # etcdclient.Member, as the member list answers
    endpoints_seen: list[list[str]] = field(default_factory=list)

    def client(self, endpoints: list[str], ca: bytes, cert: bytes, key: bytes, **_: Any) -> FakeEtcd:
        assert ca.startswith(b"-----BEGIN CERTIFICATE") and key.startswith(b"-----BEGIN")
        self.endpoints_seen.append(list(endpoints))
        return self

    def members(self) -> list[Any]:
        return list(self.state)

    def add_learner(self, peer: str) -> tuple[Any, list[Any]]:
        from kubeboot.tasks.etcdclient import Member

        added = Member(0xB2, "", (peer,), (), True)
        self.state.append(added)
        return added, self.members()

    def promote(self, member_id: int) -> list[Any]:
        from kubeboot.tasks.etcdclient import Member

        i = next(i for i, m in enumerate(self.state) if m.id == member_id)
        peer = self.state[i].peer_urls[0]
        self.state[i] = Member(member_id, "cp2", (peer,), (peer.replace(":2380", ":2379"),), False)
        return self.members()

    def status(self, endpoint: str) -> dict[str, Any]:
        return {"leader": 0xA1}

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class JoinVariant:
    name: str
    cluster: Variant  # the init row that made the cluster
    control_plane: bool
    join: dict[str, Any] = field(default_factory=dict)  # over the JoinConfiguration
    setup: Callable[[Path, Path], None] | None = None  # (node root, directory for patches ...)
    expect: Callable[[JoinedNode], None] = lambda node: None
    pki: str = "/etc/kubernetes/pki"
    data_dir: str = "/var/lib/etcd"


@dataclass
class JoinedNode(Node):
    first: Node | None = None  # cp1, the node the cluster was initialised on
    etcd: FakeEtcd | None = None

    @property
    def cp1(self) -> Node:
        assert self.first is not None
        return self.first

    def bootstrap_kubeconfig(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.text("/etc/kubernetes/bootstrap-kubelet.conf")))


def publish_cluster(api_dir: Path, first: Node, key_hex: str) -> str:
    """What cp1's control plane serves to a joining node; its CA pin."""
    from kubeboot.config.loader import load_init_config
    from kubeboot.tasks import copycerts, pki
    from kubeboot.tasks.dryrun import Request, Tracker
    from kubeboot.tasks.fsutil import NodeFS
    from kubeboot.tasks.phases import bootstraptoken, uploadcerts, uploadconfig

    assert first.config is not None
    cfg = load_init_config(first.config)
    ca_pem = first.path(f"{cfg.pki_dir}/ca.crt").read_bytes()
    sealed = copycerts.seal_files(copycerts.read_files(NodeFS(first.root), cfg), copycerts.decode_key(key_hex))
    owner = {"metadata": {"name": f"bootstrap-token-{TOKEN.split('.', maxsplit=1)[0]}", "uid": "0f0e0d0c"}}
    etcd_pod = dict(first.pods.get("etcd") or {})
    if etcd_pod:
        etcd_pod["metadata"] = {**etcd_pod["metadata"], "name": "etcd-cp1", "namespace": "kube-system"}
    objects = [bootstraptoken.cluster_info_objects(cfg, ca_pem)[0], uploadconfig.kubeadm_config_objects(cfg)[0],
               uploadconfig.kubelet_config_objects(cfg, False)[0],
               uploadcerts.certs_secret(sealed, uploadcerts.owner_reference(owner)), *([etcd_pod] if etcd_pod else [])]
    tracker = Tracker(api_dir)
    plurals = {"ConfigMap": "configmaps", "Secret": "secrets", "Pod": "pods"}
    for obj in objects:
        meta = obj["metadata"]
        tracker.put(Request("POST", "core", "v1", plurals[obj["kind"]], meta["namespace"], meta["name"]), obj)
    return pki.ca_cert_hash(pki.load_cert(ca_pem))


def join_document(jv: JoinVariant, endpoint: str, pin: str, key_hex: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration",
        "nodeRegistration": {"name": "cp2" if jv.control_plane else "w1"},
        "discovery": {"bootstrapToken": {"token": TOKEN, "apiServerEndpoint": endpoint, "caCertHashes": [pin]}},
    }
    if jv.control_plane:
        doc["controlPlane"] = {"localAPIEndpoint": {"advertiseAddress": JOIN_ADV}, "certificateKey": key_hex}
    return _merge(doc, jv.join)


def run_join(jv: JoinVariant, version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JoinedNode:
    from kubeboot.config.join import build_join_config
    from kubeboot.tasks import copycerts, dryrun
    from kubeboot.tasks import etcdclient as ec
    from kubeboot.tasks.etcdclient import Member
    from kubeboot.tasks.fsutil import NodeFS
    from kubeboot.tasks.phases.joincontext import JoinNodeContext
    from kubeboot.workflows.join_runs import plan_join
    from kubeboot.workflows.local import run_steps

    (tmp_path / "cp1").mkdir()
    first = run_variant(jv.cluster, version, tmp_path / "cp1", monkeypatch)
    key_hex = copycerts.create_certificate_key()
    api_dir = tmp_path / "api"
    pin = publish_cluster(api_dir, first, key_hex)
    adv = first.flags("kube-apiserver")["advertise-address"]
    endpoint = f"[{adv}]:6443" if ":" in adv else f"{adv}:6443"
    root, work = tmp_path / "node", tmp_path / "node-work"
    (root / "etc").mkdir(parents=True)
    work.mkdir()
    name = "cp2" if jv.control_plane else "w1"
    (root / "etc/hostname").write_text(f"{name}\n")
    if jv.setup:
        jv.setup(root, work)
    lines: list[str] = []
    collect = _Collect()
    logging.getLogger("kubeboot.config").addHandler(collect)
    try:
        doc = yaml.safe_load(yaml.safe_dump(join_document(jv, endpoint, pin, key_hex)).replace("@WORK@", str(work)))
        join = build_join_config([doc], "join.yaml")
    finally:
        logging.getLogger("kubeboot.config").removeHandler(collect)
    peer = f"https://[{adv}]:2380" if ":" in adv else f"https://{adv}:2380"
    etcd = FakeEtcd([Member(0xA1, "cp1", (peer,), (peer.replace(":2380", ":2379"),), False)])
    monkeypatch.setattr(ec, "EtcdClient", etcd.client)
    ctx = JoinNodeContext(join.provisional_init_config(), NodeFS(root), join=join, out=lines.append,
                          fetch=dryrun.cluster_info_fetch(dryrun.Tracker(api_dir), endpoint, TOKEN))
    with dryrun.session(api_dir, lines.append, workflow="join", show_secrets=False):
        run_steps(plan_join(join, "all", NOT_ABOUT_FILES), ctx)
    node = JoinedNode(root, version, lines, collect.messages, first=first, etcd=etcd)
    read_pods(node)
    return node


# --- what every kubeadm join leaves ---------------------------------------------------------------------

CA_FILES = ("ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-ca.key")
JOIN_KUBECONFIGS = ("admin.conf", "controller-manager.conf", "scheduler.conf")  # CreateJoinControlPlaneKubeConfigFiles


def check_join_invariants(node: JoinedNode, jv: JoinVariant) -> None:
    ca_pem = node.cp1.path(f"{jv.pki}/ca.crt").read_bytes()
    ca_path = str(jv.join.get("caCertPath", "/etc/kubernetes/pki/ca.crt"))
    # kubelet-start: the bootstrap kubeconfig (the token, the cluster's CA), the CA at caCertPath
    boot = node.bootstrap_kubeconfig()
    assert node.mode("/etc/kubernetes/bootstrap-kubelet.conf") == 0o600
    assert boot["users"][0]["user"] == {"token": TOKEN}
    assert base64.b64decode(boot["clusters"][0]["cluster"]["certificate-authority-data"]) == ca_pem
    assert node.path(ca_path).read_bytes() == ca_pem and node.mode(ca_path) == 0o644
    for rel in ("kubeadm-flags.env", "config.yaml", "instance-config.yaml"):
        assert node.mode(f"/var/lib/kubelet/{rel}") == 0o644
    kubelet = node.kubelet()
    KubeletConfiguration.model_validate(kubelet)  # Go's types, strict
    assert kubelet["authentication"]["x509"]["clientCAFile"] == f"{jv.pki}/ca.crt"
    assert (kubelet["staticPodPath"], kubelet["rotateCertificates"]) == ("/etc/kubernetes/manifests", True)
    socket = node.text("/var/lib/kubelet/instance-config.yaml")
    assert socket == f'containerRuntimeEndpoint: "{kubelet["containerRuntimeEndpoint"]}"\n'
    assert kubelet["containerRuntimeEndpoint"].startswith("unix:///")
    flags = node.text("/var/lib/kubelet/kubeadm-flags.env")
    assert ("--pod-infra-container-image=" in flags) == (node.minor == 34)
    assert "--hostname-override" not in flags  # the node name is the hostname
    assert node_files(node) == expected_files(jv, ca_path)
    if jv.control_plane:
        check_control_plane_join(node, jv)
    else:
        assert node.pods == {}


SETUP_FILES = {"/etc/hostname", "/etc/passwd", "/etc/group"}  # the test's, not the join's
PKI_OF_CONTROL_PLANE_JOIN = (*CA_FILES, "front-proxy-client.crt", "front-proxy-client.key", "apiserver.crt",
                             "apiserver.key", "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key",
                             "apiserver-etcd-client.crt", "apiserver-etcd-client.key",
                             *(f"etcd/{n}.{x}" for n in ("ca", "server", "peer", "healthcheck-client")
                               for x in ("crt", "key")))


def node_files(node: Node) -> set[str]:
    found = {"/" + str(p.relative_to(node.root)) for p in node.root.rglob("*") if p.is_file()}
    return found - SETUP_FILES


def expected_files(jv: JoinVariant, ca_path: str) -> set[str]:
    """kubeadm join's files (and kubeboot's node marker): kubelet-start's, and on a control plane
    control-plane-prepare's and etcd-join's."""
    files = {"/etc/kubernetes/bootstrap-kubelet.conf", ca_path, "/var/lib/kubeboot/node.json",
             *(f"/var/lib/kubelet/{n}" for n in ("config.yaml", "instance-config.yaml", "kubeadm-flags.env"))}
    if jv.control_plane:
        files |= {f"/etc/kubernetes/{n}" for n in JOIN_KUBECONFIGS}
        files |= {f"/etc/kubernetes/manifests/{n}.yaml" for n in COMPONENTS}
        files |= {f"{jv.pki}/{rel}" for rel in PKI_OF_CONTROL_PLANE_JOIN}
    return files


def check_control_plane_join(node: JoinedNode, jv: JoinVariant) -> None:
    assert set(node.pods) == set(COMPONENTS) and node.mode("/etc/kubernetes/manifests") == 0o700
    for component, pod in node.pods.items():
        assert node.mode(f"/etc/kubernetes/manifests/{component}.yaml") == 0o600
        kubernetes_validate.validate(pod, VERSIONS[node.version], strict=True)
        names = [f[2:].split("=", 1)[0] for f in node.command(component)[1:]]
        assert names == sorted(names), f"{component}: flags not sorted as ArgumentsToCommand sorts them"
        bad = [s for s in _all_strings(pod["spec"]) if s.startswith("/") and not _no_double_slash(s)]
        assert not bad and all(_no_double_slash(f) for f in node.command(component)), f"{component}: '//'"
        assert pod["spec"]["priorityClassName"] == "system-node-critical"
        image = pod["spec"]["containers"][0]["image"]
        assert image.endswith(f"/etcd:{ETCD_IMAGE[node.minor]}" if component == "etcd" else f":{node.version}")
    # download-certs: the shared CAs and keys exactly as cp1 has them (kubeadm's writeCertOrKey: a private
    # key 0600, anything else 0644); the node's own leaves made here
    for rel in (*CA_FILES, "etcd/ca.crt", "etcd/ca.key"):
        assert node.path(f"{jv.pki}/{rel}").read_bytes() == node.cp1.path(f"{jv.pki}/{rel}").read_bytes(), rel
    rootless_gate = "RootlessControlPlane" in str(jv.cluster.cluster)
    for rel in ("ca.crt", "front-proxy-ca.crt", "etcd/ca.crt", *(() if rootless_gate else ("sa.pub",))):
        assert node.mode(f"{jv.pki}/{rel}") == 0o644, rel
    for rel in ("ca.key", "front-proxy-ca.key", "etcd/ca.key", "apiserver.key"):
        assert node.mode(f"{jv.pki}/{rel}") & 0o077 == 0, rel
    assert node.cert(jv.pki, "apiserver").serial_number != node.cp1.cert(jv.pki, "apiserver").serial_number
    for name in JOIN_KUBECONFIGS:
        assert node.mode(f"/etc/kubernetes/{name}") == 0o600
    for name in ("super-admin.conf", "kubelet.conf"):  # the kubelet's comes from its TLS bootstrap
        assert not node.path(f"/etc/kubernetes/{name}").exists()
    assert node.mode(jv.data_dir) == 0o700
    # etcd-join: this member added as a learner next to cp1's, then promoted
    e = node.flags("etcd")
    cp1_peer = node.cp1.flags("etcd")["initial-advertise-peer-urls"]
    assert e["initial-cluster"] == f"cp1={cp1_peer},cp2={e['initial-advertise-peer-urls']}"
    assert e["initial-cluster-state"] == "existing" and e["name"] == "cp2"
    assert node.etcd is not None and [m.is_learner for m in node.etcd.state] == [False, False]
    assert node.etcd.endpoints_seen[0] == [node.cp1.flags("etcd")["advertise-client-urls"]]


# --- the join rows ----------------------------------------------------------------------------------------

ROW = {v.name: v for v in VARIANTS}
JADV = f"https://{JOIN_ADV}:6443"


def worker_defaults(node: JoinedNode) -> None:
    assert node.bootstrap_kubeconfig()["clusters"][0]["cluster"]["server"] == LOCAL  # cluster-info's server
    kubelet = node.kubelet()
    assert kubelet["containerRuntimeEndpoint"] == "unix:///var/run/containerd/containerd.sock"
    assert kubelet["clusterDNS"] == ["10.96.0.10"] and kubelet["cgroupDriver"] == "systemd"
    assert "--register-with-taints" not in node.text("/var/lib/kubelet/kubeadm-flags.env")
    assert node.warnings == []
    # the cluster's kubelet-config and this node's flags: what cp1's kubelet has, as nothing differs
    assert node.kubelet() == node.cp1.kubelet()
    assert node.text("/var/lib/kubelet/kubeadm-flags.env") == node.cp1.text("/var/lib/kubelet/kubeadm-flags.env")


def worker_taints(node: JoinedNode) -> None:
    flags = node.text("/var/lib/kubelet/kubeadm-flags.env")
    assert "--register-with-taints=dedicated=infra:NoSchedule" in flags  # a worker registers its own taints
    assert "--node-labels=zone=a" in flags


def worker_cri_socket(node: JoinedNode) -> None:
    assert node.kubelet()["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"
    assert len(node.warnings) == 1 and node.warnings[0].startswith(
        "Usage of CRI endpoints without URL scheme is deprecated")


def worker_custom_dirs(node: JoinedNode) -> None:
    assert node.path("/srv/kube/pki/ca.crt").exists() and not node.path("/etc/kubernetes/pki").exists()
    assert node.kubelet()["maxPods"] == 42  # the join's own patches directory, given with a trailing slash


def control_plane_defaults(node: JoinedNode) -> None:
    f = node.flags("kube-apiserver")
    assert (f["advertise-address"], f["etcd-servers"], f["client-ca-file"]) == \
        (JOIN_ADV, "https://127.0.0.1:2379", f"{PKI}/ca.crt")
    annotations = node.pods["kube-apiserver"]["metadata"]["annotations"]
    assert annotations["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"] == f"{JOIN_ADV}:6443"
    assert node.pods["etcd"]["metadata"]["annotations"]["kubeadm.kubernetes.io/etcd.advertise-client-urls"] == \
        f"https://{JOIN_ADV}:2379"
    dns, ips = node.sans(PKI, "apiserver")
    assert "cp2" in dns and "cp1" not in dns and ips == {"10.96.0.1", JOIN_ADV}
    assert node.sans(PKI, "etcd/server") == ({"cp2", "localhost"}, {JOIN_ADV, "127.0.0.1", "::1"})
    assert node.sans(PKI, "etcd/peer") == ({"cp2", "localhost"}, {JOIN_ADV, "127.0.0.1", "::1"})
    for name in JOIN_KUBECONFIGS:  # no controlPlaneEndpoint: admin.conf too names this node's API server
        assert node.kubeconfig_server(name) == JADV
    assert node.bootstrap_kubeconfig()["clusters"][0]["cluster"]["server"] == JADV  # ControlPlaneKubeletLocalMode
    assert "--register-with-taints" not in node.text("/var/lib/kubelet/kubeadm-flags.env")  # mark-control-plane's
    assert node.kubelet() == node.cp1.kubelet()
    for component in ("kube-controller-manager", "kube-scheduler"):  # nothing in them is the node's own
        assert node.pods[component] == node.cp1.pods[component]
    assert node.warnings == []


def control_plane_endpoint_join(node: JoinedNode) -> None:
    assert node.kubeconfig_server("admin.conf") == "https://k8s-api.example.com:7443"
    for name in ("controller-manager.conf", "scheduler.conf"):
        assert node.kubeconfig_server(name) == JADV
    assert "k8s-api.example.com" in node.sans(PKI, "apiserver")[0]
    assert node.bootstrap_kubeconfig()["clusters"][0]["cluster"]["server"] == JADV


def worker_control_plane_endpoint(node: JoinedNode) -> None:
    server = node.bootstrap_kubeconfig()["clusters"][0]["cluster"]["server"]
    assert server == "https://k8s-api.example.com:7443"  # cluster-info names the endpoint


def control_plane_custom_dirs(node: JoinedNode) -> None:
    pki = "/srv/kube/pki"
    f, e = node.flags("kube-apiserver"), node.flags("etcd")
    assert (f["client-ca-file"], f["etcd-cafile"], e["cert-file"]) == \
        (f"{pki}/ca.crt", f"{pki}/etcd/ca.crt", f"{pki}/etcd/server.crt")
    assert e["data-dir"] == "/srv/etcd/" and node.volumes("etcd")["etcd-certs"]["path"] == f"{pki}/etcd"
    assert node.path(f"{pki}/apiserver.crt").exists() and not node.path("/etc/kubernetes/pki").exists()
    assert node.command("kube-apiserver")[-1] == "--v=4"  # the join's patches directory (trailing slash)
    assert node.kubelet()["maxPods"] == 42


def control_plane_rootless(node: JoinedNode) -> None:
    for component, uid in (("etcd", 101), ("kube-apiserver", 102), ("kube-controller-manager", 103),
                           ("kube-scheduler", 104)):
        assert node.pods[component]["spec"]["securityContext"]["runAsUser"] == uid
    caps = node.pods["kube-apiserver"]["spec"]["containers"][0]["securityContext"]["capabilities"]
    assert caps == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
    owners = {"sa.key": (0, 105, 0o640), "sa.pub": (102, 102, 0o600), "etcd/server.key": (101, 100, 0o600),
              "ca.key": (103, 103, 0o600), "apiserver.key": (102, 102, 0o600)}
    for rel, want in owners.items():
        st = node.path(f"{PKI}/{rel}").stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == want, rel
    data = node.path("/var/lib/etcd").stat()
    assert (data.st_uid, data.st_gid) == (101, 100)
    assert "kubeadm-etcd:x:101:100:::/bin/false" in node.text("/etc/passwd")


def control_plane_ipv6(node: JoinedNode) -> None:
    f, e = node.flags("kube-apiserver"), node.flags("etcd")
    assert (f["advertise-address"], f["etcd-servers"]) == ("fd00::11", "https://[::1]:2379")
    assert e["listen-client-urls"] == "https://[::1]:2379,https://[fd00::11]:2379"
    assert e["initial-cluster"] == "cp1=https://[fd00::10]:2380,cp2=https://[fd00::11]:2380"
    assert node.sans(PKI, "apiserver")[1] == {"fd00:10:96::1", "fd00::11"}
    assert node.kubeconfig_server("admin.conf") == "https://[fd00::11]:6443"
    assert node.bootstrap_kubeconfig()["clusters"][0]["cluster"]["server"] == "https://[fd00::11]:6443"
    assert node.kubelet()["clusterDNS"] == ["fd00:10:96::a"]


def join_patches(_root: Path, work: Path) -> None:
    d = work / "patches"
    d.mkdir()
    (d / "kube-apiserver+json.yaml").write_text('[{"op": "add", "path": "/spec/containers/0/command/-", '
                                                '"value": "--v=4"}]\n')
    (d / "kubeletconfiguration+merge.yaml").write_text("maxPods: 42\n")


CUSTOM = ROW["custom directories with trailing slashes"]
JOINS = [
    JoinVariant("worker, defaults", ROW["defaults (ECDSA-P256)"], False, expect=worker_defaults),
    JoinVariant("worker, taints and kubeletExtraArgs", ROW["defaults (ECDSA-P256)"], False, join={
        "nodeRegistration": {"taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}],
                             "kubeletExtraArgs": [{"name": "node-labels", "value": "zone=a"}]}},
        expect=worker_taints),
    JoinVariant("worker, criSocket without scheme", ROW["defaults (ECDSA-P256)"], False,
                join={"nodeRegistration": {"criSocket": "/run/containerd/containerd.sock"}},
                expect=worker_cri_socket),
    JoinVariant("worker, custom directories with trailing slashes", CUSTOM, False, pki="/srv/kube/pki",
                join={"caCertPath": "/srv/kube/pki/ca.crt", "patches": {"directory": "@WORK@/patches/"}},
                setup=join_patches, expect=worker_custom_dirs),
    JoinVariant("worker, controlPlaneEndpoint", ROW["controlPlaneEndpoint"], False,
                expect=worker_control_plane_endpoint),
    JoinVariant("control plane, defaults", ROW["defaults (ECDSA-P256)"], True, expect=control_plane_defaults),
    JoinVariant("control plane, controlPlaneEndpoint", ROW["controlPlaneEndpoint"], True,
                expect=control_plane_endpoint_join),
    JoinVariant("control plane, custom directories with trailing slashes", CUSTOM, True, pki="/srv/kube/pki",
                data_dir="/srv/etcd", join={"caCertPath": "/srv/kube/pki/ca.crt",
                                            "patches": {"directory": "@WORK@/patches/"}},
                setup=join_patches, expect=control_plane_custom_dirs),
    JoinVariant("control plane, RootlessControlPlane", ROW["RootlessControlPlane"], True, setup=accounts,
                expect=control_plane_rootless),
    JoinVariant("control plane, IPv6 advertise address", ROW["IPv6"], True,
                join={"controlPlane": {"localAPIEndpoint": {"advertiseAddress": "fd00::11"}}},
                expect=control_plane_ipv6),
]


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("jv", JOINS, ids=[j.name for j in JOINS])
def test_joined_node_files_match_kubeadm(jv: JoinVariant, version: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    node = run_join(jv, version, tmp_path, monkeypatch)
    check_join_invariants(node, jv)
    jv.expect(node)
