"""Each attack on a node worker, tried with a real Redis and real worker processes, fails to do harm.

One kubeboot installation (embedded Redis, a node worker of cp1 and a control worker) serves every test
of this module. The test process plays the attacker: it can push any message onto any queue and edit
any key in Redis. Where an attack replays what the control side once sent, the test rebuilds that
message with the control side's key (the state dir's), as a copy recorded off the broker would be.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from kubeboot.config.settings import Settings
from kubeboot.tasks.state import RunStore
from kubeboot.tasks.state.secrets import SecretError, load_or_create_key
from kubeboot.tasks.trust.guard import REFUSED_STREAM
from kubeboot.tasks.trust.keyring import Keyring, keyring_for, provision_node
from kubeboot.tasks.trust.keys import ControlKeys
from kubeboot.tasks.trust.tokens import Refused, TaskToken

pytestmark = pytest.mark.integration
CERTS_CA = "kubeboot.init.certs.ca"
MANIFEST = "etc/kubernetes/pki/ca.crt"
BROADCAST_WAIT = 5.0  # seconds a broadcast waits for replies: a bound (one to all waits all of it)
SILENCE = 3.0  # seconds a broadcast to the node worker alone waits for a reply that must not come


class Attacker:
    def __init__(self, engine: Any) -> None:
        from kubeboot.workers.celery_app import make_app

        self.engine = engine
        self.settings = Settings(state_dir=engine.state_dir)
        self.app = make_app(engine.embedded().url, self.settings)
        self.keys = ControlKeys(load_or_create_key(self.settings))
        self.store = RunStore(engine.client(), keyring_for(self.settings, "client"))  # the control side's

    def token(self, run_id: str, node: str, queue: str, task: str = CERTS_CA, **claims: Any) -> str:
        run = self.engine.store.get_run(run_id)
        assert run is not None
        fields = {"run": run_id, "cluster": run.cluster, "node": node, "queue": queue, "task": task,
                  "digest": run.spec_digest, "iat": time.time(), "exp": time.time() + 600, **claims}
        return TaskToken(**fields).sign(self.keys.signing)

    def send(self, task: str, args: list[Any], queue: str, *, options: dict[str, Any] | None = None,
             **kwargs: Any) -> str:
        task_id = f"attack-{uuid.uuid4().hex[:8]}"
        from kubeboot.workflows.runs import declare

        declare(self.app, [queue])
        self.app.send_task(task, args=args, kwargs=kwargs, queue=queue, task_id=task_id, **(options or {}))
        return task_id

    def idle_cluster(self, name: str) -> str:
        """A dry-run cluster run of one node, recorded by the control side and left pending: nothing looks
        at it (it is not in ``parents:due``) until a parent task names it. A ready task would end it
        succeeded at once (a dry run's Nodes are answered by the fake API), an advance start its init."""
        from kubeboot.config.cluster import build_cluster
        from kubeboot.workflows.cluster_plan import ClusterRunSpec

        doc = {"apiVersion": "kubeboot.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": name},
               "spec": {"clusterConfiguration": {"encryptionAlgorithm": "ECDSA-P256"},
                        "nodes": [{"name": f"{name}-cp1", "address": "10.9.0.1", "role": "control-plane"}]}}
        spec = ClusterRunSpec(build_cluster(doc, "attack", kubeadm_checks=False), dry_run=True)
        run = self.store.create_run(kind="cluster", cluster=name, config=spec.to_config(), plan=spec.steps(),
                                    run_id=f"c-{uuid.uuid4().hex[:8]}",
                                    extra={"route": json.dumps(spec.route()), "done": "0"})
        return run.id

    def refusal(self, task_id: str) -> str:
        """The reason the worker recorded for refusing ``task_id`` (waits, bounded)."""
        found: list[str] = []

        def recorded() -> bool:
            entries = self.engine.client().xrange(REFUSED_STREAM)
            found[:] = [f[b"reason"].decode() for _, f in entries if f[b"id"].decode() == task_id]
            return bool(found)

        self.engine.wait_for(f"the refusal of {task_id}", recorded)
        return found[0]

    def node_log(self) -> str:
        return (self.engine.dir / "node.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def engine(module_engine: Any) -> Any:
    return module_engine


@pytest.fixture(scope="module")
def attacker(engine: Any) -> Attacker:
    return Attacker(engine)


@pytest.fixture(scope="module")
def first_run(engine: Any) -> dict[str, Any]:
    """An init of cluster 'kubernetes' on cp1 that succeeded, and the dispatch its node recorded."""
    run_id = engine.submit(engine.config())
    assert engine.wait_run(run_id) == "succeeded", engine.logs()
    journal = json.loads((engine.state_dir / "dispatch/cp1.json").read_text())
    return {"id": run_id, "iat": journal["clusters"]["kubernetes"]["iat"]}


def test_an_old_runs_task_sent_again_after_its_state_was_reset_is_refused(engine, attacker, first_run) -> None:
    second = engine.submit(engine.config("newer.yaml"))  # a newer dispatch of the same cluster on cp1
    assert engine.wait_run(second) == "succeeded", engine.logs()
    ca_before = (engine.root / MANIFEST).read_bytes()
    old = first_run["id"]
    client = engine.client()
    client.hset(f"kubeboot:run:{old}", "status", "running")  # the old run made to look alive again
    client.hset(f"kubeboot:run:{old}:phases", mapping={"cp1|certs/ca|status": "pending"})
    client.sadd("kubeboot:runs:active", old)
    replay = attacker.token(old, "cp1", "node.cp1", iat=first_run["iat"], exp=time.time() + 600)
    reason = attacker.refusal(attacker.send(CERTS_CA, [old, "cp1"], "node.cp1", auth=replay))
    assert "older than the newest dispatch this node ran for cluster kubernetes" in reason
    assert client.hget(f"kubeboot:run:{old}:phases", "cp1|certs/ca|status") == b"pending"  # never claimed
    assert (engine.root / MANIFEST).read_bytes() == ca_before


def test_an_expired_token_is_refused(engine, attacker, first_run) -> None:
    late = attacker.token(first_run["id"], "cp1", "node.cp1", iat=time.time() - 7200, exp=time.time() - 3600)
    reason = attacker.refusal(attacker.send(CERTS_CA, [first_run["id"], "cp1"], "node.cp1", auth=late))
    assert "expired" in reason


@pytest.mark.parametrize("auth", ["", "kb1.e30.AAAA"], ids=["no token", "a token signed by nobody"])
def test_a_task_without_a_valid_signature_is_refused(engine, attacker, first_run, auth: str) -> None:
    reason = attacker.refusal(attacker.send(CERTS_CA, [first_run["id"], "cp1"], "node.cp1", auth=auth))
    assert "token" in reason


def test_a_task_signed_with_another_key_is_refused(engine, attacker, first_run) -> None:
    other = ControlKeys(bytes(range(32)))
    run = engine.store.get_run(first_run["id"])
    assert run is not None
    forged = TaskToken(run=run.id, cluster=run.cluster, node="cp1", queue="node.cp1", task=CERTS_CA,
                       digest=run.spec_digest, iat=time.time(), exp=time.time() + 600).sign(other.signing)
    reason = attacker.refusal(attacker.send(CERTS_CA, [run.id, "cp1"], "node.cp1", auth=forged))
    assert "does not verify with the pinned control key" in reason


def test_another_nodes_task_pushed_onto_this_nodes_queue_is_refused(engine, attacker, first_run) -> None:
    other = attacker.token(first_run["id"], "cp2", "node.cp2")
    reason = attacker.refusal(attacker.send(CERTS_CA, [first_run["id"], "cp2"], "node.cp2".replace("2", "1"),
                                            auth=other))
    assert "sends it to node.cp2, which this worker (node.cp1) does not serve" in reason
    mismatch = attacker.token(first_run["id"], "cp2", "node.cp1")
    reason = attacker.refusal(attacker.send(CERTS_CA, [first_run["id"], "cp1"], "node.cp1", auth=mismatch))
    assert "not this task" in reason


def test_a_forged_metadata_edit_is_refused_by_node_and_control_side(engine, attacker) -> None:
    run = attacker.store.create_run(kind="init", cluster="kubernetes", config=[{"kind": "x"}],
                                    plan=[("cp1", "certs/ca")], run_id="r-forged1",
                                    lock=("kubeboot:cluster:kubernetes:lock:init", 1), readers=["cp1"])
    token = attacker.token(run.id, "cp1", "node.cp1")
    client = engine.client()
    client.hset(f"kubeboot:run:{run.id}", "kind", "batch")  # the steering fields edited in Redis
    client.hdel(f"kubeboot:run:{run.id}", "lock")
    reason = attacker.refusal(attacker.send(CERTS_CA, [run.id, "cp1"], "node.cp1", auth=token))
    assert "does not match its signature: edited in Redis" in reason
    with pytest.raises(Refused, match="edited in Redis"):
        RunStore(client, keyring_for(attacker.settings, "client")).get_run(run.id)


def test_broadcast_commands_do_not_reach_a_node_worker(engine, attacker, first_run) -> None:
    from kubeboot.tasks.state import presence

    client, control = engine.client(), attacker.app.control
    # The names the workers beat under are their Celery node names, the ones a broadcast's destination
    # matches; the node's is also the one its start-up line printed.
    node_name, control_name = presence.consumer(client, "node.cp1"), presence.consumer(client, "control")
    assert node_name is not None and node_name.startswith("node-cp1@"), node_name
    assert control_name is not None and control_name.startswith("control@"), control_name
    assert f"[worker] {node_name}: queue node.cp1" in attacker.node_log()

    # Positive control: the same commands reach and are obeyed by a worker that keeps remote control.
    assert control.ping(destination=[control_name], timeout=BROADCAST_WAIT) == [{control_name: {"ok": "pong"}}]
    obeyed = control.add_consumer("node.cp8", destination=[control_name], reply=True, timeout=BROADCAST_WAIT)
    assert obeyed == [{control_name: {"ok": "add consumer node.cp8"}}]
    queues = control.inspect([control_name], timeout=BROADCAST_WAIT).active_queues() or {}
    assert "node.cp8" in {q["name"] for q in queues.get(control_name, [])}
    everyone = control.broadcast("add_consumer", arguments={"queue": "node.cp7"}, reply=True, timeout=BROADCAST_WAIT)
    assert {name for reply in everyone for name in reply} == {control_name}  # to all: only control answers
    for queue in ("node.cp8", "node.cp7"):
        control.cancel_consumer(queue, destination=[control_name], reply=True, timeout=BROADCAST_WAIT)

    # The node worker, by its real name and in a broadcast to all, neither answers nor obeys.
    assert control.ping(destination=[node_name], timeout=SILENCE) == []
    assert node_name not in {name for reply in control.ping(timeout=BROADCAST_WAIT) for name in reply}
    assert control.add_consumer("node.cp9", destination=[node_name], reply=True, timeout=SILENCE) == []
    control.broadcast("shutdown", destination=[node_name])
    parked = [attacker.send(CERTS_CA, [first_run["id"], node], queue, auth=attacker.token(first_run["id"], node, queue))
              for node, queue in (("cp9", "node.cp9"), ("cp7", "node.cp7"))]
    # Two tasks handled one after the other after the broadcasts: the worker still runs, went on consuming
    # its own queue, and fetched twice while the parked messages waited on the queues it was told to add.
    for _ in range(2):
        attacker.refusal(attacker.send(CERTS_CA, [first_run["id"], "cp1"], "node.cp1", auth=""))
    assert engine.procs["node"].poll() is None
    assert (client.llen("node.cp9"), client.llen("node.cp7")) == (1, 1), parked  # nobody took them up
    log = attacker.node_log()
    assert "Started consuming from" not in log
    assert "shutdown" not in log.lower().replace("shutdown_", "")


PARENT_TASKS = ["kubeboot.cluster.ready", "kubeboot.cluster.advance", "kubeboot.batch.advance"]


@pytest.mark.parametrize("auth", ["none", "another task's token"])
@pytest.mark.parametrize("task", PARENT_TASKS)
def test_a_parent_task_pushed_onto_control_without_its_token_is_refused_and_changes_nothing(
        engine, attacker, first_run, task: str, auth: str) -> None:
    client, cluster = engine.client(), attacker.idle_cluster(f"p{uuid.uuid4().hex[:6]}")
    key = f"kubeboot:run:{cluster}"
    before = (client.hgetall(key), client.hgetall(f"{key}:phases"), client.xlen(f"{key}:events"))
    # A node's chain goes on to control, so its Redis user may push there (test_redis_users): a forged parent
    # task, with a link the control worker would send on to another node's queue if the task ran.
    kwargs = {} if auth == "none" else {"auth": attacker.token(cluster, "", "control", task="kubeboot.run.finish")}
    onward = attacker.app.signature(CERTS_CA, args=[first_run["id"], "cp6"], queue="node.cp6", immutable=True)
    reason = attacker.refusal(attacker.send(task, [cluster], "control", options={"chain": [dict(onward)]}, **kwargs))
    assert ("no valid authorisation token" if auth == "none" else "not this task's token") in reason
    assert (client.hgetall(key), client.hgetall(f"{key}:phases"), client.xlen(f"{key}:events")) == before
    assert engine.store.run_status(cluster) == "pending"
    assert list(client.scan_iter(f"kubeboot:run:{cluster}.*")) == []  # no child run started
    assert client.llen("node.cp6") == 0  # nothing sent on


def test_the_same_ready_task_signed_by_the_control_side_ends_the_cluster(engine, attacker) -> None:
    """The positive control of the test above: what the forged task would have done, had it run."""
    cluster = attacker.idle_cluster(f"p{uuid.uuid4().hex[:6]}")
    attacker.send("kubeboot.cluster.ready", [cluster], "control",
                  auth=attacker.token(cluster, "", "control", task="kubeboot.cluster.ready"))
    assert engine.wait_run(cluster) == "succeeded"


@pytest.mark.parametrize("builtin", ["celery.starmap", "celery.accumulate", "celery.backend_cleanup", "celery.chunks"])
def test_celery_builtin_tasks_are_not_run_on_a_node_worker(engine, attacker, first_run, builtin: str) -> None:
    target = attacker.store.create_run(kind="init", cluster="builtins", config=[{"kind": "x"}], plan=[],
                                     run_id=f"r-{builtin.split('.')[1][:6]}")
    finish = {"task": "kubeboot.run.finish", "args": [], "kwargs": {}, "options": {}, "subtask_type": None,
              "immutable": False}
    args: list[Any] = {"celery.starmap": [finish, [[target.id]]], "celery.chunks": [finish, [[target.id]], 1],
                       "celery.accumulate": [1, 2], "celery.backend_cleanup": []}[builtin]
    task_id = attacker.send(builtin, args, "node.cp1")
    engine.wait_for(f"{builtin} turned away", lambda: f"Received unregistered task of type '{builtin}'"
                    in attacker.node_log())
    assert f"{builtin}[{task_id}] succeeded" not in attacker.node_log()
    assert engine.store.run_status(target.id) == "pending"  # kubeboot.run.finish never ran through it


def test_a_stolen_node_key_reads_nothing_of_another_clusters_runs(engine, attacker) -> None:
    client = engine.client()
    provision_node(attacker.settings, "w9")  # a node of another cluster, with its own key
    control = RunStore(client, keyring_for(attacker.settings, "client"))
    token = {"bootstrapToken": {"token": "abcdef.0123456789abcdef"}}
    secret_config = [{"kind": "JoinConfiguration", "discovery": token}]
    other = control.create_run(kind="join", cluster="other", config=secret_config, plan=[("w9", "preflight")],
                               run_id="r-other1", readers=["w9"])
    w9 = RunStore(client, keyring_for(attacker.settings, "node", worker="w9"))
    w9.put_secret(other.id, "admin.conf", b"admin of cluster other")
    assert control.get_secret(other.id, "admin.conf") == b"admin of cluster other"
    assert w9.run_config(other.id) == secret_config

    provision_node(attacker.settings, "cp1")  # cp1's key (as its worker made it; made here when run alone)
    stolen = RunStore(client, keyring_for(attacker.settings, "node", worker="cp1"))  # cp1's key, stolen
    with pytest.raises((KeyError, SecretError)):
        stolen.run_config(other.id)  # no copy sealed to cp1
    assert stolen.get_secret(other.id, "admin.conf") is None
    key = f"kubeboot:run:{other.id}"
    client.hset(key, "config:to:cp1", client.hget(key, "config:to:w9") or b"")
    client.set(f"{key}:secret:admin.conf:to:cp1", client.get(f"{key}:secret:admin.conf:to:w9") or b"")
    with pytest.raises(SecretError):
        stolen.run_config(other.id)  # w9's copy does not open with cp1's key
    with pytest.raises(SecretError):
        stolen.get_secret(other.id, "admin.conf")
    # ... nor can cp1 slip a value of its own in for the control side to use:
    stolen.put_secret(other.id, "admin.conf", b"an attacker's kubeconfig")
    with pytest.raises(SecretError, match="sealed by node worker cp1, which does not serve run r-other1"):
        control.get_secret(other.id, "admin.conf")
    assert not isinstance(stolen.keys, type(None)) and stolen.keys.control is None  # no master key at all
    assert Keyring().role == "none"


def test_refused_tasks_never_failed_the_run_they_named(engine, first_run) -> None:
    run = engine.store.get_run(first_run["id"])
    assert run is not None and run.error is None
