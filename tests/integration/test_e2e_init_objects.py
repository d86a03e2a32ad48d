"""`kubeboot submit init --upload-certs` on a sandbox node, end to end, read back as a kubeadm user would:
every API object of kubeadm-spec 2.15 through the official ``kubernetes`` client over TLS with the
generated admin.conf, the kubeadm-certs Secret opened with the printed certificate key by a decryption
written here from the spec (2.9), and the cluster-info JWS and CA hash checked the way `kubeadm join`
checks them (3.1), written here from the spec too.

One sandbox cluster, initialised once, serves every test of this module: they only read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = [
    pytest.mark.integration,
    # discovery's first GET of cluster-info is unverified TLS by design (kubeadm-spec 3.1 step 1)
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

NODE = "sb1-cp1"
RBAC = "rbac.authorization.k8s.io"
TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"
KS, KP = "kube-system", "kube-public"
DEADLINE = 120.0  # bound of a wait on a controller of the sandbox, never an assertion


@dataclass
class Initialised:
    box: Any  # SandboxCluster
    output: str
    join: Any  # JoinCommand
    run: dict[str, Any]
    api: client.ApiClient
    address: str  # the node's own loopback address, where its API server listens

    @property
    def root(self) -> Path:
        return Path(self.box.node_root(NODE))

    def times(self) -> tuple[datetime, datetime]:
        """When the run started and finished: every object of the run was made in between."""
        started, finished = (datetime.fromisoformat(self.run["run"][k].replace("Z", "+00:00"))
                             for k in ("started", "finished"))
        return started.replace(microsecond=0), finished


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, e2e: Any) -> Iterator[Initialised]:
    box = e2e.SandboxCluster(tmp_path_factory.mktemp("e2e-init"))
    try:
        box.up("--nodes", "1")
        result, run_id = box.init("--upload-certs")
        yield Initialised(box, result.stdout, e2e.JoinCommand.parse(result.stdout), box.status(run_id), box.api(),
                          box.address(NODE))
    finally:
        e2e.stop_sandbox(box)


def _core(c: Initialised) -> client.CoreV1Api:
    return client.CoreV1Api(c.api)


def _rbac(c: Initialised) -> client.RbacAuthorizationV1Api:
    return client.RbacAuthorizationV1Api(c.api)


def _apps(c: Initialised) -> client.AppsV1Api:
    return client.AppsV1Api(c.api)


def _secret_data(secret: client.V1Secret) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def _token_secrets(c: Initialised) -> dict[str, dict[str, bytes]]:
    return {s.metadata.name: _secret_data(s) for s in _core(c).list_namespaced_secret(KS).items
            if s.type == "bootstrap.kubernetes.io/token"}


def _expiration(data: dict[str, bytes]) -> datetime:
    return datetime.strptime(data["expiration"].decode(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# --- the inventory ----------------------------------------------------------------------------------


def test_the_api_holds_exactly_the_objects_of_the_spec_inventory(cluster: Initialised, e2e: Any) -> None:
    inventory = e2e.kubeadm_inventory(cluster.box.objects(cluster.api))
    assert dict(inventory) == dict(e2e.SPEC_INVENTORY)


# --- RBAC ---------------------------------------------------------------------------------------------

def _group(name: str) -> tuple[str, str, str | None, str | None]:
    return ("Group", name, RBAC, None)


def _user(name: str) -> tuple[str, str, str | None, str | None]:
    return ("User", name, RBAC, None)


def _sa(name: str) -> tuple[str, str, str | None, str | None]:
    return ("ServiceAccount", name, None, KS)


# (kind, namespace, name) -> roleRef (kind, name), subjects (kind, name, apiGroup, namespace) in kubeadm's order
BINDINGS = {
    ("ClusterRoleBinding", "", "kubeadm:cluster-admins"): (("ClusterRole", "cluster-admin"),
                                                          [_group("kubeadm:cluster-admins")]),
    ("RoleBinding", KS, "kubeadm:nodes-kubeadm-config"): (("Role", "kubeadm:nodes-kubeadm-config"),
                                                          [_group(TOKEN_GROUP), _group("system:nodes")]),
    ("RoleBinding", KS, "kubeadm:kubelet-config"): (("Role", "kubeadm:kubelet-config"),
                                                    [_group("system:nodes"), _group(TOKEN_GROUP)]),
    ("RoleBinding", KS, "kubeadm:kubeadm-certs"): (("Role", "kubeadm:kubeadm-certs"), [_group(TOKEN_GROUP)]),
    ("RoleBinding", KS, "kube-proxy"): (("Role", "kube-proxy"), [_group(TOKEN_GROUP)]),
    ("RoleBinding", KP, "kubeadm:bootstrap-signer-clusterinfo"): (
        ("Role", "kubeadm:bootstrap-signer-clusterinfo"), [_user("system:anonymous")]),
    ("ClusterRoleBinding", "", "kubeadm:get-nodes"): (("ClusterRole", "kubeadm:get-nodes"), [_group(TOKEN_GROUP)]),
    ("ClusterRoleBinding", "", "kubeadm:kubelet-bootstrap"): (("ClusterRole", "system:node-bootstrapper"),
                                                             [_group(TOKEN_GROUP)]),
    ("ClusterRoleBinding", "", "kubeadm:node-autoapprove-bootstrap"): (
        ("ClusterRole", "system:certificates.k8s.io:certificatesigningrequests:nodeclient"), [_group(TOKEN_GROUP)]),
    ("ClusterRoleBinding", "", "kubeadm:node-autoapprove-certificate-rotation"): (
        ("ClusterRole", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"),
        [_group("system:nodes")]),
    ("ClusterRoleBinding", "", "kubeadm:apiserver-kubelet-client"): (
        ("ClusterRole", "system:kubelet-api-admin"), [_user("kube-apiserver-kubelet-client")]),
    ("ClusterRoleBinding", "", "kubeadm:node-proxier"): (("ClusterRole", "system:node-proxier"),
                                                        [_sa("kube-proxy")]),
    ("ClusterRoleBinding", "", "system:coredns"): (("ClusterRole", "system:coredns"), [_sa("coredns")]),
}


@pytest.mark.parametrize("key", list(BINDINGS), ids=[f"{k[0]}-{k[2]}" for k in BINDINGS])
def test_each_binding_grants_the_spec_role_to_the_spec_subjects(cluster: Initialised, key: tuple[str, str, str]
                                                               ) -> None:
    kind, ns, name = key
    rbac = _rbac(cluster)
    binding = rbac.read_cluster_role_binding(name) if kind == "ClusterRoleBinding" else \
        rbac.read_namespaced_role_binding(name, ns)
    (ref_kind, ref_name), subjects = BINDINGS[key]
    assert (binding.role_ref.api_group, binding.role_ref.kind, binding.role_ref.name) == (RBAC, ref_kind, ref_name)
    assert [(s.kind, s.name, s.api_group, s.namespace) for s in binding.subjects] == subjects


def _rule(verbs: list[str], resources: list[str], names: list[str] | None = None, group: str = ""
          ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    return (tuple(verbs), (group,), tuple(resources), tuple(names or ()))


# (kind, namespace, name) -> rules (verbs, apiGroups, resources, resourceNames)
ROLES = {
    ("Role", KS, "kubeadm:nodes-kubeadm-config"): [_rule(["get"], ["configmaps"], ["kubeadm-config"])],
    ("Role", KS, "kubeadm:kubelet-config"): [_rule(["get"], ["configmaps"], ["kubelet-config"])],
    ("Role", KS, "kubeadm:kubeadm-certs"): [_rule(["get"], ["secrets"], ["kubeadm-certs"])],
    ("Role", KS, "kube-proxy"): [_rule(["get"], ["configmaps"], ["kube-proxy"])],
    ("Role", KP, "kubeadm:bootstrap-signer-clusterinfo"): [_rule(["get"], ["configmaps"], ["cluster-info"])],
    ("ClusterRole", "", "kubeadm:get-nodes"): [_rule(["get"], ["nodes"])],
    ("ClusterRole", "", "system:coredns"): [
        _rule(["list", "watch"], ["endpoints", "services", "pods", "namespaces"]),
        _rule(["list", "watch"], ["endpointslices"], group="discovery.k8s.io"),
    ],
}


@pytest.mark.parametrize("key", list(ROLES), ids=[f"{k[0]}-{k[2]}" for k in ROLES])
def test_each_role_allows_exactly_the_spec_rules(cluster: Initialised, key: tuple[str, str, str]) -> None:
    kind, ns, name = key
    rbac = _rbac(cluster)
    role = rbac.read_cluster_role(name) if kind == "ClusterRole" else rbac.read_namespaced_role(name, ns)
    rules = [(tuple(r.verbs), tuple(r.api_groups or ()), tuple(r.resources or ()), tuple(r.resource_names or ()))
             for r in role.rules]
    assert rules == ROLES[key]


# --- tokens and kubeadm-certs ---------------------------------------------------------------------------


def test_the_default_token_secret_holds_the_printed_token_with_kubeadms_fields(cluster: Initialised) -> None:
    token_id, token_secret = cluster.join.token.split(".")
    secret = _core(cluster).read_namespaced_secret(f"bootstrap-token-{token_id}", KS)
    data = _secret_data(secret)
    assert secret.type == "bootstrap.kubernetes.io/token"
    assert {k: v for k, v in data.items() if k != "expiration"} == {
        "token-id": token_id.encode(), "token-secret": token_secret.encode(),
        "usage-bootstrap-authentication": b"true", "usage-bootstrap-signing": b"true",
        "auth-extra-groups": TOKEN_GROUP.encode(),
        "description": b"The default bootstrap token generated by 'kubeadm init'.",
    }
    started, finished = cluster.times()
    assert started + timedelta(hours=24) <= _expiration(data) <= finished + timedelta(hours=24)


def test_kubeadm_certs_is_owned_by_a_two_hour_token_without_usages(cluster: Initialised) -> None:
    core = _core(cluster)
    certs = core.read_namespaced_secret("kubeadm-certs", KS)
    (owner,) = certs.metadata.owner_references
    token = core.read_namespaced_secret(owner.name, KS)
    assert (owner.api_version, owner.kind, owner.uid, owner.controller) == ("v1", "Secret", token.metadata.uid, True)
    assert owner.name.startswith("bootstrap-token-")
    data = _secret_data(token)
    assert token.type == "bootstrap.kubernetes.io/token"
    assert set(data) == {"token-id", "token-secret", "description", "expiration"}  # no usage, no extra group
    assert data["description"] == b"Proxy for managing TTL for the kubeadm-certs secret"
    assert owner.name == f"bootstrap-token-{data['token-id'].decode()}"
    assert data["token-id"].decode() != cluster.join.token.split(".")[0]
    started, finished = cluster.times()
    assert started + timedelta(hours=2) <= _expiration(data) <= finished + timedelta(hours=2)
    assert certs.type == "Opaque"


def test_the_cluster_has_exactly_the_default_token_and_the_upload_certs_token(cluster: Initialised) -> None:
    tokens = _token_secrets(cluster)
    descriptions = sorted(d["description"].decode() for d in tokens.values())
    assert descriptions == ["Proxy for managing TTL for the kubeadm-certs secret",
                            "The default bootstrap token generated by 'kubeadm init'."]


# kubeadm-certs data key -> the node file it seals (kubeadm copycerts: "/" in the name becomes "-")
CERT_FILES = {
    "ca.crt": "ca.crt", "ca.key": "ca.key", "front-proxy-ca.crt": "front-proxy-ca.crt",
    "front-proxy-ca.key": "front-proxy-ca.key", "sa.pub": "sa.pub", "sa.key": "sa.key",
    "etcd-ca.crt": "etcd/ca.crt", "etcd-ca.key": "etcd/ca.key",
}


def _open_sealed(key_hex: str, sealed: bytes) -> bytes:
    """kubeadm-spec 2.9 read the other way: value = nonce (12 bytes) || AES-256-GCM(plaintext) || tag, no AAD."""
    key = bytes.fromhex(key_hex)
    assert len(key) == 32
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], None)


def test_kubeadm_certs_opens_with_the_printed_certificate_key_to_the_nodes_ca_files(cluster: Initialised) -> None:
    assert len(cluster.join.certificate_key) == 64
    data = _secret_data(_core(cluster).read_namespaced_secret("kubeadm-certs", KS))
    assert set(data) == set(CERT_FILES)
    pki = cluster.root / "etc/kubernetes/pki"
    for key, path in CERT_FILES.items():
        assert _open_sealed(cluster.join.certificate_key, data[key]) == (pki / path).read_bytes(), key
    nonces = {v[:12] for v in data.values()}
    assert len(nonces) == len(data)  # a fresh nonce per value, as gcm.Seal with a random nonce


@pytest.mark.parametrize("wrong", ["random", "one-bit-flipped"])
def test_kubeadm_certs_does_not_open_with_a_wrong_key(cluster: Initialised, wrong: str) -> None:
    key = cluster.join.certificate_key
    wrong_key = secrets.token_hex(32) if wrong == "random" else f"{int(key[0], 16) ^ 1:x}{key[1:]}"
    assert wrong_key != key
    sealed = _secret_data(_core(cluster).read_namespaced_secret("kubeadm-certs", KS))["ca.crt"]
    with pytest.raises(InvalidTag):  # Go: "cipher: message authentication failed"
        _open_sealed(wrong_key, sealed)


# --- join discovery (spec 3.1) ------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _detached_jws(kubeconfig: str, token_id: str, token_secret: str) -> str:
    """What kubeadm computes and compares with the stored value (bootstrap/token/jws): go-jose's compact
    serialisation of an HS256 JWS keyed with the token secret, its payload left out."""
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    signing_input = f"{header}.{_b64url(kubeconfig.encode())}".encode()
    return f"{header}..{_b64url(hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest())}"


def _anonymous_cluster_info(cluster: Initialised, ca_file: str | None) -> client.V1ConfigMap:
    """GET kube-public/cluster-info with no credentials at all; TLS unchecked unless ``ca_file`` is given."""
    conf = client.Configuration()
    conf.host = f"https://{cluster.address}:6443"
    conf.verify_ssl = ca_file is not None
    conf.ssl_ca_cert = ca_file
    with client.ApiClient(conf) as api:
        return client.CoreV1Api(api).read_namespaced_config_map("cluster-info", KP)


def _signed_cluster_info(cluster: Initialised, token_id: str) -> client.V1ConfigMap:
    """cluster-info once the bootstrap signer has signed it for ``token_id``. The signer is a controller
    (it runs once the controller-manager is leader): ``kubeadm init`` does not wait for it, and
    ``kubeadm join``'s discovery retries until the signature is there; so does this (bounded wait)."""
    end = time.monotonic() + DEADLINE
    while True:
        found = _anonymous_cluster_info(cluster, None)
        if f"jws-kubeconfig-{token_id}" in (found.data or {}) or time.monotonic() > end:
            return found
        time.sleep(0.2)


