"""The parent tasks (``kubeboot.cluster.advance``, ``kubeboot.cluster.ready``, ``kubeboot.batch.advance``)
are signed like phases: what the control side sends carries a token that verifies for that task, run and
queue; a node worker, which holds no signing key, never sends one: a child that ends on it makes the
parent due now, for the control worker's sweep. Real Redis; the messages are read off the broker."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from kubeboot.config.settings import Settings
from kubeboot.tasks.state import RunStore
from kubeboot.tasks.state.keys import PARENTS_DUE
from kubeboot.tasks.trust.keyring import keyring_for, provision_node
from kubeboot.tasks.trust.tokens import Refused, TaskToken

pytestmark = pytest.mark.integration
ADVANCE = "kubeboot.cluster.advance"


@pytest.fixture
def side(redis_server: str, tmp_path: Path) -> Any:
    from types import SimpleNamespace

    from kubeboot.workers.celery_app import make_app

    settings = Settings(state_dir=tmp_path / "state")
    provision_node(settings, "cp1")
    client = redis.Redis.from_url(redis_server)
    control = RunStore(client, keyring_for(settings, "client"))
    node = RunStore(client, keyring_for(settings, "node", worker="cp1"))
    app = make_app(redis_server, settings)  # registers the run-end hook that tells parents
    parent = control.create_run(kind="cluster", cluster="demo", config={}, plan=[("cp1", "init")], run_id="c-0a0b0c0d")
    child = control.create_run(kind="init", cluster="demo", config=[{"kind": "x"}], plan=[("cp1", "certs/ca")],
                               run_id="c-0a0b0c0d.cp1", extra={"parent": parent.id}, readers=["cp1"])
    return SimpleNamespace(client=client, control=control, node=node, app=app, parent=parent, child=child,
                           verify=control.keys.control_public.verify)


def sent(client: redis.Redis, queue: str) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """(task, args, kwargs) of every message waiting on ``queue`` (kombu's JSON envelope, base64 body)."""
    out = []
    for raw in client.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        out.append((envelope["headers"]["task"], args, kwargs))
    return out


def test_a_parent_task_sent_by_the_control_side_carries_a_token_for_that_task_run_and_queue(side) -> None:
    from kubeboot.workflows.cluster_runs import Engine

    Engine(side.app, side.client, side.control, Settings()).send(ADVANCE, side.parent.id)
    [(task, args, kwargs)] = sent(side.client, "control")
    assert (task, args) == (ADVANCE, [side.parent.id])
    claims = {"run": side.parent.id, "node": "", "cluster": "demo", "digest": side.parent.spec_digest}
    token = TaskToken.verify(kwargs["auth"], side.verify, now=time.time(), task=ADVANCE, **claims)
    assert token.queue == "control"
    for other in ("kubeboot.cluster.ready", "kubeboot.run.finish"):  # not a token for another task of the run
        with pytest.raises(Refused, match="not this task's token"):
            TaskToken.verify(kwargs["auth"], side.verify, now=time.time(), task=other, **claims)


def test_a_child_ending_on_the_control_side_sends_its_parents_signed_advance(side) -> None:
    side.control.finish_run(side.child.id, status="failed", error="x")
    [(task, args, kwargs)] = sent(side.client, "control")
    assert (task, args) == (ADVANCE, [side.parent.id])
    TaskToken.verify(kwargs["auth"], side.verify, now=time.time(), task=ADVANCE, run=side.parent.id, node="",
                     cluster="demo", digest=side.parent.spec_digest)


def test_a_child_ending_on_a_node_worker_makes_its_parent_due_now_and_sends_nothing(side) -> None:
    side.client.zadd(PARENTS_DUE, {side.parent.id: 2**50})  # due in the far future
    assert side.node.keys.control is None  # no key to sign with
    side.node.finish_run(side.child.id, status="failed", error="preflight failed")
    assert side.client.llen("control") == 0
    seconds, _ = side.client.time()
    assert side.client.zscore(PARENTS_DUE, side.parent.id) <= (int(seconds) + 1) * 1000  # the next sweep sends it


def test_a_cluster_whose_init_fails_on_its_node_worker_fails_through_the_control_workers_sweep(engine) -> None:
    """End to end with real workers: the node worker fails the init child, the control worker sends the
    cluster's signed advance, which fails the cluster; no task is refused on the way."""
    import yaml

    from kubeboot.tasks.trust.guard import REFUSED_STREAM

    flag = engine.dir / "fail-preflight"
    flag.touch()
    engine.faults = [{"kind": "permanent", "phase": "preflight", "node": "cp1", "flag": str(flag)}]
    engine.start_workers()
    doc = {"apiVersion": "kubeboot.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": "onnode"},
           "spec": {"clusterConfiguration": {"encryptionAlgorithm": "ECDSA-P256"},
                    "nodes": [{"name": "cp1", "address": "127.0.40.1", "role": "control-plane"}]}}
    path = engine.dir / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = engine.cli("submit", "cluster", "-f", str(path), "-o", "json")
    assert result.returncode == 0, result.stderr
    cluster = json.loads(result.stdout)["cluster"]["id"]
    assert engine.wait_run(cluster) == "failed"
    record = engine.store.get_run(cluster)
    assert record is not None and record.error is not None
    assert record.error.startswith("init of node cp1 failed:") and "preflight" in record.error
    assert engine.store.run_status(f"{cluster}.cp1") == "failed"
    assert engine.client().xlen(REFUSED_STREAM) == 0, engine.logs()
    assert "telling its parent failed" not in (engine.dir / "node.log").read_text()
