"""The kube-proxy addon's objects against kubeadm's proxy/manifests.go, proxy.go and componentconfigs/
kubeproxy.go (kubeadm-spec 2.13) for v1.35 and v1.36 with a custom podSubnet and controlPlaneEndpoint: the
ConfigMap's two keys parsed back, the hash annotation, the DaemonSet, RBAC; every object against the
minor's OpenAPI schema."""

from __future__ import annotations

import hashlib
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks.addons import kubeproxy
from kubeboot.tasks.phases import addons
from kubeboot.tasks.phases.context import ControlContext

V4 = "kubeadm.k8s.io/v1beta4"
PROXY_API = "kubeproxy.config.k8s.io/v1alpha1"
VERSIONS = {34: "v1.34.2", 35: "v1.35.2", 36: "v1.36.1"}
HASH_KEY = "kubeadm.kubernetes.io/component-config.hash"


def make_cfg(version: str = "v1.36.1", *, adv: str = "192.168.10.5", proxy_doc: dict[str, Any] | None = None,
             **cluster: Any) -> InitConfig:
    docs: list[dict[str, Any]] = [
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "localAPIEndpoint": {"advertiseAddress": adv}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "kubernetesVersion": version,
         "networking": {"serviceSubnet": "10.100.0.0/16", "podSubnet": "10.244.0.0/16"}, **cluster},
    ]
    if proxy_doc is not None:
        docs.append({"apiVersion": PROXY_API, "kind": "KubeProxyConfiguration", **proxy_doc})
    return build_init_config(docs)


def data(cfg: InitConfig) -> dict[str, str]:
    return kubeproxy.config_map(cfg)["data"]


# --- ConfigMap kube-proxy ------------------------------------------------------------------------------

@pytest.mark.parametrize("minor", [35, 36], ids=["v1.35", "v1.36"])
def test_config_conf_is_the_defaulted_kube_proxy_configuration(minor: int) -> None:
    conf = yaml.safe_load(data(make_cfg(VERSIONS[minor]))["config.conf"])
    assert conf["apiVersion"] == PROXY_API
    assert conf["kind"] == "KubeProxyConfiguration"
    assert conf["bindAddress"] == "0.0.0.0"
    assert conf["clusterCIDR"] == "10.244.0.0/16"
    assert conf["clientConnection"] == {"acceptContentTypes": "", "burst": 0, "contentType": "",
                                        "kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf", "qps": 0}
    # kubeadm marshals the whole struct: zero values, no scheme defaults, no featureGates.
    assert conf["mode"] == ""
    assert conf["iptables"] == {"localhostNodePorts": None, "masqueradeAll": False, "masqueradeBit": None,
                                "minSyncPeriod": "0s", "syncPeriod": "0s"}
    assert conf["conntrack"]["maxPerCore"] is None
    assert conf["nftables"]["syncPeriod"] == "0s"
    assert conf["logging"] == {"flushFrequency": 0, "verbosity": 0,
                               "options": {"json": {"infoBufferSize": "0"}, "text": {"infoBufferSize": "0"}}}
    assert "featureGates" not in conf
    assert "windowsRunAsService" not in conf


def test_config_conf_text_is_sorted_go_yaml_without_a_final_newline() -> None:
    text = data(make_cfg())["config.conf"]
    assert text.startswith("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nbindAddress: 0.0.0.0\n"
                           "bindAddressHardFail: false\nclientConnection:\n  acceptContentTypes: \"\"\n")
    assert "\nkind: KubeProxyConfiguration\nlogging:\n" in text
    assert "      infoBufferSize: \"0\"\n" in text
    assert "  maxPerCore: null\n" in text
    assert text.endswith("\n  sourceVip: \"\"")


def test_an_ipv6_advertise_address_binds_kube_proxy_to_the_ipv6_any_address() -> None:
    conf = yaml.safe_load(data(make_cfg(adv="fd00::5"))["config.conf"])
    assert conf["bindAddress"] == "::"


def test_without_a_pod_subnet_cluster_cidr_stays_empty() -> None:
    cfg = make_cfg(networking={"serviceSubnet": "10.100.0.0/16"})
    assert yaml.safe_load(data(cfg)["config.conf"])["clusterCIDR"] == ""


