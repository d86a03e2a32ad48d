"""CSR approver and signer decisions (sandbox.controllermanager), certificates checked with cryptography."""

from __future__ import annotations

import base64
import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeboot.sandbox.controllermanager import csrapprover as ap
from kubeboot.sandbox.controllermanager import csrs
from kubeboot.sandbox.controllermanager import csrsigner as sg
from kubeboot.tasks import pki

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
CLIENT = ["digital signature", "key encipherment", "client auth"]
KEY = ec.generate_private_key(ec.SECP256R1())


def request_pem(cn: str, orgs: tuple[str, ...] = ("system:nodes",), *, dns: tuple[str, ...] = (),
                ips: tuple[str, ...] = ()) -> bytes:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr(cn: str = "system:node:w1", *, orgs: tuple[str, ...] = ("system:nodes",), usages: list[str] | None = None,
        signer: str = csrs.KUBELET_CLIENT_SIGNER, username: str = "system:bootstrap:abcdef",
        groups: tuple[str, ...] = ("system:bootstrappers", "system:authenticated"), dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (), conditions: list[dict[str, str]] | None = None,
        certificate: str | None = None, expiration: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "request": base64.b64encode(request_pem(cn, orgs, dns=dns, ips=ips)).decode(), "signerName": signer,
        "usages": CLIENT if usages is None else usages, "username": username, "groups": list(groups)}
    if expiration is not None:
        spec["expirationSeconds"] = expiration
    status: dict[str, Any] = {}
    if conditions:
        status["conditions"] = conditions
    if certificate:
        status["certificate"] = certificate
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "csr-1", "resourceVersion": "7"}, "spec": spec, "status": status}


APPROVED = [{"type": "Approved", "status": "True", "reason": "AutoApproved", "message": "m"}]
SELF = ap.SELF_NODE_CLIENT
NODE = ap.NODE_CLIENT

RECOGNIZE = [
    pytest.param(csr(), [NODE], id="bootstrap-token-requests-a-node-client-cert"),
    pytest.param(csr(username="system:node:w1"), [SELF, NODE], id="node-renews-its-own-cert"),
    pytest.param(csr(username="system:node:w2"), [NODE], id="other-node-requests"),
    pytest.param(csr(usages=["digital signature", "client auth"]), [NODE], id="usages-without-key-encipherment"),
    pytest.param(csr(usages=["client auth", "key encipherment", "digital signature"]), [NODE], id="usages-any-order"),
    pytest.param(csr(usages=[*CLIENT, "server auth"]), [], id="extra-usage"),
    pytest.param(csr(usages=["client auth"]), [], id="too-few-usages"),
    pytest.param(csr(orgs=("system:nodes", "system:masters")), [], id="extra-organization"),
    pytest.param(csr(orgs=()), [], id="no-organization"),
    pytest.param(csr(cn="admin"), [], id="not-a-node-name"),
    pytest.param(csr(dns=("w1.example",)), [], id="dns-san"),
    pytest.param(csr(ips=("10.0.0.1",)), [], id="ip-san"),
    pytest.param(csr(signer=csrs.APISERVER_CLIENT_SIGNER), [], id="other-signer"),
    pytest.param(csr(signer=csrs.KUBELET_SERVING_SIGNER, usages=["digital signature", "server auth"],
                     dns=("w1",)), [], id="kubelet-serving-not-auto-approved"),
]


@pytest.mark.parametrize(("request_", "permissions"), RECOGNIZE)
def test_which_csrs_the_approver_recognizes(request_: dict[str, Any], permissions: list[tuple[str, str]]) -> None:
    assert ap.recognized(request_) == permissions


@pytest.mark.parametrize(("request_", "is_pending"), [
    pytest.param(csr(), True, id="new"),
    pytest.param(csr(conditions=APPROVED), False, id="approved"),
    pytest.param(csr(conditions=[{"type": "Denied", "status": "True"}]), False, id="denied"),
    pytest.param(csr(certificate="LS0t"), False, id="issued"),
])
def test_only_undecided_csrs_are_considered(request_: dict[str, Any], is_pending: bool) -> None:
    assert ap.pending(request_) is is_pending


def test_the_access_review_asks_about_the_requester_and_the_subresource() -> None:
    review = ap.access_review(csr(), "nodeclient")
    assert review == {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "system:bootstrap:abcdef", "groups": ["system:bootstrappers", "system:authenticated"],
                 "resourceAttributes": {"group": "certificates.k8s.io", "resource": "certificatesigningrequests",
                                        "verb": "create", "subresource": "nodeclient"}}}


def test_approval_appends_the_auto_approved_condition() -> None:
    approved = ap.with_approval(csr(), NODE[1])
    assert approved["status"]["conditions"] == [{
        "type": "Approved", "status": "True", "reason": "AutoApproved",
        "message": "Auto approving kubelet client certificate after SubjectAccessReview."}]
    assert approved["metadata"]["resourceVersion"] == "7"  # an update of that very version
    assert csrs.approved(approved)


# --- signer ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, pki.PrivateKey]:
    key = pki.generate_key("ECDSA-P256")
    cert = pki.build_certificate(pki.CertSpec("kubernetes", is_ca=True, validity_seconds=10 * 365 * 86400),
                                 key.public_key(), key, None, NOW - timedelta(days=1))
    return cert, key


def issue(ca: tuple[x509.Certificate, pki.PrivateKey], request_: dict[str, Any],
          ttl: timedelta = sg.DEFAULT_DURATION) -> x509.Certificate:
    exp = request_["spec"].get("expirationSeconds")
    return sg.sign(csrs.parse_request(request_), request_["spec"]["usages"], ca[0], ca[1], NOW,
                   sg.duration(ttl, exp))


