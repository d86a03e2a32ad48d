"""The CoreDNS addon's objects against kubeadm's dns/manifests.go (kubeadm-spec 2.13) for v1.34-v1.36,
with a custom serviceSubnet and dnsDomain; every object against the minor's OpenAPI schema; the Corefile
byte for byte; ``corednsdeployment`` patches with the Deployment's merge keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks.addons import coredns
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.phases import addons
from kubeboot.tasks.phases.context import ControlContext

V4 = "kubeadm.k8s.io/v1beta4"
VERSIONS = {34: ("v1.34.2", "v1.12.1"), 35: ("v1.35.2", "v1.13.1"), 36: ("v1.36.1", "v1.13.1")}
NETWORKING = {"serviceSubnet": "10.100.0.0/16", "dnsDomain": "corp.example", "podSubnet": "10.244.0.0/16"}


def make_cfg(version: str = "v1.36.1", **cluster: Any) -> InitConfig:
    return build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "localAPIEndpoint": {"advertiseAddress": "192.168.10.5"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "kubernetesVersion": version,
         "networking": NETWORKING, **cluster},
    ])


def container(dep: dict[str, Any]) -> dict[str, Any]:
    [only] = dep["spec"]["template"]["spec"]["containers"]
    return only


EXPECTED_COREFILE = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes corp.example in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success corp.example
       disable denial corp.example
    }
    loop
    reload
    loadbalance
}
"""

# The ConfigMap template's data block as kubeadm writes it, read back by a YAML parser.
TEMPLATE_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns
  namespace: kube-system
data:
  Corefile: |
    .:53 {
        errors
        health {
           lameduck 5s
        }
        ready
        kubernetes corp.example in-addr.arpa ip6.arpa {
           pods insecure
           fallthrough in-addr.arpa ip6.arpa
           ttl 30
        }
        prometheus :9153
        forward . /etc/resolv.conf {
           max_concurrent 1000
        }
        cache 30 {
           disable success corp.example
           disable denial corp.example
        }
        loop
        reload
        loadbalance
    }
