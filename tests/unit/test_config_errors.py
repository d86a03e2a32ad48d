"""Every bad configuration is one ConfigError naming the document, the field and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeboot.config.errors import ConfigError
from kubeboot.config.loader import load_init_config

INIT = """\
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  name: cp-1
localAPIEndpoint:
  advertiseAddress: 10.0.0.10
"""
CLUSTER = """\
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
"""


def init(extra: str) -> str:
    return INIT + extra


def cluster(extra: str) -> str:
    return f"{INIT}---\n{CLUSTER}{extra}"


def external_etcd(body: str) -> str:
    return cluster("etcd:\n  external:\n" + body)


CA = "    caFile: /etc/etcd/ca.crt\n"
CERT = "    certFile: /etc/etcd/client.crt\n"
KEY = "    keyFile: /etc/etcd/client.key\n"
HTTPS = "    endpoints: [https://10.0.0.50:2379]\n"

BAD = [
    ("bad YAML", "kind: InitConfiguration\nnodeRegistration: [\n", "", "", "invalid YAML"),
    ("a document that is not a mapping", "- just\n- a list\n", "document 1", "", "must be a mapping"),
    ("unknown kind", "apiVersion: v1\nkind: Pod\n", "document 1", "kind", "unknown kind 'Pod'"),
    ("unsupported kubeadm apiVersion", INIT.replace("v1beta4", "v1beta2"), "InitConfiguration", "apiVersion",
     "unsupported apiVersion 'kubeadm.k8s.io/v1beta2'"),
    ("duplicate document kind", f"{INIT}---\n{INIT}", "InitConfiguration", "kind", "appears twice"),
    ("unknown field", init("nodeRegistraton: {}\n"), "InitConfiguration", "nodeRegistraton", "unknown field"),
    ("nested unknown field", cluster("networking:\n  podCIDR: 10.244.0.0/16\n"), "ClusterConfiguration",
     "networking.podCIDR", "unknown field"),
    ("bad CIDR", cluster("networking:\n  serviceSubnet: 10.96.0.0/33\n"), "ClusterConfiguration",
     "networking.serviceSubnet", "couldn't parse subnet"),
    ("service subnet too small", cluster("networking:\n  serviceSubnet: 10.96.0.0/29\n"), "ClusterConfiguration",
     "networking.serviceSubnet", "8 address(es) is too small, the minimum is 10"),
    ("service subnet too large", cluster("networking:\n  serviceSubnet: 10.0.0.0/11\n"), "ClusterConfiguration",
     "networking.serviceSubnet", "the mask must be >= 12"),
    ("IPv6 service subnet too large", cluster("networking:\n  serviceSubnet: fd00::/107\n"),
     "ClusterConfiguration", "networking.serviceSubnet", "the mask must be >= 108"),
    ("two service subnets of one family", cluster("networking:\n  serviceSubnet: 10.96.0.0/16,10.97.0.0/16\n"),
     "ClusterConfiguration", "networking.serviceSubnet", "two CIDRs from each family for dual-stack"),
    ("pod subnet smaller than a node's range", cluster("networking:\n  podSubnet: 10.244.0.0/25\n"),
     "ClusterConfiguration", "networking.podSubnet", "smaller than the size of node subnet with mask 24"),
    ("pod subnet with too many node ranges",
     cluster("networking:\n  podSubnet: 10.0.0.0/8\ncontrollerManager:\n  extraArgs:\n"
             "  - name: node-cidr-mask-size-ipv4\n    value: '28'\n"),
     "ClusterConfiguration", "networking.podSubnet", "difference is greater than 16"),
    ("bad dnsDomain", cluster("networking:\n  dnsDomain: Cluster_Local\n"), "ClusterConfiguration",
     "networking.dnsDomain", "not a valid DNS subdomain"),
    ("unknown skipPhases name", init("skipPhases: [certs/all]\n"), "InitConfiguration", "skipPhases[0]",
     "unknown phase 'certs/all'; valid phases: preflight, certs,"),
    ("kubernetesVersion too old", cluster("kubernetesVersion: v1.30.0\n"), "ClusterConfiguration",
     "kubernetesVersion", "v1.30.0 is not supported: kubeboot supports v1.34.x to v1.36.x"),
    ("kubernetesVersion too new", cluster("kubernetesVersion: v1.37.0\n"), "ClusterConfiguration",
     "kubernetesVersion", "v1.37.0 is not supported"),
    ("kubernetesVersion not a version", cluster("kubernetesVersion: latest-ish\n"), "ClusterConfiguration",
     "kubernetesVersion", "is not a Kubernetes version"),
    ("unknown encryptionAlgorithm", cluster("encryptionAlgorithm: RSA-1024\n"), "ClusterConfiguration",
     "encryptionAlgorithm", "unknown encryptionAlgorithm 'RSA-1024'; one of: RSA-2048"),
    ("malformed token", init("bootstrapTokens:\n- token: abcdef.012345\n"), "InitConfiguration",
     "bootstrapTokens[0].token", "[a-z0-9]{6}.[a-z0-9]{16}"),
    ("bad token usage", init("bootstrapTokens:\n- usages: [signing, pizza]\n"), "InitConfiguration",
     "bootstrapTokens[0].usages", "invalid bootstrap token usage 'pizza'"),
    ("token groups without authentication", init("bootstrapTokens:\n- usages: [signing]\n"),
     "InitConfiguration", "bootstrapTokens[0].groups", "unless usages includes 'authentication'"),
    ("bad token group", init("bootstrapTokens:\n- groups: [admins]\n"), "InitConfiguration",
     "bootstrapTokens[0].groups[0]", "must match ^system:bootstrappers:"),
    ("token ttl and expires together", init("bootstrapTokens:\n- ttl: 1h\n  expires: '2030-01-01T00:00:00Z'\n"),
     "InitConfiguration", "bootstrapTokens[0]", "mutually exclusive"),
    ("bad duration", init("bootstrapTokens:\n- ttl: 1 day\n"), "InitConfiguration", "bootstrapTokens[0].ttl",
     "is not a duration"),
    ("bad timeout duration", init("timeouts:\n  kubeletHealthCheck: 4 minutes\n"), "InitConfiguration",
     "timeouts.kubeletHealthCheck", "is not a duration"),
    ("bad advertiseAddress", INIT.replace("10.0.0.10", "10.0.0.300"), "InitConfiguration",
     "localAPIEndpoint.advertiseAddress", "'10.0.0.300' is not a valid IP address"),
    ("bindPort out of range", init("").replace("advertiseAddress: 10.0.0.10", "advertiseAddress: 10.0.0.10\n"
                                               "  bindPort: 70000"), "InitConfiguration",
     "localAPIEndpoint.bindPort", "less than or equal to 65535"),
    ("bad node name", INIT.replace("name: cp-1", "name: CP_1"), "InitConfiguration", "nodeRegistration.name",
     'Invalid value: "CP_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric'),
    ("bad taint effect", init("").replace("name: cp-1", "name: cp-1\n  taints:\n  - key: a\n    effect: Never"),
     "InitConfiguration", "nodeRegistration.taints[0].effect", "'NoSchedule', 'PreferNoSchedule' or 'NoExecute'"),
    ("CRI socket not unix", INIT.replace("name: cp-1", "name: cp-1\n  criSocket: npipe:////./pipe/containerd"),
     "InitConfiguration", "nodeRegistration.criSocket", 'only URL scheme "unix" is supported, got "npipe"'),
    ("'all' with individual preflight errors",
     INIT.replace("name: cp-1", "name: cp-1\n  ignorePreflightErrors: [all, Swap]"), "InitConfiguration",
     "nodeRegistration.ignorePreflightErrors", "don't specify individual checks if 'all' is used"),
    ("short certificateKey", init("certificateKey: abcd\n"), "InitConfiguration", "certificateKey",
     "64 hex characters"),
    ("bad controlPlaneEndpoint port", cluster("controlPlaneEndpoint: lb.example.com:99999\n"),
     "ClusterConfiguration", "controlPlaneEndpoint", "port '99999' must be a number between 1 and 65535"),
    ("bad controlPlaneEndpoint host", cluster("controlPlaneEndpoint: lb_1.example.com:6443\n"),
     "ClusterConfiguration", "controlPlaneEndpoint", "host 'lb_1.example.com' must be an IP address or a DNS"),
    ("bad certSAN", cluster("apiServer:\n  certSANs: [ok.example.com, 'not a san']\n"), "ClusterConfiguration",
     "apiServer.certSANs[1]", "not a valid IP address, DNS name or wildcard DNS name"),
    ("relative certificatesDir", cluster("certificatesDir: pki\n"), "ClusterConfiguration", "certificatesDir",
     "'pki' is not an absolute path"),
    ("bad imageRepository", cluster("imageRepository: My Registry\n"), "ClusterConfiguration", "imageRepository",
     "not a valid image repository"),
    ("unknown feature gate", cluster("featureGates:\n  PublicKeysECDSA: true\n"), "ClusterConfiguration",
     "featureGates.PublicKeysECDSA", "PublicKeysECDSA is not a valid feature name for kubeadm v1.36"),
    ("feature gate removed in v1.36", cluster("featureGates:\n  ControlPlaneKubeletLocalMode: true\n"),
     "ClusterConfiguration", "featureGates.ControlPlaneKubeletLocalMode", "known: NodeLocalCRISocket"),
    ("external etcd with cert but no key", external_etcd(HTTPS + CA + CERT), "ClusterConfiguration",
     "etcd.external", "either both or none of etcd.external.certFile and etcd.external.keyFile"),
    ("external etcd with cert and key but no CA", external_etcd(HTTPS + CERT + KEY), "ClusterConfiguration",
     "etcd.external", "requires etcd.external.caFile"),
    ("external etcd without endpoints", external_etcd(CA + CERT + KEY), "ClusterConfiguration",
     "etcd.external.endpoints", "at least one etcd endpoint is required"),
    ("external etcd over http with TLS files", external_etcd("    endpoints: [http://10.0.0.50:2379]\n"
                                                              + CA + CERT + KEY),
     "ClusterConfiguration", "etcd.external.endpoints[0]", "must be using the HTTPS scheme"),
    ("external etcd endpoint without scheme", external_etcd("    endpoints: [10.0.0.50:2379]\n"),
     "ClusterConfiguration", "etcd.external.endpoints[0]", "without scheme is not allowed"),
    ("local and external etcd together",
     cluster("etcd:\n  local: {}\n  external:\n" + HTTPS + CA + CERT + KEY), "ClusterConfiguration", "etcd",
     "mutually exclusive"),
    ("kubelet config of the wrong apiVersion",
     f"{INIT}---\napiVersion: kubelet.config.k8s.io/v1\nkind: KubeletConfiguration\n", "KubeletConfiguration",
     "apiVersion", "you may have to do manual conversion to 'kubelet.config.k8s.io/v1beta1'"),
    ("kube-proxy config of the wrong apiVersion",
     f"{INIT}---\napiVersion: kubeproxy.config.k8s.io/v1beta1\nkind: KubeProxyConfiguration\n",
     "KubeProxyConfiguration", "apiVersion",
     "you may have to do manual conversion to 'kubeproxy.config.k8s.io/v1alpha1'"),
    ("certificatesDir climbing out of the node root", cluster("certificatesDir: /etc/kubernetes/../../../tmp/pki\n"),
     "ClusterConfiguration", "certificatesDir", "must not contain '..'"),
    ("etcd dataDir climbing out of the node root", cluster("etcd:\n  local:\n    dataDir: /var/lib/../../../etcd\n"),
     "ClusterConfiguration", "etcd.local.dataDir", "must not contain '..'"),
    ("patches directory with '..'", init("patches:\n  directory: /etc/kubeadm/../patches\n"), "InitConfiguration",
     "patches.directory", "must not contain '..'"),
    ("negative bindPort", init("").replace("advertiseAddress: 10.0.0.10", "advertiseAddress: 10.0.0.10\n"
                                           "  bindPort: -1"), "InitConfiguration",
     "localAPIEndpoint.bindPort", "greater than or equal to 0"),
    ("a kubelet field of the wrong type",
     f"{INIT}---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: lots\n",
     "KubeletConfiguration", "maxPods",
     "json: cannot unmarshal string into Go struct field KubeletConfiguration.maxPods of type int32"),
    ("a nested kubelet field of the wrong type",
     f"{INIT}---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
     "authentication:\n  webhook:\n    enabled: 'yes'\n",
     "KubeletConfiguration", "authentication.webhook.enabled", "of type bool"),
    ("a kubelet duration that does not parse",
     f"{INIT}---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nsyncFrequency: often\n",
     "KubeletConfiguration", "syncFrequency", 'time: invalid duration "often"'),
    ("a kube-proxy field of the wrong type",
     f"{INIT}---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
     "conntrack:\n  maxPerCore: [1]\n",
     "KubeProxyConfiguration", "conntrack.maxPerCore", "cannot unmarshal array into Go struct field"),
    ("only a KubeletConfiguration", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n", "",
     "", "no InitConfiguration or ClusterConfiguration kind was found in the YAML file"),
    ("an empty file", "", "", "", "no InitConfiguration or ClusterConfiguration kind was found in the YAML file"),
]


def load(tmp_path: Path, text: str):
    path = tmp_path / "kubeadm.yaml"
    path.write_text(text)
    return load_init_config(path)


@pytest.mark.parametrize(("text", "document", "field", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_config_error_naming_document_and_field(tmp_path: Path, text, document, field,
                                                                 fragment) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    e = err.value
    assert (e.document, e.field) == (document, field), str(e)
    assert fragment in e.message, str(e)
    assert e.file == str(tmp_path / "kubeadm.yaml")
    assert "\n" not in str(e)
    assert str(e).startswith(f"{e.file}: ")


GOOD = [
    ("dual-stack service and pod subnets",
     cluster("networking:\n  serviceSubnet: 10.96.0.0/16,fd00:10:96::/112\n"
             "  podSubnet: 10.244.0.0/16,fd00:10:244::/56\n")),
    ("IPv6 service subnet at the /108 limit", cluster("networking:\n  serviceSubnet: fd00::/108\n")),
    ("a pod subnet smaller than /24 when the controller manager allocates no node CIDRs",
     cluster("networking:\n  podSubnet: 10.244.0.0/26\ncontrollerManager:\n  extraArgs:\n"
             "  - name: allocate-node-cidrs\n    value: 'false'\n")),
    ("wildcard and IP certSANs", cluster("apiServer:\n  certSANs: ['*.example.com', 10.0.0.1, 'fd00::1']\n")),
    ("an IPv6 controlPlaneEndpoint", cluster("controlPlaneEndpoint: '[fd00::1]:6443'\n")),
    ("a controlPlaneEndpoint without port", cluster("controlPlaneEndpoint: lb.example.com\n")),
    ("external etcd with CA only", external_etcd(HTTPS + CA)),
    ("external etcd over plain http without TLS files", external_etcd("    endpoints: [http://10.0.0.50:2379]\n")),
    ("a gate still known in v1.35",
     cluster("kubernetesVersion: v1.35.0\nfeatureGates:\n  ControlPlaneKubeletLocalMode: true\n")),
    ("skipping a parent phase and a leaf", init("skipPhases: [addon, certs/etcd-ca, show-join-command]\n")),
    ("a bare CRI socket path", INIT.replace("name: cp-1", "name: cp-1\n  criSocket: /run/containerd/containerd.sock")),
    ("an image repository with a port and path", cluster("imageRepository: my.registry:5000/k8s\n")),
    ("bindPort 0 (kubeadm's default)", init("").replace("advertiseAddress: 10.0.0.10", "advertiseAddress: 10.0.0.10\n"
                                                          "  bindPort: 0")),
    ("a KubeProxyConfiguration with every kind of Go type",
     f"{INIT}---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\n"
     "clientConnection: {qps: 5.5, burst: 10}\nipvs: {strictARP: true, syncPeriod: 30s, excludeCIDRs: [10.0.0.0/8]}\n"
     "conntrack: {maxPerCore: null}\nlogging: {flushFrequency: 5000000000, verbosity: 2}\n"),
]


@pytest.mark.parametrize("text", [g[1] for g in GOOD], ids=[g[0] for g in GOOD])
def test_valid_input_that_looks_unusual_is_accepted(tmp_path: Path, text: str) -> None:
    assert load(tmp_path, text).node_name == "cp-1"


def test_there_are_at_least_twelve_distinct_bad_inputs() -> None:
    assert len({b[0] for b in BAD}) == len(BAD) >= 12
