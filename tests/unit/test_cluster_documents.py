"""Cluster and Batch documents: what a good one turns into (each node's kubeadm documents), and every
bad one is one line naming the file, the document, the field and the node, with exit 2 from the CLI."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeboot.config.batch import build_batch
from kubeboot.config.cluster import build_cluster
from kubeboot.config.errors import ConfigError

TOKEN = "abcdef.0123456789abcdef"
KEY = "ab" * 32


def cluster_doc(name: str = "demo", **spec: Any) -> dict[str, Any]:
    nodes = [
        {"name": f"{name}-cp1", "address": "10.0.0.1", "role": "control-plane"},
        {"name": f"{name}-cp2", "address": "10.0.0.2", "role": "control-plane", "workerId": f"m-{name}-2"},
        {"name": f"{name}-w1", "address": "10.0.0.3", "role": "worker", "labels": {"zone": "a", "tier": "web"},
         "taints": [{"key": "gpu", "effect": "NoSchedule"}], "kubeletExtraArgs": [{"name": "max-pods", "value": "50"}]},
    ]
    return {"apiVersion": "kubeboot.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": name},
            "spec": {"clusterConfiguration": {"controlPlaneEndpoint": "lb.example.test:6443"}, "nodes": nodes,
                     **spec}}


def test_the_first_control_plane_node_is_initialised_with_the_runs_token_and_key() -> None:
    cluster = build_cluster(cluster_doc(), "c.yaml")
    init, cc = cluster.init_documents(token=TOKEN, certificate_key=KEY, dry_run=True)
    assert init["nodeRegistration"]["name"] == "demo-cp1"
    assert init["localAPIEndpoint"] == {"advertiseAddress": "10.0.0.1", "bindPort": 6443}
    assert (init["bootstrapTokens"][0]["token"], init["certificateKey"], init["dryRun"]) == (TOKEN, KEY, True)
    assert (cc["clusterName"], cc["controlPlaneEndpoint"]) == ("demo", "lb.example.test:6443")


def test_a_worker_joins_with_its_labels_taints_and_kubelet_arguments() -> None:
    cluster = build_cluster(cluster_doc(), "c.yaml")
    doc = cluster.join_document(cluster.node("demo-w1"), token=TOKEN, certificate_key=KEY, ca_pins=["sha256:00"])
    reg = doc["nodeRegistration"]
    assert reg["kubeletExtraArgs"] == [{"name": "max-pods", "value": "50"},
                                       {"name": "node-labels", "value": "tier=web,zone=a"}]
    assert reg["taints"] == [{"key": "gpu", "value": "", "effect": "NoSchedule"}]
    assert doc["discovery"]["bootstrapToken"] == {"token": TOKEN, "apiServerEndpoint": "lb.example.test:6443",
                                                  "caCertHashes": ["sha256:00"]}
    assert "controlPlane" not in doc


def test_a_control_plane_join_carries_its_address_and_the_certificate_key() -> None:
    cluster = build_cluster(cluster_doc(), "c.yaml")
    doc = cluster.join_document(cluster.node("demo-cp2"), token=TOKEN, certificate_key=KEY, ca_pins=[])
    assert doc["controlPlane"] == {"localAPIEndpoint": {"advertiseAddress": "10.0.0.2", "bindPort": 6443},
                                   "certificateKey": KEY}
    assert "taints" not in doc["nodeRegistration"]  # unset: kubeadm's control-plane taint


def test_worker_ids_default_to_the_node_name() -> None:
    cluster = build_cluster(cluster_doc(), "c.yaml")
    assert [n.worker for n in cluster.nodes] == ["demo-cp1", "m-demo-2", "demo-w1"]


def test_without_an_endpoint_nodes_discover_the_first_control_plane() -> None:
    doc = cluster_doc()
    doc["spec"]["clusterConfiguration"] = {}
    doc["spec"]["nodes"] = [n for n in doc["spec"]["nodes"] if n["name"] != "demo-cp2"]
    assert build_cluster(doc, "c.yaml").join_endpoint == "10.0.0.1:6443"


def _mutated(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(cluster_doc())
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize("path, value, expected", [
    pytest.param(["spec", "nodes", 2, "role"], "boss",
                 "c.yaml: Cluster demo: spec.nodes[2].role: node demo-w1: Input should be 'control-plane' or 'worker'",
                 id="a role that is neither control-plane nor worker"),
    pytest.param(["spec", "nodes", 0, "address"], "10.0.0",
                 "c.yaml: Cluster demo: spec.nodes[0].address: node demo-cp1: '10.0.0' is not a valid IP address",
                 id="an address that is not an IP"),
    pytest.param(["spec", "nodes", 2, "address"], _DELETE,
                 "c.yaml: Cluster demo: spec.nodes[2].address: node demo-w1: required field is missing (the node's "
                 "IP address)", id="a node without an address"),
    pytest.param(["spec", "nodes", 1, "name"], "demo-cp1",
                 "c.yaml: Cluster demo: spec.nodes[1].name: node demo-cp1: the name is also spec.nodes[0]'s",
                 id="two nodes of one name"),
    pytest.param(["spec", "nodes", 2, "workerId"], "m-demo-2",
                 "c.yaml: Cluster demo: spec.nodes[2].workerId: node demo-w1: worker m-demo-2 also serves "
                 "spec.nodes[1]: one node worker serves one node", id="one worker for two nodes"),
    pytest.param(["spec", "nodes", 2, "labels"], {"node-role.kubernetes.io/worker": ""},
                 "c.yaml: Cluster demo: spec.nodes[2].labels.node-role.kubernetes.io/worker: node demo-w1: label "
                 "'node-role.kubernetes.io/worker': the kubelet may not set labels in the kubernetes.io or k8s.io "
                 "namespaces except kubelet.kubernetes.io, node.kubernetes.io and the well-known ones",
                 id="a label the kubelet may not set"),
    pytest.param(["spec", "nodes", 2, "taints"], [{"key": "gpu", "effect": "Sometimes"}],
                 "c.yaml: Cluster demo: spec.nodes[2].taints[0].effect: node demo-w1: Input should be 'NoSchedule', "
                 "'PreferNoSchedule' or 'NoExecute'", id="a taint effect kubeadm does not know"),
    pytest.param(["spec", "clusterConfiguration", "controlPlaneEndpoint"], _DELETE,
                 "c.yaml: Cluster demo: spec.clusterConfiguration.controlPlaneEndpoint: node demo-cp2: joining a "
                 "second control-plane node needs a stable controlPlaneEndpoint (a load balancer or DNS name in "
                 "front of the API servers)", id="two control planes without an endpoint"),
    pytest.param(["spec", "clusterConfiguration", "clusterName"], "other",
                 "c.yaml: Cluster demo: spec.clusterConfiguration.clusterName: clusterName 'other' differs from "
                 "metadata.name 'demo': kubeboot knows a cluster by one name", id="two names for one cluster"),
    pytest.param(["spec", "clusterConfiguration", "networking"], {"podSubnet": "10.0.0.0/33"},
                 "c.yaml: Cluster demo: spec.clusterConfiguration.networking.podSubnet:",
                 id="kubeadm's own validation, re-addressed"),
    pytest.param(["spec", "timeouts"], {"nodeWorker": "soon"},
                 "c.yaml: Cluster demo: spec.timeouts.nodeWorker:", id="a timeout that is no duration"),
    pytest.param(["spec", "nodes"], [], "c.yaml: Cluster demo: spec.nodes:", id="no nodes"),
    pytest.param(["apiVersion"], "kubeboot.dev/v1",
                 "c.yaml: Cluster demo: apiVersion: must be kubeboot.dev/v1alpha1 (got 'kubeboot.dev/v1')",
                 id="another apiVersion"),
    pytest.param(["spec", "nodes", 0, "colour"], "red", "c.yaml: Cluster demo: spec.nodes[0].colour: node demo-cp1: "
                 "unknown field", id="an unknown field"),
])
def test_a_bad_cluster_is_one_line_naming_file_document_field_and_node(path: list[Any], value: Any,
                                                                       expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_cluster(_mutated(path, value), "c.yaml")
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


def test_a_cluster_without_a_control_plane_node_is_refused() -> None:
    doc = cluster_doc()
    doc["spec"]["nodes"] = [n | {"role": "worker"} for n in doc["spec"]["nodes"]]
    with pytest.raises(ConfigError, match=r"spec.nodes: a cluster needs at least one node with role control-plane"):
        build_cluster(doc, "c.yaml")


# --- batches ------------------------------------------------------------------------------------------------

def template_batch(count: int, **spec: Any) -> dict[str, Any]:
    template = cluster_doc("c${index}")
    return {"apiVersion": "kubeboot.dev/v1alpha1", "kind": "Batch", "metadata": {"name": "fleet"},
            "spec": {"template": template, "count": count, **spec}}


def test_a_template_and_a_count_expand_into_distinct_clusters() -> None:
    batch = build_batch(template_batch(3, concurrency=2), "b.yaml")
    assert [c.name for c in batch.clusters] == ["c1", "c2", "c3"]
    assert [n.name for n in batch.clusters[2].nodes] == ["c3-cp1", "c3-cp2", "c3-w1"]
    assert batch.concurrency == 2
    assert build_batch(batch.to_document(), "stored").clusters == batch.clusters  # what the run keeps reloads


def test_a_list_of_clusters_keeps_its_order() -> None:
    doc = {"apiVersion": "kubeboot.dev/v1alpha1", "kind": "Batch", "metadata": {"name": "fleet"},
           "spec": {"clusters": [cluster_doc("b"), cluster_doc("a")]}}
    assert [c.name for c in build_batch(doc, "b.yaml").clusters] == ["b", "a"]


@pytest.mark.parametrize("change, expected", [
    pytest.param(lambda d: d["spec"]["template"]["metadata"].update(name="same"),
                 "b.yaml: Batch fleet: spec.template (index 2).metadata.name: cluster same is also spec.template "
                 "(index 1): cluster names are unique in a batch", id="two clusters of one name"),
    pytest.param(lambda d: d["spec"]["template"]["spec"]["nodes"][2].update(workerId="shared"),
                 "b.yaml: Batch fleet: spec.template (index 2).spec.nodes: cluster c2: node c2-w1: worker shared also "
                 "serves a node of cluster c1", id="one worker for two clusters"),
    pytest.param(lambda d: d["spec"].update(count=0), "b.yaml: Batch fleet: spec.count: must be a positive integer",
                 id="no clusters"),
    pytest.param(lambda d: d["spec"].update(clusters=[]), "b.yaml: Batch fleet: spec: give either clusters, or "
                 "template and count", id="both a list and a template"),
    pytest.param(lambda d: d["spec"]["template"]["spec"]["nodes"][0].update(address="x${index}"),
                 "b.yaml: Batch fleet: spec.template (index 1): Cluster c1: spec.nodes[0].address: node c1-cp1: "
                 "'x1' is not a valid IP address", id="a cluster's own problem, in the batch"),
])
def test_a_bad_batch_is_one_line(change: Any, expected: str) -> None:
    doc = template_batch(2)
    change(doc)
    with pytest.raises(ConfigError) as err:
        build_batch(doc, "b.yaml")
    assert str(err.value).startswith(expected)


def test_submit_cluster_with_a_bad_document_exits_2_with_one_line_and_records_nothing(tmp_path: Path) -> None:
    bad = _mutated(["spec", "nodes", 2, "role"], "boss")
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(bad))
    env = {"KUBEBOOT_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "kubeboot.workers.cli", "submit", "cluster", "-f", str(path)],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {path}: Cluster demo: spec.nodes[2].role: node demo-w1: Input "
                                          "should be 'control-plane' or 'worker'"]
    assert not (tmp_path / "state").exists()  # no Redis started, nothing recorded
