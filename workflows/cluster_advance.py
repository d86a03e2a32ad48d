"""``advance``: move a cluster run on from what its children's runs say.

Called by ``kubeboot.cluster.advance`` when a child run ends (the end hook of the process that ended it)
and at every sweep of ``parents:due`` (``SWEEP_DELAY``). Idempotent, and safe with several at once:
it only reads the children's state and acts on it; a child is created under a fixed id, so of two
advances that both want it exactly one creates it (and sends its chain), the other finds it exists.

Per stage (``ClusterRunSpec.stages``: the init, each control-plane join, then all workers at once):
a failed child fails the cluster; missing children are started (the workers as one Celery group);
active ones are watched: one whose next queue has had no live consumer for ``spec.timeouts.nodeWorker``
is failed with "no worker consumes node.<id>", and so is the cluster. When every stage is done the
ready task (the workers' chord body) is sent once.

Before a control-plane join (not in a dry run), ``kubeadm-certs`` is looked up through the API: when it
has expired (kubeadm deletes it with its 2-hour token), a child init run of ``upload-certs`` on the first
control-plane node uploads the certificates again, with the cluster's certificate key, and the join
starts once it succeeded.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from kubeboot.tasks.state.keys import run_key
from kubeboot.workflows.cluster_plan import INIT, ClusterRunSpec, certs_child_id, child_id
from kubeboot.workflows.cluster_runs import (
    ACTIVE,
    FINAL,
    KEY_SECRET,
    READY_TASK,
    SWEEP_DELAY,
    TOKEN_SECRET,
    ClusterRefusedError,
    Engine,
    ca_pin,
    init_child,
    keys_run,
    run_spec,
    secret_text,
)

if TYPE_CHECKING:
    from kubeboot.tasks.state import PhaseRecord, RunRecord
    from kubeboot.workflows.runs import Submitted

log = logging.getLogger("kubeboot.cluster")
NEVER_SENT: Final = 120.0  # a child still untouched this long after creation is sent once more
READY_RESEND: Final = 60.0  # a ready task that left no trace this long is sent again
CERTS_SECRET: Final = "kubeadm-certs"


def advance(engine: Engine, run_id: str) -> None:
    run = engine.store.get_run(run_id)
    if run is None or run.status in FINAL:
        engine.parents.unschedule(run_id)
        return
    spec = run_spec(engine.store, run_id)
    steps = dict(run.plan)
    rows = engine.parents.statuses([child_id(run_id, n) for n in steps], "error", "created")
    kids = dict(zip(steps, rows, strict=True))
    engine.parents.set_fields(run_id, done=sum(r["status"] == "succeeded" for r in rows))
    for stage in spec.stages():
        if _stage(engine, run, spec, stage, steps, kids) != "done":
            engine.parents.reschedule(run_id, SWEEP_DELAY)
            return
    _send_ready(engine, run)


def _stage(engine: Engine, run: RunRecord, spec: ClusterRunSpec, stage: list[str], steps: dict[str, str],
           kids: dict[str, dict[str, str | None]]) -> str:
    """"done", "waiting" or "failed" (the cluster run was ended)."""
    failed = next((n for n in stage if kids[n]["status"] == "failed"), None)
    if failed is not None:
        _fail(engine, run, failed, steps[failed], kids[failed]["error"] or "failed")
        return "failed"
    missing = [n for n in stage if kids[n]["status"] is None]
    if missing:
        return _start(engine, run, spec, missing, steps)
    active = [n for n in stage if kids[n]["status"] in ACTIVE]
    for node in active:
        if _watch(engine, run, spec, node, steps[node], child_id(run.id, node)) == "failed":
            return "failed"
    if active:
        return "waiting"
    now = engine.now()
    for node in stage:
        engine.parents.set_step(run.id, node, steps[node], "succeeded", now=now, child=child_id(run.id, node))
    return "done"


# --- starting children ------------------------------------------------------------------------------------

def _start(engine: Engine, run: RunRecord, spec: ClusterRunSpec, nodes: list[str], steps: dict[str, str]) -> str:
    from kubeboot.config.errors import ConfigError
    from kubeboot.tasks.state.store import RunExistsError
    from kubeboot.workflows.runs import RunRefusedError

    now, canvases = engine.now(), []
    for node in nodes:
        try:
            sub = _start_one(engine, run, spec, node, steps[node])
        except RunExistsError:
            continue  # another advance started it (and sent it)
        except (ClusterRefusedError, RunRefusedError, ConfigError) as e:
            _fail(engine, run, node, steps[node], str(e))
            return "failed"
        if sub is not None:
            engine.parents.set_step(run.id, node, steps[node], "running", now=now, child=sub.run.id)
            canvases.append(sub.canvas)
    if len(canvases) > 1:
        from celery import group

        group(*canvases).apply_async()  # the workers join in parallel: one group, one send
    elif canvases:
        canvases[0].apply_async()
    return "waiting"


def _options(run: RunRecord, spec: ClusterRunSpec, kid: str, route: dict[str, Any], send: bool = False) -> Any:
    from kubeboot.workflows.runs import RunOptions

    extra = {"parent": run.id, **({"batch": run.batch} if run.batch else {})}
    return RunOptions(run_id=kid, extra=extra, route=route, send=send)


def _start_one(engine: Engine, run: RunRecord, spec: ClusterRunSpec, node: str, step: str) -> Submitted | None:
    """Create (and hand back the chain of) the node's child run; None while its certificates are re-uploaded."""
    from kubeboot.config.join import build_join_config
    from kubeboot.config.loader import build_init_config
    from kubeboot.workflows.join_runs import submit_join
    from kubeboot.workflows.runs import submit_init

    keys = keys_run(spec, run.id)
    token, key = secret_text(engine, keys, TOKEN_SECRET), secret_text(engine, keys, KEY_SECRET)
    source = f"cluster run {run.id}"
    if step == INIT:
        docs = spec.cluster.init_documents(token=token, certificate_key=key, dry_run=spec.dry_run)
        cfg = build_init_config(docs, source, fill_node_defaults=False)
        return submit_init(engine.app, engine.client, engine.store, engine.settings, cfg,
                           upload_certs=len(spec.cluster.control_planes) > 1,
                           options=_options(run, spec, child_id(run.id, node), spec.child_route(node, run.id)))
    target = spec.node(node)
    if target.is_control_plane and not spec.dry_run and not _certs_ready(engine, run, spec, node):
        return None
    doc = spec.cluster.join_document(target, token=token, certificate_key=key, ca_pins=[ca_pin(engine, spec, run.id)],
                                     dry_run=spec.dry_run)
    join = build_join_config([doc], source)
    return submit_join(engine.app, engine.store, join, cluster=spec.cluster.name,
                       options=_options(run, spec, child_id(run.id, node), spec.child_route(node, run.id)))


