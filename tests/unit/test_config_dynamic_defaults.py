"""What kubeadm accepts and fixes up while loading (bindPort 0, a CRI socket without scheme, the
default node name), with kubeadm's warning lines, and the paths a config may not name."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kubeboot.config import loader
from kubeboot.config.errors import ConfigError
from kubeboot.config.loader import build_init_config, load_init_config
from kubeboot.config.paths import go_clean, go_dir, go_join

V4 = "kubeadm.k8s.io/v1beta4"


def init_doc(**fields: object) -> dict[str, object]:
    return {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
            "localAPIEndpoint": {"advertiseAddress": "10.0.0.10"}, **fields}


def test_bind_port_0_defaults_to_6443_as_set_defaults_api_endpoint_does() -> None:
    cfg = build_init_config([init_doc(localAPIEndpoint={"advertiseAddress": "10.0.0.10", "bindPort": 0})])
    assert cfg.bind_port == 6443
    assert cfg.local_endpoint == "10.0.0.10:6443"


@pytest.mark.parametrize("socket", ["/run/containerd/containerd.sock", "/var/run/crio/crio.sock"])
def test_a_cri_socket_without_scheme_gets_unix_with_kubeadms_warning(
    socket: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="kubeboot.config"):
        cfg = build_init_config([init_doc(nodeRegistration={"name": "cp1", "criSocket": socket})])
    assert cfg.init.nodeRegistration.criSocket == f"unix://{socket}"
    want = ("Usage of CRI endpoints without URL scheme is deprecated and can cause kubelet errors in the future. "
            f'Automatically prepending scheme "unix" to the "criSocket" with value "{socket}". '
            "Please update your configuration!")
    assert cfg.warnings == (want,)
    assert [r.getMessage() for r in caplog.records] == [want]


def test_a_cri_socket_with_the_unix_scheme_is_kept_without_warning() -> None:
    cfg = build_init_config([init_doc(nodeRegistration={"name": "cp1", "criSocket": "unix:///run/x.sock"})])
    assert cfg.init.nodeRegistration.criSocket == "unix:///run/x.sock"
    assert cfg.warnings == ()


def test_an_invalid_hostname_as_default_node_name_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "default_node_name", lambda: "my_host")
    with pytest.raises(ConfigError) as err:
        build_init_config([init_doc(nodeRegistration={})])
    assert err.value.field == "nodeRegistration.name"
    assert 'Invalid value: "my_host": a lowercase RFC 1123 subdomain' in str(err.value)


def test_a_node_name_longer_than_253_characters_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        build_init_config([init_doc(nodeRegistration={"name": "a" * 254})])
    assert "must be no more than 253 characters" in str(err.value)


def test_defaults_alone_need_no_kubeadm_document_but_a_file_does(tmp_path: Path) -> None:
    assert build_init_config([]).cluster.certificatesDir == "/etc/kubernetes/pki"
    only_cluster = tmp_path / "cluster.yaml"
    only_cluster.write_text(f"apiVersion: {V4}\nkind: ClusterConfiguration\n")
    assert load_init_config(only_cluster).cluster.clusterName == "kubernetes"


@pytest.mark.parametrize(("path", "clean"), [
    ("/etc/kubernetes/pki/", "/etc/kubernetes/pki"), ("//etc//kubernetes/./pki", "/etc/kubernetes/pki"),
    ("/a/b/../c", "/a/c"), ("/..", "/"), ("", "."), ("a/", "a"),
])
def test_go_clean_matches_filepath_clean(path: str, clean: str) -> None:
    assert go_clean(path) == clean


def test_go_join_and_dir_match_filepath() -> None:
    assert go_join("/etc/kubernetes/pki/", "ca.crt") == "/etc/kubernetes/pki/ca.crt"
    assert go_join("/etc/kubernetes/pki/", "etcd", "ca.crt") == "/etc/kubernetes/pki/etcd/ca.crt"
    assert go_join("", "") == ""
    assert go_dir("/etc/etcd//client.crt") == "/etc/etcd"
    assert go_dir("client.crt") == "."
