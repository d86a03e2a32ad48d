"""A small client-go Reflector for the sandbox kubelet and controllers: list, then watch, keep the objects.

Reads: one collection of the API server (a path such as ``/api/v1/pods`` with query parameters such as
``fieldSelector=spec.nodeName=n1``) through an official ``kubernetes`` ApiClient from ``api()``, asked again
for every list and watch (a kubelet's rotated client certificate is picked up). Writes nothing.

As client-go's Reflector (tools/cache/reflector.go): a list gives the objects and a resourceVersion; a
watch from that resourceVersion applies ADDED / MODIFIED / DELETED, a BOOKMARK moves the resourceVersion
only; a watch the server ends (its ``timeoutSeconds``, 5 to 10 minutes at random as client-go asks) is
opened again from the last resourceVersion; 410 Expired, or any error, means a new list (after a short
backoff for errors, logged when the error changes). ``changed`` is set after every change, so a
controller sleeps until there is work; ``synced`` once the first list is in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

Obj = dict[str, Any]
ApiFactory = Callable[[], AbstractContextManager[Any]]
MIN_WATCH_TIMEOUT = 300  # client-go's minWatchTimeout; each watch asks a random time in [it, 2*it)
BACKOFF = (0.2, 5.0)  # first and largest wait before a list after an error


class Informer:
    def __init__(self, api: ApiFactory, path: str, params: dict[str, str] | None = None,
                 log: logging.Logger | None = None) -> None:
        self.api, self.path, self.params = api, path, dict(params or {})
        self.log = log or logging.getLogger("kubeboot.sandbox.informer")
        self.changed = threading.Event()
        self.synced = threading.Event()
        self._objects: dict[tuple[str, str], Obj] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._response: Any = None
        self._error = ""

    # --- the cache ------------------------------------------------------------------------------------------

    def items(self) -> list[Obj]:
        with self._lock:
            return [self._objects[key] for key in sorted(self._objects)]

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._objects.get((namespace, name))

    @staticmethod
    def _key(obj: Obj) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return str(meta.get("namespace") or ""), str(meta.get("name") or "")

    # --- keeping it -----------------------------------------------------------------------------------------

    def start(self, name: str = "informer") -> threading.Thread:
        thread = threading.Thread(target=self.run, name=name, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # wakes the read blocked on the watch
                response.shutdown()

    def run(self) -> None:
        delay = BACKOFF[0]
        while not self._stop.is_set():
            try:
                version = self._list()
                while version and not self._stop.is_set():
                    version = self._watch(version)
                delay = BACKOFF[0]
            except Exception as e:
                if self._stop.is_set():
                    return
                self._note(e)
                self._stop.wait(delay)
                delay = min(BACKOFF[1], delay * 2)

    def _note(self, e: Exception) -> None:
        message = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        if message != self._error:
            self.log.info("watch of %s failed (will list again): %s", self.path, message)
            self._error = message

    def _list(self) -> str:
        with self.api() as api:
            response = self._call(api, self.params)
            doc = json.loads(response.data or b"{}")
        objects = {self._key(o): o for o in doc.get("items") or []}
        with self._lock:
            if objects != self._objects or not self.synced.is_set():
                self.changed.set()
            self._objects = objects
        self.synced.set()
        self._error = ""
        return str((doc.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, version: str) -> str:
        """Follow one watch from ``version``; the resourceVersion to go on from, "" to list again."""
        timeout = str(random.randint(MIN_WATCH_TIMEOUT, 2 * MIN_WATCH_TIMEOUT - 1))
        params = {**self.params, "watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": timeout}
        with self.api() as api:
            self._response = self._call(api, params)
            try:
                for event in self._events(self._response):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        return ""  # 410 Expired and friends: list again
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        self._apply(kind, obj)
            finally:
                self._response.release_conn()
                self._response = None
        return version

    def _events(self, response: Any) -> Iterator[Obj]:
        for line in iter_resp_lines(response):
            if self._stop.is_set():
                return
            if line.strip():
                yield json.loads(line)

    def _apply(self, kind: Any, obj: Obj) -> None:
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(self._key(obj), None)
            else:
                self._objects[self._key(obj)] = obj
        self.changed.set()

    def _call(self, api: Any, params: dict[str, str]) -> Any:
        try:
            return api.call_api(self.path, "GET", query_params=list(params.items()),
                                header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
                                _return_http_data_only=True, _preload_content=False)
        except ApiException as e:
            raise RuntimeError(f"{e.status} {e.reason}") from None
