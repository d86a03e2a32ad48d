"""CertificateSigningRequest helpers shared by the approver and the signer (pure functions).

Mirrors pkg/apis/certificates/helpers.go: parsing ``spec.request`` (base64 of a PEM CSR in API JSON),
the approval conditions, and the kubelet client / serving / apiserver client request validations.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
APISERVER_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN_SIGNER = "kubernetes.io/legacy-unknown"

NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
KUBELET_CLIENT_USAGES = (frozenset({"digital signature", "key encipherment", "client auth"}),
                         frozenset({"digital signature", "client auth"}))
KUBELET_SERVING_USAGES = (frozenset({"digital signature", "key encipherment", "server auth"}),
                          frozenset({"digital signature", "server auth"}))


def parse_request(csr: dict[str, Any]) -> x509.CertificateSigningRequest:
    """ParseCSR: the PEM request of ``spec.request``; ValueError when absent or not a CSR."""
    raw = (csr.get("spec") or {}).get("request") or ""
    try:
        pem = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("spec.request is not base64") from None
    if b"CERTIFICATE REQUEST" not in pem:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    return x509.load_pem_x509_csr(pem)


def spec(csr: dict[str, Any]) -> dict[str, Any]:
    return dict(csr.get("spec") or {})


def conditions(csr: dict[str, Any]) -> list[dict[str, Any]]:
    return list((csr.get("status") or {}).get("conditions") or [])


def has_true(csr: dict[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status", "True") == "True" for c in conditions(csr))


def approved(csr: dict[str, Any]) -> bool:
    """IsCertificateRequestApproved: Approved and not Denied."""
    return has_true(csr, "Approved") and not has_true(csr, "Denied")


def has_certificate(csr: dict[str, Any]) -> bool:
    return bool((csr.get("status") or {}).get("certificate"))


def common_name(req: x509.CertificateSigningRequest) -> str:
    names = req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def organizations(req: x509.CertificateSigningRequest) -> list[str]:
    return [str(a.value) for a in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def _sans(req: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _san_count(req: x509.CertificateSigningRequest, kind: type[x509.GeneralName]) -> int:
    sans = _sans(req)
    return sum(isinstance(name, kind) for name in sans) if sans else 0


def kubelet_client_error(req: x509.CertificateSigningRequest, usages: set[str]) -> str | None:
    """ValidateKubeletClientCSR: None when this is a kubelet client request."""
    if organizations(req) != [NODES_GROUP]:
        return 'subject organization is not system:nodes'
    for kind, what in ((x509.DNSName, "DNS"), (x509.RFC822Name, "Email"), (x509.IPAddress, "IP"),
                       (x509.UniformResourceIdentifier, "URI")):
        if _san_count(req, kind):
            return f"{what} subjectAltNames are not allowed"
    if not common_name(req).startswith(NODE_PREFIX):
        return 'subject common name does not begin with "system:node:"'
    if frozenset(usages) not in KUBELET_CLIENT_USAGES:
        return "usages did not match [client auth digital signature key encipherment]"
    return None


def kubelet_serving_error(req: x509.CertificateSigningRequest, usages: set[str]) -> str | None:
    """ValidateKubeletServingCSR."""
    checks = (
        (organizations(req) != [NODES_GROUP], "subject organization is not system:nodes"),
        (not _san_count(req, x509.DNSName) and not _san_count(req, x509.IPAddress),
         "DNS or IP subjectAltName is required"),
        (bool(_san_count(req, x509.RFC822Name)), "Email subjectAltNames are not allowed"),
        (bool(_san_count(req, x509.UniformResourceIdentifier)), "URI subjectAltNames are not allowed"),
        (frozenset(usages) not in KUBELET_SERVING_USAGES,
         "usages did not match [digital signature key encipherment server auth]"),
        (not common_name(req).startswith(NODE_PREFIX), 'subject common name does not begin with "system:node:"'),
    )
    return next((message for failed, message in checks if failed), None)


def apiserver_client_error(usages: list[str]) -> str | None:
    """validAPIServerClientUsages."""
    for usage in usages:
        if usage not in ("digital signature", "key encipherment", "client auth"):
            return f"invalid usage for client certificate: {usage}"
    if "client auth" not in usages:
        return "missing required usage for client certificate: client auth"
    return None
