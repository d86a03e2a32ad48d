"""The Celery app: every setting with the reason it has that value.

One app object per process, configured from ``Settings`` and the Redis URL the CLI resolved
(embedded or ``KUBEBOOT_REDIS_URL``). The phase tasks are registered from the workflow trees
(``workflows.registry``), so the worker, the submitter and Flower all know the same task names.

``role`` says which process the app serves: ``node`` (a node worker: no remote control, only its own
task names, ``workers.task_allowlist``), ``control`` (the control worker: remote control kept for
``celery inspect`` and Flower), ``client`` (a submitter, Flower: sends only).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app.amqp import AMQP, Queues
from kombu import Queue

from kubeboot.config.settings import Settings
from kubeboot.workers.celery_redaction import RedactingEvents, connect_log_redaction
from kubeboot.workflows.registry import register_all
from kubeboot.workflows.routing import CONTROL_QUEUE, is_routed_queue


class RoutedQueues(Queues):  # type: ignore[misc]
    """Declared queues plus the family the routing produces (``node.<worker-id>``): a worker that
    forwards a chain to another node's queue knows it; any other name is still refused."""

    def __missing__(self, name: str) -> Any:
        if is_routed_queue(name):
            return self.add(Queue(name, routing_key=name))
        raise KeyError(name)


class RoutedAMQP(AMQP):  # type: ignore[misc]
    queues_cls = RoutedQueues


def kombu_url(redis_url: str) -> str:
    """redis-py spells a unix socket ``unix:///path``; kombu's Redis transport ``redis+socket:///path``."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


def make_app(redis_url: str, settings: Settings, extra_queues: list[str] | None = None, *,
             role: str = "client") -> Celery:
    # Task events (Flower's view) and log lines carry no secret: see workers.celery_redaction.
    app = Celery("kubeboot", set_as_current=True, amqp=RoutedAMQP, events=RedactingEvents)
    connect_log_redaction()
    broker = kombu_url(redis_url)
    queues = [Queue(CONTROL_QUEUE, routing_key=CONTROL_QUEUE)]
    queues += [Queue(q, routing_key=q) for q in extra_queues or [] if q != CONTROL_QUEUE]
    transport: dict[str, Any] = {
        # A task held unacked longer than this is delivered again. Phases never run or wait that long
        # (start-up checks it exceeds the hard time limit plus the longest retry delay), so only dead
        # workers' tasks come back; a worker restarted under its name re-sends them sooner
        # (workers.heartbeat), and the run state dedupes whichever copy comes second.
        "visibility_timeout": settings.visibility_timeout,
        # ... but only when some worker sweeps the unacked index for them: kombu's default sweep runs
        # about every 100 s (interval 10 s x throttle 10), whatever the timeout. Sweep every fifth of
        # the timeout (1-10 s, one ZRANGE each) so a dead worker's phase returns soon after it expires.
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 5)),
        "unacked_restore_throttle": 1,
        # Redis restarts (or the embedded one being restarted) must not kill a worker or a submit.
        "retry_on_timeout": True,
        "health_check_interval": 10,
        # kubeboot sends no task priorities: one Redis list per queue (kombu's default makes four,
        # ``<queue>\x06\x163`` ...), so a node's ACL user names its queue's one key exactly.
        "priority_steps": [0],
    }
    ssl_options = _broker_ssl(settings) if redis_url.startswith("rediss://") else None
    app.conf.update(
        broker_url=broker,
        # rediss://: TLS with the server's certificate verified and this client's certificate shown.
        broker_use_ssl=ssl_options,
        broker_transport_options=transport,
        # Keep retrying the broker connection at start-up and after a loss instead of exiting.
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # No result backend: tasks pass ids and write the run state; nobody ever reads a result.
        result_backend=None,
        task_ignore_result=True,
        # JSON only: task messages are readable in Flower and nothing is unpickled from the network.
        task_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        # Ack after the phase ran: phases are idempotent, so redelivery after a crash is safe.
        task_acks_late=True,
        # A prefork child killed mid-phase (OOM, kill -9) puts its message back at once.
        task_reject_on_worker_lost=True,
        # With acks_late a connection loss means the message comes back anyway: stop the running copy.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # Reserve one message at a time: a busy worker must not sit on phases another could run.
        worker_prefetch_multiplier=1,
        # Queues are declared, never invented: a misrouted phase fails at submit time.
        task_queues=queues,
        task_default_queue=CONTROL_QUEUE,
        task_create_missing_queues=False,
        # Flower: workers emit task events, the client emits task-sent, STARTED is tracked.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        # Every phase (and the finish task): the soft limit fails the phase with a message; the hard
        # limit kills a stuck process, and the main process records the phase and run failed.
        task_soft_time_limit=settings.phase_soft_time_limit,
        task_time_limit=settings.phase_time_limit,
        # Timestamps in UTC, like the run state.
        enable_utc=True,
        timezone="UTC",
        # A node worker ignores broadcast commands (add_consumer, shutdown, pool_restart ...): anyone who
        # can publish on the broker could otherwise make it consume another node's queue or stop it. The
        # control worker keeps them for ``celery inspect``; Flower's Redis user cannot publish them.
        worker_enable_remote_control=role != "node",
    )
    register_all()
    import kubeboot.tasks.phasetask  # noqa: F401 - registers kubeboot.run.finish
    from kubeboot.workflows import parent_tasks  # registers the cluster and batch tasks

    parent_tasks.connect(app)
    from kubeboot.workers import consumer_watch, heartbeat, kombu_clients, task_allowlist

    kombu_clients.install()
    heartbeat.connect()
    if role in ("node", "control"):
        task_allowlist.install(app, role)
        consumer_watch.install(app)
    return app


def _broker_ssl(settings: Settings) -> dict[str, Any]:
    import ssl

    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    for name, path in (("ssl_ca_certs", settings.redis_tls_ca), ("ssl_certfile", settings.redis_tls_cert),
                       ("ssl_keyfile", settings.redis_tls_key)):
        if path is not None:
            options[name] = str(path)
    return options


def __getattr__(name: str) -> Any:
    """``celery -A kubeboot.workers.celery_app worker|inspect|...``: the app, built on first use from the
    environment (``KUBEBOOT_REDIS_URL``, or the embedded Redis). A worker started this way takes its
    role, node and root from ``KUBEBOOT_WORKER_*`` (``tasks.runtime``); ``kubeboot worker`` sets them."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from kubeboot.workers.services import Services

    role = _cli_role()
    svc = Services.connect()
    app = svc.app([q for q in [_worker_queue()] if q], role=role)
    globals()["app"] = app
    return app


