"""Join phase pieces without a cluster: discovery's deadline, the kubelet's flags, whether a node has
done its TLS bootstrap, and a worker join's control-plane phases doing nothing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kubeboot.config.join import build_join_config
from kubeboot.config.models import ClusterConfiguration
from kubeboot.tasks import discovery as d
from kubeboot.tasks import pki
from kubeboot.tasks.errors import PermanentError, TemporaryError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import joincluster, joinkubelet, joinprepare
from kubeboot.tasks.phases.joincontext import DISCOVERY_SINCE, JoinNodeContext

V4 = "kubeadm.k8s.io/v1beta4"
TOKEN = "abcdef.0123456789abcdef"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def join_cfg(**over: Any) -> Any:
    doc: dict[str, Any] = {"apiVersion": V4, "kind": "JoinConfiguration", "nodeRegistration": {"name": "w1"},
                           "discovery": {"bootstrapToken": {"token": TOKEN, "apiServerEndpoint": "10.0.0.1:6443",
                                                            "unsafeSkipCAVerification": True}},
                           "timeouts": {"discovery": "1m0s"}}
    doc.update(over)
    return build_join_config([doc])


def context(tmp_path: Path, fetch: Any = None, **over: Any) -> JoinNodeContext:
    join = join_cfg(**over)
    lines: list[str] = []
    ctx = JoinNodeContext(join.provisional_init_config(), NodeFS(tmp_path), join=join, out=lines.append)
    if fetch is not None:
        ctx.fetch = fetch
    return ctx


def unreachable(endpoint: str, ca: bytes | None) -> dict[str, Any]:
    raise d.DiscoveryPending("failed to request the cluster-info ConfigMap: connection refused")


# --- discovery's deadline ---------------------------------------------------------------------------


def test_an_unreachable_endpoint_is_retried_every_5_seconds_until_the_discovery_timeout(tmp_path: Path) -> None:
    ctx = context(tmp_path, unreachable)
    with pytest.raises(TemporaryError) as first:
        joincluster.discover(ctx, now=NOW)
    assert first.value.delay == 5.0
    with pytest.raises(TemporaryError):
        joincluster.discover(ctx, now=NOW + timedelta(seconds=59))
    with pytest.raises(PermanentError) as last:
        joincluster.discover(ctx, now=NOW + timedelta(seconds=60))
    assert str(last.value).startswith("couldn't validate the identity of the API Server: failed to request the "
                                      "cluster-info ConfigMap: connection refused")
    assert ctx.secrets.get(DISCOVERY_SINCE) == NOW.isoformat().encode()  # the deadline counts from the first


def test_an_untrusted_api_server_fails_at_once(tmp_path: Path) -> None:
    def tampered(endpoint: str, ca: bytes | None) -> dict[str, Any]:
        return {"data": {"kubeconfig": "x", "jws-kubeconfig-abcdef": "e30..c2ln"}}

    with pytest.raises(PermanentError, match="failed to verify JWS signature"):
        joincluster.discover(context(tmp_path, tampered), now=NOW)


class RefusingApi:
    """An API server that answers every request 401, as to a bootstrap token it does not know (any more)."""

    def __init__(self) -> None:
        self.calls = 0

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        self.calls += 1
        raise ApiException(status=401, reason="Unauthorized")


def test_a_refused_bootstrap_token_fails_at_once_saying_it_is_unknown_or_expired() -> None:
    api = RefusingApi()
    with pytest.raises(PermanentError) as err:
        joincluster.read_configmap(api, "kube-system", "kubeadm-config")
    assert str(err.value) == (
        "unable to read the ConfigMap kube-system/kubeadm-config: the bootstrap token was refused (401 "
        "Unauthorized): it is unknown to the cluster or has expired; create a new one with `kubeadm token create "
        "--print-join-command` on a control-plane node")
    assert api.calls == 1  # not retried: another try would be refused the same way


# --- kubelet-start's flags ----------------------------------------------------------------------------


def test_a_worker_registers_its_taints_a_control_plane_does_not() -> None:
    taints = [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}, {"key": "gpu", "effect": "NoExecute"}]
    cfg = join_cfg(nodeRegistration={"name": "w1", "taints": taints}).provisional_init_config()
    flags = joinkubelet.join_kubelet_flags(cfg, "w1", worker=True)
    assert "--register-with-taints=dedicated=infra:NoSchedule,gpu:NoExecute" in flags
    assert flags == sorted(flags, key=lambda f: f.partition("=")[0])
    assert not any("register-with-taints" in f for f in joinkubelet.join_kubelet_flags(cfg, "w1", worker=False))
    untainted = join_cfg().provisional_init_config()
    assert not any("register-with-taints" in f for f in joinkubelet.join_kubelet_flags(untainted, "w1", worker=True))


# --- has this node done its TLS bootstrap? --------------------------------------------------------------


def _ca() -> tuple[Any, Any]:
    key = pki.generate_key("ECDSA-P256")
    return pki.build_certificate(pki.CertSpec("kubernetes", is_ca=True), key.public_key(), key, None, NOW), key


def _kubelet_pem(ca: Any, ca_key: Any, cn: str) -> bytes:
    key = pki.generate_key("ECDSA-P256")
    cert = pki.build_certificate(pki.CertSpec(cn, organization=("system:nodes",)), key.public_key(), ca_key, ca,
                                 datetime.now(UTC))
    return pki.cert_to_pem(cert) + pki.key_to_pem(key)


def _kubelet_conf(path: str = "/var/lib/kubelet/pki/kubelet-client-current.pem") -> str:
    ca64 = base64.b64encode(b"x").decode()
    return ("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{name: k, cluster: {server: "
            f"'https://x:6443', certificate-authority-data: {ca64}}}}}]\ncontexts: [{{name: c, context: "
            "{cluster: k, user: u}}]\nusers: [{name: u, user: {client-certificate: " + path + ", client-key: "
            + path + "}}]\n")


@pytest.mark.parametrize(("cn", "signed_by_cluster", "ready"), [
    ("system:node:w1", True, True),
    ("system:node:w2", True, False),  # another node's credential
    ("system:node:w1", False, False),  # another cluster's CA
])
def test_a_node_has_bootstrapped_when_kubelet_conf_holds_its_own_certificate(
        tmp_path: Path, cn: str, signed_by_cluster: bool, ready: bool) -> None:
    ctx = context(tmp_path)
    ca, ca_key = _ca()
    other, other_key = _ca()
    ctx.fs.write("/etc/kubernetes/kubelet.conf", _kubelet_conf())
    pem = _kubelet_pem(ca, ca_key, cn) if signed_by_cluster else _kubelet_pem(other, other_key, cn)
    ctx.fs.write("/var/lib/kubelet/pki/kubelet-client-current.pem", pem)
    assert joinkubelet.kubelet_client_ready(ctx, pki.cert_to_pem(ca)) is ready


def test_no_kubelet_conf_means_no_bootstrap_yet(tmp_path: Path) -> None:
    ca, _ = _ca()
    assert joinkubelet.kubelet_client_ready(context(tmp_path), pki.cert_to_pem(ca)) is False


class ReadyNodeApi:
    """An API server whose Node of the asked name is Ready."""

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        from types import SimpleNamespace

        node = {"kind": "Node", "metadata": {"name": "w1"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        return SimpleNamespace(data=json.dumps(node).encode())


def test_a_ready_namesake_is_refused_unless_this_nodes_own_kubelet_registered_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of kubelet-start that died after starting the kubelet leaves it bootstrapping: by the time a
    later copy asks for the Node, this node's own kubelet may have registered it and gone Ready."""
    ctx = context(tmp_path)
    ca, ca_key = _ca()
    info = d.ClusterInfo(server="https://10.0.0.1:6443", ca_pem=pki.cert_to_pem(ca), kubeconfig="")
    monkeypatch.setattr(joinkubelet, "bootstrap_client", lambda _ctx, _info: ReadyNodeApi())
    with pytest.raises(PermanentError, match='a Node with name "w1" and status "Ready" already exists'):
        joinkubelet.refuse_ready_namesake(ctx, info)  # another machine's
    # This node's kubelet finished its TLS bootstrap with this cluster's CA, as w1: the Ready Node is its own.
    ctx.fs.write("/etc/kubernetes/kubelet.conf", _kubelet_conf())
    ctx.fs.write("/var/lib/kubelet/pki/kubelet-client-current.pem", _kubelet_pem(ca, ca_key, "system:node:w1"))
    assert joinkubelet.refuse_ready_namesake(ctx, info) is None


