"""The emulated API server's per-kind rules, stored in a real etcd: secrets, services, CSRs, status subresources,
bindings, leases, reviews."""

from __future__ import annotations

import base64
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubeboot.sandbox.apiserver.errors import ApiError
from kubeboot.sandbox.apiserver.registry import Registry
from kubeboot.sandbox.apiserver.resources import BY_KEY
from kubeboot.sandbox.apiserver.store import Store
from kubeboot.sandbox.apiserver.types import RequestAttributes, UserInfo

SECRETS, SERVICES, NODES, PODS = BY_KEY["/secrets"], BY_KEY["/services"], BY_KEY["/nodes"], BY_KEY["/pods"]
CSR = BY_KEY["certificates.k8s.io/certificatesigningrequests"]
SAR = BY_KEY["authorization.k8s.io/subjectaccessreviews"]
RB = BY_KEY["rbac.authorization.k8s.io/rolebindings"]
ADMIN = UserInfo("kubernetes-admin", ("system:masters", "system:authenticated"))
BOOTSTRAP = UserInfo("system:bootstrap:abcdef", ("system:bootstrappers", "system:authenticated"))


class OnlyNodeClientForBootstrappers:
    """A stand-in authorizer with one rule, enough to see the review evaluate the subject it names."""

    def __init__(self) -> None:
        self.seen: list[RequestAttributes] = []

    def authorize(self, attrs: RequestAttributes) -> tuple[bool, str]:
        self.seen.append(attrs)
        ok = "system:bootstrappers" in attrs.user.groups and attrs.subresource == "nodeclient"
        return ok, "" if ok else "no rule"


pytestmark = pytest.mark.integration


@pytest.fixture
def reg(store: Store) -> Registry:
    return Registry(store, ipaddress.ip_network("10.96.0.0/12"), OnlyNodeClientForBootstrappers())


def error(fn, *args, **kw) -> ApiError:
    with pytest.raises(ApiError) as e:
        fn(*args, **kw)
    return e.value


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- secrets ----------------------------------------------------------------------------------------


def test_string_data_is_merged_into_data_as_base64_and_dropped(reg: Registry) -> None:
    s = reg.create(SECRETS, "kube-system", {"metadata": {"name": "s"}, "data": {"a": b64("1")},
                                            "stringData": {"b": "2", "a": "over"}}, ADMIN)
    assert s["data"] == {"a": b64("over"), "b": b64("2")}
    assert "stringData" not in s
    assert s["type"] == "Opaque"


def test_secret_data_that_is_not_base64_is_a_400(reg: Registry) -> None:
    e = error(reg.create, SECRETS, "default", {"metadata": {"name": "s"}, "data": {"a": "not base64!"}}, ADMIN)
    assert (e.code, e.reason) == (400, "BadRequest")


def test_a_secret_type_cannot_change(reg: Registry) -> None:
    reg.create(SECRETS, "default", {"metadata": {"name": "s"}, "type": "bootstrap.kubernetes.io/token"}, ADMIN)
    e = error(reg.update, SECRETS, "default", "s", {"metadata": {"name": "s"}, "type": "Opaque"})
    assert e.message == 'Secret "s" is invalid: type: Invalid value: "Opaque": field is immutable'


# --- services ---------------------------------------------------------------------------------------


def svc(name: str, ip: str = "") -> dict:
    spec = {"ports": [{"port": 53}]} | ({"clusterIP": ip} if ip else {})
    return {"metadata": {"name": name}, "spec": spec}


def test_a_service_gets_a_cluster_ip_from_the_upper_band_so_fixed_low_ips_stay_free(reg: Registry) -> None:
    s = reg.create(SERVICES, "default", svc("web"), ADMIN)
    ip = ipaddress.ip_address(s["spec"]["clusterIP"])
    assert ip in ipaddress.ip_network("10.96.0.0/12")
    assert int(ip) - int(ipaddress.ip_address("10.96.0.0")) > 256
    assert s["spec"]["clusterIPs"] == [str(ip)]
    assert s["spec"]["ports"] == [{"port": 53, "protocol": "TCP", "targetPort": 53}]
    assert (s["spec"]["type"], s["spec"]["ipFamilies"]) == ("ClusterIP", ["IPv4"])


def test_a_requested_cluster_ip_in_range_and_free_is_kept(reg: Registry) -> None:
    created = reg.create(SERVICES, "kube-system", svc("kube-dns", "10.96.0.10"), ADMIN)
    assert created["spec"]["clusterIP"] == "10.96.0.10"


