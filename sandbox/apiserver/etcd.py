"""A client of etcd's v3 JSON gateway: range, transactions, watch, status, over keep-alive HTTPS.

Reads: the ``--etcd-servers`` URLs and the TLS files ``--etcd-cafile`` / ``--etcd-certfile`` /
``--etcd-keyfile`` (kubeadm's apiserver-etcd-client certificate: the gateway sits on etcd's client port,
behind the same mutual TLS as its gRPC API). Writes: whatever keys the caller puts; nothing of its own.

Why the gateway and not a library: etcd serves ``/v3/kv/range``, ``/v3/kv/txn``, ``/v3/watch`` ... as the
JSON mapping of its own protobuf API (int64 fields as strings, keys and values base64, fields at their
zero value left out), so the standard library is enough and no protobuf is written by hand. ``etcd3gw``
(OpenStack's client of the same gateway) drops the parts of a watch the API server needs: the
``compact_revision`` of a cancelled watch (410 Gone) and progress notifications (bookmarks).

Not ``tasks.etcdclient`` (the join phases' member-list client, on urllib3): the storage of an API server
needs range, transactions and long-lived watch streams, which production has no use for; the two share
only the gateway's JSON conventions.

Connections: a few idle keep-alive connections per endpoint are reused; a request that fails on a reused
one (etcd closed it while idle) is sent again once on a fresh one; an endpoint that does not answer
passes the request to the next (several ``--etcd-servers`` for an HA cluster). Each watch has its own
connection, closed by ``Watch.close`` from any thread.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Json = dict[str, Any]
IDLE_PER_ENDPOINT = 8  # idle connections kept per endpoint (one per busy request thread, in practice)
OUT_OF_RANGE = 11  # gRPC code of "required revision has been compacted" / "is a future revision"


class EtcdError(Exception):
    """An error etcd answered (gRPC code and message), or no endpoint answering (``Unavailable``)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class Unavailable(EtcdError):
    pass


class Compacted(EtcdError):
    """The revision asked for is older than etcd's compaction: its history is gone."""

    def __init__(self, compact_revision: int = 0) -> None:
        super().__init__("etcdserver: mvcc: required revision has been compacted", OUT_OF_RANGE)
        self.compact_revision = compact_revision


class FutureRevision(EtcdError):
    def __init__(self) -> None:
        super().__init__("etcdserver: mvcc: required revision is a future revision", OUT_OF_RANGE)


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class Range:
    kvs: list[KV]
    revision: int  # the store's revision the read saw
    more: bool
    count: int  # keys in the whole range, not only those returned under a limit


@dataclass(frozen=True)
class Event:
    type: str  # "PUT" or "DELETE"
    kv: KV  # for a DELETE: key and the deletion's revision (mod_revision), no value
    prev: KV | None


