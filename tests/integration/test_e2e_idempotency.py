"""Running init again on a finished sandbox cluster changes nothing: `kubeboot resume` of the finished run,
then a second full `kubeboot submit init` of the same cluster (a new run).

A second init does what kubeadm's does to the pinned token: UpdateOrCreateTokens updates its Secret
with a fresh expiration (now + ttl), so that Secret alone gets a new resourceVersion, same uid, same
token; every other object keeps its resourceVersion. Mirror Pods are the kubelet's (their status moves
when kubelet-start restarts the kubelet): they keep their uid.

What a new run would generate afresh is pinned in the config, as a kubeadm user pins it to re-run init:
``bootstrapTokens[0].token`` (tasks/tokens.py: a token comes from the config, else from the run's
secrets, else is generated — a new run would otherwise mint a second default token, as a second
`kubeadm init` does) and ``certificateKey`` (otherwise a new run picks a new key and re-seals
kubeadm-certs with it, as kubeadm re-seals on every upload). The 2-hour upload-certs token is not
configurable: the second run must reuse the one that owns kubeadm-certs.
"""

from __future__ import annotations

import base64
import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

TOKEN = "e2eid0.0123456789abcdef"
CERTIFICATE_KEY = "5a" * 32
NODE = "sb1-cp1"


def _files(root: Path) -> dict[str, tuple[str, int]]:
    """Every file kubeadm writes on the node: path -> (sha256, mtime_ns)."""
    paths = [*(root / "etc/kubernetes").rglob("*"),
             *(root / "var/lib/kubelet" / n for n in ("config.yaml", "kubeadm-flags.env", "instance-config.yaml"))]
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in paths if p.is_file()}


def _kubeadm_objects(box: Any, api: Any) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(kind, ns, name) -> (uid, resourceVersion); Nodes left out (their heartbeat updates them), Pods
    by uid alone (the kubelet updates their status)."""
    return {k: (v[0], "" if k[0] == "Pod" else v[1]) for k, v in box.objects(api).items() if k[0] != "Node"}


def _token(api: Any, name: str) -> dict[str, bytes]:
    from kubernetes import client

    secret = client.CoreV1Api(api).read_namespaced_secret(name, "kube-system")
    return {k: base64.b64decode(v) for k, v in secret.data.items()}


def _expiration(data: dict[str, bytes]) -> datetime:
    return datetime.strptime(data["expiration"].decode(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _run_window(view: dict[str, Any]) -> tuple[datetime, datetime]:
    started, finished = (datetime.fromisoformat(view["run"][k].replace("Z", "+00:00")) for k in ("started", "finished"))
    return started.replace(microsecond=0), finished


def _token_secret_names(objects: dict[tuple[str, str, str], Any]) -> list[str]:
    return sorted(n for kind, ns, n in objects if kind == "Secret" and n.startswith("bootstrap-token-"))


def _wait_for_signed_cluster_info(api: Any, token_id: str) -> None:
    """The controller manager's bootstrap signer adds the token's JWS to cluster-info on its own
    schedule, after the run; snapshots taken before it did would see its write as a change."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        data = core.read_namespaced_config_map("cluster-info", "kube-public").data or {}
        if f"jws-kubeconfig-{token_id}" in data:
            return
        time.sleep(0.2)
    raise AssertionError(f"cluster-info was never signed for token {token_id}")


def _attempts(view: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {p["phase"]: (p["status"], p["attempts"]) for p in view["phases"]}


def test_resume_of_a_finished_run_and_a_second_init_change_no_object_file_token_or_ca(sandbox: Any, e2e: Any) -> None:
    sandbox.up("--nodes", "1")
    config = sandbox.pinned_config(token=TOKEN, certificate_key=CERTIFICATE_KEY)
    first, run_id = sandbox.init("--upload-certs", config=config)
    join = e2e.JoinCommand.parse(first.stdout)
    assert (join.token, join.certificate_key) == (TOKEN, CERTIFICATE_KEY)
    api = sandbox.api()
    root = sandbox.node_root(NODE)
    _wait_for_signed_cluster_info(api, TOKEN.split(".", maxsplit=1)[0])
    objects, files, view = _kubeadm_objects(sandbox, api), _files(root), sandbox.status(run_id)
    ca = (root / "etc/kubernetes/pki/ca.crt").read_bytes()
    token_data = _token(api, "bootstrap-token-e2eid0")
    tokens = _token_secret_names(objects)
    assert len(tokens) == 2 and "bootstrap-token-e2eid0" in tokens  # the pinned one and the 2-hour one
    assert e2e.kubeadm_inventory(objects) == e2e.SPEC_INVENTORY

    resumed = sandbox.cli("resume", run_id, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    assert f"run {run_id} is succeeded" in resumed.stdout
    assert [r.id for r in sandbox.store.list_runs()] == [run_id]  # no new run
    assert _attempts(sandbox.status(run_id)) == _attempts(view)  # no phase ran again
    assert _kubeadm_objects(sandbox, api) == objects
    assert _files(root) == files

    second, second_id = sandbox.init("--upload-certs", config=config)
    assert second_id != run_id
    assert sandbox.status(second_id)["run"]["status"] == "succeeded"
    assert e2e.JoinCommand.parse(second.stdout) == join  # same token, CA hash and certificate key
    after = _kubeadm_objects(sandbox, api)
    pinned = ("Secret", "kube-system", "bootstrap-token-e2eid0")
    changed = sorted(k for k in objects if after.get(k) != objects[k])
    assert changed == [pinned], [(k, objects[k], after.get(k)) for k in changed]
    assert after[pinned][0] == objects[pinned][0]  # updated in place, as UpdateOrCreateTokens does
    assert sorted(set(after) - set(objects)) == [], "created by the second run"
    assert _token_secret_names(after) == tokens
    renewed = _token(api, "bootstrap-token-e2eid0")
    assert {k: v for k, v in renewed.items() if k != "expiration"} == {
        k: v for k, v in token_data.items() if k != "expiration"}
    started, finished = _run_window(sandbox.status(second_id))
    assert started + timedelta(hours=24) <= _expiration(renewed) <= finished + timedelta(hours=24)
    assert (root / "etc/kubernetes/pki/ca.crt").read_bytes() == ca
    assert _files(root) == files  # not even rewritten with the same bytes
