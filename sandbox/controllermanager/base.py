"""The loop every emulated controller runs in: a pass when what it watches changes, as informers drive them.

A real controller is woken by its informers. Here each controller names the collections it watches
(``watches``: API paths and query parameters, e.g. the Secrets of kube-system); one ``sandbox.informer``
per collection lists and watches it, and a change starts a pass. A pass (``sync``) converges
idempotently: it reads what it needs, a pass that finds nothing to do writes nothing. Besides changes, a
pass runs every ``resync`` seconds (the informers' resync) and at ``wake_at`` when the controller has
time-based work (a bootstrap token that expires); passes are at least ``interval`` apart, so a burst
of events makes one pass. A failing pass is logged (once per distinct message, so an unreachable API
server does not flood the log) and retried with a bounded backoff. A controller without ``watches``
polls every ``interval``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import ClassVar

import kubernetes.client as k8s

from kubeboot.sandbox.informer import Informer

MAX_BACKOFF = 5.0
TICK = 0.5  # how often a waiting loop looks at its stop event


class Controller:
    """One controller: ``sync`` does one full pass; ``name`` is its --controllers name."""

    name: ClassVar[str] = ""
    account: ClassVar[str] = ""  # its kube-system ServiceAccount (--use-service-account-credentials)
    interval: ClassVar[float] = 0.5
    resync: ClassVar[float] = 30.0
    watches: ClassVar[tuple[tuple[str, dict[str, str]], ...]] = ()  # (collection path, query parameters)

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        self.log = logging.getLogger(f"controller.{self.name}")
        self.wake_at: float | None = None  # time.monotonic() of the next time-based pass, set by sync

    def sync(self) -> None:
        raise NotImplementedError


def informers(controller: Controller, changed: threading.Event) -> list[Informer]:
    out = []
    for path, params in controller.watches:
        informer = Informer(lambda: contextlib.nullcontext(controller.api), path, params, controller.log)
        informer.changed = changed  # one wake-up for every collection of the controller
        informer.start(f"{controller.name}-informer")
        out.append(informer)
    return out


def _next_wait(controller: Controller, delay: float, failed: bool) -> float:
    if failed or not controller.watches:
        return delay
    wait = controller.resync
    if controller.wake_at is not None:
        wait = min(wait, max(0.0, controller.wake_at - time.monotonic()))
    return max(wait, controller.interval)


def _sleep(stop: threading.Event, changed: threading.Event, seconds: float, watching: bool) -> None:
    """Until ``seconds`` pass, ``stop`` is set or (when watching) a watched collection changed."""
    end = time.monotonic() + seconds
    while not stop.is_set() and (left := end - time.monotonic()) > 0:
        if watching and changed.wait(min(left, TICK)):
            return
        if not watching:
            stop.wait(min(left, TICK))


def run(controller: Controller, stop: threading.Event) -> None:
    controller.log.info('"Starting controller" controller="%s"', controller.name)
    changed = threading.Event()
    watched = informers(controller, changed)
    delay, last_error = controller.interval, ""
    try:
        while not stop.is_set():
            changed.clear()  # a change during the pass starts the next one
            started, failed = time.monotonic(), False
            try:
                controller.sync()
                delay, last_error = controller.interval, ""
            except Exception as e:
                failed = True
                message = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                if message != last_error:
                    controller.log.error('"Sync failed" controller="%s" err="%s"', controller.name, message)
                    last_error = message
                delay = min(MAX_BACKOFF, delay * 2)
            _sleep(stop, changed, controller.interval - (time.monotonic() - started), False)
            _sleep(stop, changed, _next_wait(controller, delay, failed), bool(watched) and not failed)
    finally:
        for informer in watched:
            informer.stop()
    controller.log.info('"Shutting down controller" controller="%s"', controller.name)


def start(controller: Controller, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=run, args=(controller, stop), name=controller.name, daemon=True)
    thread.start()
    return thread
