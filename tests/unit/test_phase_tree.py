"""The init phase tree and kubeadm's path semantics for selecting and skipping phases."""

from __future__ import annotations

import importlib

import pytest

from kubeboot.config.loader import build_init_config
from kubeboot.config.phasenames import INIT_PHASE_PATHS
from kubeboot.workflows.init_tree import INIT_PHASES
from kubeboot.workflows.phase import walk
from kubeboot.workflows.selection import UnknownPhaseError, select

V4 = "kubeadm.k8s.io/v1beta4"
NODE = {"apiVersion": V4, "kind": "InitConfiguration",
        "nodeRegistration": {"name": "cp1"}, "localAPIEndpoint": {"advertiseAddress": "10.0.0.10"}}
EXTERNAL_ETCD = {"apiVersion": V4, "kind": "ClusterConfiguration",
                 "etcd": {"external": {"endpoints": ["https://10.0.0.50:2379"], "caFile": "/etc/etcd/ca.crt",
                                       "certFile": "/etc/etcd/client.crt", "keyFile": "/etc/etcd/client.key"}}}


@pytest.fixture
def cfg():
    return build_init_config([NODE])


def ran(steps):
    return [s.path for s in steps if not s.skip_reason]


def test_top_level_phases_follow_kubeadms_current_order() -> None:
    assert [p.name for p in INIT_PHASES] == [
        "preflight", "certs", "kubeconfig", "etcd", "control-plane", "kubelet-start", "wait-control-plane",
        "upload-config", "upload-certs", "mark-control-plane", "bootstrap-token", "kubelet-finalize", "addon",
        "show-join-command"]


def test_api_phases_go_to_the_control_worker_and_file_phases_to_the_node() -> None:
    targets = {p.path: p.phase.target for p in walk(INIT_PHASES, "init") if p.phase.action}
    control = {"upload-config/kubeadm", "upload-config/kubelet", "mark-control-plane", "bootstrap-token",
               "addon/coredns", "addon/kube-proxy", "show-join-command"}
    assert {p for p, t in targets.items() if t == "control"} == control
    assert targets["wait-control-plane"] == targets["upload-certs"] == "node"
    assert targets["kubelet-finalize/enable-client-cert-rotation"] == "node"


def test_upload_certs_runs_only_when_asked_for(cfg) -> None:
    from kubeboot.workflows.local import plan_init

    steps = {s.path: s.skip_reason for s in plan_init(cfg)}
    assert steps["upload-certs"] == "--upload-certs not given"
    assert {s.path: s.skip_reason for s in plan_init(cfg, upload_certs=True)}["upload-certs"] == ""


def test_disabled_dns_and_proxy_drop_their_addons() -> None:
    cfg = build_init_config([NODE, {"apiVersion": V4, "kind": "ClusterConfiguration",
                                    "dns": {"disabled": True}, "proxy": {"disabled": True}}])
    steps = {s.path: s.skip_reason for s in select(INIT_PHASES, "init", cfg)}
    assert steps["addon/coredns"] == "dns.disabled is true"
    assert steps["addon/kube-proxy"] == "proxy.disabled is true"


def test_every_tree_path_is_a_kubeadm_phase_name_known_to_config_validation() -> None:
    tree = [p.path for p in walk(INIT_PHASES, "init")]
    assert len(tree) == len(set(tree))
    assert set(tree) <= set(INIT_PHASE_PATHS)


def test_every_action_resolves_to_a_callable_in_tasks_phases() -> None:
    for placed in walk(INIT_PHASES, "init"):
        if placed.phase.action:
            module, _, func = placed.phase.action.partition(":")
            assert module.startswith("kubeboot.tasks.phases.")
            assert callable(getattr(importlib.import_module(module), func)), placed.path


def test_task_names_are_stable_dotted_paths() -> None:
    names = {p.path: p.task_name for p in walk(INIT_PHASES, "init")}
    assert names["certs/apiserver"] == "kubeboot.init.certs.apiserver"
    assert names["control-plane/apiserver"] == "kubeboot.init.control-plane.apiserver"
    assert names["preflight"] == "kubeboot.init.preflight"


def test_all_runs_parents_before_their_children(cfg) -> None:
    order = ran(select(INIT_PHASES, "init", cfg))
    assert order.index("certs") < order.index("certs/ca") < order.index("certs/apiserver")
    assert order.index("certs/sa") < order.index("kubeconfig")
    assert order.index("kubelet-start") < order.index("wait-control-plane") < order.index("upload-config/kubeadm")
    assert order[-1] == "show-join-command"


@pytest.mark.parametrize("target", ["certs", "certs/all", "certs/"])
def test_a_parent_path_runs_the_parent_and_all_its_children(cfg, target) -> None:
    order = ran(select(INIT_PHASES, "init", cfg, target))
    assert order[0] == "certs"
    assert len(order) == 12
    assert all(p.startswith("certs") for p in order)


def test_a_leaf_path_runs_only_that_leaf(cfg) -> None:
    assert ran(select(INIT_PHASES, "init", cfg, "certs/apiserver")) == ["certs/apiserver"]


def test_skipping_a_parent_skips_its_whole_subtree(cfg) -> None:
    steps = select(INIT_PHASES, "init", cfg, skip=["kubeconfig"])
    assert not [p for p in ran(steps) if p.startswith("kubeconfig")]
    assert "certs/ca" in ran(steps)


def test_skipping_a_leaf_keeps_its_siblings(cfg) -> None:
    order = ran(select(INIT_PHASES, "init", cfg, skip=["certs/apiserver"]))
    assert "certs/apiserver" not in order
    assert "certs/apiserver-kubelet-client" in order


def test_external_etcd_drops_the_etcd_certs_and_the_local_etcd_manifest() -> None:
    cfg = build_init_config([NODE, EXTERNAL_ETCD])
    steps = {s.path: s.skip_reason for s in select(INIT_PHASES, "init", cfg)}
    for path in ["certs/etcd-ca", "certs/etcd-server", "certs/etcd-peer", "certs/etcd-healthcheck-client",
                 "certs/apiserver-etcd-client", "etcd/local"]:
        assert steps[path] == "external etcd is configured"
    assert steps["certs/apiserver"] == ""


def test_skip_phases_from_the_config_file_are_honoured() -> None:
    cfg = build_init_config([{**NODE, "skipPhases": ["preflight"]}])
    from kubeboot.workflows.local import plan_init

    assert "preflight" not in ran(plan_init(cfg))


@pytest.mark.parametrize(("target", "skip"), [("certs/nope", []), ("all", ["no-such-phase"])])
def test_an_unknown_phase_path_is_bad_input_naming_the_valid_ones(cfg, target, skip) -> None:
    with pytest.raises(UnknownPhaseError, match=r"unknown phase .*valid phases: .*certs/apiserver"):
        select(INIT_PHASES, "init", cfg, target, skip)


def test_the_local_target_runs_the_node_phases_up_to_kubelet_start_and_nothing_after(cfg) -> None:
    from kubeboot.workflows.local import plan_init

    order = ran(plan_init(cfg, "local"))
    assert order[0] == "preflight"
    assert order[-1] == "kubelet-start"
    assert "wait-control-plane" not in order
    assert "certs/apiserver" in order