def _ca_hash(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def test_discovery_with_the_printed_token_and_ca_hash_succeeds_as_kubeadm_join_checks_it(
    cluster: Initialised, tmp_path: Path
) -> None:
    token_id, token_secret = cluster.join.token.split(".")
    insecure = _signed_cluster_info(cluster, token_id)  # 1. anonymous, TLS not yet trusted
    kubeconfig = insecure.data["kubeconfig"]
    signature = insecure.data[f"jws-kubeconfig-{token_id}"]  # 2. the token's JWS ...
    header = json.loads(base64.urlsafe_b64decode(signature.split(".")[0] + "=="))
    assert header == {"alg": "HS256", "kid": token_id}
    assert signature == _detached_jws(kubeconfig, token_id, token_secret)  # ... verifies with its secret

    config = yaml.safe_load(kubeconfig)  # 3. CA pinning
    (entry,) = config["clusters"]
    assert entry["name"] == ""
    assert entry["cluster"]["server"] == f"https://{cluster.address}:6443"
    assert not config.get("users") and not config.get("contexts")
    ca_pem = base64.b64decode(entry["cluster"]["certificate-authority-data"])
    assert _ca_hash(x509.load_pem_x509_certificate(ca_pem)) == cluster.join.ca_hash
    assert ca_pem == (cluster.root / "etc/kubernetes/pki/ca.crt").read_bytes()

    ca_file = tmp_path / "ca.crt"  # 4. the same object again over TLS trusting that CA
    ca_file.write_bytes(ca_pem)
    assert _anonymous_cluster_info(cluster, str(ca_file)).data == insecure.data


def test_the_cluster_info_jws_fails_for_a_wrong_secret_and_is_missing_for_the_upload_certs_token(
    cluster: Initialised
) -> None:
    token_id, token_secret = cluster.join.token.split(".")
    data = _signed_cluster_info(cluster, token_id).data
    wrong_secret = token_secret[::-1] if token_secret[::-1] != token_secret else "0" * 16
    assert data[f"jws-kubeconfig-{token_id}"] != _detached_jws(data["kubeconfig"], token_id, wrong_secret)
    assert data[f"jws-kubeconfig-{token_id}"] != _detached_jws(data["kubeconfig"], token_id, cluster.join.token)
    signed = {k.removeprefix("jws-kubeconfig-") for k in data if k.startswith("jws-kubeconfig-")}
    assert signed == {token_id}  # the 2-hour token has no signing usage


def test_anonymous_reads_cluster_info_and_nothing_else(cluster: Initialised) -> None:
    conf = client.Configuration()
    conf.host = f"https://{cluster.address}:6443"
    conf.verify_ssl = False
    with client.ApiClient(conf) as api, pytest.raises(ApiException) as denied:
        client.CoreV1Api(api).read_namespaced_config_map("kubeadm-config", KS)
    assert denied.value.status == 403


# --- config maps ------------------------------------------------------------------------------------------


def _checksum(cm: client.V1ConfigMap) -> str:
    """kubeadm componentconfigs.ChecksumForConfigMap: SHA-256 over the values in key order."""
    digest = hashlib.sha256()
    for key in sorted(cm.data or {}):
        digest.update(cm.data[key].encode())
    return f"sha256:{digest.hexdigest()}"


def test_kubeadm_config_holds_the_cluster_configuration_without_node_data(cluster: Initialised) -> None:
    cm = _core(cluster).read_namespaced_config_map("kubeadm-config", KS)
    assert set(cm.data) == {"ClusterConfiguration"}
    doc = yaml.safe_load(cm.data["ClusterConfiguration"])
    assert (doc["apiVersion"], doc["kind"]) == ("kubeadm.k8s.io/v1beta4", "ClusterConfiguration")
    assert (doc["clusterName"], doc["controlPlaneEndpoint"]) == ("sb1", f"{cluster.address}:6443")
    assert doc["networking"]["podSubnet"] == "10.244.0.0/16"
    assert not {"bootstrapTokens", "nodeRegistration", "localAPIEndpoint", "certificateKey"} & set(doc)


def test_kubelet_config_is_signed_with_kubeadms_component_config_hash(cluster: Initialised) -> None:
    cm = _core(cluster).read_namespaced_config_map("kubelet-config", KS)
    assert set(cm.data) == {"kubelet"}
    assert yaml.safe_load(cm.data["kubelet"])["kind"] == "KubeletConfiguration"
    assert cm.metadata.annotations["kubeadm.kubernetes.io/component-config.hash"] == _checksum(cm)


def test_the_kube_proxy_config_map_points_at_the_cluster_and_the_service_account(cluster: Initialised) -> None:
    cm = _core(cluster).read_namespaced_config_map("kube-proxy", KS)
    assert set(cm.data) == {"config.conf", "kubeconfig.conf"}
    assert cm.metadata.labels == {"app": "kube-proxy"}
    assert cm.metadata.annotations["kubeadm.kubernetes.io/component-config.hash"] == _checksum(cm)
    conf = yaml.safe_load(cm.data["config.conf"])
    assert conf["kind"] == "KubeProxyConfiguration"
    assert conf["clusterCIDR"] == "10.244.0.0/16"
    assert conf["clientConnection"]["kubeconfig"] == "/var/lib/kube-proxy/kubeconfig.conf"
    kubeconfig = yaml.safe_load(cm.data["kubeconfig.conf"])
    (entry,) = kubeconfig["clusters"]
    assert entry["cluster"] == {"certificate-authority": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                                "server": f"https://{cluster.address}:6443"}
    (user,) = kubeconfig["users"]
    assert user["user"] == {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}


def test_the_corefile_serves_the_cluster_domain(cluster: Initialised) -> None:
    corefile = _core(cluster).read_namespaced_config_map("coredns", KS).data["Corefile"]
    words = " ".join(corefile.split())
    for part in (".:53 {", "health { lameduck 5s }", "kubernetes cluster.local in-addr.arpa ip6.arpa {",
                 "pods insecure", "fallthrough in-addr.arpa ip6.arpa", "prometheus :9153",
                 "forward . /etc/resolv.conf {", "max_concurrent 1000", "loop", "reload", "loadbalance"):
        assert part in words, part


# --- addons ---------------------------------------------------------------------------------------------


def test_coredns_runs_as_kubeadms_deployment_behind_the_kube_dns_service(cluster: Initialised) -> None:
    dep = _apps(cluster).read_namespaced_deployment("coredns", KS)
    assert dep.metadata.labels == {"k8s-app": "kube-dns"}
    assert dep.spec.replicas == 2
    assert dep.spec.strategy.rolling_update.max_unavailable == 1
    pod = dep.spec.template.spec
    assert (pod.priority_class_name, pod.service_account_name, pod.dns_policy) == (
        "system-cluster-critical", "coredns", "Default")
    assert pod.node_selector == {"kubernetes.io/os": "linux"}
    (container,) = pod.containers
    assert container.image.startswith("registry.k8s.io/coredns/coredns:v")
    assert container.args == ["-conf", "/etc/coredns/Corefile"]
    ports = [(p.name, p.container_port, p.protocol) for p in container.ports]
    assert ports[:3] == [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
    named = {p.name: p.container_port for p in container.ports}
    assert (container.liveness_probe.http_get.path, named[container.liveness_probe.http_get.port]) == ("/health", 8080)
    assert (container.readiness_probe.http_get.path, named[container.readiness_probe.http_get.port]) == ("/ready", 8181)
    svc = _core(cluster).read_namespaced_service("kube-dns", KS)
    assert svc.spec.cluster_ip == "10.96.0.10"
    assert svc.spec.selector == {"k8s-app": "kube-dns"}
    assert [(p.name, p.port, p.protocol) for p in svc.spec.ports] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
    assert svc.metadata.labels["kubernetes.io/cluster-service"] == "true"
    assert svc.metadata.annotations == {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}


def test_kube_proxy_runs_as_kubeadms_daemonset(cluster: Initialised) -> None:
    ds = _apps(cluster).read_namespaced_daemon_set("kube-proxy", KS)
    assert ds.metadata.labels == {"k8s-app": "kube-proxy"}
    assert ds.spec.update_strategy.type == "RollingUpdate"
    pod = ds.spec.template.spec
    assert (pod.priority_class_name, pod.service_account_name, pod.host_network) == (
        "system-node-critical", "kube-proxy", True)
    assert pod.node_selector == {"kubernetes.io/os": "linux"}
    assert [t.operator for t in pod.tolerations] == ["Exists"]
    (container,) = pod.containers
    assert container.command == ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                                 "--hostname-override=$(NODE_NAME)"]
    assert container.security_context.privileged is True
    (env,) = container.env
    assert (env.name, env.value_from.field_ref.field_path) == ("NODE_NAME", "spec.nodeName")
    volumes = {v.name: v for v in pod.volumes}
    assert volumes["kube-proxy"].config_map.name == "kube-proxy"
    assert (volumes["xtables-lock"].host_path.path, volumes["xtables-lock"].host_path.type) == (
        "/run/xtables.lock", "FileOrCreate")
    assert volumes["lib-modules"].host_path.path == "/lib/modules"


# --- the node -----------------------------------------------------------------------------------------------


def test_the_node_is_ready_and_marked_as_a_control_plane(cluster: Initialised) -> None:
    node = _core(cluster).read_node(NODE)
    assert node.metadata.labels["node-role.kubernetes.io/control-plane"] == ""
    assert node.metadata.labels["node.kubernetes.io/exclude-from-external-load-balancers"] == ""
    assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [
        ("node-role.kubernetes.io/control-plane", None, "NoSchedule")]
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True"


def test_every_static_pod_has_its_mirror_pod_owned_by_the_node(cluster: Initialised) -> None:
    core = _core(cluster)
    node = core.read_node(NODE)
    pods = {p.metadata.name: p for p in core.list_namespaced_pod(KS).items}
    components = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
    assert set(pods) == {f"{c}-{NODE}" for c in components}
    for pod in pods.values():
        annotations = pod.metadata.annotations
        assert annotations["kubernetes.io/config.source"] == "file"
        assert annotations["kubernetes.io/config.mirror"] == annotations["kubernetes.io/config.hash"]
        (owner,) = pod.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Node", NODE, node.metadata.uid, True)
        assert pod.spec.node_name == NODE
