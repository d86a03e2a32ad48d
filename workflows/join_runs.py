"""Planning and submitting a join: ``kubeboot join phase`` (in process) and ``kubeboot submit join``.

``plan_join`` is ``select`` over the join tree with the JoinConfiguration's ``skipPhases`` and
``--skip-phases``; a worker join drops the control-plane phases (recorded ``skipped``, "not a
control-plane join"). ``submit_join`` records a ``kind: join`` run and sends its chain: node phases to
``node.<node name>``, ``control-plane-join/mark-control-plane`` to ``control``.

The run's config is the JoinConfiguration document, token and certificate key included, with a local
discovery file's text (``config.join_discovery``), stored encrypted whole like an init's config: they never
travel as task arguments. A join takes no cluster
lock at submit (worker joins of a cluster run side by side); its ``etcd-join`` takes the cluster's
control-plane join lock when it gets there (``tasks.joinrun``). The run's ``cluster`` label is
``--cluster`` when given, else the discovery endpoint (``10.0.0.1-6443``): the cluster's own name is learnt
only by discovery, on the node.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kubeboot.workflows.join_tree import CONTROL_PLANE_ONLY, JOIN_PHASES
from kubeboot.workflows.routing import routed_queue
from kubeboot.workflows.selection import Step, select

if TYPE_CHECKING:
    from celery import Celery

    from kubeboot.config.join import JoinConfig
    from kubeboot.tasks.state import RunRecord, RunStore
    from kubeboot.workflows.runs import RunOptions, Submitted

NOT_CONTROL_PLANE = "not a control-plane join (--control-plane not given)"


def plan_join(join: JoinConfig, target: str = "all", skip: list[str] | None = None) -> list[Step]:
    """The join steps for ``target``; UnknownPhaseError for a bad path."""
    skips = list(join.join.skipPhases) + list(skip or [])
    drop = {} if join.is_control_plane else dict.fromkeys(CONTROL_PLANE_ONLY, NOT_CONTROL_PLANE)
    return select(JOIN_PHASES, "join", join.provisional_init_config(), target, skips, drop)


def run_label(join: JoinConfig, cluster: str | None) -> str:
    """The run's ``cluster`` field: a name the run store accepts."""
    if cluster:
        return cluster
    endpoint = join.endpoint or "discovery-file"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", endpoint).strip("-.") or "join"


def submit_join(app: Celery, store: RunStore, join: JoinConfig, *, skip: list[str] | None = None,
                cluster: str | None = None, options: RunOptions | None = None) -> Submitted:
    """Record a new join run of ``join``'s node and send its chain (``options``: ``workflows.runs.RunOptions``)."""
    from kubeboot.config.join_discovery import run_documents
    from kubeboot.workflows.runs import RunOptions, _send, dry_run_options, node_readers

    node = join.node_name
    opts = dry_run_options(options or RunOptions(), join.join.dryRun, node)
    steps = [(node, s) for s in plan_join(join, "all", skip) if s.placed.phase.action or s.skip_reason]
    plan = [(n, s.path) for n, s in steps]
    run = store.create_run(kind="join", cluster=run_label(join, cluster), config=run_documents(join), plan=plan,
                           run_id=opts.run_id, extra=opts.fields(),
                           readers=node_readers(store, opts.route, [node], dry_run=bool(join.join.dryRun)))
    return _send(app, store, run, steps, opts, extra_queue=routed_queue(opts.route, "node", node))


def join_steps_by_path(store: RunStore, run: RunRecord) -> dict[str, Step]:
    """For ``resume``: the join plan of a recorded run, by phase path."""
    from kubeboot.config.join import build_join_config

    join = build_join_config(store.run_config(run.id), f"run {run.id}", run=True)
    return {s.path: s for s in plan_join(join, "all")}
