"""Cluster runs: ``kubeboot submit cluster``, its ready check (the chord's body) and ``resume``.

A ``cluster`` run is a parent (``tasks.state.parents``): its steps are child ``init`` and ``join`` runs
(``workflows.cluster_plan``), started by ``advance`` (``workflows.cluster_advance``) whenever a child ends
and at every sweep. The run makes its own bootstrap token and certificate key at submit and keeps
them encrypted among its secrets (``token``, ``certificate-key``); its children get them inside their
configs (encrypted too), never as task arguments. The CA pin joining nodes check is read from the init
child's admin.conf once the init succeeded and kept as the run's ``ca_pin`` field (a public key hash).

The cluster is done when every node's run succeeded and ``ready`` (a control task, the body of the
workers' chord) has found every node registered as a Node of the cluster; a dry run's fake API answers
that as kubeadm's dry-run client does (a Node of that name).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Final

from kubeboot.workflows.cluster_plan import ClusterRunSpec, certs_child_id, child_id

if TYPE_CHECKING:
    import redis
    from celery import Celery

    from kubeboot.config.cluster import NodeSpec
    from kubeboot.config.settings import Settings
    from kubeboot.tasks.state import RunRecord, RunStore
    from kubeboot.tasks.state.parents import Parents

ADVANCE_TASK: Final = "kubeboot.cluster.advance"
READY_TASK: Final = "kubeboot.cluster.ready"
TOKEN_SECRET: Final = "token"
KEY_SECRET: Final = "certificate-key"
CA_PIN_FIELD: Final = "ca_pin"
SWEEP_DELAY: Final = 10.0  # an active parent is looked at again this often (deadlines, lost hooks)
READY_DEADLINE: Final = 120.0  # how long ready waits for the last Nodes to register
FINAL: Final = ("succeeded", "failed")
ACTIVE: Final = ("pending", "running")


class ClusterRefusedError(Exception):
    """The cluster run cannot start or resume now; the message says why."""


@dataclass
class Engine:
    """What parent runs act with: the Celery app (to send), Redis, the run store, settings."""

    app: Celery
    client: redis.Redis
    store: RunStore
    settings: Settings

    @cached_property
    def parents(self) -> Parents:
        from kubeboot.tasks.state.parents import Parents

        return Parents(self.client)

    def now(self) -> str:
        from datetime import UTC, datetime

        from kubeboot.tasks.state.records import iso

        return iso(datetime.now(UTC))

    def send(self, task: str, run: RunRecord | str, *, countdown: float | None = None) -> None:
        """Send a parent's task (its id as the only argument, and its token: ``workflows.parent_tasks``) to
        the run's control queue. Only the control side can: it alone holds the signing key."""
        from kubeboot.workflows.routing import routed_queue
        from kubeboot.workflows.runs import declare

        record = self.store.get_run(run) if isinstance(run, str) else run
        if record is None:
            return
        queue = routed_queue(record.route, "control", "")
        declare(self.app, [queue])
        auth = self.store.signer(record)(task, "", queue)
        self.app.signature(task, args=(record.id,), kwargs={"auth": auth}, immutable=True,
                           queue=queue).apply_async(countdown=countdown)


_SPECS: dict[str, ClusterRunSpec] = {}


def run_spec(store: RunStore, run_id: str) -> ClusterRunSpec:
    """The cluster run's spec (decrypted and parsed once per process: it never changes)."""
    if run_id not in _SPECS:
        if len(_SPECS) > 256:
            _SPECS.clear()
        _SPECS[run_id] = ClusterRunSpec.from_config(store.run_config(run_id), f"run {run_id}")
    return _SPECS[run_id]


def new_cluster_run_id() -> str:
    return "c-" + secrets.token_hex(4)


def submit_cluster(engine: Engine, spec: ClusterRunSpec, *, run_id: str | None = None,
                   extra: dict[str, str] | None = None, advance: bool = True) -> RunRecord:
    """Record a cluster run (its token and key made and sealed) and send its first advance."""
    from kubeboot.tasks import tokens
    from kubeboot.tasks.copycerts import create_certificate_key

    run_id = run_id or new_cluster_run_id()
    fields = {**(extra or {}), "route": json.dumps(spec.route()), "done": "0"}
    run = engine.store.create_run(kind="cluster", cluster=spec.cluster.name, config=spec.to_config(),
                                  plan=spec.steps(), run_id=run_id, extra=fields)
    if spec.base is None:
        engine.store.put_secret(run_id, TOKEN_SECRET, str(tokens.generate_token()))
        engine.store.put_secret(run_id, KEY_SECRET, create_certificate_key())
    engine.parents.schedule(run_id, SWEEP_DELAY)
    if advance:
        engine.send(ADVANCE_TASK, run)
    return run


def keys_run(spec: ClusterRunSpec, run_id: str) -> str:
    """The cluster run holding the token, key, CA pin and init child: this one, or a later node's base."""
    return spec.base or run_id


def init_child(spec: ClusterRunSpec, run_id: str) -> str:
    base = keys_run(spec, run_id)
    return child_id(base, spec.cluster.first.name)


def secret_text(engine: Engine, run_id: str, name: str) -> str:
    value = engine.store.get_secret(run_id, name)
    if value is None:
        raise ClusterRefusedError(f"cluster run {run_id} no longer holds its {name} (its secrets expire "
                                  "KUBEBOOT_SECRET_TTL after it ended)")
    return value.decode()


