"""The emulated API server's object store: kube-apiserver's own layout in the cluster's etcd.

Reads/writes: keys under ``--etcd-prefix`` (default ``/registry``) laid out as ``keys`` says
(``/registry/configmaps/<ns>/<name>``, ``/registry/minions/<name>`` ...). A value is the object's JSON with
``apiVersion`` and ``kind`` (the storage version: v1 of every group served here, as kube-apiserver writes
with ``--storage-media-type=application/json``) and without ``metadata.resourceVersion``: a read sets it
from the key's mod_revision, as the real server's versioner does. So resourceVersion IS the etcd revision,
and several API servers on one etcd agree on it.

What the store owns, as genericregistry.Store over etcd3.store does: uid, creationTimestamp, generation
(1 on create and bumped when ``spec`` changes, for the kinds in ``GENERATION``), generateName, name
validation, existence of the namespace, and every write as one etcd transaction: create compares
create_revision == 0 (else 409 AlreadyExists); update, patch and delete compare the mod_revision they
read, re-read and re-apply on a lost race (GuaranteedUpdate), and answer 409 Conflict when the caller's
resourceVersion or uid precondition is not the stored one. An update that changes no stored byte writes
nothing and keeps the resourceVersion. Kind-specific defaulting lives in ``kinds``; ``lock`` serializes
this process's allocating hooks (service cluster IPs), etcd serializes the writes themselves.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubeboot.sandbox.apiserver import errors, etcd, keys, names

NAMESPACES = "/namespaces"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
GENERATION = frozenset({"apps/deployments", "apps/daemonsets", "/pods"})
_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's utilrand alphabet for generateName
MAX_LIMIT = 10000  # etcd3.store's cap when a selector makes it fetch more pages to fill one
UPDATE_ATTEMPTS = 100  # GuaranteedUpdate retries lost races without bound; this only stops a livelock

Obj = dict[str, Any]
Match = Callable[[Obj], bool]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ListOptions:
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""  # "", "Exact" or "NotOlderThan"
    match: Match | None = None  # label/field selectors


@dataclass(frozen=True)
class Page:
    items: list[Obj]
    revision: int
    continue_token: str = ""
    remaining: int | None = None


@dataclass(frozen=True)
class Stored:
    obj: Obj
    revision: int
    raw: bytes


def encode(obj: Obj) -> bytes:
    """The stored bytes: the object without what the versioner keeps out of etcd."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "selfLink")}
    return json.dumps({**obj, "metadata": meta}, separators=(",", ":")).encode()


def decode(kv: etcd.KV) -> Obj:
    obj: Obj = json.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


def parse_rv(value: str) -> int:
    try:
        rv = int(value)
    except ValueError:
        raise errors.bad_request(f'invalid resource version: strconv.ParseUint: parsing "{value}": invalid syntax') \
            from None
    if rv < 0:
        raise errors.bad_request(f'invalid resource version: strconv.ParseUint: parsing "{value}": invalid syntax')
    return rv


