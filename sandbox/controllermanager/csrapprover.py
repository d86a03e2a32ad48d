"""Controller ``csrapproving`` (pkg/controller/certificates/approver/sarapprove.go).

Reads: CertificateSigningRequests. For each one not yet approved, denied or issued whose signer is
``kubernetes.io/kube-apiserver-client-kubelet`` and whose request is a kubelet client request
(O=system:nodes only, CN=system:node:<name>, no SANs, usages {digital signature, [key encipherment,]
client auth}), asks the API server with a SubjectAccessReview whether the requester (spec.username,
groups, uid, extra) may ``create certificatesigningrequests/selfnodeclient`` (when the requester is the
node itself) and otherwise ``.../nodeclient``. Writes: the ``Approved`` condition (reason AutoApproved)
through the approval subresource when a review allows it.
"""

from __future__ import annotations

from typing import Any

import kubernetes.client as k8s
from kubernetes.client.rest import ApiException

from kubeboot.sandbox.controllermanager import csrs
from kubeboot.sandbox.controllermanager.base import Controller
from kubeboot.sandbox.controllermanager.client import body, items

SELF_NODE_CLIENT = ("selfnodeclient", "Auto approving self kubelet client certificate after SubjectAccessReview.")
NODE_CLIENT = ("nodeclient", "Auto approving kubelet client certificate after SubjectAccessReview.")


def pending(csr: dict[str, Any]) -> bool:
    """Neither issued nor decided yet (GetCertApprovalCondition: approved or denied)."""
    return not csrs.has_certificate(csr) and not csrs.has_true(csr, "Approved") and not csrs.has_true(csr, "Denied")


def recognized(csr: dict[str, Any]) -> list[tuple[str, str]]:
    """The (subresource, approval message) permissions to try, in the order the recognizers do."""
    s = csrs.spec(csr)
    if s.get("signerName") != csrs.KUBELET_CLIENT_SIGNER:
        return []
    try:
        req = csrs.parse_request(csr)
    except ValueError:
        return []
    if csrs.kubelet_client_error(req, set(s.get("usages") or [])) is not None:
        return []
    node_itself = s.get("username") == csrs.common_name(req)
    return [SELF_NODE_CLIENT, NODE_CLIENT] if node_itself else [NODE_CLIENT]


def access_review(csr: dict[str, Any], subresource: str) -> dict[str, Any]:
    """The SubjectAccessReview sarApprover.authorize sends for the requester of ``csr``."""
    s = csrs.spec(csr)
    review: dict[str, Any] = {
        "user": s.get("username") or "",
        "groups": list(s.get("groups") or []),
        "resourceAttributes": {"group": "certificates.k8s.io", "resource": "certificatesigningrequests",
                               "verb": "create", "subresource": subresource},
    }
    if s.get("uid"):
        review["uid"] = s["uid"]
    if s.get("extra"):
        review["extra"] = s["extra"]
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": review}


def with_approval(csr: dict[str, Any], message: str) -> dict[str, Any]:
    """appendApprovalCondition on a copy of ``csr``."""
    status = dict(csr.get("status") or {})
    status["conditions"] = [*csrs.conditions(csr),
                            {"type": "Approved", "status": "True", "reason": "AutoApproved", "message": message}]
    return {**csr, "status": status}


class CSRApprover(Controller):
    name = "csrapproving"
    account = "certificate-controller"
    watches = (("/apis/certificates.k8s.io/v1/certificatesigningrequests", {}),)

    def __init__(self, api: k8s.ApiClient) -> None:
        super().__init__(api)
        self.refused: set[str] = set()  # CSRs whose review said no, logged once each

    def sync(self) -> None:
        certs = k8s.CertificatesV1Api(self.api)
        for csr in items(certs.list_certificate_signing_request(_preload_content=False)):
            if pending(csr):
                self.handle(csr)

    def handle(self, csr: dict[str, Any]) -> None:
        name = str(csr["metadata"]["name"])
        tried = []
        for subresource, message in recognized(csr):
            tried.append(subresource)
            if not self.allowed(csr, subresource):
                continue
            try:
                k8s.CertificatesV1Api(self.api).replace_certificate_signing_request_approval(
                    name, with_approval(csr, message), _preload_content=False)
            except ApiException as e:
                if e.status in (404, 409):  # gone or changed: the next pass looks again
                    return
                raise
            self.log.info('"Approved certificate signing request" csr="%s" permission="%s"', name, subresource)
            return
        if tried and name not in self.refused:
            self.refused.add(name)
            self.log.info('recognized csr "%s" as %s but subject access review was not approved', name, tried)

    def allowed(self, csr: dict[str, Any], subresource: str) -> bool:
        authz = k8s.AuthorizationV1Api(self.api)
        review = body(authz.create_subject_access_review(access_review(csr, subresource), _preload_content=False))
        return bool((review.get("status") or {}).get("allowed"))
