"""Dry runs of whole clusters and batches, end to end with the installed CLI, a real Redis and ONE real
control worker (no node worker anywhere): every phase runs on the dry-run queue, node files land in a
temporary root per (run, node), API writes land in the dry run's fake API and nowhere else; a batch with
a failing cluster finishes the others, and its resume runs only the cluster that failed."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

API = "kubeboot.dev/v1alpha1"


def cluster_doc(name: str, control_planes: int, workers: int) -> dict[str, Any]:
    nodes = [{"name": f"{name}-cp{i}", "address": f"10.1.0.{i}", "role": "control-plane",
              "ignorePreflightErrors": ["all"]} for i in range(1, control_planes + 1)]
    nodes += [{"name": f"{name}-w{i}", "address": f"10.1.1.{i}", "role": "worker", "labels": {"zone": "a"},
               "ignorePreflightErrors": ["all"]} for i in range(1, workers + 1)]
    return {"apiVersion": API, "kind": "Cluster", "metadata": {"name": name},
            "spec": {"clusterConfiguration": {"encryptionAlgorithm": "ECDSA-P256",
                                              "controlPlaneEndpoint": "10.1.0.254:6443"},
                     "nodes": nodes}}


@pytest.fixture
def dry(engine: Any) -> Any:
    """Redis and one control worker that fails f2-cp1's preflight while ``engine.flag`` exists."""
    engine.flag = engine.dir / "break-f2"
    engine.faults = [{"kind": "permanent", "phase": "preflight", "node": "f2-cp1", "flag": str(engine.flag)}]
    engine.start_redis()
    engine.spawn("control", "worker", "control", "--concurrency", "2", "--include", "faults", faults=True)
    return engine


def submit(engine: Any, kind: str, doc: dict[str, Any], *extra: str) -> tuple[int, dict[str, Any]]:
    path = engine.dir / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = engine.cli("submit", kind, "-f", str(path), "--dry-run", "--wait", "--timeout", "240s", "-o", "json",
                        *extra)
    assert result.stdout, f"{result.stderr}\n{engine.logs()}"
    return result.returncode, json.loads(result.stdout)


def test_a_dry_run_cluster_runs_on_the_control_worker_into_temporary_roots(dry: Any) -> None:
    code, view = submit(dry, "cluster", cluster_doc("ha", 2, 2))
    assert code == 0, dry.logs()
    run_id = view["cluster"]["id"]
    assert (view["cluster"]["status"], view["cluster"]["dryRun"]) == ("succeeded", True)
    assert [(n["node"], n["step"], n["status"], n["run"]) for n in view["nodes"]] == [
        ("ha-cp1", "init", "succeeded", f"{run_id}.ha-cp1"), ("ha-cp2", "join", "succeeded", f"{run_id}.ha-cp2"),
        ("ha-w1", "join", "succeeded", f"{run_id}.ha-w1"), ("ha-w2", "join", "succeeded", f"{run_id}.ha-w2")]
    scope = dry.state_dir / "dry-run" / run_id
    for node in ("ha-cp1", "ha-cp2"):
        assert (scope / "nodes" / node / "etc/kubernetes/manifests/kube-apiserver.yaml").is_file()
    # the joined control plane downloaded the cluster's CA from the dry run's own kubeadm-certs
    assert (scope / "nodes/ha-cp2/etc/kubernetes/pki/ca.crt").read_bytes() == (
        scope / "nodes/ha-cp1/etc/kubernetes/pki/ca.crt").read_bytes()
    flags = (scope / "nodes/ha-w1/var/lib/kubelet/kubeadm-flags.env").read_text()
    assert "--node-labels=zone=a" in flags
    assert (scope / "api/core/configmaps/kube-system/kubeadm-config.json").is_file()
    queues = [k.decode() for k in dry.client().keys("node.*")]
    assert queues == []  # no task was ever routed to a node worker
    assert not (dry.root / "etc").exists()


def test_a_dry_run_keeps_the_clusters_token_only_sealed(dry: Any) -> None:
    code, view = submit(dry, "cluster", cluster_doc("solo", 1, 1))
    assert code == 0, dry.logs()
    token = dry.store.get_secret(view["cluster"]["id"], "token")
    assert token is not None and len(token) == 23
    client = dry.client()
    for key in client.keys("kubeboot:*"):
        kind = client.type(key).decode()
        values: list[Any] = {"string": lambda k: [client.get(k)], "hash": lambda k: list(client.hgetall(k).values()),
                             "stream": lambda k: [str(e) for e in client.xrange(k)]}.get(kind, lambda k: [])(key)
        assert not any(token in (v if isinstance(v, bytes) else str(v).encode()) for v in values), key
    log = (dry.dir / "control.log").read_text()
    assert token.decode() not in log and token.decode().split(".")[1] not in log