def _certs_ready(engine: Engine, run: RunRecord, spec: ClusterRunSpec, node: str) -> bool:
    """True when ``kubeadm-certs`` holds the certificates a control-plane join downloads; otherwise the
    re-upload child is started (or watched) and False."""
    from kubeboot.tasks.errors import TemporaryError

    kid = certs_child_id(run.id, node)
    status = engine.store.run_status(kid)
    if status == "succeeded":
        return True
    if status == "failed":
        failed = engine.store.get_run(kid)
        raise ClusterRefusedError(f"uploading the control-plane certificates again failed (run {kid}): "
                                  f"{failed.error if failed else ''}")
    if status in ACTIVE:
        _watch(engine, run, spec, node, "join", kid)
        return False
    try:
        if _certs_present(engine, spec, run.id):
            return True
    except TemporaryError as e:
        log.warning("cluster run %s: cannot look up %s before joining %s (will look again): %s", run.id,
                    CERTS_SECRET, node, e)
        return False
    _reupload(engine, run, spec, node, kid)
    return False


def _certs_present(engine: Engine, spec: ClusterRunSpec, run_id: str) -> bool:
    from kubeboot.config import constants as c
    from kubeboot.tasks import kubeapi

    admin = engine.store.get_secret(init_child(spec, run_id), c.ADMIN_CONF)
    if admin is None:
        raise ClusterRefusedError(f"the init run {init_child(spec, run_id)} no longer holds admin.conf "
                                  "(KUBEBOOT_SECRET_TTL): cannot check kubeadm-certs before a control-plane join")
    return kubeapi.get(kubeapi.api_client(admin), "Secret", CERTS_SECRET, c.NAMESPACE_SYSTEM) is not None


