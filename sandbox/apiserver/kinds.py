"""What the real registries do per kind on create and update (defaulting, allocation, immutable fields).

Reads: other stored objects through the store (services, for clusterIP allocation), the requesting user
(CSRs record who asked). Writes nothing itself: hooks change the object about to be stored, in place,
or raise ``ApiError``. The registry calls the ``ALLOCATING`` ones under the store lock, so allocation is
race-free within one API server (two API servers of a cluster could pick the same cluster IP at the same
instant; the real allocator's etcd-backed bitmap is not emulated).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from kubeboot.sandbox.apiserver import errors
from kubeboot.sandbox.apiserver.errors import FieldError, Raw
from kubeboot.sandbox.apiserver.resources import ResourceType
from kubeboot.sandbox.apiserver.store import Store, namespace_object, now_rfc3339
from kubeboot.sandbox.apiserver.types import UserInfo

Obj = dict[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
CSR = "certificates.k8s.io/certificatesigningrequests"
ALLOCATING = frozenset({"/services"})  # hooks that pick a free value among the stored objects
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class HookContext:
    user: UserInfo
    store: Store
    service_network: Network


def on_create(rt: ResourceType, obj: Obj, ctx: HookContext) -> None:
    if rt.key.endswith("rolebindings"):
        _binding_defaults(obj)
    if rt.key == "/namespaces":
        base = namespace_object(obj["metadata"]["name"])
        obj["metadata"].setdefault("labels", {}).update(base["metadata"]["labels"])
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = base["status"]
    elif rt.key == "/secrets":
        _secret(obj, None)
    elif rt.key == "/services":
        _service_create(obj, ctx)
    elif rt.key == "/pods":
        obj["status"] = {"phase": "Pending", "qosClass": _qos(obj.get("spec") or {})}
    elif rt.key == "apps/deployments":
        obj["status"] = {}
    elif rt.key == "apps/daemonsets":
        # DaemonSetStatus has four int32 fields without omitempty: the real server always sends them,
        # and the official clients refuse a DaemonSet without them.
        obj["status"] = {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                         "numberReady": 0}
    elif rt.key == CSR:
        _csr_create(obj, ctx.user)


def on_update(rt: ResourceType, obj: Obj, old: Obj, sub: str) -> None:
    """Generic subresource rules first: a main update keeps the status, a status update keeps the spec."""
    if sub == "" and "status" in rt.subresources:
        _copy(old, obj, "status")
    if sub in ("status", "approval"):
        _copy(old, obj, "spec")
    if rt.key.endswith("rolebindings"):
        _binding_defaults(obj)  # before the roleRef comparison, as the real server defaults first
    if rt.key == "/secrets":
        _secret(obj, old)
    elif rt.key == "/services" and sub == "":
        _service_update(obj, old)
    elif rt.key.endswith("rolebindings") and obj.get("roleRef") != old.get("roleRef"):
        raise _invalid(obj, [FieldError("roleRef", "cannot change roleRef", Raw(str(obj.get("roleRef"))))])
    elif rt.key == CSR:
        _csr_update(obj, old, sub)


def _binding_defaults(obj: Obj) -> None:
    """rbac/v1 defaulting (pkg/apis/rbac/v1/defaults.go): an empty apiGroup of the roleRef, and of a User
    or Group subject, becomes rbac.authorization.k8s.io (kubeadm sends some bindings without it)."""
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = RBAC_GROUP
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = RBAC_GROUP


def _copy(src: Obj, dst: Obj, key: str) -> None:
    if key in src:
        dst[key] = src[key]
    else:
        dst.pop(key, None)


def _invalid(obj: Obj, errs: list[FieldError]) -> errors.ApiError:
    group = obj.get("apiVersion", "").rpartition("/")[0]
    return errors.invalid(obj.get("kind", ""), group, obj["metadata"].get("name", ""), errs)


# --- secrets ----------------------------------------------------------------------------------------


def _secret(obj: Obj, old: Obj | None) -> None:
    """stringData is merged into data (base64) and dropped, as the real API server does on write."""
    data = obj.get("data") or {}
    for v in data.values():
        try:
            base64.b64decode(str(v), validate=True)
        except (binascii.Error, ValueError) as e:
            raise errors.bad_request(f'Secret in version "v1" cannot be handled as a Secret: {e}') from None
    for k, v in (obj.pop("stringData", None) or {}).items():
        data[k] = base64.b64encode(str(v).encode()).decode()
    if data:
        obj["data"] = data
    obj["type"] = obj.get("type") or (old or {}).get("type") or "Opaque"
    if old is not None and obj["type"] != old.get("type", "Opaque"):
        raise _invalid(obj, [FieldError("type", "field is immutable", obj["type"])])


# --- services ---------------------------------------------------------------------------------------


def _service_create(obj: Obj, ctx: HookContext) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    wanted = spec.get("clusterIP") or ((spec.get("clusterIPs") or [""])[0])
    if wanted != "None":
        used = {s.get("spec", {}).get("clusterIP") for s in ctx.store.list("/services")}
        wanted = _allocate(ctx.service_network, used, wanted, obj)
    spec["clusterIP"], spec["clusterIPs"] = wanted, [wanted]
    family = "IPv6" if ctx.service_network.version == 6 else "IPv4"
    spec.setdefault("ipFamilies", [family])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    obj["status"] = {"loadBalancer": {}}


def _allocate(net: Network, used: set[Any], wanted: str, obj: Obj) -> str:
    """The real allocator: a given IP must be in range and free; otherwise the upper band first,
    keeping the lowest addresses (min(max(16, size/16), 256)) for services that ask for one."""
    if wanted:
        problem = ""
        try:
            in_range = ipaddress.ip_address(wanted) in net
        except ValueError:
            in_range = False
        if not in_range:
            problem = (f"the provided IP ({wanted}) is not in the valid range. The range of valid IPs is {net}")
        elif wanted in used:
            problem = "provided IP is already allocated"
        if problem:
            raise _invalid(obj, [FieldError("spec.clusterIPs", f"failed to allocate IP {wanted}: {problem}",
                                            Raw(f'[]string{{"{wanted}"}}'))])
        return wanted
    size = min(net.num_addresses - 2, 1 << 20)
    static = min(max(16, size // 16), 256)
    for offset in [*range(static + 1, size + 1), *range(1, static + 1)]:
        ip = str(net.network_address + offset)
        if ip not in used:
            return ip
    raise _invalid(obj, [FieldError("spec.clusterIPs", "failed to allocate IP: range is full", Raw("[]string{}"))])


def _service_update(obj: Obj, old: Obj) -> None:
    spec, old_spec = obj.setdefault("spec", {}), old.get("spec") or {}
    if not spec.get("clusterIP"):
        spec["clusterIP"] = old_spec.get("clusterIP")
        spec["clusterIPs"] = old_spec.get("clusterIPs")
    if spec["clusterIP"] != old_spec.get("clusterIP"):
        raise _invalid(obj, [FieldError("spec.clusterIPs[0]", "may not change once set",
                                        Raw(f'[]string{{"{spec["clusterIP"]}"}}'))])


def _qos(spec: Obj) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(r.get("limits") and set(r["limits"]) >= {"cpu", "memory"}
                     and all(r.get("requests", r["limits"]).get(k) == r["limits"][k] for k in r["limits"])
                     for r in resources)
    return "Guaranteed" if guaranteed else "Burstable"


# --- certificate signing requests --------------------------------------------------------------------


def _csr_create(obj: Obj, user: UserInfo) -> None:
    """The requester's identity is recorded by the server; a CSR cannot be created approved."""
    spec = obj.setdefault("spec", {})
    spec["username"], spec["groups"] = user.name, list(user.groups)
    spec.pop("uid", None)
    if user.uid:
        spec["uid"] = user.uid
    obj["status"] = {}
    errs: list[FieldError] = []
    try:
        x509.load_pem_x509_csr(base64.b64decode(spec.get("request", "")))
    except (ValueError, binascii.Error):
        errs.append(FieldError("spec.request", "PEM block type must be CERTIFICATE REQUEST", Raw("[]byte{...}")))
    if not spec.get("signerName"):
        errs.append(FieldError("spec.signerName", "", kind="Required value"))
    if not spec.get("usages"):
        errs.append(FieldError("spec.usages", "", kind="Required value"))
    if errs:
        raise _invalid(obj, errs)


