"""`config print init-defaults` prints kubeadm's defaults with its placeholders, and they load back."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubeboot.config.loader import load_init_config
from kubeboot.config.printing import init_defaults_yaml


def docs(text: str) -> list[dict]:
    return list(yaml.safe_load_all(text))


def test_init_defaults_are_two_v1beta4_documents_joined_like_kubeadm() -> None:
    text = init_defaults_yaml()
    assert text.count("\n---\n") == 1
    assert [(d["apiVersion"], d["kind"]) for d in docs(text)] == [
        ("kubeadm.k8s.io/v1beta4", "InitConfiguration"), ("kubeadm.k8s.io/v1beta4", "ClusterConfiguration")]


PLACEHOLDERS = [
    ("bootstrap token", lambda init, _: init["bootstrapTokens"][0]["token"], "abcdef.0123456789abcdef"),
    ("token ttl", lambda init, _: init["bootstrapTokens"][0]["ttl"], "24h0m0s"),
    ("advertiseAddress", lambda init, _: init["localAPIEndpoint"]["advertiseAddress"], "1.2.3.4"),
    ("node name", lambda init, _: init["nodeRegistration"]["name"], "node"),
    ("criSocket avoids CRI detection", lambda init, _: init["nodeRegistration"]["criSocket"],
     "unix:///var/run/containerd/containerd.sock"),
    ("taints printed as null", lambda init, _: init["nodeRegistration"]["taints"], None),
    ("kubernetesVersion without the v", lambda _, cl: cl["kubernetesVersion"], "1.36.1"),
    ("serviceSubnet", lambda _, cl: cl["networking"]["serviceSubnet"], "10.96.0.0/12"),
    ("local etcd dataDir", lambda _, cl: cl["etcd"], {"local": {"dataDir": "/var/lib/etcd"}}),
    ("empty components print as {}", lambda _, cl: (cl["apiServer"], cl["dns"], cl["proxy"]), ({}, {}, {})),
]


@pytest.mark.parametrize(("read", "expected"), [p[1:] for p in PLACEHOLDERS], ids=[p[0] for p in PLACEHOLDERS])
def test_init_defaults_carry_kubeadms_placeholders(read, expected) -> None:
    init, cluster = docs(init_defaults_yaml())
    assert read(init, cluster) == expected


def test_keys_are_sorted_as_go_marshals_them() -> None:
    for doc in docs(init_defaults_yaml(["KubeletConfiguration", "KubeProxyConfiguration"])):
        assert list(doc) == sorted(doc)


COMPONENT_SETS = [[], ["KubeletConfiguration"], ["KubeletConfiguration", "KubeProxyConfiguration"]]


@pytest.mark.parametrize("components", COMPONENT_SETS,
                         ids=["plain", "with kubelet", "with kubelet and kube-proxy"])
def test_init_defaults_load_back_with_the_same_values(tmp_path: Path, components: list[str]) -> None:
    path = tmp_path / "defaults.yaml"
    path.write_text(init_defaults_yaml(components))
    cfg = load_init_config(path)
    assert (cfg.node_name, cfg.advertise_address, cfg.version.text) == ("node", "1.2.3.4", "v1.36.1")
    assert cfg.init.bootstrapTokens[0].token == "abcdef.0123456789abcdef"
    assert cfg.init.nodeRegistration.taints is None
    assert bool(cfg.kubelet) == ("KubeletConfiguration" in components)
    assert bool(cfg.kubeproxy) == ("KubeProxyConfiguration" in components)


def test_kubelet_component_config_points_at_the_cluster_dns_and_static_pod_path() -> None:
    kubelet = docs(init_defaults_yaml(["KubeletConfiguration"]))[2]
    assert kubelet["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert kubelet["clusterDNS"] == ["10.96.0.10"]
    assert kubelet["staticPodPath"] == "/etc/kubernetes/manifests"
    assert kubelet["authentication"]["x509"]["clientCAFile"] == "/etc/kubernetes/pki/ca.crt"


def test_an_unknown_component_config_names_the_allowed_kinds() -> None:
    with pytest.raises(ValueError, match="KubeletConfiguration, KubeProxyConfiguration"):
        init_defaults_yaml(["KubeSchedulerConfiguration"])
