"""kubeboot.tasks.kubeapi: the client from kubeconfig bytes, the error mapping of one call, kubeadm's idempotent
helpers, and mark-control-plane's Node mutation (what ``patch_node`` applies)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import tenacity
import urllib3

from kubeboot.config.loader import build_init_config
from kubeboot.tasks import kubeapi, pki
from kubeboot.tasks import kubeconfig as kcfg
from kubeboot.tasks.errors import PermanentError, TemporaryError
from kubeboot.tasks.phases import markcontrolplane as mcp

V4 = "kubeadm.k8s.io/v1beta4"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same policy shape without the 0.5 s waits."""
    monkeypatch.setattr(kubeapi, "api_call_policy",
                        lambda: {"wait": tenacity.wait_none(), "stop": tenacity.stop_after_attempt(3),
                                 "reraise": True})


def api_error(status: int, message: str = "boom", reason: str = "Reason") -> kubeapi.ApiException:
    e = kubeapi.ApiException(status=status, reason=reason)
    e.body = json.dumps({"kind": "Status", "message": message})
    return e


class Flaky:
    """Raises the given errors in turn, then returns ``result``; counts calls."""

    def __init__(self, *errors: BaseException, result: Any = "ok") -> None:
        self.errors, self.result, self.calls = list(errors), result, 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


@pytest.mark.parametrize("error", [
    pytest.param(api_error(503), id="503 while the server starts"),
    pytest.param(api_error(500), id="500"),
    pytest.param(api_error(429), id="429 too many requests"),
    pytest.param(api_error(403), id="403 before RBAC settles"),
    pytest.param(urllib3.exceptions.NewConnectionError(None, "refused"), id="connection refused"),  # type: ignore[arg-type]
])
def test_a_transient_error_is_retried_within_the_call(error: BaseException) -> None:
    fn = Flaky(error)
    assert kubeapi.call(fn, "x") == "ok"
    assert fn.calls == 2


def test_a_lasting_transient_error_becomes_temporary_with_the_last_real_message() -> None:
    fn = Flaky(api_error(503, "first"), api_error(503, "second"), api_error(503, "etcdserver: request timed out"))
    with pytest.raises(TemporaryError) as e:
        kubeapi.call(fn, "unable to create ConfigMap")
    assert str(e.value) == "unable to create ConfigMap: 503 Reason: etcdserver: request timed out"
    assert fn.calls == 3


def test_an_unreachable_server_becomes_temporary_naming_the_socket_error() -> None:
    fn = Flaky(*[ConnectionRefusedError(111, "Connection refused")] * 3)
    with pytest.raises(TemporaryError, match=r"^get nodes: ConnectionRefusedError: .*Connection refused"):
        kubeapi.call(fn, "get nodes")


@pytest.mark.parametrize("status", [400, 422])
def test_an_invalid_object_is_permanent_at_once(status: int) -> None:
    fn = Flaky(api_error(status, 'ConfigMap "Bad" is invalid'))
    with pytest.raises(PermanentError, match='ConfigMap "Bad" is invalid'):
        kubeapi.call(fn, "create")
    assert fn.calls == 1


@pytest.mark.parametrize("status", [404, 409])
def test_not_found_and_conflict_are_left_to_the_caller(status: int) -> None:
    with pytest.raises(kubeapi.ApiException) as e:
        kubeapi.call(Flaky(api_error(status)), "x")
    assert e.value.status == status


def test_create_or_update_updates_what_already_exists() -> None:
    create, update = Flaky(api_error(409, reason="AlreadyExists")), Flaky(result="updated")
    assert kubeapi.create_or_update(create, update, "x") == "updated"
    assert (create.calls, update.calls) == (1, 1)


def test_create_or_update_retries_an_update_that_lost_a_race() -> None:
    update = Flaky(api_error(409, reason="Conflict"), result="updated")
    assert kubeapi.create_or_update(Flaky(api_error(409)), update, "x") == "updated"
    assert update.calls == 2


def test_create_or_update_gives_up_on_endless_conflicts_as_temporary() -> None:
    update = Flaky(*[api_error(409, "the object has been modified", "Conflict")] * 10)
    with pytest.raises(TemporaryError, match="the object has been modified"):
        kubeapi.create_or_update(Flaky(api_error(409)), update, "x")


def test_create_or_retain_leaves_an_existing_object_alone() -> None:
    kubeapi.create_or_retain(Flaky(api_error(409, reason="AlreadyExists")), "x")  # no error, nothing else called


@pytest.mark.parametrize(("want", "have", "same"), [
    pytest.param({"a": 1}, {"a": 1, "b": 2}, True, id="server defaults are extra fields"),
    pytest.param({"a": 1}, {"a": 2}, False, id="a changed value"),
    pytest.param({"a": {"b": [1, {"c": 1}]}}, {"a": {"b": [1, {"c": 1, "d": 0}]}}, True, id="nested defaults"),
    pytest.param({"l": [1, 2]}, {"l": [1]}, False, id="a shorter list"),
    pytest.param({"k": ""}, {}, False, id="a missing key"),
])
def test_subset_tells_a_defaulted_object_from_a_changed_one(want: Any, have: Any, same: bool) -> None:
    assert kubeapi.subset(want, have) is same


