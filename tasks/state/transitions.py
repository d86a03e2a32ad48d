"""Phase and run transitions of the run store: each is one Lua script (``tasks.state.scripts``), so a
duplicate delivery, a dead worker or a run that lost its cluster lock is decided atomically with the
write it allows or refuses. Schema of the fields they write: ``tasks.state.store``.

A copy of a phase task (a delivery of its message, whatever the reason) goes through:

    claim_phase ─ run ───> the phase's action ─┬─> complete_phase  (succeeded: send the successor)
              │                                ├─> retry_phase     (TemporaryError: retry later)
              │                                └─> fail_phase      (PermanentError / bug: run fails)
              ├ send ──> the phase already succeeded but its successor was never delivered (the copy
              │          that completed it died first): this copy sends it, without running the action
              ├ defer ─> another live copy holds the phase's lease: look again when the lease ends
              ├ ignore > nothing left to do (phase done and successor delivered, run ended, lease lost)
              └ failed > the script failed the phase and the run (attempt ceiling, superseded run)

``owner`` is the id of one copy's execution (``new_owner``); its lease lasts ``lease`` seconds and is
renewed while the action runs (``tasks.state.lease``), so a copy whose process died loses it soon.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from redis.typing import EncodableT

from kubeboot.tasks.redaction import redact
from kubeboot.tasks.state import scripts
from kubeboot.tasks.state.keys import ACTIVE_RUNS, LEASES, NO_LOCK, run_key
from kubeboot.tasks.state.records import iso, text

EVENTS_MAXLEN = 10_000
ERROR_MAX_CHARS = 2_000  # errors are summaries; a traceback belongs in the worker log


class NoSuchRunError(KeyError):
    """The run is not in the run state."""


@dataclass(frozen=True)
class Verdict:
    """A script's reply: ``action`` (run, send, defer, ignore, failed, ok, refused, held) and its detail:
    the attempt number (run, send, ok), milliseconds left on another copy's lease (defer), why
    (ignore, failed), the run's status (refused) or the lock holder's JSON (held)."""

    action: str
    detail: str = ""

    @property
    def attempts(self) -> int:
        return int(self.detail or "0")

    @property
    def wait(self) -> float:
        """Seconds until another copy's lease ends (defer)."""
        return max(0.0, float(self.detail or "0") / 1000)

    @property
    def ended_run(self) -> bool:
        return self.action == "failed"


def new_owner(worker: str) -> str:
    """The id of one execution of one copy: unique, and saying where it ran."""
    return f"{worker or 'local'}/{secrets.token_hex(6)}"


def field_prefix(node: str, path: str) -> str:
    if "|" in node or "|" in path:
        raise ValueError(f"'|' is not allowed in node or phase names: {node!r} {path!r}")
    return f"{node}|{path}|"