def _cli_role() -> str:
    """The role of the app ``celery -A`` loads. A worker must say which it is: with no role it would get
    the settings of one by accident (a node-shaped ``-Q node.cp1`` worker with the control worker's remote
    control and task names), so ``celery ... worker`` without ``KUBEBOOT_WORKER_ROLE`` exits 2. Any other
    command (``inspect``, ``report``, ``events``) only sends and reads: ``client``, as the CLI."""
    import os

    import click

    from kubeboot.tasks.runtime import ENV_NODE_ID, ENV_ROLE
    from kubeboot.workers.cli_common import BAD_INPUT, fail

    role = os.environ.get(ENV_ROLE, "")
    context = click.get_current_context(silent=True)
    command = context.invoked_subcommand if context is not None else None
    if role == "node" and not os.environ.get(ENV_NODE_ID):
        fail(f"{ENV_ROLE}=node: {ENV_NODE_ID} must name the node this worker serves", BAD_INPUT)
    if role in ("node", "control"):
        return role
    if role:
        fail(f"{ENV_ROLE}={role}: expected node or control", BAD_INPUT)
    if command == "worker":
        fail(f"celery worker: {ENV_ROLE} is not set (node or control); `kubeboot worker node --id ID` and "
             "`kubeboot worker control` set it", BAD_INPUT)
    return "client"


def _worker_queue() -> str:
    import os

    from kubeboot.tasks.runtime import ENV_NODE_ID
    from kubeboot.workflows.routing import node_queue

    node_id = os.environ.get(ENV_NODE_ID, "")
    return node_queue(node_id) if node_id else ""
