"""Leader election through a ``coordination.k8s.io/v1`` Lease, as client-go's tools/leaderelection does it.

Reads/writes: the Lease ``<namespace>/<name>`` (kube-system/kube-controller-manager, kube-system/kube-scheduler)
with the component's own credentials (controller-manager.conf / scheduler.conf; the bootstrap policy grants
``create`` on leases and ``get``/``update`` on the component's own one). Its spec is the election record:

| spec field             | meaning                                                                  |
|------------------------|--------------------------------------------------------------------------|
| holderIdentity         | ``<hostname>_<uuid>`` of the leader (a new uuid per process start)         |
| leaseDurationSeconds   | how long a candidate waits, after it last saw the record change, to take it |
| acquireTime            | when the holder took the lease (MicroTime, ``...T15:04:05.000000Z``)        |
| renewTime              | when the holder last renewed it                                          |
| leaseTransitions       | how many times the lease changed hands                                   |

The algorithm is client-go's ``tryAcquireOrRenew``: a candidate never trusts the record's times (clocks of
machines differ), only when *it* last saw the record change; it takes the lease once that is more than
``leaseDurationSeconds`` ago. Every write is an Update carrying the resourceVersion it read, so of two
candidates racing for an expired lease exactly one wins (the other gets 409 Conflict). A leader renews
every ``retry_period``; when it cannot renew within ``renew_deadline`` it has lost the lease and its
process exits (``OnStoppedLeading``), to be restarted by the kubelet as a candidate.
kube-controller-manager keeps the lease on SIGTERM (its successor waits for it to expire); kube-scheduler
releases it (``ReleaseOnCancel``: leaseDurationSeconds 1, no holder), as the real ones do.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from kubeboot.sandbox.controllermanager import rest
from kubeboot.sandbox.controllermanager.flags import Flags, parse_duration
from kubeboot.sandbox.kubelet.layout import ENV_SANDBOX_HOSTNAME

JITTER_FACTOR = 1.2  # client-go's JitterFactor: a candidate retries every retry_period * [1, 2.2)
MAX_TOLERABLE_EXPIRED_LEASE = 20.0  # the components' HealthzAdaptor timeout

log = logging.getLogger("leaderelection")
Spec = dict[str, Any]
RECORD_FIELDS = ("holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions")


def record_of(spec: Spec) -> Spec:
    """The election record in a Lease spec (LeaseSpecToLeaderElectionRecord): other fields a server adds
    must not look like a change of the record, or a candidate would never see the lease expire."""
    return {k: spec.get(k) for k in RECORD_FIELDS}


def micro_time(at: datetime) -> str:
    """metav1.MicroTime's JSON form: RFC 3339 with microseconds, in UTC."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def identity(hostname: str | None = None) -> str:
    """``<hostname>_<uuid>``, as kube-controller-manager and kube-scheduler build their lock identity."""
    import os

    host = hostname or os.environ.get(ENV_SANDBOX_HOSTNAME) or socket.gethostname()
    return f"{host}_{uuid.uuid4()}"


