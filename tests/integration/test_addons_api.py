"""addon/coredns and addon/kube-proxy against the sandbox's emulated kube-apiserver, started with the flags of
the kube-apiserver manifest kubeboot's own phases generate, spoken to over TLS with admin.conf from the run's
secrets: every object of kubeadm-spec 2.13 exists with its content; a second run writes nothing (same
resourceVersions) and creates no duplicate; an edited Corefile and a scaled Deployment survive a re-run."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import kubeapi
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import addons
from kubeboot.tasks.phases.context import ControlContext, MemorySecrets, NodeContext

pytestmark = pytest.mark.integration
V4 = "kubeadm.k8s.io/v1beta4"
ADDRESS = "127.0.93.1"
NS = "kube-system"

# (kind, namespace, name) of every object the two phases own (kubeadm-spec 2.13).
COREDNS_OBJECTS = [("ConfigMap", NS, "coredns"), ("ClusterRole", None, "system:coredns"),
                   ("ClusterRoleBinding", None, "system:coredns"), ("ServiceAccount", NS, "coredns"),
                   ("Deployment", NS, "coredns"), ("Service", NS, "kube-dns")]
PROXY_OBJECTS = [("ConfigMap", NS, "kube-proxy"), ("DaemonSet", NS, "kube-proxy"),
                 ("ServiceAccount", NS, "kube-proxy"), ("ClusterRoleBinding", None, "kubeadm:node-proxier"),
                 ("Role", NS, "kube-proxy"), ("RoleBinding", NS, "kube-proxy")]
ALL_OBJECTS = COREDNS_OBJECTS + PROXY_OBJECTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    root: Path
    cfg: InitConfig
    server: Any  # conftest's EmulatedApiServer
    secrets: MemorySecrets
    lines: list[str] = field(default_factory=list)

    def ctx(self) -> ControlContext:
        return ControlContext(self.cfg, node="cp1", out=self.lines.append, secrets=self.secrets)

    def run_both(self) -> list[str]:
        self.lines.clear()
        addons.run_addon_coredns(self.ctx())
        addons.run_addon_kube_proxy(self.ctx())
        return list(self.lines)

    def api(self, conf: str = "admin.conf") -> Any:
        # admin.conf travels to the control worker through the run's secrets; super-admin.conf never
        # leaves the node that wrote it.
        data = self.secrets.get(conf) if conf == "admin.conf" else (self.root / "etc/kubernetes" / conf).read_bytes()
        assert data is not None
        return kubeapi.api_client(data)

    def get(self, kind: str, ns: str | None, name: str) -> dict[str, Any]:
        obj = kubeapi.get(self.api(), kind, name, ns)
        assert obj is not None, f"{kind} {ns}/{name} does not exist"
        return obj

    def names(self, kind: str, ns: str | None) -> list[str]:
        items = kubeapi.request(self.api(), "GET", kubeapi.object_path(kind, ns)).get("items") or []
        return [i["metadata"]["name"] for i in items]

    def versions(self) -> dict[tuple[str, str | None, str], str]:
        return {key: self.get(*key)["metadata"]["resourceVersion"] for key in ALL_OBJECTS}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, emulated_apiserver: Any,
            node_phases: Any) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("node")
    port = free_port()
    cfg = build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "localAPIEndpoint": {"advertiseAddress": ADDRESS, "bindPort": port}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256",
         "kubernetesVersion": "v1.36.1",
         "networking": {"serviceSubnet": "10.100.0.0/16", "dnsDomain": "corp.example",
                        "podSubnet": "10.244.0.0/16"}}])
    secrets = MemorySecrets()
    ctx = NodeContext(cfg, NodeFS(root), out=lambda _line: None, secrets=secrets)
    node_phases.pki(ctx)
    # The kubeconfig phase shares admin.conf with the control worker through the run's secrets;
    # super-admin.conf stays on the node.
    assert secrets.get("admin.conf") and secrets.get("super-admin.conf") is None
    server = emulated_apiserver.start(root, emulated_apiserver.argv(cfg, root), ADDRESS, port)
    try:
        c = Cluster(root, cfg, server, secrets)
        # wait-control-plane's binding, made with super-admin.conf: admin.conf is a kubeadm:cluster-admins member.
        node_phases.bind_cluster_admins(c.api("super-admin.conf"))
        yield c
    finally:
        assert server.stop() == 0, server.log.read_text()


@pytest.fixture(scope="module")
def first_run(cluster: Cluster) -> list[str]:
    return cluster.run_both()


def test_both_phases_print_kubeadms_lines(first_run: list[str]) -> None:
    assert first_run == ["[addons] Applied essential addon: CoreDNS", "[addons] Applied essential addon: kube-proxy"]


def test_the_coredns_objects_exist_with_kubeadms_content(cluster: Cluster, first_run: list[str]) -> None:
    corefile = cluster.get("ConfigMap", NS, "coredns")["data"]["Corefile"]
    assert "    kubernetes corp.example in-addr.arpa ip6.arpa {\n" in corefile
    assert "       disable denial corp.example\n" in corefile
    role = cluster.get("ClusterRole", None, "system:coredns")
    assert role["rules"][1] == {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                                "verbs": ["list", "watch"]}
    crb = cluster.get("ClusterRoleBinding", None, "system:coredns")
    assert crb["roleRef"]["name"] == "system:coredns"
    assert [(s["kind"], s.get("namespace"), s["name"]) for s in crb["subjects"]] == [
        ("ServiceAccount", NS, "coredns")]
    dep = cluster.get("Deployment", NS, "coredns")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    pod = dep["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["containers"][0]["image"] == "registry.k8s.io/coredns/coredns:v1.13.1"
    assert pod["containers"][0]["securityContext"]["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
    svc = cluster.get("Service", NS, "kube-dns")
    assert svc["spec"]["clusterIP"] == "10.100.0.10"
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
    assert svc["metadata"]["labels"]["kubernetes.io/name"] == "CoreDNS"
    assert svc["metadata"]["annotations"] == {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}


def test_the_kube_proxy_objects_exist_with_kubeadms_content(cluster: Cluster, first_run: list[str]) -> None:
    cm = cluster.get("ConfigMap", NS, "kube-proxy")
    conf = yaml.safe_load(cm["data"]["config.conf"])
    assert conf["clusterCIDR"] == "10.244.0.0/16"
    assert conf["clientConnection"]["kubeconfig"] == "/var/lib/kube-proxy/kubeconfig.conf"
    server = yaml.safe_load(cm["data"]["kubeconfig.conf"])["clusters"][0]["cluster"]["server"]
    assert server == f"https://{cluster.cfg.local_endpoint}"
    assert cm["metadata"]["annotations"]["kubeadm.kubernetes.io/component-config.hash"].startswith("sha256:")
    ds = cluster.get("DaemonSet", NS, "kube-proxy")
    ctr = ds["spec"]["template"]["spec"]["containers"][0]
    assert ctr["image"] == "registry.k8s.io/kube-proxy:v1.36.1"
    assert ctr["command"][1] == "--config=/var/lib/kube-proxy/config.conf"
    assert ds["spec"]["template"]["spec"]["hostNetwork"] is True
    crb = cluster.get("ClusterRoleBinding", None, "kubeadm:node-proxier")
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                              "name": "system:node-proxier"}
    assert cluster.get("Role", NS, "kube-proxy")["rules"][0]["resourceNames"] == ["kube-proxy"]
    rb = cluster.get("RoleBinding", NS, "kube-proxy")
    assert [(s["kind"], s["name"]) for s in rb["subjects"]] == [
        ("Group", "system:bootstrappers:kubeadm:default-node-token")]
    assert cluster.get("ServiceAccount", NS, "kube-proxy")["metadata"]["name"] == "kube-proxy"


def test_a_second_run_changes_nothing_and_duplicates_nothing(cluster: Cluster, first_run: list[str]) -> None:
    before = cluster.versions()
    assert cluster.run_both() == first_run
    assert cluster.versions() == before
    assert cluster.names("Deployment", NS).count("coredns") == 1
    assert cluster.names("Service", NS).count("kube-dns") == 1
    assert cluster.names("DaemonSet", NS).count("kube-proxy") == 1


def test_an_edited_corefile_and_a_scaled_deployment_survive_a_rerun(cluster: Cluster, first_run: list[str]) -> None:
    api = cluster.api()
    cm = cluster.get("ConfigMap", NS, "coredns")
    cm["data"]["Corefile"] = cm["data"]["Corefile"].replace("ttl 30", "ttl 5")
    kubeapi.request(api, "PUT", kubeapi.object_path("ConfigMap", NS, "coredns"), cm)
    dep = cluster.get("Deployment", NS, "coredns")
    dep["spec"]["replicas"] = 4
    kubeapi.request(api, "PUT", kubeapi.object_path("Deployment", NS, "coredns"), dep)
    cluster.run_both()
    assert "ttl 5" in cluster.get("ConfigMap", NS, "coredns")["data"]["Corefile"]
    assert cluster.get("Deployment", NS, "coredns")["spec"]["replicas"] == 4


def test_a_changed_kube_proxy_daemonset_is_brought_back(cluster: Cluster, first_run: list[str]) -> None:
    ds = cluster.get("DaemonSet", NS, "kube-proxy")
    ds["spec"]["template"]["spec"]["containers"][0]["command"].append("--v=4")
    kubeapi.request(cluster.api(), "PUT", kubeapi.object_path("DaemonSet", NS, "kube-proxy"), ds)
    cluster.run_both()
    command = cluster.get("DaemonSet", NS, "kube-proxy")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                       "--hostname-override=$(NODE_NAME)"]