def test_the_users_kube_proxy_configuration_is_kept_and_only_its_gaps_defaulted() -> None:
    cfg = make_cfg(proxy_doc={"mode": "ipvs", "clusterCIDR": "10.50.0.0/16", "featureGates": {"Foo": True},
                              "ipvs": {"strictARP": True}})
    conf = yaml.safe_load(data(cfg)["config.conf"])
    assert conf["mode"] == "ipvs"
    assert conf["clusterCIDR"] == "10.50.0.0/16"  # the user's value wins (kubeadm only warns)
    assert conf["featureGates"] == {"Foo": True}
    assert conf["ipvs"]["strictARP"] is True
    assert conf["ipvs"]["scheduler"] == ""
    assert conf["bindAddress"] == "0.0.0.0"
    assert conf["clientConnection"]["kubeconfig"] == "/var/lib/kube-proxy/kubeconfig.conf"


@pytest.mark.parametrize(("cluster", "server"), [
    pytest.param({}, "https://192.168.10.5:6443", id="the local API endpoint without controlPlaneEndpoint"),
    pytest.param({"controlPlaneEndpoint": "lb.example.test"}, "https://lb.example.test:6443",
                 id="controlPlaneEndpoint without a port takes the bind port"),
    pytest.param({"controlPlaneEndpoint": "lb.example.test:8443"}, "https://lb.example.test:8443",
                 id="controlPlaneEndpoint with its port"),
])
def test_kubeconfig_conf_points_at_the_control_plane_endpoint_with_the_service_account(
        cluster: dict[str, Any], server: str) -> None:
    text = data(make_cfg(**cluster))["kubeconfig.conf"]
    assert not text.endswith("\n")  # the template's |- block
    assert yaml.safe_load(text) == {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"cluster": {"certificate-authority": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                                  "server": server}, "name": "default"}],
        "contexts": [{"context": {"cluster": "default", "namespace": "default", "user": "default"},
                      "name": "default"}],
        "current-context": "default",
        "users": [{"name": "default",
                   "user": {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}}],
    }


def test_the_configmap_carries_the_component_config_hash_of_its_data() -> None:
    cm = kubeproxy.config_map(make_cfg())
    assert cm["metadata"]["name"] == "kube-proxy"
    assert cm["metadata"]["namespace"] == "kube-system"
    assert cm["metadata"]["labels"] == {"app": "kube-proxy"}
    assert sorted(cm["data"]) == ["config.conf", "kubeconfig.conf"]
    expected = hashlib.sha256((cm["data"]["config.conf"] + cm["data"]["kubeconfig.conf"]).encode()).hexdigest()
    assert cm["metadata"]["annotations"] == {HASH_KEY: f"sha256:{expected}"}


def test_a_user_supplied_configuration_is_not_signed() -> None:
    assert "annotations" not in kubeproxy.config_map(make_cfg(proxy_doc={"mode": "nftables"}))["metadata"]


# --- DaemonSet kube-proxy ------------------------------------------------------------------------------

