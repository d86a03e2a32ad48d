"""The dry-run client (kubeadm's apiclient/dryrun.go): writes printed and kept, never sent; reads answered
from what the dry run wrote, then from kubeadm's made-up objects, else 404. Through kubeboot's own
``kubeapi`` helpers, as the phases call them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubeboot.tasks import discovery, dryrun, kubeapi

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
      "data": {"ClusterConfiguration": "clusterName: demo\n"}}
SECRET = {"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
          "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
          "data": {"token-id": "YWJjZGVm", "token-secret": "MDEyMzQ1Njc4OWFiY2RlZg=="}}


def session(tmp_path: Path, workflow: str = "init", show_secrets: bool = False) -> tuple[object, list[str]]:
    lines: list[str] = []
    ctx = dryrun.session(tmp_path / "api", lines.append, workflow=workflow, show_secrets=show_secrets)
    return ctx, lines


def test_a_write_is_printed_as_kubeadm_prints_it_and_kept_not_sent(tmp_path: Path) -> None:
    ctx, lines = session(tmp_path)
    with ctx:  # type: ignore[attr-defined]
        api = kubeapi.api_client(b"not even a kubeconfig: nothing is sent")
        kubeapi.ensure(api, CM)
        read = kubeapi.get(api, "ConfigMap", "kubeadm-config", "kube-system")
    assert lines[:2] == ['[dryrun] Would perform action CREATE on resource "configmaps" in API group "core/v1"',
                         '[dryrun] Resource name "kubeadm-config", namespace "kube-system"']
    assert lines[2].startswith("[dryrun] Attached object:\napiVersion: v1\n")
    assert read is not None and read["data"] == CM["data"]  # the GET of what the run itself created
    stored = json.loads((tmp_path / "api/core/configmaps/kube-system/kubeadm-config.json").read_text())
    assert stored["metadata"]["uid"] and stored["metadata"]["resourceVersion"] == "1"


def test_ensuring_again_reads_back_and_writes_nothing_new(tmp_path: Path) -> None:
    ctx, lines = session(tmp_path)
    with ctx:  # type: ignore[attr-defined]
        api = kubeapi.api_client(b"")
        kubeapi.ensure(api, CM)
        lines.clear()
        kubeapi.ensure(api, CM)
    verbs = [line for line in lines if "Would perform action" in line]
    assert verbs == ['[dryrun] Would perform action CREATE on resource "configmaps" in API group "core/v1"',
                     '[dryrun] Would perform action GET on resource "configmaps" in API group "core/v1"']


def test_a_missing_object_is_404_as_from_a_server(tmp_path: Path) -> None:
    ctx, _ = session(tmp_path)
    with ctx:  # type: ignore[attr-defined]
        assert kubeapi.get(kubeapi.api_client(b""), "Secret", "kubeadm-certs", "kube-system") is None


def test_any_node_exists_and_can_be_marked_as_kubeadms_node_reactors_say(tmp_path: Path) -> None:
    ctx, lines = session(tmp_path)
    with ctx:  # type: ignore[attr-defined]
        api = kubeapi.api_client(b"")
        assert kubeapi.get(api, "Node", "cp1")["metadata"]["annotations"] == {
            "kubeadm.alpha.kubernetes.io/cri-socket": "dry-run-cri-socket"}
        changed = kubeapi.patch_node(api, "cp1", lambda n: n["metadata"].setdefault("labels", {}).update(x="") or True,
                                     "marking cp1")
    assert changed
    assert '[dryrun] Would perform action PATCH on resource "nodes" in API group "core/v1"' in lines


def test_a_join_reads_kubeadms_made_up_cluster_objects_unless_the_dry_run_wrote_its_own(tmp_path: Path) -> None:
    ctx, _ = session(tmp_path, workflow="join")
    with ctx:  # type: ignore[attr-defined]
        api = kubeapi.api_client(b"")
        made_up = kubeapi.get(api, "ConfigMap", "kubeadm-config", "kube-system")
        assert made_up is not None and "clusterName: kubernetes" in made_up["data"]["ClusterConfiguration"]
        kubeapi.ensure(api, CM)
        assert kubeapi.get(api, "ConfigMap", "kubeadm-config", "kube-system")["data"] == CM["data"]


@pytest.mark.parametrize("show, shown", [(False, "<redacted>"), (True, "MDEyMzQ1Njc4OWFiY2RlZg==")])
def test_a_secrets_data_is_printed_only_to_the_users_terminal(tmp_path: Path, show: bool, shown: str) -> None:
    ctx, lines = session(tmp_path, show_secrets=show)
    with ctx:  # type: ignore[attr-defined]
        kubeapi.ensure(kubeapi.api_client(b""), SECRET)
    assert f"\n  token-secret: {shown}\n" in "\n".join(lines)
    assert ("MDEyMzQ1Njc4OWFiY2RlZg==" in "\n".join(lines)) is show


def test_outside_a_session_the_real_client_is_made(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="kubeconfig"):
        kubeapi.api_client(b"[]")  # parsed as a real kubeconfig, and refused


def test_discovery_in_a_dry_run_reads_its_own_cluster_info_signed_for_the_joins_token(tmp_path: Path) -> None:
    tracker = dryrun.Tracker(tmp_path / "api")
    fetch = dryrun.cluster_info_fetch(tracker, "10.0.0.1:6443", "abcdef.0123456789abcdef")
    ca, pin = dryrun.fake_ca()
    info = discovery.token_discovery("10.0.0.1:6443", "abcdef.0123456789abcdef", [pin], fetch)
    assert (info.server, info.ca_pem, info.ca_hash) == ("https://10.0.0.1:6443", ca, pin)
    with pytest.raises(discovery.DiscoveryPending):  # signed for the join's token only
        discovery.token_discovery("10.0.0.1:6443", "zzzzzz.0123456789abcdef", [pin], fetch)