def _reupload(engine: Engine, run: RunRecord, spec: ClusterRunSpec, node: str, kid: str) -> None:
    from kubeboot.config.loader import build_init_config
    from kubeboot.tasks.state.store import RunExistsError
    from kubeboot.workflows.runs import submit_init

    keys = keys_run(spec, run.id)
    docs = spec.cluster.init_documents(token=secret_text(engine, keys, TOKEN_SECRET),
                                       certificate_key=secret_text(engine, keys, KEY_SECRET))
    cfg = build_init_config(docs, f"cluster run {run.id}", fill_node_defaults=False)
    log.warning("cluster run %s: %s expired before the control-plane join of %s: uploading the certificates "
                "again from %s (run %s)", run.id, CERTS_SECRET, node, spec.cluster.first.name, kid)
    route = spec.child_route(spec.cluster.first.name, run.id)
    with contextlib.suppress(RunExistsError):  # another advance started it
        submit_init(engine.app, engine.client, engine.store, engine.settings, cfg, upload_certs=True,
                    target="upload-certs", options=_options(run, spec, kid, route, send=True))


# --- watching children ------------------------------------------------------------------------------------

def _watch(engine: Engine, run: RunRecord, spec: ClusterRunSpec, node: str, step: str, kid: str) -> str:
    """"running" or "failed": a child waiting too long for a worker is failed, and the cluster with it."""
    from kubeboot.config.duration import format_duration
    from kubeboot.workflows.liveness import waiting_on

    child = engine.store.get_run(kid)
    if child is None or child.status not in ACTIVE:
        return "running"
    records = engine.store.phase_records(kid)
    waiting = waiting_on(engine.client, child, records)
    now = engine.now()
    if waiting is None:
        engine.parents.clear_waiting(run.id, node, step)
        _resend_if_never_sent(engine, run, child, records, node, step)
        return "running"
    limit = spec.cluster.spec.timeouts.node_worker_seconds
    since = engine.parents.waiting_since(run.id, node, step, now)
    if _seconds_between(since, now) < limit:
        return "running"
    message = (f"{waiting} (waited {format_duration(limit)}, spec.timeouts.nodeWorker): start the node's worker, "
               "then resume")
    engine.store.finish_run(kid, status="failed", error=message)
    _fail(engine, run, node, step, message)
    return "failed"


def _resend_if_never_sent(engine: Engine, run: RunRecord, child: RunRecord, records: list[PhaseRecord],
                          node: str, step: str) -> None:
    """A child created by an advance that died before sending it: send its chain once more."""
    from kubeboot.workflows.runs import chain_of, remaining_steps

    untouched = child.status == "pending" and all(r.status in ("pending", "skipped") for r in records)
    if not untouched or _seconds_between(child.created, engine.now()) < NEVER_SENT:
        return
    if not engine.client.hsetnx(f"{run_key(run.id)}:phases", f"{node}|{step}|resent", engine.now()):
        return
    log.warning("cluster run %s: child %s was never started; sending it again", run.id, child.id)
    chain_of(engine.app, child, remaining_steps(engine.store, child, records), engine.store).apply_async()


def _fail(engine: Engine, run: RunRecord, node: str, step: str, error: str) -> None:
    engine.parents.set_step(run.id, node, step, "failed", now=engine.now(), message=error)
    engine.store.finish_run(run.id, status="failed", error=f"{step} of node {node} failed: {error}")


def _send_ready(engine: Engine, run: RunRecord) -> None:
    now = engine.now()
    if engine.client.hsetnx(run_key(run.id), "ready_sent", now):
        engine.send(READY_TASK, run)
        return
    sent = engine.parents.fields(run.id, "ready_sent")["ready_sent"] or now
    if _seconds_between(sent, now) >= READY_RESEND:
        engine.parents.set_fields(run.id, ready_sent=now)
        engine.send(READY_TASK, run)
    engine.parents.reschedule(run.id, SWEEP_DELAY)


def _seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


__all__ = ["advance", "init_child"]
