"""The Redis users of a deployment (``kubeboot deploy redis-acl``) on a real Redis with real workers: a
node worker and the control worker each with their own user run a whole run; a node's user reaches
nothing of other nodes or clusters' keys and cannot broadcast; Flower's user follows the events only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from kubeboot.workers.redis_acl import acl_text, user_url

pytestmark = pytest.mark.integration
DEADLINE = 90.0  # bound of every wait; never an assertion
V4 = "kubeadm.k8s.io/v1beta4"


@pytest.fixture(scope="module")
def deployment(e2e: Any) -> Iterator[dict[str, Any]]:
    from kubeboot.config.settings import Settings
    from kubeboot.tasks.trust.keyring import provision_node
    from kubeboot.workers.redis_server import find_redis_server

    work = Path(tempfile.mkdtemp(prefix="kb-acl-"))
    port = e2e.free_port_on("127.0.0.1")
    users = {"control": "pw-control-1", "flower": "pw-flower-1", "node-cp1": "pw-node-cp1"}
    (work / "users.acl").write_text(acl_text([("control", "control", users["control"], ""),
                                              ("flower", "flower", users["flower"], ""),
                                              ("node-cp1", "node", users["node-cp1"], "cp1")]))
    server = subprocess.Popen([str(find_redis_server()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(work), "--aclfile", str(work / "users.acl")],
                              stdout=(work / "redis.log").open("wb"), stderr=subprocess.STDOUT)
    urls = {u: user_url(f"redis://127.0.0.1:{port}", u, p) for u, p in users.items()}
    state = work / "state"
    provision_node(Settings(state_dir=state), "cp1")  # as kubeboot deploy node-key + register-node would
    base = {k: v for k, v in os.environ.items() if not k.startswith("KUBEBOOT_")}
    env = {**base, "KUBEBOOT_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1"}
    procs = []
    try:
        for _ in range(200):
            try:
                redis.Redis.from_url(urls["control"]).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        for name, user, args in (("node", "node-cp1", ["node", "--id", "cp1", "--root", str(work / "root")]),
                                 ("control", "control", ["control", "--concurrency", "1"])):
            procs.append(e2e.start_worker(work, name, args, {**env, "KUBEBOOT_REDIS_URL": urls[user]}))
        yield {"dir": work, "urls": urls, "env": env, "logs": lambda: e2e.tail_logs(work)}
    finally:
        e2e.kill_groups(procs)
        server.kill()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def test_a_run_goes_through_with_a_node_user_and_the_control_user(deployment) -> None:
    from kubeboot.workflows.init_tree import AFTER_LOCAL

    work, urls = deployment["dir"], deployment["urls"]
    config = work / "kubeadm.yaml"
    config.write_text(yaml.safe_dump_all([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1", "ignorePreflightErrors":
                                                                              ["all"]},
         "localAPIEndpoint": {"advertiseAddress": "127.0.41.1"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256"}]))
    env = {**deployment["env"], "KUBEBOOT_REDIS_URL": urls["control"]}
    done = subprocess.run([sys.executable, "-m", "kubeboot.workers.cli", "submit", "init", "--config", str(config),
                           "--skip-phases", ",".join(AFTER_LOCAL), "--wait", "--timeout", f"{DEADLINE:.0f}s",
                           "-o", "json"], env=env, capture_output=True, text=True, timeout=DEADLINE + 30, check=False)
    assert done.returncode == 0, done.stderr + deployment["logs"]()
    assert json.loads(done.stdout)["run"]["status"] == "succeeded"
    assert (work / "root/etc/kubernetes/pki/ca.crt").is_file()
    assert "NOPERM" not in (work / "node.log").read_text()


@pytest.mark.parametrize(("command", "args"), [
    ("llen", ["node.w1"]),  # another node's queue
    ("rpop", ["node.w1"]),
    ("get", ["kubeboot:cluster:kubernetes:key"]),  # a cluster's data key
    ("publish", ["/0.celery.pidbox", "x"]),  # a broadcast command to the workers
    ("keys", ["*"]),
    ("flushall", []),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_node_user_cannot_reach_other_nodes_cluster_keys_or_broadcasts(deployment, command: str, args) -> None:
    node = redis.Redis.from_url(deployment["urls"]["node-cp1"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        node.execute_command(command.upper(), *args)


def test_a_parent_task_a_node_user_pushes_onto_control_is_refused_by_the_control_worker(deployment) -> None:
    """A node's user may push onto ``control`` (its chain's next link goes there): what stops a forged
    cluster task is its missing token, checked by the control worker."""
    from kubeboot.config.cluster import build_cluster
    from kubeboot.config.settings import Settings
    from kubeboot.tasks.state import RunStore
    from kubeboot.tasks.trust.guard import REFUSED_STREAM
    from kubeboot.tasks.trust.keyring import keyring_for
    from kubeboot.workers.celery_app import make_app
    from kubeboot.workflows.cluster_plan import ClusterRunSpec

    settings = Settings(state_dir=deployment["dir"] / "state")
    control = redis.Redis.from_url(deployment["urls"]["control"])
    doc = {"apiVersion": "kubeboot.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": "forged"},
           "spec": {"clusterConfiguration": {"encryptionAlgorithm": "ECDSA-P256"},
                    "nodes": [{"name": "forged-cp1", "address": "10.9.0.1", "role": "control-plane"}]}}
    spec = ClusterRunSpec(build_cluster(doc, "test", kubeadm_checks=False), dry_run=True)  # ready: succeeded at once
    run = RunStore(control, keyring_for(settings, "client")).create_run(
        kind="cluster", cluster="forged", config=spec.to_config(), plan=spec.steps(), run_id="c-f0f0f0f0",
        extra={"route": json.dumps(spec.route()), "done": "0"})
    node_app = make_app(deployment["urls"]["node-cp1"], settings)
    node_app.send_task("kubeboot.cluster.ready", args=[run.id], queue="control", task_id="forged-ready")

    def refusals() -> list[bytes]:
        return [f[b"reason"] for _, f in control.xrange(REFUSED_STREAM) if f[b"id"] == b"forged-ready"]

    end = time.monotonic() + DEADLINE
    while not refusals() and time.monotonic() < end:
        time.sleep(0.1)
    assert refusals(), deployment["logs"]()
    assert b"no valid authorisation token" in refusals()[0]
    assert control.hget(f"kubeboot:run:{run.id}", "status") == b"pending"


def test_flower_user_follows_the_event_channel_and_reads_nothing_else(deployment) -> None:
    flower = redis.Redis.from_url(deployment["urls"]["flower"])
    pubsub = flower.pubsub()
    pubsub.psubscribe("/0.celeryev/*")
    end, seen = time.monotonic() + DEADLINE, None
    while seen is None and time.monotonic() < end:  # workers send heartbeats every 2 s
        message = pubsub.get_message(timeout=1.0)
        if message and message["type"] == "pmessage":
            seen = message["channel"]
    pubsub.close()
    assert seen is not None and seen.startswith(b"/0.celeryev/")
    assert flower.llen("control") >= 0
    for command, args in (("GET", ["kubeboot:runs"]), ("HGETALL", ["kubeboot:run:x"]), ("LPUSH", ["control", "x"]),
                          ("PUBLISH", ["/0.celery.pidbox", "x"]), ("RPOP", ["node.cp1"])):
        with pytest.raises(redis.exceptions.NoPermissionError):
            flower.execute_command(command, *args)


def test_the_default_user_is_off(deployment) -> None:
    url = deployment["urls"]["control"].replace("control:pw-control-1@", "")
    with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError,
                        redis.exceptions.ResponseError)):
        redis.Redis.from_url(url).get("kubeboot:runs")
