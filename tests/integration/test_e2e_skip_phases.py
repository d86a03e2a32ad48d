"""`kubeboot submit init --upload-certs --skip-phases addon/kube-proxy,upload-certs` on a sandbox node leaves
exactly those phases' objects out of the cluster (kubeadm-spec 2.9 and 2.13) and makes every other one."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.integration

NODE = "sb1-cp1"


def test_skipping_kube_proxy_and_upload_certs_leaves_out_exactly_their_objects(sandbox: Any, e2e: Any) -> None:
    sandbox.up("--nodes", "1")
    # --upload-certs asks for the phase; --skip-phases must win over it, as with kubeadm.
    result, run_id = sandbox.init("--upload-certs", "--skip-phases", "addon/kube-proxy,upload-certs")

    inventory = e2e.kubeadm_inventory(sandbox.objects(sandbox.api()))
    assert inventory == e2e.SPEC_INVENTORY - e2e.UPLOAD_CERTS_OBJECTS - e2e.KUBE_PROXY_OBJECTS
    tokens = [s for s in client.CoreV1Api(sandbox.api()).list_namespaced_secret("kube-system").items
              if s.type == "bootstrap.kubernetes.io/token"]
    (token,) = tokens  # the default one; no 2-hour token
    assert token.metadata.name == f"bootstrap-token-{e2e.JoinCommand.parse(result.stdout).token.split('.')[0]}"

    phases = {p["phase"]: p["status"] for p in sandbox.status(run_id)["phases"]}
    assert (phases["upload-certs"], phases["addon/kube-proxy"]) == ("skipped", "skipped")
    assert phases["addon/coredns"] == "succeeded"
    assert {s for p, s in phases.items() if p not in ("upload-certs", "addon/kube-proxy")} == {"succeeded"}