@pytest.mark.parametrize(("ip", "problem"), [
    pytest.param("10.0.0.10", "the provided IP (10.0.0.10) is not in the valid range. The range of valid IPs is "
                 "10.96.0.0/12", id="outside-the-service-range"),
    pytest.param("10.96.0.10", "provided IP is already allocated", id="already-taken"),
])
def test_a_requested_cluster_ip_out_of_range_or_taken_is_422(reg: Registry, ip: str, problem: str) -> None:
    reg.create(SERVICES, "default", svc("first", "10.96.0.10"), ADMIN)
    e = error(reg.create, SERVICES, "kube-system", svc("kube-dns", ip), ADMIN)
    assert (e.code, e.reason) == (422, "Invalid")
    assert e.message == (f'Service "kube-dns" is invalid: spec.clusterIPs: Invalid value: []string{{"{ip}"}}: '
                         f"failed to allocate IP {ip}: {problem}")


def test_a_cluster_ip_cannot_change_on_update(reg: Registry) -> None:
    reg.create(SERVICES, "default", svc("web", "10.96.0.20"), ADMIN)
    assert reg.update(SERVICES, "default", "web", svc("web"))["spec"]["clusterIP"] == "10.96.0.20"
    assert error(reg.update, SERVICES, "default", "web", svc("web", "10.96.0.21")).code == 422


# --- status subresources --------------------------------------------------------------------------


def test_a_main_update_keeps_the_status_and_a_status_update_keeps_the_spec(reg: Registry) -> None:
    reg.create(NODES, "", {"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.0.0/24"},
                           "status": {"phase": "Running"}}, ADMIN)
    main = reg.update(NODES, "", "n1", {"metadata": {"name": "n1"}, "spec": {"unschedulable": True},
                                        "status": {"phase": "Gone"}})
    assert (main["spec"], main["status"]) == ({"unschedulable": True}, {"phase": "Running"})
    status = reg.update(NODES, "", "n1", {"metadata": {"name": "n1"}, "spec": {}, "status": {"phase": "Pending"}},
                        sub="status")
    assert (status["spec"], status["status"]) == ({"unschedulable": True}, {"phase": "Pending"})


def test_a_new_pod_is_pending(reg: Registry) -> None:
    pod = reg.create(PODS, "kube-system", {"metadata": {"name": "etcd-n1"}, "spec": {"nodeName": "n1",
                     "containers": [{"name": "etcd", "image": "etcd"}]}, "status": {"phase": "Running"}}, ADMIN)
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_an_unknown_subresource_is_404(reg: Registry) -> None:
    reg.create(NODES, "", {"metadata": {"name": "n1"}}, ADMIN)
    assert error(reg.get, NODES, "", "n1", "approval").code == 404


def test_a_body_naming_another_namespace_or_name_is_400(reg: Registry) -> None:
    e = error(reg.create, SECRETS, "default", {"metadata": {"name": "s", "namespace": "kube-system"}}, ADMIN)
    assert e.message == "the namespace of the provided object does not match the namespace sent on the request"
    reg.create(SECRETS, "default", {"metadata": {"name": "s"}}, ADMIN)
    e = error(reg.update, SECRETS, "default", "s", {"metadata": {"name": "t"}})
    assert e.message == "the name of the object (t) does not match the name on the URL (s)"


def test_a_role_bindings_role_ref_cannot_change(reg: Registry) -> None:
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "a"}
    reg.create(RB, "kube-public", {"metadata": {"name": "b"}, "roleRef": ref, "subjects": []}, ADMIN)
    e = error(reg.update, RB, "kube-public", "b", {"metadata": {"name": "b"}, "roleRef": {**ref, "name": "z"}})
    assert (e.code, e.reason) == (422, "Invalid")
    assert "roleRef: Invalid value: " in e.message
    assert e.message.endswith(": cannot change roleRef")


# --- certificate signing requests ------------------------------------------------------------------


def csr_request() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    req = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "system:node:n1"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes")])).sign(key, hashes.SHA256())
    return base64.b64encode(req.public_bytes(serialization.Encoding.PEM)).decode()


