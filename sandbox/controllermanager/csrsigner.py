"""Controller ``csrsigning`` (pkg/controller/certificates/signer): the kubernetes.io signers.

Reads: CertificateSigningRequests; ``--cluster-signing-cert-file`` / ``--cluster-signing-key-file``
(empty in kubeadm's External CA mode: then the controller does not run); ``--cluster-signing-duration``.
For each approved, not failed, not yet issued request of a signer it serves, validates it for that signer
(a failure adds the ``Failed`` condition, reason SignerValidationFailure) or signs it: subject and SANs
copied from the request, key usages / extended key usages from ``spec.usages``, not a CA,
notBefore = now - 5 min, lifetime = the signing duration or a shorter ``spec.expirationSeconds``
(at least 10 min), never past the CA's own notAfter. Writes: ``status.certificate`` (PEM) through the
status subresource.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes.client as k8s
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID as Eku
from kubernetes.client.rest import ApiException

from kubeboot.sandbox.controllermanager import csrs
from kubeboot.sandbox.controllermanager.base import Controller
from kubeboot.sandbox.controllermanager.client import items
from kubeboot.tasks import pki

DEFAULT_DURATION = timedelta(hours=8760)  # --cluster-signing-duration default
BACKDATE = timedelta(minutes=5)
SHORT = 100 * BACKDATE  # below this lifetime notAfter is not backdated (roughly 8 hours)
MIN_DURATION = timedelta(minutes=10)

KEY_USAGES = {
    "signing": "digital_signature", "digital signature": "digital_signature",
    "content commitment": "content_commitment", "key encipherment": "key_encipherment",
    "key agreement": "key_agreement", "data encipherment": "data_encipherment", "cert sign": "key_cert_sign",
    "crl sign": "crl_sign", "encipher only": "encipher_only", "decipher only": "decipher_only",
}
# In Go's x509.ExtKeyUsage enum order: the signer sorts extended key usages by it.
EXT_KEY_USAGES = {
    "any": Eku.ANY_EXTENDED_KEY_USAGE, "server auth": Eku.SERVER_AUTH, "client auth": Eku.CLIENT_AUTH,
    "code signing": Eku.CODE_SIGNING, "email protection": Eku.EMAIL_PROTECTION, "s/mime": Eku.EMAIL_PROTECTION,
    "ipsec end system": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec tunnel": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": Eku.TIME_STAMPING, "ocsp signing": Eku.OCSP_SIGNING,
    "microsoft sgc": x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": x509.ObjectIdentifier("2.16.840.1.113730.4.1"),
}
_EKU_ORDER = list(dict.fromkeys(EXT_KEY_USAGES.values()))


def validation_error(signer: str, req: x509.CertificateSigningRequest, usages: list[str]) -> str | None:
    """getCSRVerificationFuncForSignerName: why this request may not be signed by ``signer``."""
    if signer == csrs.KUBELET_CLIENT_SIGNER:
        return csrs.kubelet_client_error(req, set(usages))
    if signer == csrs.KUBELET_SERVING_SIGNER:
        return csrs.kubelet_serving_error(req, set(usages))
    if signer == csrs.APISERVER_CLIENT_SIGNER:
        return csrs.apiserver_client_error(usages)
    return None  # legacy-unknown: no restrictions, for backwards compatibility


def key_usages(usages: list[str]) -> tuple[x509.KeyUsage, list[x509.ObjectIdentifier]]:
    """keyUsagesFromStrings; ValueError for an unrecognized usage."""
    flags = dict.fromkeys(set(KEY_USAGES.values()), False)
    ekus: set[x509.ObjectIdentifier] = set()
    unknown = []
    for usage in usages:
        if usage in KEY_USAGES:
            flags[KEY_USAGES[usage]] = True
        elif usage in EXT_KEY_USAGES:
            ekus.add(EXT_KEY_USAGES[usage])
        else:
            unknown.append(usage)
    if unknown:
        raise ValueError(f"unrecognized usage values: {unknown}")
    return x509.KeyUsage(**flags), sorted(ekus, key=_EKU_ORDER.index)


def duration(ttl: timedelta, expiration_seconds: int | None) -> timedelta:
    """signer.duration: a requested lifetime is honoured below the maximum, never under 10 minutes."""
    if expiration_seconds is None:
        return ttl
    return max(MIN_DURATION, min(ttl, timedelta(seconds=expiration_seconds)))


def boundaries(now: datetime, ttl: timedelta, ca_not_after: datetime) -> tuple[datetime, datetime]:
    if now > ca_not_after:
        raise ValueError(f"the signer has expired: NotAfter={ca_not_after.isoformat()}")
    not_before = now - BACKDATE
    not_after = (not_before if ttl >= SHORT else now) + ttl
    return not_before, min(not_after, ca_not_after)


def sign(req: x509.CertificateSigningRequest, usages: list[str], ca_cert: x509.Certificate,
         ca_key: pki.PrivateKey, now: datetime, ttl: timedelta) -> x509.Certificate:
    """authority.Sign with the permissive policy: the certificate for ``req``, issued by the CA."""
    if not req.is_signature_valid:
        raise ValueError("unable to verify certificate request signature")
    public = req.public_key()
    if not isinstance(public, pki.PublicKey):
        raise ValueError("unsupported public key type in certificate request")
    key_usage, ekus = key_usages(usages)
    not_before, not_after = boundaries(now, ttl, ca_cert.not_valid_after_utc)
    builder = (x509.CertificateBuilder().subject_name(req.subject).issuer_name(ca_cert.subject).public_key(public)
               .serial_number(secrets.randbits(128) or 1).not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(key_usage, critical=True))
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    builder = builder.add_extension(aki, critical=False)
    try:
        sans = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        builder = builder.add_extension(sans, critical=False)
    except x509.ExtensionNotFound:
        pass
    return builder.sign(ca_key, _hash(ca_key))


def _hash(key: pki.PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    # Go's x509 picks SHA-384 for P-384 signers, SHA-256 for RSA and P-256.
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def needs_signing(csr: dict[str, Any], signers: frozenset[str]) -> bool:
    return (csrs.approved(csr) and not csrs.has_true(csr, "Failed") and not csrs.has_certificate(csr)
            and csrs.spec(csr).get("signerName") in signers)


def failed(csr: dict[str, Any], message: str, now: datetime) -> dict[str, Any]:
    status = dict(csr.get("status") or {})
    status["conditions"] = [*csrs.conditions(csr), {
        "type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": message,
        "lastUpdateTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}]
    return {**csr, "status": status}


def issued(csr: dict[str, Any], cert: x509.Certificate) -> dict[str, Any]:
    status = {**(csr.get("status") or {}), "certificate": base64.b64encode(pki.cert_to_pem(cert)).decode()}
    return {**csr, "status": status}


class CSRSigner(Controller):
    name = "csrsigning"
    account = "certificate-controller"
    watches = (("/apis/certificates.k8s.io/v1/certificatesigningrequests", {}),)
    SIGNERS = frozenset({csrs.KUBELET_CLIENT_SIGNER, csrs.APISERVER_CLIENT_SIGNER, csrs.KUBELET_SERVING_SIGNER,
                         csrs.LEGACY_UNKNOWN_SIGNER})

    def __init__(self, api: k8s.ApiClient, ca_cert: x509.Certificate, ca_key: pki.PrivateKey,
                 ttl: timedelta = DEFAULT_DURATION, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(api)
        self.ca_cert, self.ca_key, self.ttl, self.clock = ca_cert, ca_key, ttl, clock
        self.reported: set[str] = set()  # unsignable CSRs already logged: once each, not every pass

    def sync(self) -> None:
        certs = k8s.CertificatesV1Api(self.api)
        for csr in items(certs.list_certificate_signing_request(_preload_content=False)):
            if not needs_signing(csr, self.SIGNERS):
                continue
            try:
                self.handle(certs, csr)
            except ValueError as e:  # not signable as it stands: retried next pass, like a requeue
                name = str(csr["metadata"]["name"])
                if name not in self.reported:
                    self.reported.add(name)
                    self.log.error('"Error auto signing csr" csr="%s" err="%s"', name, e)

    def result(self, csr: dict[str, Any]) -> dict[str, Any]:
        """The CSR with either its certificate or a Failed condition."""
        s, now = csrs.spec(csr), self.clock()
        usages = list(s.get("usages") or [])
        try:
            req = csrs.parse_request(csr)
        except ValueError as e:
            return failed(csr, f"unable to parse csr: {e}", now)
        problem = validation_error(str(s.get("signerName")), req, usages)
        if problem is not None:
            return failed(csr, problem, now)
        expiration = s.get("expirationSeconds")
        ttl = duration(self.ttl, int(expiration) if expiration is not None else None)
        return issued(csr, sign(req, usages, self.ca_cert, self.ca_key, now, ttl))

    def handle(self, certs: k8s.CertificatesV1Api, csr: dict[str, Any]) -> None:
        name = str(csr["metadata"]["name"])
        updated = self.result(csr)
        try:
            certs.replace_certificate_signing_request_status(name, updated, _preload_content=False)
        except ApiException as e:
            if e.status in (404, 409):
                return
            raise
        verdict = "Signed" if "certificate" in updated["status"] else "Refused"
        self.log.info('"%s certificate signing request" csr="%s" signer="%s"', verdict, name,
                      csrs.spec(csr).get("signerName"))