class Store:
    def __init__(self, client: etcd.Etcd, prefix: str = keys.DEFAULT_PREFIX) -> None:
        self.etcd, self.prefix = client, prefix
        self.lock = threading.RLock()
        # The last value seen of a key, from the informer cache (mirror.Mirror.cached): updates start there.
        self.cache: Callable[[str], Stored | None] = lambda _key: None
        self._written = 0
        self._written_lock = threading.Lock()

    def key(self, resource: str, namespace: str, name: str) -> str:
        return keys.object_key(self.prefix, resource, namespace, name)

    def bootstrap(self) -> None:
        """The system namespaces, as the real server's system-namespaces controller makes them."""
        for ns in SYSTEM_NAMESPACES:
            self.ensure(NAMESPACES, namespace_object(ns))

    @property
    def written(self) -> int:
        """The highest revision this process wrote (a cache of this server waits to have seen it)."""
        return self._written

    def _wrote(self, revision: int) -> None:
        with self._written_lock:
            self._written = max(self._written, revision)

    # --- reads ----------------------------------------------------------------------------------------

    def _read(self, key: str) -> Stored | None:
        found = self.etcd.range(key).kvs
        return Stored(decode(found[0]), found[0].mod_revision, found[0].value) if found else None

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        found = self._read(self.key(resource, namespace, name))
        return found.obj if found else None

    def list(self, resource: str, namespace: str | None = None) -> list[Obj]:
        return self.list_page(resource, namespace, ListOptions()).items

    def resource_version(self) -> str:
        return str(self.etcd.revision())

    def list_page(self, resource: str, namespace: str | None, opts: ListOptions) -> Page:
        """etcd3.store.GetList: one consistent page (every page of a list reads the first page's revision),
        filled up to ``limit`` with objects ``opts.match`` accepts."""
        prefix = keys.list_prefix(self.prefix, resource, namespace)
        first, with_rev = self._list_start(prefix, opts)
        start = first
        end, limit, paging = etcd.prefix_end(prefix), opts.limit, opts.limit > 0
        items: list[Obj] = []
        last_key, more = "", False
        while True:
            try:
                found = self.etcd.range(start, end, limit=limit, revision=with_rev)
            except etcd.Compacted:
                raise (errors.expired_continue(keys.encode_continue(first, prefix, -1)) if opts.continue_token
                       else errors.expired("The resourceVersion for the provided list is too old.")) from None
            except etcd.FutureRevision:
                raise errors.too_large_resource_version(with_rev, self.etcd.revision()) from None
            if opts.resource_version and not opts.continue_token and parse_rv(opts.resource_version) > found.revision:
                raise errors.too_large_resource_version(parse_rv(opts.resource_version), found.revision)
            more = found.more
            for kv in found.kvs:
                if paging and len(items) >= opts.limit:
                    more = True
                    break
                last_key = kv.key
                obj = decode(kv)
                if opts.match is None or opts.match(obj):
                    items.append(obj)
            if not more or not paging or len(items) >= opts.limit:
                break
            limit = min(limit * 2, MAX_LIMIT)  # a selector dropped objects: fetch more per round trip
            start = last_key + "\0"
            with_rev = with_rev or found.revision
        with_rev = with_rev or found.revision
        if not more:
            return Page(items, with_rev)
        remaining = found.count - opts.limit if opts.match is None else None
        return Page(items, with_rev, keys.encode_continue(last_key + "\0", prefix, with_rev), remaining)

    @staticmethod
    def _list_start(prefix: str, opts: ListOptions) -> tuple[str, int]:
        """(first key, revision to read at; 0 = the latest)."""
        if opts.continue_token:
            try:
                start, rv = keys.decode_continue(opts.continue_token, prefix)
            except keys.InvalidContinue as e:
                raise errors.bad_request(f"invalid continue token: {e}") from None
            if opts.resource_version not in ("", "0"):
                raise errors.bad_request("specifying resource version is not allowed when using continue")
            return start, max(rv, 0)
        if not opts.resource_version:
            return prefix, 0
        rv = parse_rv(opts.resource_version)
        if opts.resource_version_match == "Exact":
            return prefix, rv
        if opts.resource_version_match == "NotOlderThan":
            return prefix, 0
        if opts.resource_version_match:
            raise errors.bad_request(f"unknown ResourceVersionMatch value: {opts.resource_version_match}")
        return prefix, rv if opts.limit > 0 else 0  # legacy: a paged list with an RV is an exact read

    # --- writes ---------------------------------------------------------------------------------------

    def create(self, resource: str, obj: Obj, *, dry_run: bool = False) -> Obj:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(_SUFFIX_CHARS, k=5))
        names.check_object(resource, obj)
        ns, name = meta.get("namespace", ""), meta["name"]
        if ns and self.get(NAMESPACES, "", ns) is None:
            raise errors.not_found(NAMESPACES, ns)
        for stale in ("resourceVersion", "deletionTimestamp", "selfLink"):
            meta.pop(stale, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if resource in GENERATION:
            meta["generation"] = 1
        key = self.key(resource, ns, name)
        if dry_run:
            if self._read(key) is not None:
                raise errors.already_exists(resource, name)
            return obj
        created, revision, _ = self.etcd.txn([etcd.absent(key)], [etcd.put(key, encode(obj))], [])
        if not created:
            raise errors.already_exists(resource, name)
        meta["resourceVersion"] = str(revision)
        self._wrote(revision)
        return obj

    def ensure(self, resource: str, obj: Obj) -> Obj:
        """Create unless an object of that name exists (the server's own objects at start-up; another API
        server of the cluster may be making the same ones)."""
        meta = obj["metadata"]
        found = self.get(resource, meta.get("namespace", ""), meta["name"])
        if found is not None:
            return found
        try:
            return self.create(resource, obj)
        except errors.ApiError as e:
            if e.code != 409:
                raise
        again = self.get(resource, meta.get("namespace", ""), meta["name"])
        if again is None:
            raise errors.not_found(resource, meta["name"])
        return again

    def update(self, resource: str, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Replace an object. A resourceVersion in ``obj`` must be the stored one (else 409 Conflict);
        none means an unconditional update."""
        meta = obj.setdefault("metadata", {})
        names.check_object(resource, obj)
        return self.guaranteed_update(resource, meta.get("namespace", ""), meta["name"],
                                      lambda _old: copy.deepcopy(obj), dry_run=dry_run)

    def patch(self, resource: str, namespace: str, name: str, change: Callable[[Obj], Obj], *,
              dry_run: bool = False) -> Obj:
        return self.guaranteed_update(resource, namespace, name, change, dry_run=dry_run)

    def guaranteed_update(self, resource: str, namespace: str, name: str, change: Callable[[Obj], Obj], *,
                          dry_run: bool = False) -> Obj:
        """Read, ``change`` (the current object, a copy), write if the key is still at the revision read;
        on a lost race read again and call ``change`` again. A resourceVersion ``change`` leaves that is not
        the current one is a failed precondition: 409 Conflict."""
        key = self.key(resource, namespace, name)
        current, fresh = self._origin(key)
        for _ in range(UPDATE_ATTEMPTS):
            if current is None:
                raise errors.not_found(resource, name)
            try:
                new = self._next(resource, name, current, change(copy.deepcopy(current.obj)))
            except errors.ApiError:
                if fresh:
                    raise
                current, fresh = self._read(key), True  # judged on a cached copy: judge the stored one
                continue
            data = encode(new)
            if data == current.raw or dry_run:  # a no-op write stores nothing and keeps the resourceVersion
                if fresh:
                    return new
                current, fresh = self._read(key), True
                continue
            ok, revision, responses = self.etcd.txn([etcd.mod_revision_is(key, current.revision)],
                                                    [etcd.put(key, data)], [etcd.get(key)])
            if ok:
                new["metadata"]["resourceVersion"] = str(revision)
                self._wrote(revision)
                return new
            current, fresh = _stored(responses), True
        raise errors.conflict(resource, name)

    def _origin(self, key: str) -> tuple[Stored | None, bool]:
        """(where an update starts, whether it was read from etcd just now): the cache's copy when it has
        one, as GuaranteedUpdate's cachedExistingObject; the transaction on its revision proves it current."""
        cached = self.cache(key)
        return (cached, False) if cached is not None else (self._read(key), True)

    @staticmethod
    def _next(resource: str, name: str, current: Stored, new: Obj) -> Obj:
        meta, old_meta = new.setdefault("metadata", {}), current.obj["metadata"]
        names.check_object(resource, new)
        if str(meta.get("resourceVersion") or "") not in ("", str(current.revision)):
            raise errors.conflict(resource, name)
        if meta.get("uid") not in (None, "", old_meta["uid"]):
            raise errors.conflict(resource, name, f"Precondition failed: UID in precondition: {meta['uid']}, "
                                                  f"UID in object meta: {old_meta['uid']}")
        for kept in ("uid", "creationTimestamp", "generation"):
            if kept in old_meta:
                meta[kept] = old_meta[kept]
            else:
                meta.pop(kept, None)
        meta["resourceVersion"] = str(current.revision)
        if resource in GENERATION and new.get("spec") != current.obj.get("spec"):
            meta["generation"] = int(old_meta.get("generation", 0)) + 1
        return new

    def delete(self, resource: str, namespace: str, name: str, *, uid: str | None = None,
               resource_version: str | None = None, dry_run: bool = False) -> Obj:
        """The deleted object, its resourceVersion the deletion's revision (as the real server answers)."""
        key = self.key(resource, namespace, name)
        current, fresh = self._origin(key)
        for _ in range(UPDATE_ATTEMPTS):
            if current is None:
                raise errors.not_found(resource, name)
            old, meta = current.obj, current.obj["metadata"]
            problem = ""
            if uid and uid != meta["uid"]:
                problem = f"Precondition failed: UID in precondition: {uid}, UID in object meta: {meta['uid']}"
            elif resource_version and resource_version != meta["resourceVersion"]:
                problem = (f"Precondition failed: ResourceVersion in precondition: {resource_version}, "
                           f"ResourceVersion in object meta: {meta['resourceVersion']}")
            if (problem or dry_run) and not fresh:
                current, fresh = self._read(key), True  # judged on a cached copy: judge the stored one
                continue
            if problem:
                raise errors.conflict(resource, name, problem)
            if dry_run:
                return old
            ok, revision, responses = self.etcd.txn([etcd.mod_revision_is(key, current.revision)],
                                                    [etcd.delete(key)], [etcd.get(key)])
            if ok:
                meta["resourceVersion"] = str(revision)
                self._wrote(revision)
                return old
            current, fresh = _stored(responses), True
        raise errors.conflict(resource, name)


def _stored(responses: list[Any]) -> Stored | None:
    """The object a failed transaction's ``get`` branch read."""
    kvs = etcd.range_of(responses[0].get("response_range") or {}).kvs if responses else []
    return Stored(decode(kvs[0]), kvs[0].mod_revision, kvs[0].value) if kvs else None


def namespace_object(name: str) -> Obj:
    """A Namespace as the real server completes one: the metadata.name label, the kubernetes finalizer."""
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