@dataclass(frozen=True)
class WatchResponse:
    revision: int  # header revision: every event up to it was sent on this watch
    events: list[Event] = field(default_factory=list)


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def prefix_end(prefix: str) -> str:
    """The range end covering every key that starts with ``prefix`` (clientv3.GetPrefixRangeEnd)."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return raw.decode("latin-1")
        raw.pop()
    return "\0"


def _kv(doc: Json) -> KV:
    return KV(base64.b64decode(doc.get("key", "")).decode(), base64.b64decode(doc.get("value", "")),
              int(doc.get("create_revision", 0)), int(doc.get("mod_revision", 0)))


def range_of(doc: Json) -> Range:
    return Range([_kv(kv) for kv in doc.get("kvs") or []], int((doc.get("header") or {}).get("revision", 0)),
                 bool(doc.get("more")), int(doc.get("count", 0)))


# --- transaction pieces (etcdserverpb Compare / RequestOp in their JSON form) -------------------------------


def mod_revision_is(key: str, revision: int) -> Json:
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}


def absent(key: str) -> Json:
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def put(key: str, value: bytes) -> Json:
    return {"request_put": {"key": b64(key), "value": b64(value)}}


def delete(key: str) -> Json:
    return {"request_delete_range": {"key": b64(key)}}


def get(key: str) -> Json:
    return {"request_range": {"key": b64(key)}}


class Etcd:
    def __init__(self, endpoints: list[str], tls: ssl.SSLContext | None = None, timeout: float = 10.0) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = [urlsplit(e) for e in endpoints]
        self.tls, self.timeout = tls, timeout
        self._idle: dict[int, list[http.client.HTTPConnection]] = {i: [] for i in range(len(endpoints))}
        self._lock = threading.Lock()
        self._preferred = 0

    # --- requests -------------------------------------------------------------------------------------

    def _connect(self, index: int, timeout: float | None) -> http.client.HTTPConnection:
        url = self.endpoints[index]
        host, port = url.hostname or "127.0.0.1", url.port or 2379
        if url.scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self.tls)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _take(self, index: int) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle[index]:
                return self._idle[index].pop(), True
        return self._connect(index, self.timeout), False

    def _give(self, index: int, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle[index]) < IDLE_PER_ENDPOINT:
                self._idle[index].append(conn)
                return
        conn.close()

    def _send(self, index: int, path: str, body: bytes) -> tuple[int, bytes]:
        for _ in range(2):
            conn, reused = self._take(index)
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                if reused:
                    continue  # closed by etcd while idle: once more on a fresh connection
                raise
            self._give(index, conn)
            return resp.status, data
        raise Unavailable("etcd closed the connection twice")

    def call(self, path: str, payload: Json) -> Json:
        """POST one request to the first endpoint that answers; etcd's error as ``EtcdError``."""
        body = json.dumps(payload).encode()
        last: Exception | None = None
        count = len(self.endpoints)
        for step in range(count):
            index = (self._preferred + step) % count
            try:
                status, data = self._send(index, path, body)
            except (OSError, http.client.HTTPException, Unavailable) as e:
                last = e
                continue
            self._preferred = index
            doc = json.loads(data or b"{}")
            if status == 200:
                return doc if isinstance(doc, dict) else {}
            raise _error(doc, status)
        where = ",".join(e.geturl() for e in self.endpoints)
        raise Unavailable(f"no etcd endpoint answered ({where}): {last}")

    def close(self) -> None:
        with self._lock:
            for conns in self._idle.values():
                for conn in conns:
                    conn.close()
                conns.clear()

    # --- the API --------------------------------------------------------------------------------------

    def range(self, key: str, range_end: str | None = None, *, limit: int = 0, revision: int = 0,
              count_only: bool = False) -> Range:
        payload: Json = {"key": b64(key)}
        if range_end is not None:
            payload["range_end"] = b64(range_end)
        if limit:
            payload["limit"] = str(limit)
        if revision:
            payload["revision"] = str(revision)
        if count_only:
            payload["count_only"] = True
        return range_of(self.call("/v3/kv/range", payload))

    def txn(self, compare: list[Json], success: list[Json], failure: list[Json]) -> tuple[bool, int, list[Json]]:
        """(succeeded, revision after the transaction, the responses of the branch that ran)."""
        doc = self.call("/v3/kv/txn", {"compare": compare, "success": success, "failure": failure})
        return bool(doc.get("succeeded")), int((doc.get("header") or {}).get("revision", 0)), \
            list(doc.get("responses") or [])

    def revision(self) -> int:
        """The store's current revision (a read of one key that need not exist)."""
        return self.range("/", count_only=True).revision

    def status(self) -> Json:
        return self.call("/v3/maintenance/status", {})

    def watch(self, key: str, range_end: str, start_revision: int, *, progress_notify: bool = True) -> Watch:
        """Events on [key, range_end) from ``start_revision`` on, with previous values."""
        create = {"key": b64(key), "range_end": b64(range_end), "start_revision": str(start_revision),
                  "prev_kv": True, "progress_notify": progress_notify}
        payload = json.dumps({"create_request": create}).encode()
        last: Exception | None = None
        for step in range(len(self.endpoints)):
            index = (self._preferred + step) % len(self.endpoints)
            conn = self._connect(index, self.timeout)
            try:
                conn.request("POST", "/v3/watch", payload, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                if resp.status != 200:
                    raise _error(json.loads(resp.read() or b"{}"), resp.status)
                if conn.sock is not None:
                    conn.sock.settimeout(None)  # a quiet watch is not an error: close() ends it
                return Watch(conn, resp)
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                last = e
        raise Unavailable(f"no etcd endpoint answered a watch: {last}")


class Watch:
    """One watch stream. Iterating yields ``WatchResponse``s (events, or a progress notification with no
    events); a watch etcd cancels for compaction raises ``Compacted``; ``close`` ends it from any thread."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._conn, self._resp = conn, resp
        self.closed = False

    def __iter__(self) -> Iterator[WatchResponse]:
        while not self.closed:
            line = self._readline()
            if not line:
                return
            if not line.strip():
                continue
            result = (json.loads(line).get("result") or {})
            if result.get("created"):
                continue
            if result.get("canceled"):
                if result.get("compact_revision"):
                    raise Compacted(int(result["compact_revision"]))
                raise EtcdError(f"etcd cancelled the watch: {result.get('cancel_reason', '')}")
            events = [Event(e.get("type", "PUT"), _kv(e["kv"]), _kv(e["prev_kv"]) if e.get("prev_kv") else None)
                      for e in result.get("events") or []]
            yield WatchResponse(int((result.get("header") or {}).get("revision", 0)), events)

    def _readline(self) -> bytes:
        """The next line of the stream; b"" once closed (whatever a read on a closed connection raises)."""
        try:
            return self._resp.readline()
        except Exception as e:
            if self.closed:
                return b""
            raise Unavailable(f"etcd watch stream broke: {e}") from None

    def close(self) -> None:
        self.closed = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the other side
                sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in readline
        self._conn.close()


def _error(doc: Any, status: int) -> EtcdError:
    doc = doc if isinstance(doc, dict) else {}
    message = str(doc.get("message") or doc.get("error") or f"HTTP {status}")
    code = int(doc.get("code") or 0)
    if "required revision has been compacted" in message:
        return Compacted()
    if "required revision is a future revision" in message:
        return FutureRevision()
    if status in (502, 503, 504) or code in (4, 14):  # DeadlineExceeded, Unavailable: no leader, timeouts
        return Unavailable(message, code)
    return EtcdError(message, code)


def tls_context(cafile: str, certfile: str, keyfile: str) -> ssl.SSLContext | None:
    """The mutual TLS of --etcd-cafile/--etcd-certfile/--etcd-keyfile; None when none is given."""
    if not (cafile or certfile):
        return None
    ctx = ssl.create_default_context(cafile=cafile or None)
    if certfile:
        ctx.load_cert_chain(certfile, keyfile or None)
    return ctx
