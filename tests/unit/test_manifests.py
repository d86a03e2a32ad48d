"""Static Pod manifests, one case per manifest and minor (v1.34, v1.35, v1.36), against kubeadm-spec 2.4/2.5
and real kubeadm v1.34-v1.36 manifests: command lines, probes, ports, volumes and mounts, labels, annotations,
resources, priority, hostNetwork, seccomp, image; and every generated Pod against the minor's OpenAPI schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import goyaml
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import controlplane as cp
from kubeboot.tasks.phases import etcd
from kubeboot.tasks.phases.context import NodeContext

V4 = "kubeadm.k8s.io/v1beta4"
ADV = "192.168.10.5"
NODE = "cp1"
PKI = "/etc/kubernetes/pki"
VERSIONS = {34: ("v1.34.2", "3.6.4-0"), 35: ("v1.35.0", "3.6.6-0"), 36: ("v1.36.1", "3.6.8-0")}
DEBIAN_CA_DIRS = ("/etc/ca-certificates", "/usr/share/ca-certificates", "/usr/local/share/ca-certificates")


def make_cfg(version: str = "v1.36.1", *, init: dict[str, Any] | None = None,
             cluster: dict[str, Any] | None = None) -> InitConfig:
    return build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": NODE},
         "localAPIEndpoint": {"advertiseAddress": ADV}, **(init or {})},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "kubernetesVersion": version, **(cluster or {})},
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


# --- expected values, written from kubeadm-spec 2.4 / 2.5 --------------------------------------------

ETCD_FLAGS = [
    "etcd",
    f"--advertise-client-urls=https://{ADV}:2379",
    f"--cert-file={PKI}/etcd/server.crt",
    "--client-cert-auth=true",
    "--data-dir=/var/lib/etcd",
    "--feature-gates=InitialCorruptCheck=true",
    f"--initial-advertise-peer-urls=https://{ADV}:2380",
    f"--initial-cluster={NODE}=https://{ADV}:2380",
    f"--key-file={PKI}/etcd/server.key",
    f"--listen-client-urls=https://127.0.0.1:2379,https://{ADV}:2379",
    "--listen-metrics-urls=http://127.0.0.1:2381",
    f"--listen-peer-urls=https://{ADV}:2380",
    f"--name={NODE}",
    f"--peer-cert-file={PKI}/etcd/peer.crt",
    "--peer-client-cert-auth=true",
    f"--peer-key-file={PKI}/etcd/peer.key",
    f"--peer-trusted-ca-file={PKI}/etcd/ca.crt",
    "--snapshot-count=10000",
    f"--trusted-ca-file={PKI}/etcd/ca.crt",
    "--watch-progress-notify-interval=5s",
]
APISERVER_FLAGS = [
    "kube-apiserver",
    f"--advertise-address={ADV}",
    "--allow-privileged=true",
    "--authorization-mode=Node,RBAC",
    f"--client-ca-file={PKI}/ca.crt",
    "--enable-admission-plugins=NodeRestriction",
    "--enable-bootstrap-token-auth=true",
    f"--etcd-cafile={PKI}/etcd/ca.crt",
    f"--etcd-certfile={PKI}/apiserver-etcd-client.crt",
    f"--etcd-keyfile={PKI}/apiserver-etcd-client.key",
    "--etcd-servers=https://127.0.0.1:2379",
    f"--kubelet-client-certificate={PKI}/apiserver-kubelet-client.crt",
    f"--kubelet-client-key={PKI}/apiserver-kubelet-client.key",
    "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
    f"--proxy-client-cert-file={PKI}/front-proxy-client.crt",
    f"--proxy-client-key-file={PKI}/front-proxy-client.key",
    "--requestheader-allowed-names=front-proxy-client",
    f"--requestheader-client-ca-file={PKI}/front-proxy-ca.crt",
    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
    "--requestheader-group-headers=X-Remote-Group",
    "--requestheader-username-headers=X-Remote-User",
    "--secure-port=6443",
    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
    f"--service-account-key-file={PKI}/sa.pub",
    f"--service-account-signing-key-file={PKI}/sa.key",
    "--service-cluster-ip-range=10.96.0.0/12",
    f"--tls-cert-file={PKI}/apiserver.crt",
    f"--tls-private-key-file={PKI}/apiserver.key",
]
KCM_CONF = "/etc/kubernetes/controller-manager.conf"
KCM_FLAGS = [
    "kube-controller-manager",
    f"--authentication-kubeconfig={KCM_CONF}",
    f"--authorization-kubeconfig={KCM_CONF}",
    "--bind-address=127.0.0.1",
    f"--client-ca-file={PKI}/ca.crt",
    "--cluster-name=kubernetes",
    f"--cluster-signing-cert-file={PKI}/ca.crt",
    f"--cluster-signing-key-file={PKI}/ca.key",
    "--controllers=*,bootstrapsigner,tokencleaner",
    f"--kubeconfig={KCM_CONF}",
    "--leader-elect=true",
    f"--requestheader-client-ca-file={PKI}/front-proxy-ca.crt",
    f"--root-ca-file={PKI}/ca.crt",
    f"--service-account-private-key-file={PKI}/sa.key",
    "--use-service-account-credentials=true",
]
SCHED_CONF = "/etc/kubernetes/scheduler.conf"
SCHEDULER_FLAGS = [
    "kube-scheduler",
    f"--authentication-kubeconfig={SCHED_CONF}",
    f"--authorization-kubeconfig={SCHED_CONF}",
    "--bind-address=127.0.0.1",
    f"--kubeconfig={SCHED_CONF}",
    "--leader-elect=true",
]

# (name, hostPath, type, mountPath, readOnly) in the order kubeadm lists them (sorted by name)
CA_VOLUMES = [
    ("ca-certs", "/etc/ssl/certs", "DirectoryOrCreate", "/etc/ssl/certs", True),
    ("etc-ca-certificates", "/etc/ca-certificates", "DirectoryOrCreate", "/etc/ca-certificates", True),
]
DEBIAN_TAIL = [
    ("usr-local-share-ca-certificates", "/usr/local/share/ca-certificates", "DirectoryOrCreate",
     "/usr/local/share/ca-certificates", True),
    ("usr-share-ca-certificates", "/usr/share/ca-certificates", "DirectoryOrCreate", "/usr/share/ca-certificates",
     True),
]
K8S_CERTS = ("k8s-certs", PKI, "DirectoryOrCreate", PKI, True)
APISERVER_VOLUMES = [*CA_VOLUMES, K8S_CERTS, *DEBIAN_TAIL]
KCM_VOLUMES = [
    *CA_VOLUMES,
    ("flexvolume-dir", "/usr/libexec/kubernetes/kubelet-plugins/volume/exec", "DirectoryOrCreate",
     "/usr/libexec/kubernetes/kubelet-plugins/volume/exec", False),
    K8S_CERTS,
    ("kubeconfig", KCM_CONF, "FileOrCreate", KCM_CONF, True),
    *DEBIAN_TAIL,
]
SCHEDULER_VOLUMES = [("kubeconfig", SCHED_CONF, "FileOrCreate", SCHED_CONF, True)]
ETCD_VOLUMES = [  # volumes sorted by name; etcd's mounts keep local.go's order (data first)
    ("etcd-certs", f"{PKI}/etcd", "DirectoryOrCreate", f"{PKI}/etcd", False),
    ("etcd-data", "/var/lib/etcd", "DirectoryOrCreate", "/var/lib/etcd", False),
]

# component: (flags, port, probe host, scheme, (liveness, readiness, startup) paths, cpu, memory, volumes)
EXPECTED = {
    "etcd": (ETCD_FLAGS, 2381, "127.0.0.1", "HTTP", ("/livez", "/readyz", "/readyz"), "100m", "100Mi",
             ETCD_VOLUMES),
    "kube-apiserver": (APISERVER_FLAGS, 6443, ADV, "HTTPS", ("/livez", "/readyz", "/livez"), "250m", None,
                       APISERVER_VOLUMES),
    "kube-controller-manager": (KCM_FLAGS, 10257, "127.0.0.1", "HTTPS", ("/healthz", None, "/healthz"), "200m",
                                None, KCM_VOLUMES),
    "kube-scheduler": (SCHEDULER_FLAGS, 10259, "127.0.0.1", "HTTPS", ("/livez", "/readyz", "/livez"), "100m",
                       None, SCHEDULER_VOLUMES),
}
CASES = [pytest.param(comp, minor, id=f"{comp} at v1.{minor}") for comp in EXPECTED for minor in VERSIONS]


def image_of(component: str, minor: int) -> str:
    k8s, etcd_tag = VERSIONS[minor]
    return f"registry.k8s.io/etcd:{etcd_tag}" if component == "etcd" else f"registry.k8s.io/{component}:{k8s}"


@pytest.mark.parametrize(("component", "minor"), CASES)
def test_the_command_line_is_the_specs_sorted_flag_list(tmp_path: Path, component: str, minor: int) -> None:
    pod = build(make_cfg(VERSIONS[minor][0]), component, node_root(tmp_path))
    assert pod["spec"]["containers"][0]["command"] == EXPECTED[component][0]


@pytest.mark.parametrize(("component", "minor"), CASES)
def test_probes_reach_the_named_probe_port_with_kubeadms_timings(tmp_path: Path, component: str, minor: int) -> None:
    box = build(make_cfg(VERSIONS[minor][0]), component, node_root(tmp_path))["spec"]["containers"][0]
    _, port, host, scheme, (live, ready, start), *_ = EXPECTED[component]
    get = {"host": host, "port": "probe-port", "scheme": scheme}
    assert box["ports"] == [{"containerPort": port, "name": "probe-port", "protocol": "TCP"}]
    assert box["livenessProbe"] == {"failureThreshold": 8, "httpGet": {**get, "path": live},
                                    "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 15}
    assert box["startupProbe"] == {"failureThreshold": 24, "httpGet": {**get, "path": start},
                                   "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 15}
    if ready is None:
        assert "readinessProbe" not in box
    else:
        assert box["readinessProbe"] == {"failureThreshold": 3, "httpGet": {**get, "path": ready},
                                         "periodSeconds": 1, "timeoutSeconds": 15}


@pytest.mark.parametrize(("component", "minor"), CASES)
def test_volumes_and_mounts_are_kubeadms_host_paths(tmp_path: Path, component: str, minor: int) -> None:
    pod = build(make_cfg(VERSIONS[minor][0]), component, node_root(tmp_path))
    volumes = EXPECTED[component][-1]
    assert pod["spec"]["volumes"] == [{"hostPath": {"path": h, "type": t}, "name": n} for n, h, t, _, _ in volumes]
    mounts = [{"mountPath": p, "name": n, **({"readOnly": True} if ro else {})} for n, _, _, p, ro in volumes]
    if component == "etcd":
        mounts.reverse()  # etcd-data, then etcd-certs
    assert pod["spec"]["containers"][0]["volumeMounts"] == mounts


@pytest.mark.parametrize(("component", "minor"), CASES)
def test_pod_metadata_and_spec_are_kubeadms_component_pod(tmp_path: Path, component: str, minor: int) -> None:
    pod = build(make_cfg(VERSIONS[minor][0]), component, node_root(tmp_path))
    *_, cpu, memory, _ = EXPECTED[component]
    annotations = {
        "etcd": {"kubeadm.kubernetes.io/etcd.advertise-client-urls": f"https://{ADV}:2379"},
        "kube-apiserver": {"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": f"{ADV}:6443"},
    }.get(component)
    assert pod["apiVersion"] == "v1"
    assert pod["kind"] == "Pod"
    assert pod["metadata"] == {"labels": {"component": component, "tier": "control-plane"}, "name": component,
                               "namespace": "kube-system", **({"annotations": annotations} if annotations else {})}
    spec = pod["spec"]
    assert spec["hostNetwork"] is True
    assert spec["priority"] == 2000001000
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["status"] == {}
    box = spec["containers"][0]
    assert box["name"] == component
    assert box["image"] == image_of(component, minor)
    assert box["imagePullPolicy"] == "IfNotPresent"
    assert box["resources"] == {"requests": {"cpu": cpu, **({"memory": memory} if memory else {})}}
    assert "env" not in box  # no proxy in the environment, no extraEnvs


@pytest.mark.parametrize(("component", "minor"), CASES)
def test_every_manifest_validates_against_the_minors_pod_schema(tmp_path: Path, component: str, minor: int) -> None:
    cfg = make_cfg(VERSIONS[minor][0], cluster={"networking": {"podSubnet": "10.244.0.0/16"}})
    pod = build(cfg, component, node_root(tmp_path), {"HTTPS_PROXY": "http://proxy:3128"})
    kubernetes_validate.validate(pod, f"1.{minor}.0", strict=True)


def test_the_yaml_is_laid_out_like_kubeadms(tmp_path: Path) -> None:
    text = goyaml.dump(build(make_cfg("v1.36.1"), "kube-scheduler", node_root(tmp_path)))
    assert text.startswith("apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    component: kube-scheduler\n")
    assert "  containers:\n  - command:\n    - kube-scheduler\n    - --authentication-kubeconfig=" in text
    assert "creationTimestamp" not in text  # omitted since apimachinery v1.34
    assert text.endswith("    name: kubeconfig\nstatus: {}\n")


@pytest.mark.parametrize(("keys", "ordered"), [
    pytest.param(["b", "a", "B"], ["B", "a", "b"], id="letters by code point"),
    pytest.param(["etcd-certs-10", "etcd-certs-2", "etcd-certs-1"], ["etcd-certs-1", "etcd-certs-2", "etcd-certs-10"],
                 id="digit runs as numbers"),
    pytest.param(["HTTPS_PROXY", "HTTP_PROXY"], ["HTTP_PROXY", "HTTPS_PROXY"], id="non-letters before letters"),
    pytest.param(["ab", "a"], ["a", "ab"], id="prefix first"),
])
def test_map_keys_are_sorted_like_go_yaml(keys: list[str], ordered: list[str]) -> None:
    text = goyaml.dump(dict.fromkeys(keys, 1))
    assert [line.split(":")[0] for line in text.splitlines()] == ordered


@pytest.mark.parametrize(("value", "emitted"), [
    pytest.param("", '""', id="empty"),
    pytest.param("true", '"true"', id="bool word"),
    pytest.param("on", '"on"', id="yaml 1.1 bool"),
    pytest.param("y", '"y"', id="go-yaml y"),
    pytest.param("10", '"10"', id="int"),
    pytest.param("1e3", '"1e3"', id="go float without dot"),
    pytest.param("0o17", '"0o17"', id="go octal"),
    pytest.param("100m", "100m", id="quantity"),
    pytest.param("--cluster-signing-cert-file=", "--cluster-signing-cert-file=", id="flag with empty value"),
])
def test_strings_that_read_back_as_another_type_are_double_quoted(value: str, emitted: str) -> None:
    assert goyaml.dump({"k": value}) == f"k: {emitted}\n"
