"""upload-config: the ClusterConfiguration as kubeadm marshals it, the component-config hash, and the
ConfigMaps, Roles and RoleBindings of spec 2.8."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import yaml

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks.phases import uploadconfig as uc

V4 = "kubeadm.k8s.io/v1beta4"
RBAC = "rbac.authorization.k8s.io"


def config(cluster: dict[str, Any] | None = None, kubelet: dict[str, Any] | None = None) -> InitConfig:
    docs: list[dict[str, Any]] = [
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "localAPIEndpoint": {"advertiseAddress": "10.0.0.5"},
         "bootstrapTokens": [{"token": "abcdef.0123456789abcdef"}]},
        {"apiVersion": V4, "kind": "ClusterConfiguration", **(cluster or {})},
    ]
    if kubelet is not None:
        docs.append({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", **kubelet})
    return build_init_config(docs)


# What a v1.36 kubeadm stores for a config that sets nothing but the version.
DEFAULT_CLUSTER_CONFIGURATION = """\
apiServer: {}
apiVersion: kubeadm.k8s.io/v1beta4
caCertificateValidityPeriod: 87600h0m0s
certificateValidityPeriod: 8760h0m0s
certificatesDir: /etc/kubernetes/pki
clusterName: kubernetes
controllerManager: {}
dns: {}
encryptionAlgorithm: RSA-2048
etcd:
  local:
    dataDir: /var/lib/etcd
imageRepository: registry.k8s.io
kind: ClusterConfiguration
kubernetesVersion: v1.36.1
networking:
  dnsDomain: cluster.local
  serviceSubnet: 10.96.0.0/12
proxy: {}
scheduler: {}
"""


def test_the_default_cluster_configuration_is_byte_for_byte_what_kubeadm_uploads() -> None:
    assert uc.cluster_configuration_yaml(config({"kubernetesVersion": "v1.36.1"})) == DEFAULT_CLUSTER_CONFIGURATION


def test_the_uploaded_version_is_the_resolved_one_with_its_v() -> None:
    doc = yaml.safe_load(uc.cluster_configuration_yaml(config({"kubernetesVersion": "1.35.2"})))
    assert doc["kubernetesVersion"] == "v1.35.2"


def test_set_fields_appear_and_go_zero_values_follow_the_omitempty_tags() -> None:
    doc = yaml.safe_load(uc.cluster_configuration_yaml(config({
        "controlPlaneEndpoint": "cp.example.test:6443",
        "networking": {"podSubnet": "10.244.0.0/16"},
        "apiServer": {"certSANs": ["cp.example.test"], "extraArgs": [{"name": "v", "value": ""}]},
        "dns": {"disabled": True},
        "featureGates": {},
    })))
    assert doc["controlPlaneEndpoint"] == "cp.example.test:6443"
    assert doc["networking"] == {"dnsDomain": "cluster.local", "podSubnet": "10.244.0.0/16",
                                 "serviceSubnet": "10.96.0.0/12"}
    # Arg.value has no omitempty: an empty value is written.
    assert doc["apiServer"] == {"certSANs": ["cp.example.test"], "extraArgs": [{"name": "v", "value": ""}]}
    assert doc["dns"] == {"disabled": True}
    assert "featureGates" not in doc  # an empty map is omitted
    assert doc["proxy"] == {}  # a struct is never omitted


def test_external_etcd_keeps_its_required_fields_even_when_empty() -> None:
    doc = yaml.safe_load(uc.cluster_configuration_yaml(config({
        "etcd": {"external": {"endpoints": ["https://10.0.0.9:2379"]}}})))
    assert doc["etcd"] == {"external": {"endpoints": ["https://10.0.0.9:2379"], "caFile": "", "certFile": "",
                                        "keyFile": ""}}


def test_no_bootstrap_token_and_nothing_node_specific_is_uploaded() -> None:
    text = uc.cluster_configuration_yaml(config())
    assert "abcdef" not in text and "10.0.0.5" not in text and "cp1" not in text


def test_the_checksum_is_sha256_over_the_values_in_key_order() -> None:
    expected = "sha256:" + hashlib.sha256(b"first" + b"second" + b"\x00bin").hexdigest()
    assert uc.config_map_checksum({"b": "second", "a": "first"}, {"z": b"\x00bin"}) == expected


def test_the_kubelet_config_map_is_signed_with_the_hash_of_its_data() -> None:
    cm = uc.kubelet_config_objects(config(), resolved_active=False)[0]
    text = cm["data"]["kubelet"]
    assert set(cm["data"]) == {"kubelet"}
    assert cm["metadata"]["annotations"] == {
        "kubeadm.kubernetes.io/component-config.hash": "sha256:" + hashlib.sha256(text.encode()).hexdigest()}
    doc = yaml.safe_load(text)
    assert (doc["kind"], doc["clusterDNS"], doc["rotateCertificates"]) == ("KubeletConfiguration", ["10.96.0.10"],
                                                                           True)


def test_a_user_supplied_kubelet_config_is_uploaded_unsigned_with_the_users_values() -> None:
    cm = uc.kubelet_config_objects(config(kubelet={"maxPods": 50}), resolved_active=False)[0]
    assert "annotations" not in cm["metadata"]
    assert yaml.safe_load(cm["data"]["kubelet"])["maxPods"] == 50


@pytest.mark.parametrize(("active", "expected"), [
    pytest.param(True, "/run/systemd/resolve/resolv.conf", id="systemd-resolved active on the init node"),
    pytest.param(False, None, id="systemd-resolved not active"),
])
def test_the_uploaded_kubelet_config_carries_resolvconf_as_kubelet_start_wrote_it(active: bool,
                                                                                   expected: str | None) -> None:
    cm = uc.kubelet_config_objects(config(), resolved_active=active)[0]
    assert yaml.safe_load(cm["data"]["kubelet"]).get("resolvConf") == expected


def groups(*names: str) -> list[dict[str, str]]:
    return [{"kind": "Group", "apiGroup": RBAC, "name": n} for n in names]


TOKENS, NODES = "system:bootstrappers:kubeadm:default-node-token", "system:nodes"


@pytest.mark.parametrize(("objects", "config_map", "role", "subjects"), [
    pytest.param(uc.kubeadm_config_objects, "kubeadm-config", "kubeadm:nodes-kubeadm-config",
                 groups(TOKENS, NODES), id="kubeadm-config"),
    pytest.param(lambda cfg: uc.kubelet_config_objects(cfg, False), "kubelet-config", "kubeadm:kubelet-config",
                 groups(NODES, TOKENS), id="kubelet-config"),
])
def test_each_config_map_is_readable_by_joining_nodes_through_its_role(
        objects: Any, config_map: str, role: str, subjects: list[dict[str, str]]) -> None:
    cm, r, rb = objects(config())
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("ConfigMap", config_map,
                                                                                 "kube-system")
    assert (r["kind"], r["metadata"]) == ("Role", {"name": role, "namespace": "kube-system"})
    assert r["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
                           "resourceNames": [config_map]}]
    assert (rb["kind"], rb["metadata"]) == ("RoleBinding", {"name": role, "namespace": "kube-system"})
    assert rb["roleRef"] == {"apiGroup": RBAC, "kind": "Role", "name": role}
    assert rb["subjects"] == subjects


def test_the_kubeadm_config_map_holds_only_the_cluster_configuration() -> None:
    cm = uc.kubeadm_config_objects(config())[0]
    assert list(cm["data"]) == ["ClusterConfiguration"]
    assert "annotations" not in cm["metadata"]
