"""What a worker checks before it acts on a task, and how a refusal is recorded.

``authorize`` (called by ``tasks.phasetask`` before anything else, even before the phase is claimed):
the token verifies with the pinned control key and has not expired; it names this task, run and node,
and one of this worker's own queues (a node worker: ``node.<its id>``); the run's metadata verifies
and agrees with it (cluster, config digest, the workflow of the task, the (node, phase) in the plan);
on a node worker, it is not older than the newest dispatch the node ran (``tasks.trust.journal``).

A refused task is not run and not retried: it is logged, added to the ``kubeboot:refused`` stream and
rejected (Flower: REJECTED). It does not fail the run either: whoever can forge a message must not be
able to fail runs with it; a run left waiting by a refused task is re-sent, re-signed, by the control
workers' recovery sweep.

| key                  | type   | entry                                                                 |
|----------------------|--------|-----------------------------------------------------------------------|
| ``kubeboot:refused`` | stream | ts, worker, task, id, run, node, reason; capped at ~10000 entries      |
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from kubeboot.tasks.state.keys import PREFIX
from kubeboot.tasks.trust.journal import Journal
from kubeboot.tasks.trust.tokens import Refused, TaskToken

if TYPE_CHECKING:
    import redis

    from kubeboot.tasks.runtime import WorkerRuntime

REFUSED_STREAM = f"{PREFIX}refused"
REFUSED_MAXLEN = 10_000


def authorize(rt: WorkerRuntime, *, task: str, run_id: str, node: str, path: str, auth: str) -> TaskToken:
    key = rt.store.keys.verify_key
    if key is None:
        raise Refused("this worker has no pinned control key to verify tasks with")
    token = TaskToken.verify(auth, key, now=time.time())
    if (token.task, token.run, token.node) != (task, run_id, node):
        raise Refused(f"its token authorises {token.task} of run {token.run} on node {token.node or '-'}, not this "
                      "task")
    if token.queue not in rt.queues:
        raise Refused(f"its token sends it to {token.queue}, which this worker ({', '.join(rt.queues)}) does not "
                      "serve")
    meta = rt.store.meta(run_id)
    if (meta.get("cluster"), meta.get("spec_digest")) != (token.cluster, token.digest):
        raise Refused(f"its token names cluster {token.cluster} and another config than run {run_id} has")
    workflow = task.split(".")[1] if task.count(".") >= 2 else ""
    if path and meta.get("kind") != workflow:
        raise Refused(f"run {run_id} is a run of kind {meta.get('kind')}, not {workflow}")
    if path and (node, path) not in _planned(meta.get("plan") or "[]"):
        raise Refused(f"phase {path} of node {node} is not in the plan of run {run_id}")
    if rt.role == "node":
        _journal(rt.settings.state_dir, rt.node_id).admit(token)
    return token


@lru_cache(maxsize=64)
def _planned(plan: str) -> frozenset[tuple[str, ...]]:
    """The [node, phase] steps of a run's plan (the verified metadata's JSON text: parsed once per run)."""
    return frozenset(tuple(step) for step in json.loads(plan)
                     if isinstance(step, list) and all(isinstance(part, str) for part in step))


@lru_cache(maxsize=8)
def _journal(state_dir: Path, worker: str) -> Journal:
    """One journal per node worker and process: it keeps what it read while the file is unchanged."""
    return Journal(state_dir, worker)


def record(client: redis.Redis, *, worker: str, task: str, task_id: str, run_id: str, node: str,
           reason: str) -> None:
    entry = {"ts": f"{time.time():.3f}", "worker": worker, "task": task, "id": task_id, "run": run_id,
             "node": node, "reason": reason}
    client.xadd(REFUSED_STREAM, entry, maxlen=REFUSED_MAXLEN, approximate=True)  # type: ignore[arg-type]
