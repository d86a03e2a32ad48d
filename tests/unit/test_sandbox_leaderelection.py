"""Leader election over a Lease (sandbox.controllermanager.leaderelection), against an in-memory Lease with
the API server's optimistic concurrency (a write carrying a stale resourceVersion is a 409 Conflict) and
a frozen clock: client-go's tryAcquireOrRenew rules, one candidate at a time."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubeboot.sandbox.controllermanager.flags import Flags
from kubeboot.sandbox.controllermanager.leaderelection import (
    ElectionConfig,
    LeaderElector,
    micro_time,
)


class Conflict(Exception):
    pass


class LeaseStore:
    """One Lease as the API server keeps it: a spec and a resourceVersion bumped by every write."""

    def __init__(self) -> None:
        self.spec: dict[str, Any] | None = None
        self.rv = 0
        self.fail_next = 0  # API errors to inject

    def _maybe_fail(self) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("connection refused")


class FakeLock:
    """A client's view: ``update`` sends the resourceVersion it last read or wrote (client-go's LeaseLock)."""

    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self.seen_rv: int | None = None
        self.after_get: Any = None  # runs between this client's read and its write (a racing writer)

    def get(self) -> dict[str, Any] | None:
        self.store._maybe_fail()
        if self.store.spec is None:
            return None
        self.seen_rv = self.store.rv
        read = {**self.store.spec, "strategy": "OldestEmulationVersion"}  # a field the record does not hold
        if self.after_get is not None:
            self.after_get()
        return read

    def create(self, spec: dict[str, Any]) -> None:
        self.store._maybe_fail()
        if self.store.spec is not None:
            raise Conflict("AlreadyExists")
        self.store.spec, self.store.rv = dict(spec), self.store.rv + 1
        self.seen_rv = self.store.rv

    def update(self, spec: dict[str, Any]) -> None:
        self.store._maybe_fail()
        if self.seen_rv != self.store.rv:
            raise Conflict("the object has been modified")
        self.store.spec, self.store.rv = dict(spec), self.store.rv + 1
        self.seen_rv = self.store.rv


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.start = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.now - 1000.0)


def elector(store: LeaseStore, clock: Clock, who: str, **kw: Any) -> LeaderElector:
    config = ElectionConfig(name="kube-controller-manager", identity=who, **kw)
    return LeaderElector(FakeLock(store), config, clock=clock, wall=clock.wall)


@pytest.fixture
def store() -> LeaseStore:
    return LeaseStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_the_first_candidate_creates_the_lease_with_the_record_fields(store: LeaseStore, clock: Clock) -> None:
    a = elector(store, clock, "cp1_aaaa")
    assert a.try_acquire_or_renew()
    assert a.is_leader()
    assert store.spec == {"holderIdentity": "cp1_aaaa", "leaseDurationSeconds": 15,
                          "acquireTime": "2026-12-01T12:00:00.000000Z", "renewTime": "2026-12-01T12:00:00.000000Z",
                          "leaseTransitions": 0}


def test_a_second_candidate_waits_while_the_lease_is_held(store: LeaseStore, clock: Clock) -> None:
    a, b = elector(store, clock, "cp1_aaaa"), elector(store, clock, "cp2_bbbb")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert b.leader() == "cp1_aaaa" and not b.is_leader()


def test_renewals_keep_the_lease_and_its_acquire_time(store: LeaseStore, clock: Clock) -> None:
    a, b = elector(store, clock, "cp1_aaaa"), elector(store, clock, "cp2_bbbb")
    assert a.try_acquire_or_renew()
    for _ in range(20):  # 40 s of renewals every 2 s: far past one lease duration
        clock.now += 2
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    assert store.spec is not None
    assert store.spec["acquireTime"] == "2026-12-01T12:00:00.000000Z"
    assert store.spec["renewTime"] == micro_time(clock.wall())
    assert store.spec["leaseTransitions"] == 0


def test_a_candidate_takes_the_lease_only_after_seeing_it_unchanged_for_the_lease_duration(
        store: LeaseStore, clock: Clock) -> None:
    a, b = elector(store, clock, "cp1_aaaa"), elector(store, clock, "cp2_bbbb")
    assert a.try_acquire_or_renew()
    clock.now += 5
    assert not b.try_acquire_or_renew()  # b first sees the record now: its 15 s start here
    clock.now += 14.9
    assert not b.try_acquire_or_renew()
    clock.now += 0.2
    assert b.try_acquire_or_renew()
    assert store.spec is not None
    assert store.spec["holderIdentity"] == "cp2_bbbb"
    assert store.spec["leaseTransitions"] == 1
    assert store.spec["acquireTime"] == micro_time(clock.wall())


def test_the_record_times_are_not_trusted_only_the_candidates_own_observation(store: LeaseStore, clock: Clock) -> None:
    """A holder whose clock is far behind writes old times; the candidate still waits a full lease duration."""
    a = elector(store, clock, "cp1_aaaa")
    assert a.try_acquire_or_renew()
    assert store.spec is not None
    store.spec["renewTime"] = "2000-01-01T00:00:00.000000Z"
    store.rv += 1
    b = elector(store, clock, "cp2_bbbb")
    assert not b.try_acquire_or_renew()


def test_of_two_candidates_racing_for_an_expired_lease_exactly_one_wins(store: LeaseStore, clock: Clock) -> None:
    a = elector(store, clock, "cp1_aaaa")
    b, c = elector(store, clock, "cp2_bbbb"), elector(store, clock, "cp3_cccc")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew() and not c.try_acquire_or_renew()
    clock.now += 16
    won: list[bool] = []
    c_lock = c.lock
    assert isinstance(c_lock, FakeLock)
    c_lock.after_get = lambda: (setattr(c_lock, "after_get", None), won.append(b.try_acquire_or_renew()))
    assert not c.try_acquire_or_renew()  # read the expired lease, then b took it: c's write is a conflict
    assert won == [True]
    assert store.spec is not None and store.spec["holderIdentity"] == "cp2_bbbb"
    assert store.spec["leaseTransitions"] == 1


def test_a_leader_whose_optimistic_renewal_conflicts_falls_back_to_reading(store: LeaseStore, clock: Clock) -> None:
    a = elector(store, clock, "cp1_aaaa")
    assert a.try_acquire_or_renew()
    store.rv += 1  # someone wrote the same record again (e.g. an apply of an unchanged object)
    clock.now += 2
    assert a.try_acquire_or_renew()
    assert store.spec is not None and store.spec["renewTime"] == micro_time(clock.wall())


def test_a_leader_that_another_has_taken_over_from_does_not_renew(store: LeaseStore, clock: Clock) -> None:
    a, b = elector(store, clock, "cp1_aaaa"), elector(store, clock, "cp2_bbbb")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    clock.now += 16  # a was paused (a stalled process) longer than the lease
    assert b.try_acquire_or_renew()
    assert not a.try_acquire_or_renew()
    assert a.leader() == "cp2_bbbb" and not a.is_leader()


def test_api_errors_are_a_failed_attempt_not_a_crash(store: LeaseStore, clock: Clock) -> None:
    a = elector(store, clock, "cp1_aaaa")
    store.fail_next = 1
    assert not a.try_acquire_or_renew()
    assert a.try_acquire_or_renew()


def test_release_leaves_a_holderless_one_second_lease_the_next_candidate_takes_at_once(
        store: LeaseStore, clock: Clock) -> None:
    a, b = elector(store, clock, "cp1_aaaa"), elector(store, clock, "cp2_bbbb")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert a.release()
    assert store.spec is not None
    assert (store.spec["holderIdentity"], store.spec["leaseDurationSeconds"]) == ("", 1)
    assert b.try_acquire_or_renew()
    assert store.spec["leaseTransitions"] == 1


def test_renew_returns_once_renewals_fail_past_the_renew_deadline(store: LeaseStore, clock: Clock) -> None:
    a = elector(store, clock, "cp1_aaaa")
    assert a.try_acquire_or_renew()
    start = clock.now

    class Ticking(threading.Event):
        """``wait`` moves the frozen clock instead of sleeping."""

        def wait(self, timeout: float | None = None) -> bool:
            clock.now += timeout or 0
            return self.is_set()

    store.fail_next = 10**6
    a.renew(Ticking())
    assert 10.0 <= clock.now - start <= 12.0  # one renew deadline of 2 s retries, then it gave up


def test_only_a_leader_that_stopped_renewing_is_unhealthy(store: LeaseStore, clock: Clock) -> None:
    a, b = elector(store, clock, "cp1_aaaa"), elector(store, clock, "cp2_bbbb")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    clock.now += 34
    assert a.check() is None  # within lease duration + 20 s of tolerance
    clock.now += 2
    assert a.check() == "failed election to renew leadership on lease kube-controller-manager"
    assert b.check() is None  # a candidate is never unhealthy for the election


@pytest.mark.parametrize(("flags", "expected"), [
    ([], (15.0, 10.0, 2.0, "kube-system", "kube-controller-manager")),
    (["--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms",
      "--leader-elect-resource-namespace=other", "--leader-elect-resource-name=kcm"],
     (4.0, 3.0, 0.5, "other", "kcm")),
], ids=["client-go defaults", "every flag"])
def test_election_flags(flags: list[str], expected: tuple[Any, ...]) -> None:
    cfg = ElectionConfig.from_flags(Flags.parse(flags), "kube-controller-manager", "me", release_on_cancel=False)
    assert (cfg.lease_duration, cfg.renew_deadline, cfg.retry_period, cfg.namespace, cfg.name) == expected


@pytest.mark.parametrize(("flags", "message"), [
    (["--leader-elect-lease-duration=10s"], "leaseDuration must be greater than renewDeadline"),
    (["--leader-elect-retry-period=9s"], "renewDeadline must be greater than retryPeriod*JitterFactor"),
    (["--leader-elect-resource-lock=endpoints"], 'only "leases" is supported'),
], ids=["lease not longer than renew deadline", "retry period too long", "not a lease lock"])
def test_bad_election_flags_are_refused(flags: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ElectionConfig.from_flags(Flags.parse(flags), "kube-scheduler", "me", release_on_cancel=True)
