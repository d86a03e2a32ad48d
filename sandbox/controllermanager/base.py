"""The polling loop every emulated controller runs in.

A real controller watches through informers; the emulated API server has no watch, so each controller
lists what it needs every ``interval`` seconds and converges, idempotently: a pass that finds nothing
to do writes nothing. A failing pass is logged (once per distinct message, so an unreachable API server
does not flood the log) and retried on the next tick with a bounded backoff.
"""

from __future__ import annotations

import logging
import threading
from typing import ClassVar

import kubernetes.client as k8s

MAX_BACKOFF = 5.0


class Controller:
    """One controller: ``sync`` does one full pass; ``name`` is its --controllers name."""

    name: ClassVar[str] = ""
    account: ClassVar[str] = ""  # its kube-system ServiceAccount (--use-service-account-credentials)
    interval: ClassVar[float] = 0.5

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        self.log = logging.getLogger(f"controller.{self.name}")

    def sync(self) -> None:
        raise NotImplementedError


def run(controller: Controller, stop: threading.Event) -> None:
    controller.log.info('"Starting controller" controller="%s"', controller.name)
    delay, last_error = controller.interval, ""
    while not stop.is_set():
        try:
            controller.sync()
            delay, last_error = controller.interval, ""
        except Exception as e:
            message = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            if message != last_error:
                controller.log.error('"Sync failed" controller="%s" err="%s"', controller.name, message)
                last_error = message
            delay = min(MAX_BACKOFF, delay * 2)
        stop.wait(delay)
    controller.log.info('"Shutting down controller" controller="%s"', controller.name)


def start(controller: Controller, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=run, args=(controller, stop), name=controller.name, daemon=True)
    thread.start()
    return thread
