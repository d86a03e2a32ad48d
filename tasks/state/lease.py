"""Keeping a phase's lease alive while its action runs.

A task copy that runs a phase holds the phase's lease (``…|owner`` / ``…|lease`` in the run state,
``tasks.state.transitions``) for ``LEASE_TTL`` seconds. One daemon thread per process renews every
lease the process holds each third of that, so a live copy keeps its lease however long its action
takes (up to the hard time limit), and a copy whose process died loses it within ``LEASE_TTL``: a
duplicate of the phase then takes over. Actions shorter than a third of the TTL (almost all) cost no
renewal at all.

The thread is started lazily in the process that runs tasks (a prefork child): threads do not survive
``fork``, so a keeper created before a fork starts its own thread again in the child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("kubeboot.lease")

LEASE_TTL: Final = 10.0  # seconds; also how long a dead copy's phase waits before another copy takes it
SEND_GRACE: Final = LEASE_TTL  # after success, how long duplicates leave the completer to send the successor


@dataclass(frozen=True)
class Lease:
    run_id: str
    node: str
    path: str
    owner: str


class LeaseKeeper:
    """Renews the leases this process holds, every ``ttl / 3`` seconds, from one daemon thread."""

    def __init__(self, renew: Callable[[Lease], bool], ttl: float = LEASE_TTL) -> None:
        self._renew = renew
        self._every = ttl / 3
        self._held: dict[str, Lease] = {}
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._thread_pid = 0

    @contextlib.contextmanager
    def keep(self, lease: Lease) -> Iterator[None]:
        with self._mutex:
            self._held[lease.owner] = lease
            if self._thread_pid != os.getpid():
                self._thread_pid = os.getpid()
                threading.Thread(target=self._loop, name="kubeboot-lease", daemon=True).start()
        try:
            yield
        finally:
            with self._mutex:
                self._held.pop(lease.owner, None)

    def _loop(self) -> None:
        while not self._wake.wait(self._every):
            with self._mutex:
                held = list(self._held.values())
            for lease in held:
                self._renew_one(lease)

    def _renew_one(self, lease: Lease) -> None:
        try:
            if not self._renew(lease):
                # Another copy took the phase over (this process stalled past the TTL): its writes
                # will be refused; the action's own effects are idempotent.
                log.warning("run %s node %s phase %s: lease lost to another copy", lease.run_id, lease.node,
                            lease.path)
        except Exception as e:  # a Redis hiccup: the next beat tries again, well within the TTL
            log.warning("run %s node %s phase %s: lease renewal failed: %s", lease.run_id, lease.node,
                        lease.path, e)