@pytest.mark.parametrize("minor", [35, 36], ids=["v1.35", "v1.36"])
def test_the_daemonset_has_every_field_of_kubeadms_template(minor: int) -> None:
    ds = kubeproxy.daemon_set(make_cfg(VERSIONS[minor]), {})
    assert ds["metadata"] == {"labels": {"k8s-app": "kube-proxy"}, "name": "kube-proxy", "namespace": "kube-system"}
    spec = ds["spec"]
    assert spec["selector"] == {"matchLabels": {"k8s-app": "kube-proxy"}}
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}
    assert spec["template"]["metadata"] == {"labels": {"k8s-app": "kube-proxy"}}
    pod = spec["template"]["spec"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["hostNetwork"] is True
    assert pod["serviceAccountName"] == "kube-proxy"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["volumes"] == [
        {"name": "kube-proxy", "configMap": {"name": "kube-proxy"}},
        {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
        {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
    ]
    [ctr] = pod["containers"]
    assert ctr["name"] == "kube-proxy"
    assert ctr["image"] == f"registry.k8s.io/kube-proxy:{VERSIONS[minor]}"
    assert ctr["imagePullPolicy"] == "IfNotPresent"
    assert ctr["command"] == ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                              "--hostname-override=$(NODE_NAME)"]
    assert ctr["securityContext"] == {"privileged": True}
    assert ctr["volumeMounts"] == [
        {"mountPath": "/var/lib/kube-proxy", "name": "kube-proxy"},
        {"mountPath": "/run/xtables.lock", "name": "xtables-lock", "readOnly": False},
        {"mountPath": "/lib/modules", "name": "lib-modules", "readOnly": True},
    ]
    assert ctr["env"] == [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]


def test_the_proxy_variables_of_the_environment_follow_node_name_sorted() -> None:
    env = {"no_proxy": "10.0.0.0/8", "HTTPS_PROXY": "http://proxy:3128", "HTTP_PROXY": "", "PATH": "/bin"}
    ctr = kubeproxy.daemon_set(make_cfg(), env)["spec"]["template"]["spec"]["containers"][0]
    assert [e["name"] for e in ctr["env"]] == ["NODE_NAME", "HTTPS_PROXY", "no_proxy"]
    assert ctr["env"][1] == {"name": "HTTPS_PROXY", "value": "http://proxy:3128"}


def test_the_kube_proxy_image_follows_the_image_repository() -> None:
    ctr = kubeproxy.daemon_set(make_cfg(imageRepository="mirror.example/k8s"), {})
    assert ctr["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror.example/k8s/kube-proxy:v1.36.1"


# --- RBAC ------------------------------------------------------------------------------------------------

def test_node_proxier_is_bound_to_the_kube_proxy_service_account() -> None:
    crb = kubeproxy.cluster_role_binding()
    assert crb["metadata"] == {"name": "kubeadm:node-proxier"}
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                              "name": "system:node-proxier"}
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "kube-proxy", "namespace": "kube-system"}]
    assert kubeproxy.service_account()["metadata"] == {"name": "kube-proxy", "namespace": "kube-system"}


def test_joining_nodes_may_read_the_kube_proxy_configmap_and_nothing_else() -> None:
    role, rb = kubeproxy.role(), kubeproxy.role_binding()
    assert role["metadata"] == {"name": "kube-proxy", "namespace": "kube-system"}
    assert role["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
                              "resourceNames": ["kube-proxy"]}]
    assert rb["metadata"] == {"name": "kube-proxy", "namespace": "kube-system"}
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kube-proxy"}
    assert rb["subjects"] == [{"kind": "Group", "name": "system:bootstrappers:kubeadm:default-node-token"}]


# --- schema --------------------------------------------------------------------------------------------

OBJECTS = {
    "ConfigMap": kubeproxy.config_map,
    "DaemonSet": lambda cfg: kubeproxy.daemon_set(cfg, {"HTTPS_PROXY": "http://proxy:3128"}),
    "ServiceAccount": lambda cfg: kubeproxy.service_account(),
    "ClusterRoleBinding": lambda cfg: kubeproxy.cluster_role_binding(),
    "Role": lambda cfg: kubeproxy.role(),
    "RoleBinding": lambda cfg: kubeproxy.role_binding(),
}


@pytest.mark.parametrize("minor", [34, 35, 36], ids=["v1.34", "v1.35", "v1.36"])
@pytest.mark.parametrize("kind", list(OBJECTS))
def test_every_object_validates_against_the_minors_schema(kind: str, minor: int) -> None:
    obj = OBJECTS[kind](make_cfg(VERSIONS[minor]))
    assert obj["kind"] == kind
    kubernetes_validate.validate(obj, f"1.{minor}.0", strict=True)


# --- the phase when the addon is disabled ----------------------------------------------------------------

def test_the_phase_writes_nothing_when_the_proxy_is_disabled() -> None:
    lines: list[str] = []
    addons.run_addon_kube_proxy(ControlContext(make_cfg(proxy={"disabled": True}), node="cp1", out=lines.append))
    assert lines == ["[addons] Skipping the kube-proxy addon: proxy.disabled is true"]
