"""Secondary indexes of runs, the ``kubeboot runs`` query over them, and pruning of old runs.

Reads and writes only ``kubeboot:`` keys (schema below; the run hash itself: ``tasks.state.store``).

| key                                   | type | member | score            | written                                  |
|---------------------------------------|------|--------|------------------|------------------------------------------|
| ``kubeboot:runs``                     | zset | run id | created (epoch s)| at creation (``RunStore.create_run``)     |
| ``kubeboot:runs:kind:<kind>``         | zset | run id | created          | at creation                              |
| ``kubeboot:cluster:<name>:runs``      | zset | run id | created          | at creation                              |
| ``kubeboot:batch:<id>:runs``          | zset | run id | created          | at creation of a batch's own run, its    |
|                                       |      |        |                  | cluster runs and their child runs        |
| ``kubeboot:runs:status:<status>``     | zset | run id | created          | succeeded / failed: when the run ends;   |
|                                       |      |        |                  | removed when it is resumed               |
| ``kubeboot:runs:active``              | set  | run id | –                | pending / running (the transition        |
|                                       |      |        |                  | scripts keep it)                         |

A query walks ONE index newest first (the most selective of batch, cluster, status, kind, all) from
the cursor's rank, in chunks, and checks the other filters on the run hashes (one pipelined HMGET
per chunk): a page costs O(log n + chunk), whatever the number of runs. The status zsets are written
right after the transition that ended the run (not inside its script): a run whose writer died in
between is missing from its status zset until it ends again, and every listed run's status is read
from its hash, so a page never shows a wrong status.

Pruning (``prune``) deletes finished runs whose ``finished`` is older than a cutoff: the run hash,
its phases hash, event stream, secrets and index entries, and a batch's slot keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import redis

from kubeboot.tasks.state.keys import (
    ACTIVE_RUNS,
    PARENTS_DUE,
    RUNS_INDEX,
    batch_runs_key,
    batch_slots_key,
    cluster_runs_key,
    kind_runs_key,
    run_key,
    status_runs_key,
)
from kubeboot.tasks.state.records import RunRecord, parse_iso, text

FINAL: Final = ("succeeded", "failed")
ACTIVE: Final = ("pending", "running")
CHUNK: Final = 500
_FIELDS: Final = ("kind", "cluster", "status", "batch")


class BadCursorError(ValueError):
    """``--after`` names a run that is not in the listing (pruned, or from another filter)."""


@dataclass(frozen=True)
class RunFilter:
    cluster: str | None = None
    batch: str | None = None
    status: str | None = None
    kind: str | None = None

    def accepts(self, values: dict[str, str | None]) -> bool:
        return all(want is None or values.get(name) == want for name, want in
                   (("cluster", self.cluster), ("batch", self.batch), ("status", self.status), ("kind", self.kind)))


@dataclass(frozen=True)
class Page:
    runs: list[RunRecord]
    next: str | None  # cursor of the next page (the last run's id), None on the last page


def on_create(pipe: Any, run_id: str, kind: str, batch: str | None, score: float) -> None:
    """Index a new run (inside the creating transaction)."""
    pipe.zadd(kind_runs_key(kind), {run_id: score})
    if batch:
        pipe.zadd(batch_runs_key(batch), {run_id: score})


def on_end(client: redis.Redis, run_id: str) -> None:
    """The run ended: file it under its final status."""
    status = client.hget(run_key(run_id), "status")
    score = client.zscore(RUNS_INDEX, run_id)
    if status is None or score is None or text(status) not in FINAL:
        return
    with client.pipeline() as pipe:
        for other in FINAL:
            if other != text(status):
                pipe.zrem(status_runs_key(other), run_id)
        pipe.zadd(status_runs_key(text(status)), {run_id: float(score)})
        pipe.execute()


def on_reopen(client: redis.Redis, run_id: str) -> None:
    with client.pipeline() as pipe:
        for status in FINAL:
            pipe.zrem(status_runs_key(status), run_id)
        pipe.execute()


# --- the query ------------------------------------------------------------------------------------------

def _primary(f: RunFilter) -> str | None:
    """The zset to walk (None: the active set, for pending/running)."""
    if f.batch:
        return batch_runs_key(f.batch)
    if f.cluster:
        return cluster_runs_key(f.cluster)
    if f.status in FINAL:
        return status_runs_key(f.status)
    if f.status in ACTIVE:
        return None
    if f.kind:
        return kind_runs_key(f.kind)
    return RUNS_INDEX


def _active_ids(client: redis.Redis) -> list[str]:
    """Active runs, newest first (the set is small: only runs going on)."""
    ids = [text(i) for i in client.smembers(ACTIVE_RUNS)]
    with client.pipeline(transaction=False) as pipe:
        for run_id in ids:
            pipe.zscore(RUNS_INDEX, run_id)
        scores = pipe.execute()
    return [i for _, i in sorted(((s or 0.0, i) for i, s in zip(ids, scores, strict=True)), reverse=True)]


def _walk(client: redis.Redis, index: str | None, after: str | None) -> Iterator[list[str]]:
    """Chunks of run ids of ``index`` newest first, starting after the run ``after``."""
    if index is None:
        ids = _active_ids(client)
        start = ids.index(after) + 1 if after in ids else 0
        if after and after not in ids:
            raise BadCursorError(f"--after {after}: no such run among the pending and running runs")
        for i in range(start, len(ids), CHUNK):
            yield ids[i:i + CHUNK]
        return
    start = 0
    if after:
        rank: Any = client.zrevrank(index, after)
        if rank is None:
            raise BadCursorError(f"--after {after}: no such run in this listing (pruned, or another filter)")
        start = int(rank) + 1
    while True:
        chunk = [text(i) for i in client.zrevrange(index, start, start + CHUNK - 1)]
        if not chunk:
            return
        yield chunk
        start += CHUNK


def query(client: redis.Redis, f: RunFilter, *, limit: int = 100, after: str | None = None) -> Page:
    """One page of runs matching ``f``, newest first, after the run ``after`` (a previous page's ``next``)."""
    matched: list[str] = []
    for chunk in _walk(client, _primary(f), after):
        with client.pipeline(transaction=False) as pipe:
            for run_id in chunk:
                pipe.hmget(run_key(run_id), *_FIELDS)
            rows = pipe.execute()
        for run_id, row in zip(chunk, rows, strict=True):
            values = {k: text(v) if v is not None else None for k, v in zip(_FIELDS, row, strict=True)}
            if row[0] is not None and f.accepts(values):
                matched.append(run_id)
        if len(matched) > limit:
            break
    shown = matched[:limit]
    with client.pipeline(transaction=False) as pipe:
        for run_id in shown:
            pipe.hgetall(run_key(run_id))
        hashes = pipe.execute()
    runs = [RunRecord.from_hash({text(k): text(v) for k, v in h.items()}) for h in hashes if h]
    return Page(runs, shown[-1] if len(matched) > limit and shown else None)


# --- pruning ----------------------------------------------------------------------------------------------

def prune(client: redis.Redis, cutoff: datetime, *, dry_run: bool = False) -> list[str]:
    """Delete the finished runs that finished before ``cutoff``; returns their ids (oldest first)."""
    doomed: list[str] = []
    for status in FINAL:
        index = status_runs_key(status)
        # created <= finished: runs created after the cutoff cannot have finished before it.
        for chunk in _chunks([text(i) for i in client.zrangebyscore(index, "-inf", cutoff.timestamp())]):
            with client.pipeline(transaction=False) as pipe:
                for run_id in chunk:
                    pipe.hget(run_key(run_id), "finished")
                finished = pipe.execute()
            doomed += [r for r, f in zip(chunk, finished, strict=True) if f and parse_iso(text(f)) < cutoff]
    if not dry_run:
        for chunk in _chunks(doomed):
            _delete(client, chunk)
    return doomed


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(ids), CHUNK):
        yield ids[i:i + CHUNK]


