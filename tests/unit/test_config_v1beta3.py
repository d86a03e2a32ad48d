"""kubeadm.k8s.io/v1beta3 files are read as kubeadm converts them to v1beta4."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeboot.config.errors import ConfigError
from kubeboot.config.loader import load_init_config
from kubeboot.config.v1beta3 import convert_document

V1BETA3_FILE = """\
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
bootstrapTokens:
- token: "9a08jv.c0izixklcxtmnze7"
  description: "kubeadm bootstrap token"
  ttl: "24h"
nodeRegistration:
  name: "cp-1"
  criSocket: "unix:///var/run/containerd/containerd.sock"
  taints:
  - key: "kubeadmNode"
    value: "someValue"
    effect: "NoSchedule"
  kubeletExtraArgs:
    v: "5"
    node-ip: "10.100.0.1"
  ignorePreflightErrors:
  - IsPrivilegedUser
  imagePullPolicy: "IfNotPresent"
localAPIEndpoint:
  advertiseAddress: "10.100.0.1"
  bindPort: 6443
certificateKey: "e6a2eb8581237ab72a4f494f30285ec12a9694d750b9785706a83bfcbbbd2204"
skipPhases:
- addon/kube-proxy
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
etcd:
  local:
    imageRepository: "registry.k8s.io"
    dataDir: "/var/lib/etcd"
    extraArgs:
      listen-metrics-urls: "http://0.0.0.0:2381"
      election-timeout: "2500"
    serverCertSANs:
    - "ec2-10-100-0-1.compute-1.amazonaws.com"
    peerCertSANs:
    - "10.100.0.1"
networking:
  serviceSubnet: "10.96.0.0/16"
  podSubnet: "10.244.0.0/16"
  dnsDomain: "cluster.local"
kubernetesVersion: "v1.35.2"
controlPlaneEndpoint: "10.100.0.1:6443"
apiServer:
  extraArgs:
    authorization-mode: "Node,RBAC"
    audit-log-maxage: "30"
  certSANs:
  - "10.100.1.1"
  - "ec2-10-100-0-1.compute-1.amazonaws.com"
  timeoutForControlPlane: 4m30s
controllerManager:
  extraArgs:
    node-cidr-mask-size-ipv4: "20"
    bind-address: "0.0.0.0"
scheduler:
  extraArgs:
    bind-address: "0.0.0.0"
certificatesDir: "/etc/kubernetes/pki"
imageRepository: "registry.k8s.io"
clusterName: "example-cluster"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kubeadm.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def cfg(tmp_path: Path):
    return load_init_config(write(tmp_path, V1BETA3_FILE))


def test_a_v1beta3_file_loads_as_v1beta4(cfg) -> None:
    assert cfg.init.apiVersion == "kubeadm.k8s.io/v1beta4"
    assert cfg.cluster.apiVersion == "kubeadm.k8s.io/v1beta4"


def test_extra_args_maps_become_name_value_lists_sorted_by_name(cfg) -> None:
    def pairs(args):
        return [(a.name, a.value) for a in args]

    assert pairs(cfg.cluster.apiServer.extraArgs) == [("audit-log-maxage", "30"), ("authorization-mode", "Node,RBAC")]
    assert pairs(cfg.cluster.controllerManager.extraArgs) == [
        ("bind-address", "0.0.0.0"), ("node-cidr-mask-size-ipv4", "20")]
    assert pairs(cfg.cluster.scheduler.extraArgs) == [("bind-address", "0.0.0.0")]
    assert pairs(cfg.cluster.local_etcd.extraArgs) == [
        ("election-timeout", "2500"), ("listen-metrics-urls", "http://0.0.0.0:2381")]
    assert pairs(cfg.init.nodeRegistration.kubeletExtraArgs) == [("node-ip", "10.100.0.1"), ("v", "5")]


def test_timeout_for_control_plane_moves_to_the_init_timeouts(cfg) -> None:
    assert cfg.init.timeouts.controlPlaneComponentHealthCheck == "4m30s"
    assert cfg.init.timeouts.kubeletHealthCheck == "4m0s"  # the others keep v1beta4 defaults


