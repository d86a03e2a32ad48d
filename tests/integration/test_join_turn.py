"""The etcd membership turn of control-plane joins (``tasks.joinrun``) on a real redis-server: joins of one
cluster take turns, joins of two clusters that share the Redis and the default name ``kubernetes`` do not
wait for each other (the turn is keyed by the cluster's CA, learnt by discovery, beside its name)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from kubeboot.config.settings import Settings
from kubeboot.tasks import kubeconfig as kc
from kubeboot.tasks import pki
from kubeboot.tasks.joinrun import join_context, turn_cluster
from kubeboot.tasks.phases.context import MemorySecrets
from kubeboot.tasks.phases.joincontext import CLUSTER_INFO, JoinNodeContext
from kubeboot.tasks.runtime import WorkerRuntime

pytestmark = pytest.mark.integration

TOKEN = "abcdef.0123456789abcdef"


def new_ca() -> bytes:
    key = pki.generate_key("ECDSA-P256")
    cert = pki.build_certificate(pki.CertSpec("kubernetes", is_ca=True), key.public_key(), key, None,
                                 datetime.now(UTC))
    return pki.cert_to_pem(cert)


class Runs:
    """The run store as a node worker's join context reads it: every run is a control-plane join, running."""

    def run_config(self, run_id: str) -> list[dict[str, Any]]:
        return [{"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration",
                 "nodeRegistration": {"name": "cp2"},
                 "discovery": {"bootstrapToken": {"token": TOKEN, "apiServerEndpoint": "10.0.0.1:6443",
                                                  "unsafeSkipCAVerification": True}},
                 "controlPlane": {"localAPIEndpoint": {"advertiseAddress": "10.0.0.2"}}}]

    def meta(self, run_id: str) -> dict[str, str]:
        return {}

    def run_status(self, run_id: str) -> str | None:
        return "running"


@pytest.fixture
def runtime(redis_server: str, tmp_path: Path) -> Any:
    rt = WorkerRuntime(role="node", redis_url=redis_server, settings=Settings(state_dir=tmp_path / "state"),
                       root=tmp_path / "node")
    rt.__dict__["store"] = Runs()  # the cached property, as a worker would have it
    return rt


def discovered(rt: Any, run_id: str, ca: bytes, cluster_name: str = "kubernetes") -> JoinNodeContext:
    """The etcd-join context of run ``run_id`` after discovery: cluster-info (with ``ca``) in the run's
    secrets, the cluster's configuration (its name) in ``ctx.cfg``."""
    secrets = MemorySecrets()
    secrets.put(CLUSTER_INFO, kc.dump(kc.kubeconfig_without_user("https://10.0.0.1:6443", ca)).encode())
    ctx = join_context(rt, run_id, "cp2", "node", out=lambda _: None, secrets=secrets, scratch={})
    assert isinstance(ctx, JoinNodeContext) and ctx.turn is not None
    ctx.cfg.cluster.clusterName = cluster_name
    return ctx


def turn(ctx: JoinNodeContext) -> Any:
    assert ctx.turn is not None
    return ctx.turn


def test_two_clusters_named_kubernetes_do_not_take_turns_with_each_other(runtime: Any, tmp_path: Path) -> None:
    a, b = discovered(runtime, "join-a", new_ca()), discovered(runtime, "join-b", new_ca())
    assert turn(a).acquire() == ""
    assert turn(b).acquire() == ""  # another cluster: no wait


def test_joins_of_one_cluster_take_turns(runtime: Any, tmp_path: Path) -> None:
    ca = new_ca()
    first, second = discovered(runtime, "join-1", ca), discovered(runtime, "join-2", ca)
    assert turn(first).acquire() == ""
    assert "is adding a control-plane node for run join-1" in turn(second).acquire()
    assert turn(first).acquire() == ""  # re-entrant for its holder (a retried etcd-join)
    turn(first).release()
    assert turn(second).acquire() == ""


def test_the_turn_key_names_the_cluster_and_its_ca(runtime: Any, tmp_path: Path) -> None:
    ca = new_ca()
    ctx = discovered(runtime, "join-1", ca, cluster_name="prod eu/1")
    name = turn_cluster(ctx)
    digest = pki.ca_cert_hash(pki.load_cert(ca)).split(":")[1]
    assert name == f"prod-eu-1-ca-{digest[:16]}"
    assert turn(ctx).acquire() == ""
    client = redis.Redis.from_url(runtime.redis_url)
    assert client.exists(f"kubeboot:cluster:{name}:lock:join-control-plane") == 1