def test_a_failing_cluster_never_stops_the_others_and_resume_runs_only_it(dry: Any) -> None:
    dry.flag.write_text("")
    batch = {"apiVersion": API, "kind": "Batch", "metadata": {"name": "fleet"},
             "spec": {"concurrency": 2, "clusters": [cluster_doc(f"f{i}", 1, 1) for i in (1, 2, 3)]}}
    code, view = submit(dry, "batch", batch)
    assert code == 1
    batch_id = view["batch"]["id"]
    rows = {r["cluster"]: r for r in view["clusters"]}
    assert {c: r["status"] for c, r in rows.items()} == {"f1": "succeeded", "f2": "failed", "f3": "succeeded"}
    assert "node f2-cp1" in rows["f2"]["error"] and "preflight" in rows["f2"]["error"]
    assert (view["batch"]["totals"]["succeeded"], view["batch"]["totals"]["failed"]) == (2, 1)
    assert view["batch"]["error"].startswith("1 of 3 clusters failed: f2")

    dry.flag.unlink()
    result = dry.cli("resume", batch_id, "--wait", "--timeout", "240s", "-o", "json")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{dry.logs()}"
    after = {r["cluster"]: r for r in json.loads(result.stdout)["clusters"]}
    assert {c: r["status"] for c, r in after.items()} == {"f1": "succeeded", "f2": "succeeded", "f3": "succeeded"}
    store = dry.store
    for name in ("f1", "f3"):  # left alone: no event of theirs says resumed, no phase ran twice
        cluster = f"{batch_id}.{name}"
        assert "resumed" not in [e.event for e in store.events(cluster)]
        for kid in (f"{cluster}.{name}-cp1", f"{cluster}.{name}-w1"):
            assert {r.attempts for r in store.phase_records(kid) if r.status == "succeeded"} == {1}
    init = f"{batch_id}.f2.f2-cp1"
    assert next(r for r in store.phase_records(init) if r.path == "preflight").attempts == 2
    assert next(r for r in store.phase_records(init) if r.path == "certs/ca").attempts == 1

    listed = dry.cli("runs", "--batch", batch_id, "--kind", "cluster", "-o", "json")
    assert sorted(r["id"] for r in json.loads(listed.stdout)) == [f"{batch_id}.f{i}" for i in (1, 2, 3)]
    text = dry.cli("status", batch_id)
    assert "3/3 clusters ended (3 succeeded, 0 failed, 0 running, 0 pending), 6/6 nodes" in text.stdout


def test_submit_init_dry_run_writes_to_its_temporary_root(dry: Any) -> None:
    result = dry.cli("submit", "init", "--config", str(dry.config()), "--dry-run", "--wait", "--timeout", "120s")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{dry.logs()}"
    run_id = dry.store.list_runs()[0].id
    assert f"[dryrun] node files go to {dry.state_dir / 'dry-run' / run_id}/nodes/cp1" in result.stdout
    assert (dry.state_dir / "dry-run" / run_id / "nodes/cp1/etc/kubernetes/admin.conf").is_file()
    assert not (dry.root / "etc").exists()


def _get(url: str) -> tuple[int, bytes]:
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(b"u:p").decode()})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def _flower_tasks(base: str, search: str) -> dict[str, Any]:
    from urllib.parse import quote

    status, body = _get(f"{base}/api/tasks?limit=10000&search={quote(search)}")
    return dict(json.loads(body)) if status == 200 else {}


def test_flower_finds_every_task_of_a_batch_and_of_each_cluster_by_its_id(dry: Any) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    dry.spawn("flower", "flower", "--port", str(port), "--basic-auth", "u:p")
    dry.wait_for("Flower to see the control worker",
                 lambda: b'flower_worker_online{worker="control@' in _get(f"{base}/metrics")[1])
    batch = {"apiVersion": API, "kind": "Batch", "metadata": {"name": "seen"},
             "spec": {"clusters": [cluster_doc(f"s{i}", 1, 1) for i in (1, 2)]}}
    code, view = submit(dry, "batch", batch)
    assert code == 0, dry.logs()
    batch_id, store = view["batch"]["id"], dry.store
    expected = {("kubeboot.batch.advance", batch_id)}
    for name in ("s1", "s2"):
        cluster = f"{batch_id}.{name}"
        expected |= {("kubeboot.cluster.advance", cluster), ("kubeboot.cluster.ready", cluster)}
        for kid, kind in ((f"{cluster}.{name}-cp1", "init"), (f"{cluster}.{name}-w1", "join")):
            expected |= {(f"kubeboot.{kind}.{r.path.replace('/', '.')}", kid) for r in store.phase_records(kid)
                         if r.status == "succeeded"} | {("kubeboot.run.finish", kid)}

    def found(search: str) -> set[tuple[str, str]]:
        return {(t["name"], _first_arg(t["args"])) for t in _flower_tasks(base, search).values()}

    dry.wait_for("Flower to list every task of the batch", lambda: expected <= found(batch_id))
    assert {task for task in found(batch_id) if task not in expected} == set()  # no other run's task matched
    s1 = f"{batch_id}.s1"
    assert found(s1) == {task for task in expected if task[1].startswith(s1)}


def _first_arg(args: str) -> str:
    import ast

    value = ast.literal_eval(args)
    return str(value[0])