def test_fields_new_in_v1beta4_take_their_defaults(cfg) -> None:
    assert cfg.cluster.encryptionAlgorithm == "RSA-2048"
    assert cfg.cluster.certificateValidityPeriod == "8760h0m0s"
    assert cfg.init.nodeRegistration.imagePullSerial is True
    assert cfg.init.dryRun is False


def test_every_other_value_carries_over(cfg) -> None:
    assert cfg.version.text == "v1.35.2"
    assert cfg.node_name == "cp-1"
    assert cfg.advertise_address == "10.100.0.1"
    assert cfg.cluster.clusterName == "example-cluster"
    assert cfg.cluster.networking.podSubnet == "10.244.0.0/16"
    assert cfg.cluster.apiServer.certSANs == ["10.100.1.1", "ec2-10-100-0-1.compute-1.amazonaws.com"]
    assert cfg.init.skipPhases == ["addon/kube-proxy"]
    assert cfg.init.nodeRegistration.taints is not None
    assert cfg.init.nodeRegistration.taints[0].key == "kubeadmNode"
    assert cfg.init.bootstrapTokens[0].token == "9a08jv.c0izixklcxtmnze7"


def test_a_zero_timeout_for_control_plane_is_ignored_like_kubeadm(tmp_path: Path) -> None:
    text = V1BETA3_FILE.replace("timeoutForControlPlane: 4m30s", "timeoutForControlPlane: 0s")
    assert load_init_config(write(tmp_path, text)).init.timeouts.controlPlaneComponentHealthCheck == "4m0s"


def test_timeout_moves_even_when_the_file_has_no_init_configuration(tmp_path: Path) -> None:
    cluster_only = V1BETA3_FILE[V1BETA3_FILE.index("apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration"):]
    cfg = load_init_config(write(tmp_path, cluster_only), fill_node_defaults=False)
    assert cfg.init.timeouts.controlPlaneComponentHealthCheck == "4m30s"


def test_convert_document_does_not_modify_its_input() -> None:
    doc = {"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration",
           "apiServer": {"extraArgs": {"b": "2", "a": "1"}, "timeoutForControlPlane": "1m"}}
    out = convert_document(doc, "f")
    assert out["apiServer"] == {"extraArgs": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}
    assert doc["apiServer"]["extraArgs"] == {"b": "2", "a": "1"}


V1BETA3_ERRORS = [
    ("unknown v1beta3 field is still rejected",
     "  certSANs:\n", "  certSANZ:\n", "ClusterConfiguration", "apiServer.certSANZ", "unknown field"),
    ("a v1beta4-only field in a v1beta3 document is unknown",
     'clusterName: "example-cluster"\n', 'clusterName: "example-cluster"\nencryptionAlgorithm: ECDSA-P256\n',
     "ClusterConfiguration", "encryptionAlgorithm", "new in kubeadm.k8s.io/v1beta4"),
    ("extraArgs written as a v1beta4 list",
     '    bind-address: "0.0.0.0"\ncertificatesDir', "    - name: bind-address\ncertificatesDir",
     "ClusterConfiguration", "scheduler.extraArgs", "must be a map of flag names"),
    ("an unquoted number as a flag value",
     '    v: "5"\n', "    v: 5\n", "InitConfiguration", "nodeRegistration.kubeletExtraArgs.v", "must be a string"),
    ("a bad timeoutForControlPlane",
     "timeoutForControlPlane: 4m30s", "timeoutForControlPlane: soon", "ClusterConfiguration",
     "apiServer.timeoutForControlPlane", "is not a duration"),
]


@pytest.mark.parametrize(("old", "new", "document", "field", "fragment"), [e[1:] for e in V1BETA3_ERRORS],
                         ids=[e[0] for e in V1BETA3_ERRORS])
def test_bad_v1beta3_input_is_one_config_error(tmp_path: Path, old, new, document, field, fragment) -> None:
    assert old in V1BETA3_FILE
    with pytest.raises(ConfigError) as err:
        load_init_config(write(tmp_path, V1BETA3_FILE.replace(old, new, 1)))
    assert (err.value.document, err.value.field) == (document, field)
    assert fragment in err.value.message