def _delete(client: redis.Redis, ids: list[str]) -> None:
    with client.pipeline(transaction=False) as pipe:
        for run_id in ids:
            pipe.hmget(run_key(run_id), "kind", "cluster", "batch")
            pipe.smembers(f"{run_key(run_id)}:secrets")
        replies = pipe.execute()
    with client.pipeline(transaction=False) as pipe:
        for run_id, (fields, secret_names) in zip(ids, zip(replies[::2], replies[1::2], strict=True), strict=True):
            kind, cluster, batch = (text(v) if v is not None else None for v in fields)
            key = run_key(run_id)
            pipe.delete(key, f"{key}:phases", f"{key}:events", f"{key}:secrets",
                        *(f"{key}:secret:{text(n)}" for n in secret_names))
            for index in (RUNS_INDEX, *(status_runs_key(s) for s in FINAL), kind_runs_key(kind or "")):
                pipe.zrem(index, run_id)
            if cluster:
                pipe.zrem(cluster_runs_key(cluster), run_id)
            if batch:
                pipe.zrem(batch_runs_key(batch), run_id)
            if kind == "batch":
                pipe.delete(batch_runs_key(run_id), *(batch_slots_key(run_id, p) for p in ("running", "next", "again")))
            pipe.zrem(PARENTS_DUE, run_id)
            pipe.srem(ACTIVE_RUNS, run_id)
        pipe.execute()


def memory_of(client: redis.Redis, run_id: str) -> int:
    """Bytes Redis uses for one run's keys (MEMORY USAGE; index entries not counted)."""
    key = run_key(run_id)
    names = [key, f"{key}:phases", f"{key}:events", f"{key}:secrets",
             *(f"{key}:secret:{text(n)}" for n in client.smembers(f"{key}:secrets"))]
    total = 0
    for name in names:
        used: Any = client.memory_usage(name)
        total += int(used or 0)
    return total
