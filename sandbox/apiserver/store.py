"""The emulated API server's object store: one sqlite3 database, objects as JSON, one resourceVersion counter.

Reads/writes: ``$KUBEBOOT_SANDBOX_DIR/apiserver/store.sqlite3`` (WAL mode), or memory when no path is given.
Schema: ``objects(resource, namespace, name, body)`` keyed by the first three — ``resource`` is
``"<group>/<plural>"`` ("" group for core, e.g. ``/configmaps``), ``namespace`` is "" for cluster-scoped
objects, ``body`` the object's JSON as last written; ``meta(key, value)`` holds ``rv``, the global
resourceVersion counter (etcd's revision: every write takes the next value, stored as a string in
``metadata.resourceVersion``).

What the store owns, as the real registry does: uid, creationTimestamp, resourceVersion, generation (for
the kinds in ``GENERATION``, bumped when ``spec`` changes), generateName, name validation, existence of
the namespace, AlreadyExists / Conflict / NotFound. Kind-specific defaulting lives in ``resources``.
Every operation holds one re-entrant lock, so a read-modify-write (``patch``) is atomic across the
server's request threads.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubeboot.sandbox.apiserver import errors, names

NAMESPACES = "/namespaces"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
GENERATION = frozenset({"apps/deployments", "apps/daemonsets"})
_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's utilrand alphabet for generateName

Obj = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    def __init__(self, path: Path | None = None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False,
                                   isolation_level=None)
        self.lock = threading.RLock()
        with self.lock:
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS objects (resource TEXT, namespace TEXT, name TEXT, "
                             "body TEXT, PRIMARY KEY (resource, namespace, name))")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            for ns in SYSTEM_NAMESPACES:
                self.ensure(NAMESPACES, namespace_object(ns))

    def close(self) -> None:
        with self.lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- ObjectReader ---------------------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            row = self._db.execute("SELECT body FROM objects WHERE resource=? AND namespace=? AND name=?",
                                   (resource, namespace, name)).fetchone()
        return json.loads(row[0]) if row else None

    def list(self, resource: str, namespace: str | None = None) -> list[Obj]:
        with self.lock:
            if namespace is None:
                rows = self._db.execute("SELECT body FROM objects WHERE resource=? ORDER BY namespace, name",
                                        (resource,)).fetchall()
            else:
                rows = self._db.execute("SELECT body FROM objects WHERE resource=? AND namespace=? ORDER BY name",
                                        (resource, namespace)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def resource_version(self) -> str:
        with self.lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='rv'").fetchone()
        return row[0] if row else "0"

    # --- writes ---------------------------------------------------------------------------------------

    def _next_rv(self, db: sqlite3.Connection) -> str:
        rv = str(int(self.resource_version()) + 1)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('rv', ?)", (rv,))
        return rv

    def _put(self, db: sqlite3.Connection, resource: str, obj: Obj) -> None:
        meta = obj["metadata"]
        db.execute("INSERT OR REPLACE INTO objects (resource, namespace, name, body) VALUES (?, ?, ?, ?)",
                   (resource, meta.get("namespace", ""), meta["name"], json.dumps(obj, separators=(",", ":"))))

    def create(self, resource: str, obj: Obj, *, dry_run: bool = False) -> Obj:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(_SUFFIX_CHARS, k=5))
        names.check_object(resource, obj)
        ns, name = meta.get("namespace", ""), meta["name"]
        with self._tx() as db:
            if ns and self.get(NAMESPACES, "", ns) is None:
                raise errors.not_found(NAMESPACES, ns)
            if self.get(resource, ns, name) is not None:
                raise errors.already_exists(resource, name)
            for stale in ("resourceVersion", "deletionTimestamp", "selfLink"):
                meta.pop(stale, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if resource in GENERATION:
                meta["generation"] = 1
            if dry_run:
                return obj
            meta["resourceVersion"] = self._next_rv(db)
            self._put(db, resource, obj)
        return obj

    def ensure(self, resource: str, obj: Obj) -> Obj:
        """Create unless an object of that name exists (the server's own objects at start-up)."""
        with self.lock:
            meta = obj["metadata"]
            found = self.get(resource, meta.get("namespace", ""), meta["name"])
            return found if found is not None else self.create(resource, obj)

    def update(self, resource: str, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Replace an object. A resourceVersion in ``obj`` must be the stored one (else 409 Conflict);
        none means an unconditional update, as most real resources allow."""
        meta = obj.setdefault("metadata", {})
        names.check_object(resource, obj)
        ns, name = meta.get("namespace", ""), meta["name"]
        with self._tx() as db:
            old = self.get(resource, ns, name)
            if old is None:
                raise errors.not_found(resource, name)
            old_meta = old["metadata"]
            if meta.get("resourceVersion") not in (None, "", old_meta["resourceVersion"]):
                raise errors.conflict(resource, name)
            if meta.get("uid") not in (None, "", old_meta["uid"]):
                raise errors.conflict(resource, name, f"Precondition failed: UID in precondition: {meta['uid']}, "
                                                      f"UID in object meta: {old_meta['uid']}")
            for kept in ("uid", "creationTimestamp", "generation"):
                if kept in old_meta:
                    meta[kept] = old_meta[kept]
                else:
                    meta.pop(kept, None)
            meta["resourceVersion"] = old_meta["resourceVersion"]
            if obj == old:  # a no-op write keeps the resourceVersion, like the real server
                return obj
            if resource in GENERATION and obj.get("spec") != old.get("spec"):
                meta["generation"] = int(old_meta.get("generation", 0)) + 1
            if dry_run:
                return obj
            meta["resourceVersion"] = self._next_rv(db)
            self._put(db, resource, obj)
        return obj

    def patch(self, resource: str, namespace: str, name: str, change: Callable[[Obj], Obj], *,
              dry_run: bool = False) -> Obj:
        """Read, change, write under the lock. A resourceVersion the change leaves in the object is a
        precondition, as for a real PATCH carrying metadata.resourceVersion."""
        with self.lock:
            current = self.get(resource, namespace, name)
            if current is None:
                raise errors.not_found(resource, name)
            new = change(current)
            return self.update(resource, new, dry_run=dry_run)

    def delete(self, resource: str, namespace: str, name: str, *, uid: str | None = None,
               resource_version: str | None = None, dry_run: bool = False) -> Obj:
        with self._tx() as db:
            old = self.get(resource, namespace, name)
            if old is None:
                raise errors.not_found(resource, name)
            meta = old["metadata"]
            if uid and uid != meta["uid"]:
                raise errors.conflict(resource, name, f"Precondition failed: UID in precondition: {uid}, "
                                                      f"UID in object meta: {meta['uid']}")
            if resource_version and resource_version != meta["resourceVersion"]:
                raise errors.conflict(resource, name, "Precondition failed: ResourceVersion in precondition: "
                                                      f"{resource_version}, ResourceVersion in object meta: "
                                                      f"{meta['resourceVersion']}")
            if not dry_run:
                self._next_rv(db)
                db.execute("DELETE FROM objects WHERE resource=? AND namespace=? AND name=?",
                           (resource, namespace, name))
        return old


def namespace_object(name: str) -> Obj:
    """A Namespace as the real server completes one: the metadata.name label, the kubernetes finalizer."""
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
