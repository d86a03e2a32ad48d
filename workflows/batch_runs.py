"""Batch runs: ``kubeboot submit batch``, their advance (clusters side by side up to a bound), ``resume``.

A ``batch`` run is a parent whose steps are cluster runs ``<batch id>.<cluster name>`` (``tasks.state.parents``).
At most ``concurrency`` clusters run at once: a cluster takes one of the batch's slots (the ``TAKE``
script) and gives it back when its run ends; the batch's ``advance`` (sent by the end hook of whatever
task ended that cluster run, and by the sweep) gives back the slots of ended clusters and starts the
next ones. Nothing long-lived coordinates: a submitter that dies after ``submit`` loses nothing, and
two advances at once never start a cluster twice or exceed the bound. A cluster that fails gives its
slot back like one that succeeds: it never stops the others.

The batch ends when every cluster ended: ``succeeded`` if all did, else ``failed`` naming how many and
which. ``resume`` puts the clusters that did not succeed back in line for a slot; each resumes its own
failed children (``workflows.cluster_runs.resume_cluster``), the succeeded ones are left alone.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from kubeboot.workflows.cluster_plan import ClusterRunSpec, cluster_run_id
from kubeboot.workflows.cluster_runs import (
    ACTIVE,
    FINAL,
    SWEEP_DELAY,
    ClusterRefusedError,
    Engine,
    resume_cluster,
    submit_cluster,
)

if TYPE_CHECKING:
    from kubeboot.config.batch import Batch
    from kubeboot.tasks.state import RunRecord

ADVANCE_TASK: Final = "kubeboot.batch.advance"
STEP: Final = "cluster"
SHOWN_FAILURES: Final = 5


@dataclass(frozen=True)
class BatchRunSpec:
    names: tuple[str, ...]
    concurrency: int
    dry_run: bool
    documents: tuple[dict[str, object], ...]

    def cluster(self, name: str) -> ClusterRunSpec:
        from kubeboot.config.cluster import build_cluster

        doc = self.documents[self.names.index(name)]
        return ClusterRunSpec(build_cluster(doc, f"batch cluster {name}", kubeadm_checks=False), self.dry_run)


_SPECS: dict[str, BatchRunSpec] = {}


def batch_spec(engine: Engine, run_id: str) -> BatchRunSpec:
    """Decrypted and parsed once per process (a batch's config never changes, and may be large)."""
    if run_id not in _SPECS:
        if len(_SPECS) > 16:
            _SPECS.clear()
        config = engine.store.run_config(run_id)
        docs = tuple(config["batch"]["spec"]["clusters"])
        _SPECS[run_id] = BatchRunSpec(tuple(d["metadata"]["name"] for d in docs), int(config["concurrency"]),
                                      bool(config["dryRun"]), docs)
    return _SPECS[run_id]


def new_batch_run_id() -> str:
    return "b-" + secrets.token_hex(4)


def submit_batch(engine: Engine, batch: Batch, *, concurrency: int, dry_run: bool = False,
                 run_id: str | None = None) -> RunRecord:
    from kubeboot.workflows.routing import run_route

    run_id = run_id or new_batch_run_id()
    config = {"batch": batch.to_document(), "dryRun": dry_run, "concurrency": concurrency}
    plan = [(c.name, STEP) for c in batch.clusters]
    route = run_route({}, dry_run=dry_run)
    run = engine.store.create_run(kind="batch", cluster=batch.name, config=config, plan=plan, run_id=run_id,
                                  extra={"batch": run_id, "route": json.dumps(route), "done": "0",
                                         "concurrency": str(concurrency)})
    engine.parents.schedule(run_id, SWEEP_DELAY)
    engine.send(ADVANCE_TASK, run)
    return run


def advance(engine: Engine, run_id: str) -> None:
    run = engine.store.get_run(run_id)
    if run is None or run.status in FINAL:
        engine.parents.unschedule(run_id)
        return
    spec = batch_spec(engine, run_id)
    _settle_running(engine, run, spec)
    for name in engine.parents.take_slots(run_id, spec.concurrency, list(spec.names)):
        _start(engine, run, spec, name)
    slots = engine.parents.slots(run_id)
    if not slots.running and not slots.again and slots.started >= len(spec.names):
        _finish(engine, run, spec)
        return
    engine.parents.reschedule(run_id, SWEEP_DELAY)


def _settle_running(engine: Engine, run: RunRecord, spec: BatchRunSpec) -> None:
    """Clusters holding a slot: an ended one gives it back; one whose starter died is started."""
    running = sorted(engine.parents.slots(run.id).running)
    rows = engine.parents.statuses([cluster_run_id(run.id, n) for n in running], "error")
    now = engine.now()
    for name, row in zip(running, rows, strict=True):
        if row["status"] is None:
            _start(engine, run, spec, name)
        elif row["status"] in FINAL:
            engine.parents.set_step(run.id, name, STEP, row["status"] or "failed", now=now,
                                    message=row["error"] or "")
            if engine.parents.release_slot(run.id, name) and row["status"] == "succeeded":
                engine.parents.count_done(run.id)  # once per cluster: one caller gives its slot back


def _start(engine: Engine, run: RunRecord, spec: BatchRunSpec, name: str) -> None:
    """Start (or resume, after a batch resume) the cluster ``name``, which holds a slot."""
    from kubeboot.tasks.state.store import RunExistsError

    kid = cluster_run_id(run.id, name)
    status = engine.store.run_status(kid)
    now = engine.now()
    try:
        if status is None:
            submit_cluster(engine, spec.cluster(name), run_id=kid, extra={"parent": run.id, "batch": run.id})
        elif status == "failed":
            resume_cluster(engine, kid)
        elif status == "succeeded":
            if engine.parents.release_slot(run.id, name):
                engine.parents.count_done(run.id)
            return
    except RunExistsError:
        return  # another advance started it
    except ClusterRefusedError as e:
        engine.parents.set_step(run.id, name, STEP, "failed", now=now, message=str(e))
        engine.parents.release_slot(run.id, name)
        return
    engine.parents.set_step(run.id, name, STEP, "running", now=now, child=kid)


def _finish(engine: Engine, run: RunRecord, spec: BatchRunSpec) -> None:
    rows = engine.parents.statuses([cluster_run_id(run.id, n) for n in spec.names], "error")
    failed = [n for n, r in zip(spec.names, rows, strict=True) if r["status"] != "succeeded"]
    if any(r["status"] in ACTIVE for r in rows):
        engine.parents.reschedule(run.id, SWEEP_DELAY)
        return
    if not failed:
        engine.store.finish_run(run.id, status="succeeded")
        return
    shown = ", ".join(failed[:SHOWN_FAILURES]) + (f" and {len(failed) - SHOWN_FAILURES} more"
                                                   if len(failed) > SHOWN_FAILURES else "")
    engine.store.finish_run(run.id, status="failed", error=f"{len(failed)} of {len(spec.names)} clusters failed: "
                            f"{shown}; `kubeboot resume {run.id}` runs them again")


def resume_batch(engine: Engine, run_id: str) -> RunRecord:
    """Put the clusters that did not succeed back in line; the succeeded ones stay as they are."""
    run = engine.store.get_run(run_id)
    if run is None:
        raise ClusterRefusedError(f"no run {run_id}; list runs with `kubeboot runs --kind batch`")
    if run.status == "succeeded":
        return run
    verdict = engine.store.reopen_run(run_id)
    if verdict.action != "ok":
        raise ClusterRefusedError(f"run {run_id} is {verdict.detail}; follow it with `kubeboot status {run_id} "
                                  "--watch`")
    spec = batch_spec(engine, run_id)
    rows = engine.parents.statuses([cluster_run_id(run_id, n) for n in spec.names])
    again = [n for n, r in zip(spec.names, rows, strict=True) if r["status"] == "failed"]
    now = engine.now()
    for name in again:
        engine.parents.set_step(run_id, name, STEP, "pending", now=now)
    engine.parents.requeue(run_id, again)
    engine.parents.schedule(run_id, SWEEP_DELAY)
    engine.send(ADVANCE_TASK, run_id)
    refreshed = engine.store.get_run(run_id)
    assert refreshed is not None
    return refreshed
