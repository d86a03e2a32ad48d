"""compose.yaml: it parses, and every queue the routing can produce has a consuming service."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kubeboot.workflows.phase import walk
from kubeboot.workflows.registry import WORKFLOWS
from kubeboot.workflows.routing import CONTROL_QUEUE, node_queue, queue_for

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"
_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, object]]:
    doc = yaml.safe_load(COMPOSE.read_text())
    return doc["services"]


def consumed_queues(services: dict[str, dict[str, object]]) -> set[str]:
    queues: set[str] = set()
    for svc in services.values():
        cmd = [_DEFAULT.sub(lambda m: m.group(2), str(a)) for a in svc.get("command", [])]  # type: ignore[attr-defined]
        if cmd[:3] == ["kubeboot", "worker", "control"]:
            queues.add(CONTROL_QUEUE)
        if cmd[:3] == ["kubeboot", "worker", "node"]:
            queues.add(node_queue(cmd[cmd.index("--id") + 1]))
    return queues


def test_compose_file_has_redis_control_node_and_flower(services) -> None:
    assert {"redis", "control", "node", "flower"} <= set(services)


def test_every_queue_a_run_of_the_compose_node_can_produce_has_a_consumer(services) -> None:
    consumed = consumed_queues(services)
    node_ids = [q.removeprefix("node.") for q in consumed if q.startswith("node.")]
    assert node_ids == ["cp1"]
    produced = {CONTROL_QUEUE}  # the last link of every chain (kubeboot.run.finish) runs on control
    for workflow, roots in WORKFLOWS.items():
        for placed in walk(roots, workflow):
            produced.add(queue_for(placed.phase.target, node_ids[0]))
    assert produced <= consumed


def test_redis_persists_and_flower_requires_authentication(services) -> None:
    assert "--appendonly" in services["redis"]["command"]
    assert "KUBEBOOT_FLOWER_BASIC_AUTH" in services["flower"]["environment"]


def test_the_node_worker_runs_on_the_host_with_the_systemd_kubelet_driver(services) -> None:
    node = services["node"]
    assert node["network_mode"] == "host"
    assert node["command"][-2:] == ["--kubelet", "systemd"]
    mounts = {v.split(":")[1] for v in node["volumes"]}
    assert {"/host/etc/kubernetes", "/host/var/lib/kubelet", "/host/var/lib/etcd"} <= mounts


def test_a_worker_app_can_forward_a_chain_to_any_node_queue_but_to_nothing_else() -> None:
    from kubeboot.config.settings import Settings
    from kubeboot.workers.celery_app import make_app

    app = make_app("redis://127.0.0.1:1/0", Settings())
    assert app.amqp.queues["node.sb1-cp1"].name == "node.sb1-cp1"
    for name in ("celery", "node.", "node.Bad_Name", "other"):
        with pytest.raises(KeyError):
            app.amqp.queues[name]
