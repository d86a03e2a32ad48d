"""``?watch=true``: the stream of events kube-apiserver sends, from an etcd watch on the list's key prefix.

Reads: the store's etcd (one watch stream per client watch, with previous values). Writes nothing. This is
kube-apiserver with ``--watch-cache=false`` (k8s.io/apiserver/pkg/storage/etcd3/watcher.go):
- ``resourceVersion`` unset or "0": every matching object as ADDED (a list at the latest revision), then
  the changes after that revision; ``resourceVersion=N``: the changes after N;
- a create is ADDED, a change MODIFIED, a delete DELETED carrying the last state with the deletion's
  revision; with a selector, a change that makes an object match is ADDED and one that makes it stop
  matching is DELETED, as a client keeping a filtered cache needs;
- a revision etcd compacted ends the stream with an ERROR event: a Status 410 Expired (the official client
  raises ``ApiException(410)``, kubectl relists);
- with ``allowWatchBookmarks``, etcd's progress notifications (kubeadm's etcd sends one every 5s on a
  quiet watch) become BOOKMARK events carrying the revision every earlier event is known up to;
- ``timeoutSeconds`` ends the stream cleanly; unset, a random time in [1800s, 3600s) as with the real
  server's default --min-request-timeout.
The etcd stream is read on a thread of its own, so the request thread can notice the end of the timeout
and a client that went away while nothing happens (``None`` items: see ``stream``).
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from kubeboot.sandbox.apiserver import errors, etcd, keys
from kubeboot.sandbox.apiserver.resources import ResourceType
from kubeboot.sandbox.apiserver.store import ListOptions, Match, Store, decode, parse_rv

Obj = dict[str, Any]
MIN_REQUEST_TIMEOUT = 1800.0
TICK = 1.0  # how often an idle stream hands control back to the request thread


@dataclass(frozen=True)
class WatchOptions:
    resource_version: str = ""
    allow_bookmarks: bool = False
    match: Match | None = None
    timeout: float | None = None  # seconds; None: the server's default


def default_timeout() -> float:
    return MIN_REQUEST_TIMEOUT * (1 + random.random())


def stream(store: Store, rt: ResourceType, namespace: str | None,
           opts: WatchOptions) -> Generator[Obj | None, None, None]:
    """Watch events as dicts; ``None`` whenever ``TICK`` passes without one (the caller checks its client).
    Bad parameters raise ``ApiError`` before the first item, so they still get an error response."""
    rv = parse_rv(opts.resource_version) if opts.resource_version else 0
    deadline = time.monotonic() + (opts.timeout if opts.timeout is not None else default_timeout())
    if rv == 0:
        initial = store.list_page(rt.key, namespace, ListOptions(match=opts.match))
        rv = initial.revision
        pending: list[Obj] = [{"type": "ADDED", "object": obj} for obj in initial.items]
    else:
        pending = []
    prefix = keys.list_prefix(store.prefix, rt.key, namespace)
    source = _Reader(store.etcd.watch(prefix, etcd.prefix_end(prefix), rv + 1))
    try:
        yield from pending
        yield from _follow(source, rt, opts, deadline)
    finally:
        source.close()


def _follow(source: _Reader, rt: ResourceType, opts: WatchOptions, deadline: float) -> Iterator[Obj | None]:
    while (left := deadline - time.monotonic()) > 0:
        try:
            item = source.items.get(timeout=min(left, TICK))
        except queue.Empty:
            yield None
            continue
        if isinstance(item, etcd.Compacted):
            yield error_event(errors.expired("The resourceVersion for the provided watch is too old."))
            return
        if isinstance(item, Exception):
            yield error_event(errors.internal(str(item)))
            return
        if item is None:
            return
        if not item.events:
            if opts.allow_bookmarks:
                yield bookmark(rt, item.revision)
            continue
        for event in item.events:
            translated = translate(event, opts.match)
            if translated is not None:
                yield translated


def translate(event: etcd.Event, match: Match | None) -> Obj | None:
    """One etcd event as the watch event a client sees (None: not for this watch's selectors)."""
    revision = event.kv.mod_revision
    old = _at(decode(event.prev), revision) if event.prev is not None else None
    if event.type == "DELETE":
        return {"type": "DELETED", "object": old} if old is not None and _passes(match, old) else None
    current = decode(event.kv)
    if event.kv.create_revision == revision:
        return {"type": "ADDED", "object": current} if _passes(match, current) else None
    if match is None:
        return {"type": "MODIFIED", "object": current}
    now, before = match(current), old is not None and match(old)
    if now:
        return {"type": "MODIFIED" if before else "ADDED", "object": current}
    return {"type": "DELETED", "object": old} if before else None


def _passes(match: Match | None, obj: Obj) -> bool:
    return match is None or match(obj)


def _at(obj: Obj, revision: int) -> Obj:
    """The previous state, stamped with the revision of the change (the etcd3 watcher's UpdateObject)."""
    obj["metadata"]["resourceVersion"] = str(revision)
    return obj


def bookmark(rt: ResourceType, revision: int) -> Obj:
    return {"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version,
                                           "metadata": {"resourceVersion": str(revision)}}}


def error_event(err: errors.ApiError) -> Obj:
    return {"type": "ERROR", "object": err.status()}


class _Reader:
    """Reads an etcd watch on its own daemon thread into ``items``: WatchResponses, then None at the end
    or the exception that ended it."""

    def __init__(self, watch: etcd.Watch) -> None:
        self.watch = watch
        self.items: queue.Queue[etcd.WatchResponse | Exception | None] = queue.Queue()
        threading.Thread(target=self._run, name="etcd-watch", daemon=True).start()

    def _run(self) -> None:
        try:
            for response in self.watch:
                self.items.put(response)
            self.items.put(None)
        except Exception as e:
            self.items.put(e)

    def close(self) -> None:
        self.watch.close()