def new_csr(reg: Registry) -> dict:
    body = {"metadata": {"name": "node-csr-x"}, "spec": {
        "request": csr_request(), "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
        "usages": ["digital signature", "client auth"], "username": "someone-else", "groups": ["system:masters"]},
        "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "Zm9v"}}
    return reg.create(CSR, "", body, BOOTSTRAP)


def test_a_csr_records_the_requesting_user_and_cannot_be_created_approved(reg: Registry) -> None:
    csr = new_csr(reg)
    assert (csr["spec"]["username"], csr["spec"]["groups"]) == (BOOTSTRAP.name, list(BOOTSTRAP.groups))
    assert csr["status"] == {}


def test_a_csr_without_a_pem_request_signer_or_usages_is_422(reg: Registry) -> None:
    e = error(reg.create, CSR, "", {"metadata": {"name": "bad"}, "spec": {"request": "bm9wZQ=="}}, BOOTSTRAP)
    assert (e.code, e.reason) == (422, "Invalid")
    assert [c["field"] for c in e.status()["details"]["causes"]] == ["spec.request", "spec.signerName", "spec.usages"]


def test_a_certificate_is_refused_before_approval_and_accepted_after(reg: Registry) -> None:
    new_csr(reg)
    signed = {"metadata": {"name": "node-csr-x"}, "status": {"certificate": "Y2VydA=="}}
    e = error(reg.update, CSR, "", "node-csr-x", dict(signed), sub="status")
    assert e.code == 422
    assert "status.certificate: Forbidden: certificate can only be set if an Approved condition" in e.message
    approved = reg.update(CSR, "", "node-csr-x", {"metadata": {"name": "node-csr-x"}, "status": {"conditions": [
        {"type": "Approved", "status": "True", "reason": "AutoApproved"}], "certificate": "ignored"}},
        sub="approval")
    assert "certificate" not in approved["status"]
    cond = approved["status"]["conditions"][0]
    assert cond["lastUpdateTime"] == cond["lastTransitionTime"]
    done = reg.update(CSR, "", "node-csr-x", {**approved, "status": {**approved["status"], "certificate": "Y2VydA=="}},
                      sub="status")
    assert done["status"]["certificate"] == "Y2VydA=="
    assert [c["type"] for c in done["status"]["conditions"]] == ["Approved"]


def test_a_csr_cannot_be_both_approved_and_denied(reg: Registry) -> None:
    new_csr(reg)
    both = [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]
    e = error(reg.update, CSR, "", "node-csr-x", {"metadata": {"name": "node-csr-x"}, "status": {"conditions": both}},
              sub="approval")
    assert "Approved and Denied conditions are mutually exclusive" in e.message


# --- access reviews -------------------------------------------------------------------------------


def test_a_subject_access_review_is_answered_for_the_named_subject_and_not_stored(reg: Registry) -> None:
    body = {"spec": {"user": "system:bootstrap:abcdef", "groups": ["system:bootstrappers"], "resourceAttributes": {
        "group": "certificates.k8s.io", "resource": "certificatesigningrequests", "subresource": "nodeclient",
        "verb": "create"}}}
    review = reg.create(SAR, "", body, ADMIN)
    assert review["status"] == {"allowed": True}
    authorizer = reg.authorizer
    assert isinstance(authorizer, OnlyNodeClientForBootstrappers)
    assert authorizer.seen[-1].user == UserInfo("system:bootstrap:abcdef", ("system:bootstrappers",))
    assert authorizer.seen[-1].api_group == "certificates.k8s.io"
    body["spec"]["resourceAttributes"]["subresource"] = "selfnodeclient"
    assert reg.create(SAR, "", body, ADMIN)["status"] == {"allowed": False, "reason": "no rule"}


def test_a_subject_access_review_needs_exactly_one_kind_of_attributes(reg: Registry) -> None:
    e = error(reg.create, SAR, "", {"spec": {"user": "u"}}, ADMIN)
    assert (e.code, e.reason) == (422, "Invalid")


# --- leases (leader election) -------------------------------------------------------------------------

LEASES = BY_KEY["coordination.k8s.io/leases"]


def lease(holder: str, rv: str | None = None) -> dict:
    meta = {"name": "kube-controller-manager", **({"resourceVersion": rv} if rv else {})}
    return {"metadata": meta, "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}}


def test_a_lease_update_with_the_read_resource_version_wins_and_a_stale_one_is_409_conflict(reg: Registry) -> None:
    first = reg.create(LEASES, "kube-system", lease("cp1"), ADMIN)
    read = first["metadata"]["resourceVersion"]
    taken = reg.update(LEASES, "kube-system", "kube-controller-manager", lease("cp2", read))
    assert taken["spec"]["holderIdentity"] == "cp2"
    assert int(taken["metadata"]["resourceVersion"]) > int(read)
    e = error(reg.update, LEASES, "kube-system", "kube-controller-manager", lease("cp3", read))
    assert (e.code, e.reason) == (409, "Conflict")
    assert e.message.startswith('Operation cannot be fulfilled on leases.coordination.k8s.io "kube-controller-manager"')
    assert reg.get(LEASES, "kube-system", "kube-controller-manager")["spec"]["holderIdentity"] == "cp2"


def test_a_lease_update_without_resource_version_is_422_as_leases_disallow_unconditional_updates(
        reg: Registry) -> None:
    reg.create(LEASES, "kube-system", lease("cp1"), ADMIN)
    e = error(reg.update, LEASES, "kube-system", "kube-controller-manager", lease("cp2"))
    assert (e.code, e.reason) == (422, "Invalid")
    assert e.message == ('leases.coordination.k8s.io "kube-controller-manager" is invalid: metadata.resourceVersion: '
                         "Invalid value: 0x0: must be specified for an update")
