"""The join phase tree (kubeadm v1.36's join.go), its plan for worker and control-plane joins, and the
flags of `kubeboot submit join` / `join phase` as a JoinConfiguration."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner

from kubeboot.config.join import JOIN_PHASE_PATHS, build_join_config
from kubeboot.workflows.join_runs import NOT_CONTROL_PLANE, plan_join, run_label
from kubeboot.workflows.join_tree import JOIN_PHASES
from kubeboot.workflows.phase import walk
from kubeboot.workflows.selection import UnknownPhaseError, paths

V4 = "kubeadm.k8s.io/v1beta4"
TOKEN = "abcdef.0123456789abcdef"
HASH = "sha256:" + "ab" * 32


def join(control_plane: bool = False, **over: Any) -> Any:
    doc: dict[str, Any] = {"apiVersion": V4, "kind": "JoinConfiguration", "nodeRegistration": {"name": "n1"},
                           "discovery": {"bootstrapToken": {"token": TOKEN, "apiServerEndpoint": "10.0.0.1:6443",
                                                            "caCertHashes": [HASH]}}}
    if control_plane:
        doc["controlPlane"] = {"localAPIEndpoint": {"advertiseAddress": "10.0.0.2"}, "certificateKey": "0f" * 32}
    doc.update(over)
    return build_join_config([doc])


def test_phases_follow_kubeadm_v1_36_join_order() -> None:
    assert [p.name for p in JOIN_PHASES] == [
        "preflight", "control-plane-prepare", "check-etcd", "kubelet-start", "etcd-join", "kubelet-wait-bootstrap",
        "control-plane-join", "wait-control-plane"]
    assert paths(JOIN_PHASES, "join") == list(JOIN_PHASE_PATHS)  # config's skipPhases list agrees


def test_only_mark_control_plane_goes_to_the_control_worker_and_check_etcd_is_hidden() -> None:
    placed = {p.path: p for p in walk(JOIN_PHASES, "join")}
    control = {path for path, p in placed.items() if p.phase.target == "control" and p.phase.action}
    assert control == {"control-plane-join/mark-control-plane"}
    assert [path for path, p in placed.items() if p.phase.extra.get("hidden")] == ["check-etcd"]
    assert placed["etcd-join"].task_name == "kubeboot.join.etcd-join"


def test_every_action_resolves_to_a_function() -> None:
    for p in walk(JOIN_PHASES, "join"):
        if p.phase.action:
            module, _, func = p.phase.action.partition(":")
            assert callable(getattr(importlib.import_module(module), func)), p.path


def test_a_worker_join_drops_the_control_plane_phases_with_the_reason() -> None:
    steps = {s.path: s.skip_reason for s in plan_join(join())}
    assert [p for p, why in steps.items() if not why] == ["preflight", "kubelet-start", "kubelet-wait-bootstrap"]
    assert steps["etcd-join"] == steps["control-plane-prepare/certs"] == NOT_CONTROL_PLANE


def test_a_control_plane_join_runs_every_phase_and_skips_what_is_asked() -> None:
    steps = {s.path: s.skip_reason for s in plan_join(join(True), skip=["check-etcd"])}
    assert [p for p, why in steps.items() if why] == ["check-etcd"]
    cfg_skips = {s.path: s.skip_reason for s in plan_join(join(True, skipPhases=["control-plane-prepare"]))}
    assert all(cfg_skips[p] for p in JOIN_PHASE_PATHS if p.startswith("control-plane-prepare"))


def test_a_single_phase_and_an_unknown_one() -> None:
    assert [s.path for s in plan_join(join(True), "control-plane-prepare/certs")] == ["control-plane-prepare/certs"]
    with pytest.raises(UnknownPhaseError, match="unknown phase 'etcd/local'"):
        plan_join(join(), "etcd/local")


def test_the_run_label_is_the_cluster_option_or_the_endpoint() -> None:
    assert run_label(join(), None) == "10.0.0.1-6443"
    assert run_label(join(), "prod") == "prod"


# --- the command line ---------------------------------------------------------------------------------


def cli(*args: str) -> Any:
    from kubeboot.workers.cli import main

    return CliRunner().invoke(main, list(args))


def test_the_flags_become_the_join_configuration_kubeadm_would_build() -> None:
    from kubeboot.workers.cli_join import flags_document

    doc = flags_document({"endpoint": "lb:6443", "token": TOKEN, "ca_hashes": (HASH,), "control_plane": True,
                          "certificate_key": "0f" * 32, "apiserver_advertise_address": "10.0.0.2",
                          "node_name": "cp2"})
    cfg = build_join_config([doc])
    assert cfg.endpoint == "lb:6443" and cfg.tls_bootstrap_token == TOKEN
    assert cfg.is_control_plane and cfg.local_endpoint().advertiseAddress == "10.0.0.2"
    assert cfg.certificate_key == "0f" * 32 and cfg.node_name == "cp2"


@pytest.mark.parametrize(("args", "fragment"), [
    (["10.0.0.1:6443", "--token", TOKEN, "--node-name", "n1"], "without caCertHashes can be unsafe"),
    (["10.0.0.1:6443", "--token", TOKEN, "--discovery-token-ca-cert-hash", HASH, "--certificate-key", "0f" * 32,
      "--node-name", "n1"], "--control-plane is also required"),
    (["10.0.0.1:6443", "--token", TOKEN, "--discovery-token-ca-cert-hash", HASH, "--apiserver-bind-port", "6444",
      "--node-name", "n1"], "--control-plane is also required"),
    (["10.0.0.1:6443", "--token", TOKEN, "--discovery-token-ca-cert-hash", HASH, "--apiserver-advertise-address",
      "10.0.0.2", "--node-name", "n1"], "--control-plane is also required"),
    (["--config", "x.yaml", "--token", TOKEN], "can not mix '--config' with arguments ['token']"),
    (["10.0.0.1:6443", "--token", TOKEN, "--discovery-token-ca-cert-hash", HASH], "--node-name"),
    (["10.0.0.1:6443", "--token", TOKEN, "--discovery-token-ca-cert-hash", HASH, "--node-name", "n1",
      "--ignore-preflight-errors", "all,Swap"], "don't specify individual checks if 'all' is used"),
])
def test_bad_join_flags_are_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    result = cli("join", "phase", "preflight", *args)
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert result.output.count("\n") == 1


def test_join_phase_help_lists_the_tree_without_hidden_phases() -> None:
    result = cli("join", "phase", "--help")
    assert result.exit_code == 0
    assert "  etcd-join                    Join etcd for control plane nodes" in result.output
    assert "check-etcd" not in result.output


def test_the_unsafe_skip_flag_joins_without_a_pin_and_discovery_pins_nothing(tmp_path: Any) -> None:
    from kubeboot.sandbox.jws import detached_sign
    from kubeboot.tasks import kubeconfig as kc
    from kubeboot.tasks import pki
    from kubeboot.tasks.fsutil import NodeFS
    from kubeboot.tasks.phases import joincluster
    from kubeboot.tasks.phases.joincontext import JoinNodeContext
    from kubeboot.workers.cli_join import flags_document

    doc = flags_document({"endpoint": "10.0.0.1:6443", "token": TOKEN, "unsafe_skip": True, "node_name": "w1"})
    assert doc["discovery"]["bootstrapToken"] == {"token": TOKEN, "apiServerEndpoint": "10.0.0.1:6443",
                                                  "caCertHashes": [], "unsafeSkipCAVerification": True}
    cfg = build_join_config([doc])
    key = pki.generate_key("ECDSA-P256")
    ca = pki.cert_to_pem(pki.build_certificate(pki.CertSpec("any-ca", is_ca=True), key.public_key(), key, None,
                                               datetime.now(UTC)))
    text = kc.dump(kc.kubeconfig_without_user("https://10.0.0.1:6443", ca))
    fetched: list[bytes | None] = []

    def fetch(endpoint: str, with_ca: bytes | None) -> dict[str, Any]:
        fetched.append(with_ca)
        return {"data": {"kubeconfig": text, "jws-kubeconfig-abcdef": detached_sign(text, "abcdef", TOKEN[7:])}}

    ctx = JoinNodeContext(cfg.provisional_init_config(), NodeFS(tmp_path), join=cfg, fetch=fetch)
    assert joincluster.discover(ctx).ca_pem == ca  # a CA nobody pinned is trusted, on the signature alone
    assert fetched == [None]


def test_the_unsafe_skip_flag_is_accepted_by_the_command_line() -> None:
    flags = ["10.0.0.1:6443", "--token", TOKEN, "--node-name", "n1"]
    assert "without caCertHashes can be unsafe" in cli("join", "phase", "no-such-phase", *flags).output
    result = cli("join", "phase", "no-such-phase", *flags, "--discovery-token-unsafe-skip-ca-verification")
    assert result.exit_code == 2 and "unknown phase 'no-such-phase'" in result.output  # past the flags' checks