# --- a worker's control-plane phases -------------------------------------------------------------------


@pytest.mark.parametrize("phase", [joinprepare.run_download_certs, joinprepare.run_certs,
                                   joinprepare.run_kubeconfig, joinprepare.run_control_plane])
def test_control_plane_prepare_does_nothing_on_a_worker(tmp_path: Path, phase: Any) -> None:
    ctx = context(tmp_path, unreachable)  # would fail if it tried to discover anything
    phase(ctx)
    assert not any(tmp_path.iterdir())


def test_the_join_init_config_keeps_the_clusters_kubelet_document(tmp_path: Path) -> None:
    cfg = join_cfg().init_config(ClusterConfiguration(clusterName="c"), {"kind": "KubeletConfiguration",
                                                                         "maxPods": 50})
    assert cfg.kubelet["maxPods"] == 50 and cfg.cluster.clusterName == "c"


def test_a_control_plane_without_an_advertise_address_takes_the_nodes_default_interface() -> None:
    import json

    from kubeboot.config.loader import default_advertise_address
    from kubeboot.config.models import dump
    from kubeboot.tasks.phases.joincontext import stored_cluster

    join = join_cfg(controlPlane={})
    raw = json.dumps({"ClusterConfiguration": dump(ClusterConfiguration(clusterName="c"))}).encode()
    cfg = stored_cluster(join, lambda _name: raw)
    assert cfg is not None and cfg.advertise_address == default_advertise_address() != ""
    worker = stored_cluster(join_cfg(), lambda _name: raw)
    assert worker is not None and worker.advertise_address == ""  # a worker serves no API
