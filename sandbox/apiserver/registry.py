"""The verbs of the API over the store: get, list, create, update, patch, delete, and the access reviews.

Reads/writes: objects through ``store.Store``; per-kind rules in ``kinds``; PATCH bodies through
``tasks.patches`` (RFC 7386 merge, RFC 6902 JSON patch) and ``tasks.smp`` (strategic merge with the
kind's merge keys from the resource table). Authentication and authorization happened before: the
registry trusts the ``UserInfo`` it is given, and uses the authorizer only to answer access reviews.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

from kubeboot.sandbox.apiserver import errors, kinds, selectors
from kubeboot.sandbox.apiserver.kinds import HookContext, Network
from kubeboot.sandbox.apiserver.resources import ResourceType
from kubeboot.sandbox.apiserver.store import ListOptions, Match, Store
from kubeboot.sandbox.apiserver.types import Authorizer, RequestAttributes, UserInfo
from kubeboot.tasks import patches, smp

Obj = dict[str, Any]
# Server-side apply (application/apply-patch+yaml) is not emulated: it is a 415 like any other type not listed.
PATCH_TYPES = (patches.JSON_PATCH, patches.MERGE_PATCH, patches.STRATEGIC_PATCH)


class Registry:
    def __init__(self, store: Store, service_network: Network, authorizer: Authorizer) -> None:
        self.store, self.service_network, self.authorizer = store, service_network, authorizer

    def _hooks(self, user: UserInfo) -> HookContext:
        return HookContext(user, self.store, self.service_network)

    @staticmethod
    def _check_sub(rt: ResourceType, sub: str) -> None:
        if sub and sub not in rt.subresources:
            raise errors.path_not_found()

    def get(self, rt: ResourceType, ns: str, name: str, sub: str = "") -> Obj:
        self._check_sub(rt, sub)
        obj = self.store.get(rt.key, ns, name)
        if obj is None:
            raise errors.not_found(rt.key, name)
        return obj

    def list(self, rt: ResourceType, ns: str | None, label_selector: str = "", field_selector: str = "",
             **paging: Any) -> Obj:
        """A list, one page of it with ``limit``/``continue_token``/``resource_version`` (store.ListOptions)."""
        page = self.store.list_page(rt.key, ns, ListOptions(match=match(rt, label_selector, field_selector),
                                                            **paging))
        for obj in page.items:
            obj.pop("kind", None)  # list items carry no kind/apiVersion, as the real server sends them
            obj.pop("apiVersion", None)
        meta: Obj = {"resourceVersion": str(page.revision)}
        if page.continue_token:
            meta["continue"] = page.continue_token
        if page.remaining is not None:
            meta["remainingItemCount"] = page.remaining
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": meta, "items": page.items}

    @staticmethod
    def _body(rt: ResourceType, ns: str, name: str, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request(f"the object provided is unrecognized (must be of type {rt.kind})")
        if body.get("kind") not in (None, "", rt.kind):
            raise errors.bad_request(f"the object provided is unrecognized (must be of type {rt.kind}): "
                                     f"kind {body['kind']!r}")
        body["kind"], body["apiVersion"] = rt.kind, rt.api_version
        meta = body.get("metadata")
        if not isinstance(meta, dict):
            meta = body["metadata"] = {}
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if name:
            if meta.get("name") not in (None, "", name):
                raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the name on "
                                         f"the URL ({name})")
            meta["name"] = name
        return body

    def create(self, rt: ResourceType, ns: str, body: Any, user: UserInfo, *, sub: str = "",
               dry_run: bool = False) -> Obj:
        if sub or "create" not in rt.verbs:
            raise errors.method_not_allowed(rt.key)
        obj = self._body(rt, ns, "", body)
        if not rt.stored:
            return self.review(rt, obj, user)
        # Only allocating hooks (service cluster IPs) need the lock: a free IP is chosen and taken at once.
        with self.store.lock if rt.key in kinds.ALLOCATING else contextlib.nullcontext():
            kinds.on_create(rt, obj, self._hooks(user))
            return self.store.create(rt.key, obj, dry_run=dry_run)

    def _prepare_update(self, rt: ResourceType, ns: str, name: str, sub: str, body: Any, old: Obj) -> Obj:
        obj = self._body(rt, ns, name, body)
        kinds.on_update(rt, obj, old, sub)
        return obj

    def update(self, rt: ResourceType, ns: str, name: str, body: Any, *, sub: str = "",
               dry_run: bool = False) -> Obj:
        self._check_sub(rt, sub)
        if not rt.unconditional_update:
            _require_resource_version(rt, name, body)

        def change(current: Obj) -> Obj:  # called again on a lost race, so on a fresh copy of the body
            return self._prepare_update(rt, ns, name, sub, copy.deepcopy(body), current)

        return self.store.guaranteed_update(rt.key, ns, name, change, dry_run=dry_run)

    def patch(self, rt: ResourceType, ns: str, name: str, content_type: str, raw: bytes, *, sub: str = "",
              dry_run: bool = False) -> Obj:
        self._check_sub(rt, sub)
        patch = _decode_patch(content_type, raw)

        def change(current: Obj) -> Obj:
            patched = apply_patch(content_type, current, patch, rt.smp)
            return self._prepare_update(rt, ns, name, sub, patched, current)

        return self.store.patch(rt.key, ns, name, change, dry_run=dry_run)

    def delete(self, rt: ResourceType, ns: str, name: str, options: Obj, *, dry_run: bool = False) -> Obj:
        pre = options.get("preconditions") or {}
        old = self.store.delete(rt.key, ns, name, uid=pre.get("uid"), resource_version=pre.get("resourceVersion"),
                                dry_run=dry_run)
        if rt.key == "/pods":  # pods answer with the object, other kinds with a Status
            return old
        details: Obj = {"name": name}
        if rt.group:
            details["group"] = rt.group
        details.update(kind=rt.plural, uid=old["metadata"]["uid"])
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def review(self, rt: ResourceType, obj: Obj, user: UserInfo) -> Obj:
        """(Self)SubjectAccessReview: evaluated with the server's authorizer; SelfSubjectReview: who am I.
        Never stored."""
        if rt.kind == "SelfSubjectReview":
            info: Obj = {"username": user.name, "groups": list(user.groups)}
            obj["status"] = {"userInfo": {**info, **({"uid": user.uid} if user.uid else {})}}
            return obj
        spec = obj.get("spec") or {}
        res, non_res = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        name = obj["metadata"].get("name", "")
        if (res is None) == (non_res is None):
            raise errors.invalid(rt.kind, rt.group, name, [errors.FieldError(
                "spec.resourceAttributes", "exactly one of nonResourceAttributes or resourceAttributes must be "
                "specified", errors.Raw("null"))])
        if rt.kind == "SelfSubjectAccessReview":
            subject = user
        else:
            subject = UserInfo(spec.get("user") or "", tuple(spec.get("groups") or ()), spec.get("uid") or "")
            if not subject.name and not subject.groups:
                raise errors.invalid(rt.kind, rt.group, name, [errors.FieldError(
                    "spec.user", "at least one of user or group must be specified", "")])
        if res is not None:
            attrs = RequestAttributes(subject, res.get("verb", ""), res.get("namespace", ""), res.get("group", ""),
                                      res.get("version", ""), res.get("resource", ""), res.get("subresource", ""),
                                      res.get("name", ""))
        else:
            nr: Obj = non_res or {}
            attrs = RequestAttributes(subject, nr.get("verb", ""), path=nr.get("path", ""),
                                      resource_request=False)
        allowed, reason = self.authorizer.authorize(attrs)
        obj["status"] = {"allowed": allowed, **({"reason": reason} if reason else {})}
        return obj


def match(rt: ResourceType, label_selector: str, field_selector: str) -> Match | None:
    """Both selectors as one predicate; None when there is none (400 for one that does not parse)."""
    labels = selectors.label_selector(label_selector) if label_selector else None
    fields = selectors.field_selector(rt.key, field_selector) if field_selector else None
    if labels and fields:
        return lambda o: labels(o) and fields(o)
    return labels or fields


def _require_resource_version(rt: ResourceType, name: str, body: Any) -> None:
    """genericregistry.Store.Update for a kind whose strategy disallows unconditional updates."""
    meta = body.get("metadata") if isinstance(body, dict) else None
    if not (isinstance(meta, dict) and meta.get("resourceVersion")):
        raise errors.invalid(rt.plural, rt.group, name, [errors.FieldError(
            "metadata.resourceVersion", "must be specified for an update", errors.Raw("0x0"))])


def _decode_patch(content_type: str, raw: bytes) -> Any:
    if content_type not in PATCH_TYPES:
        raise errors.unsupported_media_type(content_type, PATCH_TYPES)
    try:
        patch = json.loads(raw or b"null")
    except ValueError as e:
        raise errors.bad_request(f"error decoding patch: {e}") from None
    if content_type == patches.JSON_PATCH and not isinstance(patch, list):
        raise errors.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    return patch


def apply_patch(content_type: str, current: Obj, patch: Any, schema: dict[str, Any]) -> Any:
    try:
        if content_type == patches.JSON_PATCH:
            return patches.json_patch(current, patch)
        if content_type == patches.MERGE_PATCH:
            return patches.merge_patch(current, patch)
        return smp.strategic_merge(current, patch, schema)
    except (patches.PatchError, smp.SMPError, KeyError, IndexError, TypeError, ValueError) as e:
        raise errors.unprocessable(str(e)) from None
