"""Planning a cluster run (steps, stages, child ids, routes) and the batch's estimate of the time left."""

from __future__ import annotations

import pytest

from kubeboot.config.cluster import build_cluster
from kubeboot.workflows.cluster_plan import ClusterRunSpec, certs_child_id, child_id, cluster_run_id
from kubeboot.workflows.parent_status import ClusterRow, estimate, seconds


def spec(control_planes: int = 3, workers: int = 2, *, dry_run: bool = False) -> ClusterRunSpec:
    nodes = [{"name": f"cp{i}", "address": f"10.0.0.{i}", "role": "control-plane"}
             for i in range(1, control_planes + 1)]
    nodes += [{"name": f"w{i}", "address": f"10.0.1.{i}", "role": "worker", "workerId": f"machine-{i}"}
              for i in range(1, workers + 1)]
    doc = {"apiVersion": "kubeboot.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": "ha"},
           "spec": {"clusterConfiguration": {"controlPlaneEndpoint": "10.0.0.254:6443"}, "nodes": nodes}}
    return ClusterRunSpec(build_cluster(doc, "c.yaml"), dry_run)


def test_init_first_then_each_control_plane_alone_then_every_worker_at_once() -> None:
    s = spec(3, 2)
    assert s.steps() == [("cp1", "init"), ("cp2", "join"), ("cp3", "join"), ("w1", "join"), ("w2", "join")]
    assert s.stages() == [["cp1"], ["cp2"], ["cp3"], ["w1", "w2"]]


def test_a_cluster_of_one_node_is_one_stage() -> None:
    assert spec(1, 0).stages() == [["cp1"]]


def test_a_node_added_later_is_the_only_step_of_its_run() -> None:
    s = ClusterRunSpec(spec().cluster, base="c-00000000", only=("w2",))
    assert (s.steps(), s.stages()) == ([("w2", "join")], [["w2"]])


def test_child_ids_extend_their_parents_so_one_search_finds_a_whole_batch() -> None:
    cluster = cluster_run_id("b-12345678", "ha")
    assert cluster == "b-12345678.ha"
    assert child_id(cluster, "cp2") == "b-12345678.ha.cp2"
    assert certs_child_id(cluster, "cp2") == "b-12345678.ha.cp2.certs"
    assert all(i.startswith("b-12345678") for i in (cluster, child_id(cluster, "w1")))


def test_children_go_to_their_nodes_worker_queues() -> None:
    s = spec()
    assert s.child_route("w1", "c-1") == {"nodes": {"w1": "node.machine-1"}, "control": "control"}
    assert s.route()["nodes"]["cp2"] == "node.cp2"


def test_a_dry_runs_children_go_to_the_dry_run_queue_and_share_their_clusters_scope() -> None:
    s = spec(dry_run=True)
    assert s.child_route("w1", "c-1") == {"nodes": {"w1": "dry-run"}, "control": "dry-run", "dryRun": True,
                                          "scope": "c-1"}


def test_the_spec_a_run_stores_reloads_as_it_was() -> None:
    s = ClusterRunSpec(spec().cluster, True, base="c-1", only=("w1",))
    again = ClusterRunSpec.from_config(s.to_config(), "run")
    assert (again.cluster, again.dry_run, again.base, again.only) == (s.cluster, True, "c-1", ("w1",))


# --- estimates ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("finished, running, pending, concurrency, expected", [
    pytest.param([], [], 0, 4, 0.0, id="nothing left"),
    pytest.param([], [5.0], 3, 4, None, id="nothing ended yet: not known"),
    pytest.param([60.0, 60.0], [], 8, 4, 120.0, id="8 left of 60 s, 4 at a time: 2 rounds"),
    pytest.param([60.0], [50.0, 20.0], 0, 4, 25.0, id="only running ones: what they have left, shared by their lanes"),
    pytest.param([60.0], [90.0], 0, 4, 0.0, id="one running longer than the mean: nothing more expected"),
    pytest.param([30.0, 90.0], [], 3, 1, 180.0, id="one at a time"),
])
def test_the_estimate_of_the_time_left(finished: list[float], running: list[float], pending: int, concurrency: int,
                                       expected: float | None) -> None:
    assert estimate(finished, running, pending, concurrency) == expected


def test_a_cluster_rows_json_is_the_documented_shape() -> None:
    row = ClusterRow("sb1", "b-1.sb1", "running", "sb1-w1 kubelet-start", 1, 2, "2026-01-01T00:00:00.000Z", None,
                     None)
    assert row.to_json("2026-01-01T00:01:30.000Z") == {
        "cluster": "sb1", "run": "b-1.sb1", "status": "running", "phase": "sb1-w1 kubelet-start",
        "nodes": {"done": 1, "total": 2}, "started": "2026-01-01T00:00:00.000Z", "finished": None,
        "duration": 90.0, "error": None}
    assert seconds(None, "2026-01-01T00:00:00.000Z") is None


def test_a_worker_added_later_without_an_address_reloads_from_the_runs_config() -> None:
    from kubeboot.config.cluster import NodeSpec

    whole = spec().cluster
    later = NodeSpec(name="w9", role="worker")
    doc = whole.model_copy(update={"spec": whole.spec.model_copy(update={"nodes": [*whole.nodes, later]})})
    again = ClusterRunSpec.from_config(ClusterRunSpec(doc, base="c-1", only=("w9",)).to_config(), "run")
    assert (again.steps(), again.node("w9").address) == ([("w9", "join")], "")