@pytest.mark.parametrize(("kind", "namespace", "name", "path"), [
    ("ConfigMap", "kube-system", "x", "/api/v1/namespaces/kube-system/configmaps/x"),
    ("Node", None, "cp1", "/api/v1/nodes/cp1"),
    ("ClusterRoleBinding", None, "b", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/b"),
    ("RoleBinding", "kube-public", None, "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-public/rolebindings"),
    ("DaemonSet", "kube-system", "kube-proxy", "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy"),
])
def test_object_paths_are_the_api_servers_rest_paths(kind: str, namespace: str | None, name: str | None,
                                                     path: str) -> None:
    assert kubeapi.object_path(kind, namespace, name) == path


def leftovers() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("kubeapi-*"))


def test_a_client_from_embedded_certificates_leaves_no_file_behind() -> None:
    key = pki.generate_key("ECDSA-P256")
    cert = pki.build_certificate(pki.CertSpec("kubernetes-admin", validity_seconds=3600), key.public_key(), key,
                                 None, datetime.now(UTC))
    pem = pki.cert_to_pem(cert)
    before = leftovers()
    conf = kcfg.dump(kcfg.kubeconfig_with_certs("https://10.0.0.5:6443", "kubernetes", "kubernetes-admin", pem,
                                                pki.key_to_pem(key), pem)).encode()
    api = kubeapi.api_client(conf)
    assert api.configuration.host == "https://10.0.0.5:6443"
    assert leftovers() == before


def test_a_token_kubeconfig_sends_a_bearer_token() -> None:
    key = pki.generate_key("ECDSA-P256")
    cert = pki.build_certificate(pki.CertSpec("ca", is_ca=True, validity_seconds=3600), key.public_key(), key,
                                 None, datetime.now(UTC))
    conf = kcfg.dump(kcfg.kubeconfig_with_token("https://10.0.0.5:6443", pki.cert_to_pem(cert),
                                                "abcdef.0123456789abcdef")).encode()
    api = kubeapi.api_client(conf)
    assert api.configuration.auth_settings()["BearerToken"]["value"] == "Bearer abcdef.0123456789abcdef"


def test_a_kubeconfig_without_its_current_context_is_permanent() -> None:
    with pytest.raises(PermanentError, match="no context named 'nope'"):
        kubeapi.api_client(b"apiVersion: v1\nkind: Config\ncurrent-context: nope\ncontexts: []\n")


# --- mark-control-plane's mutation ------------------------------------------------------------------

CP_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
LABELS = {"node-role.kubernetes.io/control-plane": "", "node.kubernetes.io/exclude-from-external-load-balancers": ""}


def taints_of(taints: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    init: dict[str, Any] = {"apiVersion": V4, "kind": "InitConfiguration"}
    if taints is not None:
        init["nodeRegistration"] = {"taints": taints}
    return mcp.desired_taints(build_init_config([init]))


def test_unset_taints_mean_kubeadms_control_plane_taint() -> None:
    assert taints_of(None) == [CP_TAINT]


def test_an_empty_taint_list_means_no_taint() -> None:
    assert taints_of([]) == []


Node = dict[str, Any]


@pytest.mark.parametrize(("node", "taints", "changed", "labels", "expected_taints"), [
    pytest.param({"metadata": {"name": "cp1"}}, [CP_TAINT], True, LABELS, [CP_TAINT], id="a bare node"),
    pytest.param({"metadata": {"labels": {"kubernetes.io/os": "linux"}},
                  "spec": {"taints": [{"key": "other", "effect": "NoExecute", "timeAdded": "2030-01-01T00:00:00Z"}]}},
                 [CP_TAINT], True, {"kubernetes.io/os": "linux", **LABELS},
                 [CP_TAINT, {"key": "other", "effect": "NoExecute", "timeAdded": "2030-01-01T00:00:00Z"}],
                 id="others kept, ours first"),
    pytest.param({"metadata": {"labels": dict(LABELS)}, "spec": {"taints": [CP_TAINT]}}, [CP_TAINT], False, LABELS,
                 [CP_TAINT], id="already marked: nothing to patch"),
    pytest.param({"metadata": {"labels": dict(LABELS)}, "spec": {"taints": [{"key": "a", "effect": "NoSchedule"},
                                                                           CP_TAINT]}},
                 [CP_TAINT], False, LABELS, [{"key": "a", "effect": "NoSchedule"}, CP_TAINT],
                 id="already marked in another order: left alone"),
    pytest.param({"metadata": {"labels": dict(LABELS)}}, [], False, LABELS, None, id="no taints wanted"),
])
def test_marking_adds_labels_and_missing_taints_without_duplicates(
        node: Node, taints: list[dict[str, Any]], changed: bool, labels: dict[str, str],
        expected_taints: list[dict[str, Any]] | None) -> None:
    assert mcp.mark(node, taints) is changed
    assert node["metadata"]["labels"] == labels
    assert node["spec"].get("taints") == expected_taints


def test_marking_twice_changes_nothing_the_second_time() -> None:
    node: Node = {"metadata": {}}
    mark: Callable[[Node], bool] = lambda n: mcp.mark(n, [CP_TAINT])  # noqa: E731
    assert mark(node) is True
    assert mark(node) is False
    assert node["spec"]["taints"] == [CP_TAINT]


@pytest.mark.parametrize(("taint", "text"), [
    ({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
     "node-role.kubernetes.io/control-plane:NoSchedule"),
    ({"key": "dedicated", "value": "db", "effect": "NoExecute"}, "dedicated=db:NoExecute"),
])
def test_taints_print_as_gos_taint_to_string(taint: dict[str, str], text: str) -> None:
    assert mcp.taint_string(taint) == text