def ca_pin(engine: Engine, spec: ClusterRunSpec, run_id: str) -> str:
    """The cluster CA's pin, learnt from the init child's admin.conf once (then kept as a field)."""
    from kubeboot.tasks import pki
    from kubeboot.tasks.phases.bootstraptoken import admin_ca_pem

    base = keys_run(spec, run_id)
    known = engine.parents.fields(base, CA_PIN_FIELD)[CA_PIN_FIELD]
    if known:
        return known
    admin = engine.store.get_secret(init_child(spec, run_id), "admin.conf")
    if admin is None:
        raise ClusterRefusedError(f"the init run {init_child(spec, run_id)} holds no admin.conf (expired "
                                  "from the run state?): cannot pin the cluster CA for the joins")
    pin = pki.ca_cert_hash(pki.load_cert(admin_ca_pem(admin)))
    engine.parents.set_fields(base, **{CA_PIN_FIELD: pin})
    return pin


# --- the chord body: every node registered --------------------------------------------------------------

def ready(engine: Engine, run_id: str, first_try: float, now: float) -> str:
    """Finish the cluster once every node is a registered Node. Returns "" when done (or nothing to do),
    else what is missing (the caller retries until ``READY_DEADLINE`` from ``first_try``)."""
    run = engine.store.get_run(run_id)
    if run is None or run.status not in ACTIVE:
        return ""
    spec = run_spec(engine.store, run_id)
    missing = [] if spec.dry_run else _unregistered(engine, spec, run_id, [n for n, _ in run.plan])
    if missing and now - first_try < READY_DEADLINE:
        return f"nodes not registered yet: {', '.join(missing)}"
    if missing:
        engine.store.finish_run(run_id, status="failed", error=f"nodes never registered with the API server "
                                f"within {READY_DEADLINE:.0f}s: {', '.join(missing)}")
        return ""
    engine.store.finish_run(run_id, status="succeeded")
    return ""


def _unregistered(engine: Engine, spec: ClusterRunSpec, run_id: str, nodes: list[str]) -> list[str]:
    from kubeboot.tasks import kubeapi

    admin = engine.store.get_secret(init_child(spec, run_id), "admin.conf")
    if admin is None:
        return []  # the init's credentials expired: every join already saw its node through (nothing to add)
    api = kubeapi.api_client(admin)
    return [n for n in nodes if kubeapi.get(api, "Node", n) is None]


# --- resume ------------------------------------------------------------------------------------------------

def resume_cluster(engine: Engine, run_id: str) -> RunRecord:
    """Reopen a failed cluster run: its failed children resume where they stopped, the others wait."""
    from kubeboot.workflows.runs import RunRefusedError
    from kubeboot.workflows.runs import resume as resume_run

    run = engine.store.get_run(run_id)
    if run is None:
        raise ClusterRefusedError(f"no run {run_id}; list runs with `kubeboot runs --kind cluster`")
    if run.status == "succeeded":
        return run
    verdict = engine.store.reopen_run(run_id)
    if verdict.action != "ok":
        raise ClusterRefusedError(f"run {run_id} is {verdict.detail}; follow it with `kubeboot status {run_id} "
                                  "--watch`")
    now = engine.now()
    for node, step in run.plan:
        engine.parents.clear_waiting(run_id, node, step)
        for kid in (certs_child_id(run_id, node), child_id(run_id, node)):
            if engine.store.run_status(kid) != "failed":
                continue
            try:
                resume_run(engine.app, engine.client, engine.store, engine.settings, kid)
            except RunRefusedError as e:
                engine.store.finish_run(run_id, status="failed", error=f"node {node}: cannot resume {kid}: {e}")
                raise ClusterRefusedError(str(e)) from None
            if kid == child_id(run_id, node):
                engine.parents.set_step(run_id, node, step, "running", now=now, child=kid)
    engine.parents.schedule(run_id, SWEEP_DELAY)
    engine.send(ADVANCE_TASK, run_id)
    refreshed = engine.store.get_run(run_id)
    assert refreshed is not None
    return refreshed


# --- a node added later: `submit join --cluster NAME --node-name N [--control-plane]` ------------------------

def base_run(engine: Engine, cluster: str) -> RunRecord:
    """The newest whole-cluster run of ``cluster`` that succeeded: its token, key and CA pin join new nodes."""
    from kubeboot.tasks.state.index import RunFilter, query

    for run in query(engine.client, RunFilter(cluster=cluster, kind="cluster", status="succeeded"), limit=50).runs:
        if run_spec(engine.store, run.id).base is None:
            return run
    raise ClusterRefusedError(f"no cluster run of cluster {cluster} succeeded: `kubeboot submit cluster` makes the "
                              "token and keys a node added later joins with")


def submit_added_node(engine: Engine, cluster: str, node: NodeSpec, *, dry_run: bool = False) -> RunRecord:
    """A cluster run that joins one more node with what the cluster's run holds (re-uploading the
    control-plane certificates first when kubeadm-certs expired)."""
    base = base_run(engine, cluster)
    whole = run_spec(engine.store, base.id).cluster
    others = [n for n in whole.nodes if n.name != node.name]
    doc = whole.model_copy(update={"spec": whole.spec.model_copy(update={"nodes": [*others, node]})})
    secret_text(engine, base.id, TOKEN_SECRET)  # still held? (else a clear refusal, before anything is recorded)
    return submit_cluster(engine, ClusterRunSpec(doc, dry_run, base=base.id, only=(node.name,)))