def test_a_kubelet_client_certificate_says_what_the_request_says(ca: tuple[x509.Certificate, Any]) -> None:
    cert = issue(ca, csr(cn="system:node:w1"))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:w1"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:nodes"]
    assert cert.issuer == ca[0].subject
    assert pki.signature_error(cert, ca[0]) is None
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment and not ku.value.key_cert_sign
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.public_key() == KEY.public_key()


def test_the_certificate_is_valid_a_year_from_five_minutes_ago(ca: tuple[x509.Certificate, Any]) -> None:
    cert = issue(ca, csr())
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW - timedelta(minutes=5) + timedelta(days=365)


@pytest.mark.parametrize(("seconds", "lifetime"), [
    pytest.param(3600, timedelta(hours=1), id="one-hour-requested"),
    pytest.param(60, timedelta(minutes=10), id="below-ten-minutes-raised"),
    pytest.param(10 * 365 * 86400, timedelta(days=365), id="above-maximum-capped"),
    pytest.param(86400, timedelta(days=1), id="one-day-requested"),
])
def test_expiration_seconds_shortens_the_lifetime(ca: tuple[x509.Certificate, Any], seconds: int,
                                                  lifetime: timedelta) -> None:
    cert = issue(ca, csr(expiration=seconds))
    start = NOW - timedelta(minutes=5)
    expected_end = (start if lifetime >= sg.SHORT else NOW) + lifetime
    assert cert.not_valid_after_utc == expected_end


def test_no_certificate_outlives_its_ca(ca: tuple[x509.Certificate, Any]) -> None:
    cert = issue(ca, csr(), ttl=timedelta(days=100 * 365))
    assert cert.not_valid_after_utc == ca[0].not_valid_after_utc


def test_serving_certificates_carry_the_requested_sans(ca: tuple[x509.Certificate, Any]) -> None:
    request_ = csr(signer=csrs.KUBELET_SERVING_SIGNER, usages=["digital signature", "key encipherment", "server auth"],
                   dns=("w1",), ips=("10.0.0.1",))
    cert = issue(ca, request_)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["w1"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.1")]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]


def test_extended_key_usages_are_in_gos_enum_order() -> None:
    _, ekus = sg.key_usages(["client auth", "server auth", "digital signature"])
    assert ekus == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def test_an_unknown_usage_is_refused() -> None:
    with pytest.raises(ValueError, match="unrecognized usage values"):
        sg.key_usages(["digital signature", "teleportation"])


@pytest.mark.parametrize(("request_", "error"), [
    pytest.param(csr(), None, id="kubelet-client"),
    pytest.param(csr(cn="admin"), 'does not begin with "system:node:"', id="kubelet-client-wrong-cn"),
    pytest.param(csr(signer=csrs.APISERVER_CLIENT_SIGNER, cn="alice", orgs=()), None, id="apiserver-client"),
    pytest.param(csr(signer=csrs.APISERVER_CLIENT_SIGNER, usages=["server auth"]),
                 "invalid usage for client certificate: server auth", id="apiserver-client-server-auth"),
    pytest.param(csr(signer=csrs.APISERVER_CLIENT_SIGNER, usages=["digital signature"]),
                 "missing required usage", id="apiserver-client-without-client-auth"),
    pytest.param(csr(signer=csrs.KUBELET_SERVING_SIGNER, usages=["digital signature", "server auth"]),
                 "DNS or IP subjectAltName is required", id="kubelet-serving-without-san"),
    pytest.param(csr(signer=csrs.KUBELET_SERVING_SIGNER, usages=["digital signature", "server auth"],
                     ips=("10.0.0.1",)), None, id="kubelet-serving"),
])
def test_signer_specific_validation(request_: dict[str, Any], error: str | None) -> None:
    spec = request_["spec"]
    found = sg.validation_error(spec["signerName"], csrs.parse_request(request_), spec["usages"])
    assert (found is None) if error is None else (found is not None and error in found)


@pytest.mark.parametrize(("request_", "signs"), [
    pytest.param(csr(conditions=APPROVED), True, id="approved"),
    pytest.param(csr(), False, id="not-approved"),
    pytest.param(csr(conditions=[*APPROVED, {"type": "Denied", "status": "True"}]), False, id="approved-and-denied"),
    pytest.param(csr(conditions=[*APPROVED, {"type": "Failed", "status": "True"}]), False, id="failed"),
    pytest.param(csr(conditions=APPROVED, certificate="LS0t"), False, id="already-issued"),
    pytest.param(csr(conditions=APPROVED, signer="example.com/custom"), False, id="foreign-signer"),
])
def test_which_csrs_the_signer_signs(request_: dict[str, Any], signs: bool) -> None:
    assert sg.needs_signing(request_, sg.CSRSigner.SIGNERS) is signs


def test_the_signer_writes_a_pem_certificate_into_status(ca: tuple[x509.Certificate, Any]) -> None:
    signer = sg.CSRSigner(None, ca[0], ca[1], clock=lambda: NOW)  # type: ignore[arg-type]
    result = signer.result(csr(conditions=APPROVED))
    pem = base64.b64decode(result["status"]["certificate"])
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert pki.load_cert(pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:w1"
    assert result["status"]["conditions"] == APPROVED


def test_an_invalid_request_gets_the_failed_condition_instead(ca: tuple[x509.Certificate, Any]) -> None:
    signer = sg.CSRSigner(None, ca[0], ca[1], clock=lambda: NOW)  # type: ignore[arg-type]
    result = signer.result(csr(cn="admin", conditions=APPROVED))
    assert "certificate" not in result["status"]
    failed = result["status"]["conditions"][-1]
    assert (failed["type"], failed["status"], failed["reason"]) == ("Failed", "True", "SignerValidationFailure")