"""


# --- the Corefile ConfigMap ----------------------------------------------------------------------------

def test_the_corefile_is_kubeadms_text_byte_for_byte_with_the_cluster_domain() -> None:
    assert coredns.config_map(make_cfg())["data"]["Corefile"] == EXPECTED_COREFILE


def test_the_configmap_equals_kubeadms_template_read_as_yaml() -> None:
    assert coredns.config_map(make_cfg()) == yaml.safe_load(TEMPLATE_CONFIGMAP)


def test_without_a_domain_the_cache_block_has_no_options() -> None:
    text = coredns.corefile("")
    assert "    cache 30\n    loop\n" in text
    assert "disable" not in text


@pytest.mark.parametrize(("text", "default"), [
    pytest.param(EXPECTED_COREFILE, True, id="kubeadm's own Corefile"),
    pytest.param(coredns.corefile("cluster.local"), True, id="kubeadm's Corefile for another domain"),
    pytest.param(EXPECTED_COREFILE.replace("\n    ", "\n  "), True, id="re-indented"),
    pytest.param(EXPECTED_COREFILE.replace("ttl 30", "ttl 5"), False, id="an option edited"),
    pytest.param(EXPECTED_COREFILE.replace("    loop\n", ""), False, id="a plugin removed"),
    pytest.param(EXPECTED_COREFILE.replace("disable success corp.example", "disable success other.example"),
                 False, id="two different domains"),
    pytest.param(EXPECTED_COREFILE + "example.org:53 {\n    forward . 1.1.1.1\n}\n", False, id="a server added"),
])
def test_a_corefile_counts_as_kubeadms_default_only_when_nobody_edited_it(text: str, default: bool) -> None:
    assert coredns.is_default_corefile(text) is default


# --- RBAC and the ServiceAccount -----------------------------------------------------------------------

def test_the_cluster_role_lets_coredns_list_and_watch_what_it_serves() -> None:
    role = coredns.cluster_role()
    assert role["metadata"] == {"name": "system:coredns"}
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    ]


def test_the_cluster_role_binding_binds_system_coredns_to_the_coredns_service_account() -> None:
    crb = coredns.cluster_role_binding()
    assert crb["metadata"] == {"name": "system:coredns"}
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"}
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]


def test_the_service_account_is_kube_system_coredns() -> None:
    assert coredns.service_account() == {"apiVersion": "v1", "kind": "ServiceAccount",
                                         "metadata": {"name": "coredns", "namespace": "kube-system"}}


# --- the Deployment ------------------------------------------------------------------------------------

@pytest.mark.parametrize("minor", [35, 36], ids=["v1.35", "v1.36"])
def test_the_deployment_has_every_field_of_kubeadms_template(minor: int) -> None:
    version, tag = VERSIONS[minor]
    dep = coredns.deployment(make_cfg(version))
    assert dep["metadata"] == {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    spec = dep["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    assert spec["selector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert spec["template"]["metadata"] == {"labels": {"k8s-app": "kube-dns"}}
    pod = spec["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["serviceAccountName"] == "coredns"
    assert pod["affinity"] == {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {
            "labelSelector": {"matchExpressions": [{"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]},
            "topologyKey": "kubernetes.io/hostname"}}]}}
    assert pod["tolerations"] == [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                  {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["dnsPolicy"] == "Default"
    assert pod["volumes"] == [{"name": "config-volume", "configMap": {
        "name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}}]
    ctr = container(dep)
    assert ctr["name"] == "coredns"
    assert ctr["image"] == f"registry.k8s.io/coredns/coredns:{tag}"
    assert ctr["imagePullPolicy"] == "IfNotPresent"
    assert ctr["args"] == ["-conf", "/etc/coredns/Corefile"]
    assert ctr["resources"] == {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}}
    assert ctr["volumeMounts"] == [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": True}]
    assert ctr["ports"] == [
        {"containerPort": 53, "name": "dns", "protocol": "UDP"},
        {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
        {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
        {"containerPort": 8080, "name": "liveness-probe", "protocol": "TCP"},
        {"containerPort": 8181, "name": "readiness-probe", "protocol": "TCP"},
    ]
    assert ctr["livenessProbe"] == {
        "httpGet": {"path": "/health", "port": "liveness-probe", "scheme": "HTTP"},
        "initialDelaySeconds": 60, "timeoutSeconds": 5, "successThreshold": 1, "failureThreshold": 5}
    assert ctr["readinessProbe"] == {"httpGet": {"path": "/ready", "port": "readiness-probe", "scheme": "HTTP"}}
    assert ctr["securityContext"] == {"allowPrivilegeEscalation": False,
                                      "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                                      "readOnlyRootFilesystem": True}


def test_an_existing_replica_count_is_kept() -> None:
    assert coredns.deployment(make_cfg(), replicas=5)["spec"]["replicas"] == 5


@pytest.mark.parametrize(("cluster", "image"), [
    pytest.param({}, "registry.k8s.io/coredns/coredns:v1.13.1", id="default registry gets the coredns/ path"),
    pytest.param({"imageRepository": "mirror.example/k8s"}, "mirror.example/k8s/coredns:v1.13.1",
                 id="a custom imageRepository has no coredns/ path"),
    pytest.param({"dns": {"imageRepository": "dns.example"}}, "dns.example/coredns:v1.13.1",
                 id="dns.imageRepository wins over imageRepository"),
    pytest.param({"dns": {"imageTag": "v1.11.3"}}, "registry.k8s.io/coredns/coredns:v1.11.3",
                 id="dns.imageTag wins over the minor's version"),
    pytest.param({"imageRepository": "mirror.example", "dns": {"imageRepository": "registry.k8s.io"}},
                 "registry.k8s.io/coredns/coredns:v1.13.1", id="dns.imageRepository set to the default registry"),
])
def test_the_coredns_image_follows_kubeadms_get_dns_image(cluster: dict[str, Any], image: str) -> None:
    assert coredns.image(make_cfg("v1.36.1", **cluster)) == image


# --- the Service ---------------------------------------------------------------------------------------

def test_the_kube_dns_service_takes_the_tenth_ip_of_the_service_subnet() -> None:
    svc = coredns.service(make_cfg())
    assert svc["metadata"]["name"] == "kube-dns"
    assert svc["metadata"]["namespace"] == "kube-system"
    assert svc["metadata"]["labels"] == {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                         "kubernetes.io/name": "CoreDNS"}
    assert svc["metadata"]["annotations"] == {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}
    assert svc["metadata"]["resourceVersion"] == "0"
    assert svc["spec"] == {
        "clusterIP": "10.100.0.10",
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                  {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                  {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}],
        "selector": {"k8s-app": "kube-dns"},
    }


def test_an_ipv6_service_subnet_gives_an_ipv6_dns_address() -> None:
    cfg = build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "localAPIEndpoint": {"advertiseAddress": "fd00::5"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "networking": {"serviceSubnet": "fd00:10::/108"}},
    ])
    assert coredns.service(cfg)["spec"]["clusterIP"] == "fd00:10::a"


# --- schema --------------------------------------------------------------------------------------------

OBJECTS = {
    "ServiceAccount": lambda cfg: coredns.service_account(),
    "ClusterRole": lambda cfg: coredns.cluster_role(),
    "ClusterRoleBinding": lambda cfg: coredns.cluster_role_binding(),
    "ConfigMap": coredns.config_map,
    "Deployment": coredns.deployment,
    "Service": coredns.service,
}


@pytest.mark.parametrize("minor", [34, 35, 36], ids=["v1.34", "v1.35", "v1.36"])
@pytest.mark.parametrize("kind", list(OBJECTS))
def test_every_object_validates_against_the_minors_schema(kind: str, minor: int) -> None:
    obj = OBJECTS[kind](make_cfg(VERSIONS[minor][0]))
    assert obj["kind"] == kind
    kubernetes_validate.validate(obj, f"1.{minor}.0", strict=True)


# --- patches -------------------------------------------------------------------------------------------

def test_patches_merge_into_the_coredns_container_by_name_and_print_kubeadms_lines(tmp_path: Path) -> None:
    (tmp_path / "corednsdeployment+strategic.yaml").write_text(
        "spec:\n  template:\n    spec:\n      containers:\n      - name: coredns\n"
        "        env:\n        - name: GOMAXPROCS\n          value: \"2\"\n")
    (tmp_path / "corednsdeployment1+json.json").write_text('[{"op": "replace", "path": "/spec/replicas", "value": 3}]')
    (tmp_path / "kube-apiserver.yaml").write_text("metadata:\n  labels:\n    x: y\n")
    lines: list[str] = []
    dep = coredns.patch_deployment(coredns.deployment(make_cfg()), tmp_path, lines.append)
    ctr = container(dep)
    assert ctr["env"] == [{"name": "GOMAXPROCS", "value": "2"}]
    assert ctr["image"] == "registry.k8s.io/coredns/coredns:v1.13.1"  # merged, not replaced
    assert len(ctr["ports"]) == 5
    assert dep["spec"]["replicas"] == 3
    assert lines == [
        f'[patches] Reading patches from path "{tmp_path}"',
        "[patches] Found the following patch files: [corednsdeployment+strategic.yaml "
        "corednsdeployment1+json.json kube-apiserver.yaml]",
        '[patches] Applied patch of type "application/strategic-merge-patch+json" to target "corednsdeployment"',
        '[patches] Applied patch of type "application/json-patch+json" to target "corednsdeployment"',
    ]


def test_a_broken_patch_names_the_coredns_deployment(tmp_path: Path) -> None:
    (tmp_path / "corednsdeployment+json.json").write_text('[{"op": "remove", "path": "/spec/nothing"}]')
    with pytest.raises(PermanentError, match="could not apply patches to the CoreDNS Deployment"):
        coredns.patch_deployment(coredns.deployment(make_cfg()), tmp_path, lambda _l: None)


# --- the phase when the addon is disabled ----------------------------------------------------------------

def test_the_phase_writes_nothing_when_dns_is_disabled() -> None:
    lines: list[str] = []
    # No admin.conf in the secrets: any API access would fail.
    addons.run_addon_coredns(ControlContext(make_cfg(dns={"disabled": True}), node="cp1", out=lines.append))
    assert lines == ["[addons] Skipping the CoreDNS addon: dns.disabled is true"]


def test_the_phase_without_admin_conf_says_what_is_missing() -> None:
    with pytest.raises(PermanentError, match=r"admin\.conf is not in this run's secrets"):
        addons.run_addon_coredns(ControlContext(make_cfg(), node="cp1", out=lambda _l: None))
