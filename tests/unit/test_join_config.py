"""JoinConfiguration: defaults, v1beta3 conversion and kubeadm's validation rules, one line per problem."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubeboot.config.errors import ConfigError
from kubeboot.config.join import build_join_config

V4, V3 = "kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta3"
TOKEN = "abcdef.0123456789abcdef"
HASH = "sha256:" + "ab" * 32


def doc(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": V4, "kind": "JoinConfiguration", "nodeRegistration": {"name": "w1"},
        "discovery": {"bootstrapToken": {"token": TOKEN, "apiServerEndpoint": "10.0.0.1:6443",
                                         "caCertHashes": [HASH]}},
    }
    base.update(over)
    return base


def with_path(path: str, value: Any) -> dict[str, Any]:
    d = doc()
    node = d
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return d


def test_defaults_are_kubeadms() -> None:
    cfg = build_join_config([doc()])
    assert cfg.join.caCertPath == "/etc/kubernetes/pki/ca.crt"
    assert cfg.tls_bootstrap_token == TOKEN  # defaults to the discovery token
    assert cfg.join.timeouts.discovery == "5m0s"
    assert not cfg.is_control_plane
    assert cfg.join.nodeRegistration.taints is None


def test_control_plane_endpoint_defaults_to_port_6443() -> None:
    cfg = build_join_config([doc(controlPlane={"localAPIEndpoint": {"advertiseAddress": "10.0.0.2"},
                                               "certificateKey": "0f" * 32})])
    assert cfg.is_control_plane
    assert cfg.local_endpoint().bindPort == 6443
    assert cfg.certificate_key == "0f" * 32


def test_init_config_carries_the_clusters_configuration_and_this_nodes_registration() -> None:
    from kubeboot.config.models import ClusterConfiguration

    cfg = build_join_config([doc(controlPlane={"localAPIEndpoint": {"advertiseAddress": "10.0.0.2"}})])
    cluster = ClusterConfiguration(clusterName="prod", controlPlaneEndpoint="lb.example:6443")
    init = cfg.init_config(cluster, {"kind": "KubeletConfiguration"})
    assert init.node_name == "w1"
    assert init.advertise_address == "10.0.0.2"
    assert init.cluster.clusterName == "prod"
    assert init.kubelet == {"kind": "KubeletConfiguration"}
    assert init.init.bootstrapTokens == []


def test_v1beta3_is_converted() -> None:
    old = doc(apiVersion=V3)
    old["nodeRegistration"]["kubeletExtraArgs"] = {"node-labels": "a=b", "v": "2"}
    old["discovery"]["timeout"] = "1m0s"
    cfg = build_join_config([old])
    assert [(a.name, a.value) for a in cfg.join.nodeRegistration.kubeletExtraArgs] == [("node-labels", "a=b"),
                                                                                     ("v", "2")]
    assert cfg.join.timeouts.discovery == "1m0s"
    assert cfg.join.apiVersion == V4


def test_other_kubeadm_kinds_in_the_file_are_ignored() -> None:
    cfg = build_join_config([{"apiVersion": V4, "kind": "InitConfiguration"}, doc()])
    assert cfg.node_name == "w1"


BAD: list[tuple[str, list[dict[str, Any]], str, str]] = [
    ("no JoinConfiguration", [{"apiVersion": V4, "kind": "InitConfiguration"}], "",
     "no JoinConfiguration kind was found"),
    ("unknown kind", [doc(), {"apiVersion": "v1", "kind": "Pod"}], "kind", "unknown kind 'Pod'"),
    ("old apiVersion", [doc(apiVersion="kubeadm.k8s.io/v1beta2")], "apiVersion", "unsupported apiVersion"),
    ("v1beta4 field in v1beta3", [doc(apiVersion=V3, dryRun=True)], "dryRun", "new in kubeadm.k8s.io/v1beta4"),
    ("unknown field", [doc(extra=1)], "extra", "unknown field"),
    ("no node name", [with_path("nodeRegistration.name", "")], "nodeRegistration.name",
     "--node-name or .nodeRegistration.name"),
    ("no discovery", [doc(discovery={})], "discovery", "bootstrapToken or file must be set"),
    ("both discoveries", [with_path("discovery.file", {"kubeConfigPath": "/x"})], "discovery",
     "cannot both be set"),
    ("no CA hash", [with_path("discovery.bootstrapToken.caCertHashes", [])],
     "discovery.bootstrapToken.caCertHashes", "without caCertHashes can be unsafe"),
    ("short CA hash", [with_path("discovery.bootstrapToken.caCertHashes", ["sha256:abcd"])],
     "discovery.bootstrapToken.caCertHashes[0]", "expected a 32 byte SHA-256 hash, found 2 bytes"),
    ("md5 CA hash", [with_path("discovery.bootstrapToken.caCertHashes", ["md5:" + "ab" * 16])],
     "discovery.bootstrapToken.caCertHashes[0]", 'unknown hash format "md5"'),
    ("bad token", [with_path("discovery.bootstrapToken.token", "abc")], "discovery.bootstrapToken.token",
     "the bootstrap token is invalid"),
    ("endpoint without port", [with_path("discovery.bootstrapToken.apiServerEndpoint", "10.0.0.1")],
     "discovery.bootstrapToken.apiServerEndpoint", "missing port in address"),
    ("relative caCertPath", [doc(caCertPath="pki/ca.crt")], "caCertPath", "absolute"),
    ("short certificate key", [doc(controlPlane={"certificateKey": "abc"})], "controlPlane.certificateKey",
     "64 hex characters"),
    ("bad advertise address", [doc(controlPlane={"localAPIEndpoint": {"advertiseAddress": "x.y"}})],
     "controlPlane.localAPIEndpoint.advertiseAddress", "not a valid IP address"),
    ("unknown skip phase", [doc(skipPhases=["certs"])], "skipPhases[0]", "unknown phase 'certs'"),
    ("missing discovery file", [doc(discovery={"file": {"kubeConfigPath": "/nonexistent/discovery.conf"}})],
     "discovery.file.kubeConfigPath", "not a valid HTTPS URL or a file on disk"),
    ("http discovery file", [doc(discovery={"file": {"kubeConfigPath": "http://example.test/c.conf"}})],
     "discovery.file.kubeConfigPath", "the scheme must be https"),
    ("caCertPath with '..'", [doc(caCertPath="/etc/kubernetes/../../../tmp/ca.crt")], "caCertPath",
     "'/etc/kubernetes/../../../tmp/ca.crt' must not contain '..': kubeboot writes under the node root (--root)"),
    ("patches directory with '..'", [doc(patches={"directory": "/etc/kubeadm/../../patches"})],
     "patches.directory", "'/etc/kubeadm/../../patches' must not contain '..'"),
    ("relative patches directory", [doc(patches={"directory": "patches"})], "patches.directory",
     "'patches' is not an absolute path"),
    ("a CRI socket of another scheme", [with_path("nodeRegistration.criSocket", "tcp://10.0.0.1:2375")],
     "nodeRegistration.criSocket", 'Invalid value: "tcp://10.0.0.1:2375": only URL scheme "unix" is supported, '
     'got "tcp"'),
]


@pytest.mark.parametrize(("docs", "field", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_naming_the_field(docs: list[dict[str, Any]], field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_join_config(copy.deepcopy(docs), "join.yaml")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("join.yaml: ")
    assert err.value.field == field, text
    assert fragment in text


def test_unsafe_skip_ca_verification_allows_no_hash() -> None:
    d = with_path("discovery.bootstrapToken.caCertHashes", [])
    d["discovery"]["bootstrapToken"]["unsafeSkipCAVerification"] = True
    assert build_join_config([d]).token_discovery is not None


def test_a_cri_socket_without_scheme_gets_unix_and_kubeadms_warning(caplog: pytest.LogCaptureFixture) -> None:
    cfg = build_join_config([with_path("nodeRegistration.criSocket", "/run/containerd/containerd.sock")])
    assert cfg.join.nodeRegistration.criSocket == "unix:///run/containerd/containerd.sock"
    assert [r.getMessage() for r in caplog.records if r.name == "kubeboot.config"] == [
        "Usage of CRI endpoints without URL scheme is deprecated and can cause kubelet errors in the future. "
        'Automatically prepending scheme "unix" to the "criSocket" with value "/run/containerd/containerd.sock". '
        "Please update your configuration!"]
    # what the join phases see: the kubelet's instance configuration names the socket with its scheme
    init = cfg.provisional_init_config()
    assert init.init.nodeRegistration.criSocket == "unix:///run/containerd/containerd.sock"


def test_a_cri_socket_with_its_scheme_is_kept_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    cfg = build_join_config([with_path("nodeRegistration.criSocket", "unix:///var/run/crio/crio.sock")])
    assert cfg.join.nodeRegistration.criSocket == "unix:///var/run/crio/crio.sock"
    assert not [r for r in caplog.records if r.name == "kubeboot.config"]


def test_a_runs_stored_join_document_is_not_warned_about_twice(caplog: pytest.LogCaptureFixture) -> None:
    from kubeboot.config.models import dump

    first = build_join_config([with_path("nodeRegistration.criSocket", "/run/containerd/containerd.sock")])
    caplog.clear()
    again = build_join_config([dump(first.join)], "run r1")  # as a run stores it and a worker reads it
    assert again.join.nodeRegistration.criSocket == "unix:///run/containerd/containerd.sock"
    assert not [r for r in caplog.records if r.name == "kubeboot.config"]
