"""What a worker checks before it acts on a task, and how a refusal is recorded.

``authorize`` (called by ``tasks.phasetask`` before anything else, even before the phase is claimed):
the token is well formed; the run's metadata verifies; the token's signature verifies with the pinned
control key for this task, run and node and the run's cluster and config digest (``tasks.trust.tokens``),
and it has not expired; it sends the task to one of this worker's own queues (a node worker:
``node.<its id>``); the run's metadata agrees (the workflow of the task, the (node, phase) in the plan);
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

from kubeboot.tasks.state.keys import PREFIX, check_name
from kubeboot.tasks.state.transitions import NoSuchRunError
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
    # Garbage costs no Redis read; the run id is checked before it names a key (it is not authenticated yet).
    TaskToken.parse(auth, task=task, run=run_id, node=node, cluster="", digest="")
    if not (isinstance(run_id, str) and isinstance(node, str)):
        raise Refused("its arguments are not a run id and a node name")
    try:
        meta = rt.store.meta(check_name("run id", run_id))
    except ValueError as e:
        raise Refused(str(e)) from None
    except NoSuchRunError:
        raise Refused(f"there is no run {run_id}") from None
    token = TaskToken.verify(auth, key, now=time.time(), task=task, run=run_id, node=node,
                             cluster=meta.get("cluster", ""), digest=meta.get("spec_digest", ""))
    if token.queue not in rt.queues:
        raise Refused(f"its token sends it to {token.queue}, which this worker ({', '.join(rt.queues)}) does not "
                      "serve")
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
