"""``kubeboot worker node|control`` and ``kubeboot flower``: the long-running processes."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from kubeboot.workers.cli_common import services


@click.group("worker")
def worker_group() -> None:
    """Run a Celery worker: one per node (node-local phases) and one or more control workers (API phases)."""


# Hidden: extra modules the worker imports at start (Celery's ``-I``), e.g. a plugin that adds or wraps
# phases. Imported in the main process before the pool forks, so every child sees them.
_INCLUDE = click.option("--include", "includes", multiple=True, hidden=True, metavar="MODULE",
                        help="Import MODULE at worker start (repeatable).")


_LOGLEVEL = click.option("--loglevel", default="INFO", show_default=True,
                         type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False))


def _register_sandbox_kubelet() -> None:
    """The sandbox's kubelet driver lives outside the production packages; only this entry point
    (the top layer) may bring it in, and only when asked for."""
    from kubeboot.sandbox.kubelet.driver import SandboxKubelet
    from kubeboot.tasks.kubelet import NodeInfo, register_driver

    def factory(info: NodeInfo) -> SandboxKubelet:
        return SandboxKubelet(info.root, info.node_name, info.address)

    register_driver("sandbox", factory)


def _preload_phases(role: str) -> None:
    """Import the phase modules of ``role`` in the main process, before the pool forks: every child
    then starts with them (their pages shared with the parent) instead of importing them in its first
    phase. Only what the role needs: the ``kubernetes`` client (~40 MiB per process, ~0.4 s to import)
    is loaded for the control role alone; a node phase that talks to the API imports it when it runs
    (``tasks.kubeapi`` is lazy), so a node worker that writes files and drives the kubelet never does."""
    import importlib

    from kubeboot.workflows.phase import walk
    from kubeboot.workflows.registry import WORKFLOWS

    for workflow, roots in WORKFLOWS.items():
        for placed in walk(roots, workflow):
            if placed.phase.action and placed.phase.target == role:
                importlib.import_module(placed.phase.action.partition(":")[0])
    if role == "control":
        from kubeboot.tasks import kubeapi

        kubeapi.preload()


def _freeze_before_fork() -> None:
    """Right before the pool forks a child: collect, then ``gc.freeze()`` every object the main process
    holds. The child's garbage collector then never walks (and so never writes to) the parent's objects,
    whose pages stay shared instead of being copied into each child (CPython's advice for fork without
    exec, see the ``gc`` docs)."""
    import gc

    from celery import signals

    def freeze(**_kw: object) -> None:
        gc.collect()
        gc.freeze()

    signals.worker_before_create_process.connect(freeze, weak=False)


def _run_worker(*, role: str, queue: str, name: str, node_id: str, root: str, kubelet: str,
                concurrency: int, loglevel: str, includes: tuple[str, ...] = (), address: str = "",
                also: tuple[str, ...] = ()) -> None:
    from kubeboot.config.errors import ConfigError
    from kubeboot.tasks.runtime import WorkerRuntime, install
    from kubeboot.workers.cli_common import BAD_INPUT, fail

    svc = services()
    app = svc.app(extra_queues=[queue, *also], role=role)
    if kubelet == "sandbox":
        _register_sandbox_kubelet()
    rt = WorkerRuntime(role=role, redis_url=svc.redis_url, settings=svc.settings, node_id=node_id,
                       root=Path(root).resolve(), kubelet_name=kubelet, address=address, queues=(queue, *also))
    try:
        if role == "node" and svc.settings.redis_url is None:
            # The embedded setup: the control side shares this state directory, so the node's keys are
            # made and pinned here, as `kubeboot deploy node-key` and `register-node` would.
            from kubeboot.tasks.trust.keyring import provision_node

            provision_node(svc.settings, node_id)
        keys = rt.keyring  # now: a worker without its keys must not start, then refuse every task
    except ConfigError as e:
        fail(str(e), BAD_INPUT)
    install(rt)
    _preload_phases(role)
    _freeze_before_fork()
    click.echo(f"[worker] {name}: queue {queue}, root {root if role == 'node' else '-'}, "
               f"broker {svc.redis_url.split('@')[-1]}, keys: {keys.role} side")
    # The worker itself, not ``app.worker_main``: Celery's command line loads every installed plugin
    # command at import (Flower with tornado, prometheus and urllib3; click-repl with prompt_toolkit):
    # ~24 MiB and ~430 modules in every worker process that none of them uses.
    from celery.utils.log import mlevel

    worker = app.Worker(
        hostname=name, queues=[queue, *also], concurrency=concurrency, loglevel=mlevel(loglevel.upper()),
        pool="prefork",
        # No mingle/gossip: workers share nothing but the broker, and start-up stays fast.
        without_mingle=True, without_gossip=True,
        include=list(includes) or None,
    )
    worker.start()
    raise SystemExit(worker.exitcode)


@worker_group.command("node")
@click.option("--id", "worker_id", required=True, help="Worker id: the node it serves (its queue is node.<id>).")
@click.option("--root", default="/", show_default=True, type=click.Path(file_okay=False),
              help="Node root: every kubeadm path is written under it.")
@click.option("--kubelet", type=click.Choice(["none", "systemd", "sandbox"]), default="none", show_default=True,
              help="How kubelet-start starts the kubelet on this node (sandbox: a simulated machine).")
@click.option("--address", default="", metavar="IP",
              help="The node's own address when several simulated nodes share this host: what its manifests "
                   "bind to 127.0.0.1 lives there, and local health checks go there.")
@click.option("--concurrency", default=1, show_default=True, help="Node phases of one node run one at a time.")
@_LOGLEVEL
@_INCLUDE
def worker_node(worker_id: str, root: str, kubelet: str, address: str, concurrency: int, loglevel: str,
                includes: tuple[str, ...]) -> None:
    """Serve the node-local phases of node ID (files under --root, the kubelet)."""
    from kubeboot.workflows.routing import node_queue

    _run_worker(role="node", queue=node_queue(worker_id), name=f"node-{worker_id}@{socket.gethostname()}",
                node_id=worker_id, root=root, kubelet=kubelet, concurrency=concurrency, loglevel=loglevel,
                includes=includes, address=address)


@worker_group.command("control")
@click.option("--concurrency", default=2, show_default=True)
@_LOGLEVEL
@click.option("--name", default="control", show_default=True, help="Worker name (unique per host).")
@_INCLUDE
def worker_control(concurrency: int, loglevel: str, name: str, includes: tuple[str, ...]) -> None:
    """Serve the control queue (Kubernetes API phases, run bookkeeping, clusters and batches) and the
    dry-run queue (every phase of a dry run, node phases in a temporary root per run and node)."""
    from kubeboot.workflows.routing import CONTROL_QUEUE, DRY_RUN_QUEUE

    _run_worker(role="control", queue=CONTROL_QUEUE, name=f"{name}@{socket.gethostname()}", node_id="",
                root="/", kubelet="none", concurrency=concurrency, loglevel=loglevel, includes=includes,
                also=(DRY_RUN_QUEUE,))


@click.command("flower")
@click.option("--port", type=int, help="Port (default KUBEBOOT_FLOWER_PORT or 5555).")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Listen address; beyond loopback only with --basic-auth or --auth.")
@click.option("--basic-auth", help="user:password[,user:password] (default KUBEBOOT_FLOWER_BASIC_AUTH[_FILE]).")
@click.option("--auth", "auth_regex", metavar="REGEX",
              help="Flower's OAuth: e-mail addresses allowed (with --auth-provider and FLOWER_OAUTH2_* set).")
@click.option("--auth-provider", metavar="CLASS", help="Flower's OAuth login handler, e.g. "
              "flower.views.auth.GithubLoginHandler.")
def flower(port: int | None, address: str, basic_auth: str | None, auth_regex: str | None,
           auth_provider: str | None) -> None:
    """Start Flower on the same broker: every run's phases, live. Read-only: it shows runs, it does not
    control workers. It needs no kubeboot key (task messages hold ids and signatures, never secrets)."""
    from kubeboot.config.errors import ConfigError
    from kubeboot.config.settings import Settings
    from kubeboot.workers.celery_redaction import flower_logging
    from kubeboot.workers.cli_common import BAD_INPUT, fail

    try:
        auth = basic_auth or Settings.from_env().flower_basic_auth
    except ConfigError as e:
        fail(str(e), BAD_INPUT)
    if not (auth or auth_regex) and not is_loopback(address):  # before anything starts or connects
        fail(f"kubeboot flower --address {address}: listening beyond this machine needs --basic-auth "
             "(or KUBEBOOT_FLOWER_BASIC_AUTH[_FILE]) or --auth", BAD_INPUT)
    svc = services()
    app = svc.app()
    flower_logging()
    # --enable_events=False: workers send events on their own (worker_send_task_events); Flower's start-up
    # broadcast asking them to would need a Redis user that may publish commands to workers.
    argv = ["flower", f"--port={port or svc.settings.flower_port}", f"--address={address}", "--read_only=True",
            "--enable_events=False"]
    if auth:
        argv.append(f"--basic-auth={auth}")
    if auth_regex:
        argv.append(f"--auth={auth_regex}")
    if auth_provider:
        argv.append(f"--auth_provider={auth_provider}")
    click.echo(f"[flower] {svc.flower_url()}  (broker {svc.redis_url.split('@')[-1]})")
    app.start(argv)


def is_loopback(address: str) -> bool:
    """Whether Flower on ``address`` is reachable from this machine only ('' and 0.0.0.0 mean every interface)."""
    import ipaddress

    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
