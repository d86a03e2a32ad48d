"""The informer caches the API server's authenticators and authorizers read, kept by one etcd watch.

Reads: the store's etcd: a list of each mirrored resource at one revision, then a watch of the whole
``--etcd-prefix`` from the next revision. Writes nothing. Answers ``ObjectReader.get/list`` from memory for
the resources in ``MIRRORED`` (what kube-apiserver's RBAC authorizer, Node authorizer graph and bootstrap
token authenticator read through shared informers) and passes any other resource to the store.

It also keeps the last value and revision of every key (``cached``): an update starts from it instead of
a read, as GuaranteedUpdate starts from the watch cache's copy (a stale one only costs the transaction
that finds it stale).

Like an informer it is eventually consistent; unlike one, a read waits (up to ``SYNC_WAIT``) until the
cache has seen every write this server made itself, so a RoleBinding created through this server applies
to its very next request. A write through another API server of the cluster shows up as fast as etcd
sends the event, as with the real servers. A broken or compacted watch is re-listed, with a log line.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from kubeboot.sandbox.apiserver import etcd, keys
from kubeboot.sandbox.apiserver.store import Store, Stored, decode

Obj = dict[str, Any]
RBAC = "rbac.authorization.k8s.io"
MIRRORED = ("/secrets", "/pods", f"{RBAC}/roles", f"{RBAC}/rolebindings", f"{RBAC}/clusterroles",
            f"{RBAC}/clusterrolebindings")
SYNC_WAIT = 2.0  # bound of a read's wait for this server's own last write
RETRY = 1.0


class Mirror:
    def __init__(self, store: Store, log: Callable[[str], None]) -> None:
        self.store, self.log = store, log
        self._prefixes = {keys.list_prefix(store.prefix, r): r for r in MIRRORED}
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {r: {} for r in MIRRORED}
        self._latest: dict[str, tuple[int, bytes]] = {}  # every key: (mod_revision, value)
        self._revision = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._watch: etcd.Watch | None = None
        self.synced = threading.Event()

    # --- ObjectReader -------------------------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        if resource not in self._objects:
            return self.store.get(resource, namespace, name)
        self._catch_up()
        with self._cond:
            found = self._objects[resource].get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(self, resource: str, namespace: str | None = None) -> list[Obj]:
        if resource not in self._objects:
            return self.store.list(resource, namespace)
        self._catch_up()
        with self._cond:
            found = [o for (ns, _), o in sorted(self._objects[resource].items()) if namespace in (None, ns)]
        return copy.deepcopy(found)

    def cached(self, key: str) -> Stored | None:
        """The last value of ``key`` this cache saw, if any (it may be stale)."""
        with self._cond:
            found = self._latest.get(key)
        if found is None:
            return None
        revision, value = found
        return Stored(decode(etcd.KV(key, value, 0, revision)), revision, value)

    def _catch_up(self) -> None:
        wanted = self.store.written
        with self._cond:
            self._cond.wait_for(lambda: self._revision >= wanted or self._stop.is_set(), timeout=SYNC_WAIT)

    # --- keeping it -------------------------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._run, name="mirror", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.close()
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._list()
                self._follow()
            except etcd.Compacted:
                self.log("mirror: watch of etcd fell behind a compaction; listing again")
            except Exception as e:  # etcd gone, a broken stream: the cache must outlive it
                if not self._stop.is_set():
                    self.log(f"mirror: etcd watch failed: {e}; listing again in {RETRY:.0f}s")
                    self._stop.wait(RETRY)

    def _list(self) -> None:
        root = self.store.prefix.rstrip("/") + "/"
        found = self.store.etcd.range(root, etcd.prefix_end(root))
        fresh: dict[str, dict[tuple[str, str], Obj]] = {r: {} for r in MIRRORED}
        for kv in found.kvs:
            for prefix, resource in self._prefixes.items():
                if kv.key.startswith(prefix):
                    fresh[resource][self._name(kv.key, prefix)] = decode(kv)
        with self._cond:
            self._objects, self._revision = fresh, found.revision
            self._latest = {kv.key: (kv.mod_revision, kv.value) for kv in found.kvs}
            self._cond.notify_all()
        self.synced.set()

    def _follow(self) -> None:
        root = self.store.prefix.rstrip("/") + "/"
        self._watch = self.store.etcd.watch(root, etcd.prefix_end(root), self._revision + 1)
        if self._stop.is_set():
            self._watch.close()
        for response in self._watch:
            with self._cond:
                for event in response.events:
                    self._apply(event)
                # A progress notification vouches for its header revision; events only for their own.
                seen = max((e.kv.mod_revision for e in response.events), default=response.revision)
                self._revision = max(self._revision, seen)
                self._cond.notify_all()
        if not self._stop.is_set():
            raise etcd.Unavailable("etcd ended the watch")

    def _apply(self, event: etcd.Event) -> None:
        if event.type == "DELETE":
            self._latest.pop(event.kv.key, None)
        else:
            self._latest[event.kv.key] = (event.kv.mod_revision, event.kv.value)
        for prefix, resource in self._prefixes.items():
            if event.kv.key.startswith(prefix):
                name = self._name(event.kv.key, prefix)
                if event.type == "DELETE":
                    self._objects[resource].pop(name, None)
                else:
                    self._objects[resource][name] = decode(event.kv)
                return

    @staticmethod
    def _name(key: str, prefix: str) -> tuple[str, str]:
        namespace, _, name = key[len(prefix):].rpartition("/")
        return namespace, name