def _conditions(obj: Obj) -> list[Obj]:
    return list((obj.get("status") or {}).get("conditions") or [])


def _csr_update(obj: Obj, old: Obj, sub: str) -> None:
    status = obj.setdefault("status", {})
    old_status = old.get("status") or {}
    if sub == "approval":
        _copy(old_status, status, "certificate")
    elif sub == "status":  # Approved/Denied are changed through /approval only
        kept = [c for c in _conditions(old) if c.get("type") in ("Approved", "Denied")]
        status["conditions"] = kept + [c for c in _conditions(obj) if c.get("type") not in ("Approved", "Denied")]
    now = now_rfc3339()
    for cond in status.get("conditions") or []:
        cond.setdefault("status", "True")
        cond.setdefault("lastUpdateTime", now)
        cond.setdefault("lastTransitionTime", now)
    if not status.get("conditions"):
        status.pop("conditions", None)
    types = {c.get("type") for c in _conditions(obj)}
    errs: list[FieldError] = []
    if {"Approved", "Denied"} <= types:
        errs.append(FieldError("status.conditions[1].type", "Approved and Denied conditions are mutually exclusive",
                               "Denied"))
    cert = status.get("certificate")
    if cert and cert != old_status.get("certificate"):
        if old_status.get("certificate"):
            errs.append(FieldError("status.certificate", "updates may not modify existing certificate content",
                                   kind="Forbidden"))
        elif "Approved" not in types or "Failed" in types:
            errs.append(FieldError("status.certificate", "certificate can only be set if an Approved condition is "
                                   "present and a Failed condition is not", kind="Forbidden"))
    if errs:
        raise _invalid(obj, errs)