class Transitions:
    """Mixed into ``RunStore``: needs ``_r``, ``_clock``, ``_lock_ttl`` and ``_run_ended``/``_run_reopened``."""

    _r: redis.Redis
    _clock: Callable[[], datetime]
    _lock_ttl: float
    _lock_keys: dict[str, str]

    def _register_scripts(self) -> None:
        names = ("CLAIM", "COMPLETE", "RETRY", "FAIL", "RENEW", "SKIP", "FINISH", "END", "REOPEN")
        self._scripts = {n: self._r.register_script(getattr(scripts, n)) for n in names}
        self._postpone = self._r.register_script(scripts.POSTPONE)

    def _run_ended(self, run_id: str) -> None:  # overridden by the store
        pass

    def _run_reopened(self, run_id: str) -> None:  # overridden by the store
        pass

    # --- phases -------------------------------------------------------------------------------
    def claim_phase(self, run_id: str, node: str, path: str, *, owner: str, worker: str, max_attempts: int,
                    lease: float, successor: tuple[str, str] | None = None) -> Verdict:
        """Start an attempt of the phase, or say why this copy must not (module docstring)."""
        after = field_prefix(*successor) if successor else ""
        return self._phase("CLAIM", run_id, node, path, owner, worker, max_attempts, _ms(lease), after)

    def complete_phase(self, run_id: str, node: str, path: str, *, owner: str, grace: float,
                       successor: tuple[str, str] | None = None) -> Verdict:
        """Record success; the lease is kept ``grace`` seconds while this copy sends the successor."""
        after = field_prefix(*successor) if successor else ""
        return self._phase("COMPLETE", run_id, node, path, owner, _ms(grace), after)

    def retry_phase(self, run_id: str, node: str, path: str, *, owner: str, error: str, delay: float,
                    lease: float = 10.0) -> Verdict:
        """Record the retry; its attempt must have started ``lease`` seconds after it is due."""
        due = iso(self._clock() + timedelta(seconds=delay))
        return self._phase("RETRY", run_id, node, path, owner, _message(error), due, _ms(delay + lease))

    def fail_phase(self, run_id: str, node: str, path: str, *, owner: str, error: str) -> Verdict:
        """Fail the phase and its run (releasing the run's lock). ``owner`` '' fails whoever holds it."""
        return self._phase("FAIL", run_id, node, path, owner, _message(error))

    def renew_lease(self, run_id: str, node: str, path: str, *, owner: str, lease: float) -> bool:
        return self._phase("RENEW", run_id, node, path, owner, _ms(lease)).action == "1"

    # --- the lease index: what a sweep must look at ------------------------------------------
    def overdue_leases(self, limit: int = 100) -> list[tuple[str, str, str, float]]:
        """(run id, node, path, deadline ms) of phases that missed their deadline (Redis time): a dead
        copy's lease, a retry nobody picked up, a success whose successor was never claimed."""
        found: Any = self._r.zrangebyscore(LEASES, "-inf", self._now_ms(), start=0, num=limit, withscores=True)
        out = []
        for member, score in found:
            run_id, node, path, _ = text(member).split("|", 3)
            out.append((run_id, node, path, float(score)))
        return out

    def postpone_lease(self, run_id: str, node: str, path: str, *, seen: float, delay: float) -> bool:
        """Move an overdue entry ``delay`` seconds on, if nobody moved it since it was ``seen``: of
        several sweepers, exactly one gets True and acts on it."""
        member = f"{run_id}|{field_prefix(node, path)}"
        later = self._now_ms() + _ms(delay)
        moved: Any = self._postpone(keys=[LEASES], args=[member, int(seen), later])
        return bool(moved)

    def drop_lease(self, run_id: str, node: str, path: str) -> None:
        self._r.zrem(LEASES, f"{run_id}|{field_prefix(node, path)}")

    def _now_ms(self) -> int:
        """Redis's clock, which the scripts' deadlines use."""
        seconds, micros = self._r.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def mark_phase_skipped(self, run_id: str, node: str, path: str, *, reason: str = "") -> Verdict:
        return self._phase("SKIP", run_id, node, path, _message(reason))

    def mark_phases_skipped(self, run_id: str, skipped: list[tuple[str, str, str]]) -> list[Verdict]:
        """``mark_phase_skipped`` for each (node, path, reason), in one round trip (a plan skips many)."""
        with self._r.pipeline(transaction=False) as pipe:
            for node, path, reason in skipped:
                self._phase("SKIP", run_id, node, path, _message(reason), client=pipe)
            replies: list[Any] = pipe.execute()
        return [Verdict(text(r[0]), text(r[1])) for r in replies]

    # --- runs ---------------------------------------------------------------------------------
    def complete_run(self, run_id: str) -> Verdict:
        """The last link of the chain: succeeded if every planned phase is done, else failed saying which."""
        return self._phase("FINISH", run_id, "", "")

    def finish_run(self, run_id: str, *, status: str, error: str = "") -> Verdict:
        """End a run from outside its chain (a submit that failed half-way); releases its lock."""
        if status not in ("succeeded", "failed"):
            raise ValueError(f"a run finishes as succeeded or failed, not {status!r}")
        verdict = self._phase("END", run_id, "", "", status, _message(error))
        if verdict.action == "ok":
            self._run_ended(run_id)
        return verdict

    def reopen_run(self, run_id: str) -> Verdict:
        """Resume: of concurrent callers exactly one moves the failed run back to running (and takes
        its cluster lock, with a new fencing token); the others get ``refused`` or ``held``."""
        verdict = self._phase("REOPEN", run_id, "", "")
        if verdict.action == "ok":
            self._run_reopened(run_id)
        return verdict

    # --- plumbing -----------------------------------------------------------------------------
    def _phase(self, script: str, run_id: str, node: str, path: str, *extra: EncodableT,
               client: Any = None) -> Verdict:
        """Run one transition script (queued on ``client`` when it is a pipeline: its reply comes from
        the pipeline's ``execute``)."""
        key = run_key(run_id)
        lock = self._lock_key(run_id)
        keys = [key, f"{key}:phases", f"{key}:events", ACTIVE_RUNS, lock, f"{lock}:fence", LEASES]
        ttl = "" if lock == NO_LOCK else _ms(self._lock_ttl)
        args: list[EncodableT] = [node, path, iso(self._clock()), EVENTS_MAXLEN, ttl, *extra]
        if node or path:
            field_prefix(node, path)
        try:
            reply: Any = self._scripts[script](keys=keys, args=args, client=client)
        except redis.ResponseError as e:
            if "no such run" in str(e):
                raise NoSuchRunError(f"no such run: {run_id}") from None
            raise
        if client is not None:
            return Verdict("queued")
        if not isinstance(reply, list):
            return Verdict(str(reply))
        verdict = Verdict(text(reply[0]), text(reply[1]))
        if verdict.ended_run or (script == "FINISH" and verdict.action == "ok"):
            self._run_ended(run_id)
        return verdict

    def _lock_key(self, run_id: str) -> str:
        """The run's lock key (recorded at creation, never changed: cached), or NO_LOCK."""
        cached = self._lock_keys.get(run_id)
        if cached is None:
            raw = self._r.hget(run_key(run_id), "lock")
            if raw is None and not self._r.exists(run_key(run_id)):
                raise NoSuchRunError(f"no such run: {run_id}")
            cached = text(raw) if raw else NO_LOCK
            if len(self._lock_keys) > 256:  # a long-lived worker sees many runs: keep the cache small
                self._lock_keys.clear()
            self._lock_keys[run_id] = cached
        return cached


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _message(text_: str) -> str:
    return redact(text_)[:ERROR_MAX_CHARS]  # shown by status, events and Flower: no secret in them