@dataclass(frozen=True)
class ElectionConfig:
    name: str
    identity: str
    namespace: str = "kube-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = False

    @property
    def describe(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_flags(cls, flags: Flags, name: str, ident: str, *, release_on_cancel: bool) -> ElectionConfig:
        """The ``--leader-elect-*`` flags over client-go's defaults (15 s, 10 s, 2 s, kube-system)."""
        def seconds(flag: str, default: float) -> float:
            value = flags.get(flag)
            return parse_duration(value).total_seconds() if value else default

        lock = flags.get("leader-elect-resource-lock", "leases")
        if lock != "leases":
            raise ValueError(f'--leader-elect-resource-lock={lock}: only "leases" is supported')
        cfg = cls(name=flags.get("leader-elect-resource-name") or name, identity=ident,
                  namespace=flags.get("leader-elect-resource-namespace") or "kube-system",
                  lease_duration=seconds("leader-elect-lease-duration", 15.0),
                  renew_deadline=seconds("leader-elect-renew-deadline", 10.0),
                  retry_period=seconds("leader-elect-retry-period", 2.0), release_on_cancel=release_on_cancel)
        # NewLeaderElector's validation, with its messages.
        if cfg.lease_duration <= cfg.renew_deadline:
            raise ValueError("leaseDuration must be greater than renewDeadline")
        if cfg.renew_deadline <= JITTER_FACTOR * cfg.retry_period:
            raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
        return cfg


class Lock(Protocol):
    """The Lease as the elector sees it: ``get`` (None when missing), ``create`` and ``update`` (which fails
    when the lease changed since ``get``, the optimistic concurrency of resourceVersion)."""

    def get(self) -> Spec | None: ...

    def create(self, spec: Spec) -> None: ...

    def update(self, spec: Spec) -> None: ...


class LeaseLock:
    """The Lease through the API server (client-go's LeaseLock): ``update`` sends the resourceVersion of the
    object last read or written, so a lease changed meanwhile answers 409 Conflict. Over ``rest``: the
    official client would cost the scheduler ~50 MiB for three requests."""

    def __init__(self, access: rest.ClusterAccess, namespace: str, name: str, timeout: float) -> None:
        # NewFromKubeconfig: an HTTP timeout of renewDeadline/2 (at least 1 s), so one hung request
        # cannot use up the whole renew deadline.
        self.api = rest.Rest(access, max(1.0, timeout))
        self.namespace, self.name = namespace, name
        self.lease: dict[str, Any] = {}

    @property
    def _collection(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    def get(self) -> Spec | None:
        try:
            self.lease = self.api.request("GET", f"{self._collection}/{self.name}")
        except rest.ApiError as e:
            if e.status == 404:
                return None
            raise
        return dict(self.lease.get("spec") or {})

    def create(self, spec: Spec) -> None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
        self.lease = self.api.request("POST", self._collection, body)

    def update(self, spec: Spec) -> None:
        if not self.lease:
            raise RuntimeError("lease not initialized, call get or create first")
        body = {**self.lease, "spec": {**(self.lease.get("spec") or {}), **spec}}
        self.lease = self.api.request("PUT", f"{self._collection}/{self.name}", body)


class LeaderElector:
    """client-go's LeaderElector over a :class:`Lock`; ``clock`` is monotonic seconds, ``wall`` the time written."""

    def __init__(self, lock: Lock, config: ElectionConfig, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.lock = lock
        self.config = config
        self.clock = clock
        self.wall = wall
        self.observed: Spec = {}
        self.observed_time = 0.0
        self.reported_leader = ""
        self._guard = threading.Lock()

    # --- the observed record ---------------------------------------------------------------------
    def _observe(self, spec: Spec) -> None:
        with self._guard:
            self.observed, self.observed_time = dict(spec), self.clock()

    def is_leader(self) -> bool:
        with self._guard:
            return bool(self.observed.get("holderIdentity")) and \
                self.observed.get("holderIdentity") == self.config.identity

    def leader(self) -> str:
        with self._guard:
            return str(self.observed.get("holderIdentity") or "")

    def _lease_valid(self, now: float) -> bool:
        with self._guard:
            return self.observed_time + float(self.observed.get("leaseDurationSeconds") or 0) > now

    # --- one attempt -------------------------------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        """tryAcquireOrRenew: True when this elector holds the lease afterwards."""
        now, stamp = self.clock(), micro_time(self.wall())
        record: Spec = {"holderIdentity": self.config.identity,
                        "leaseDurationSeconds": int(self.config.lease_duration),
                        "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0}
        # 1. The leader's fast path: update assuming the record it saw last is still current.
        if self.is_leader() and self._lease_valid(now):
            record["acquireTime"] = self.observed.get("acquireTime") or stamp
            record["leaseTransitions"] = int(self.observed.get("leaseTransitions") or 0)
            if self._write(self.lock.update, record, "Failed to update lock optimistically, falling back to slow path"):
                return True
        # 2. Obtain or create the record.
        try:
            found = self.lock.get()
        except Exception as e:
            log.error('"error retrieving resource lock" lock="%s" err="%s"', self.config.describe, _short(e))
            return False
        if found is None:
            return self._write(self.lock.create, record, "error initially creating leader election record")
        # 3. Check the identity and the time: a record that changed restarts the wait.
        old = record_of(found)
        if old != record_of(self.observed):
            self._observe(old)
        if old.get("holderIdentity") and self._lease_valid(now) and not self.is_leader():
            return False
        # 4. Take it (or renew through the slow path), carrying the resourceVersion just read.
        if self.is_leader():
            record["acquireTime"] = old.get("acquireTime") or stamp
            record["leaseTransitions"] = int(old.get("leaseTransitions") or 0)
        else:
            record["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + 1
        return self._write(self.lock.update, record, "Failed to update lock")

    def _write(self, action: Callable[[Spec], None], record: Spec, what: str) -> bool:
        try:
            action(record)
        except Exception as e:
            log.error('"%s" lock="%s" err="%s"', what, self.config.describe, _short(e))
            return False
        self._observe(record)
        return True

    def _report_transition(self) -> None:
        leader = self.leader()
        if leader and leader != self.reported_leader:
            self.reported_leader = leader
            log.info('"New leader elected" lock="%s" identity="%s"', self.config.describe, leader)

    # --- the loops -----------------------------------------------------------------------------------
    def acquire(self, stop: threading.Event) -> bool:
        """Try until this elector holds the lease (True) or ``stop`` is set (False)."""
        log.info('"attempting to acquire leader lease" lock="%s"', self.config.describe)
        while not stop.is_set():
            won = self.try_acquire_or_renew()
            self._report_transition()
            if won:
                log.info('"successfully acquired lease" lock="%s"', self.config.describe)
                return True
            stop.wait(self.config.retry_period * (1 + random.random() * JITTER_FACTOR))
        return False

    def renew(self, stop: threading.Event) -> None:
        """Renew every retry period; returns when ``stop`` is set or a renewal missed the renew deadline."""
        while not stop.is_set():
            deadline = self.clock() + self.config.renew_deadline
            while not self.try_acquire_or_renew():
                if stop.wait(self.config.retry_period) or self.clock() >= deadline:
                    self._report_transition()
                    if not stop.is_set():
                        log.info('"failed to renew lease" lock="%s" err="timed out waiting for the condition"',
                                 self.config.describe)
                    return
            self._report_transition()
            stop.wait(self.config.retry_period)

    def release(self) -> bool:
        """Give the lease up (ReleaseOnCancel): no holder, leaseDurationSeconds 1."""
        if not self.is_leader():
            return True
        stamp = micro_time(self.wall())
        record = {"holderIdentity": "", "leaseDurationSeconds": 1, "acquireTime": stamp, "renewTime": stamp,
                  "leaseTransitions": int(self.observed.get("leaseTransitions") or 0)}
        return self._write(self.lock.update, record, "Failed to release lock")

    def check(self) -> str | None:
        """The ``leaderElection`` health check (HealthzAdaptor): a leader that stopped renewing is unhealthy."""
        if not self.is_leader():
            return None
        if self.clock() - self.observed_time > self.config.lease_duration + MAX_TOLERABLE_EXPIRED_LEASE:
            return f"failed election to renew leadership on lease {self.config.name}"
        return None

    def run(self, stop: threading.Event, lead: Callable[[], None]) -> bool:
        """Acquire, call ``lead`` once, renew; True when ``stop`` ended it, False when leadership was lost
        (the caller exits 1, as OnStoppedLeading does). With release_on_cancel the lease is given up on stop."""
        if not self.acquire(stop):
            return True
        lead()
        self.renew(stop)
        if stop.is_set():
            if self.config.release_on_cancel:
                self.release()
            return True
        return False


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]
