"""What a worker process knows about itself: which node it serves, where that node's root is, how
to reach the run state. Set once by the worker launcher (``workers``), read by the task wrappers.

Node workers serve one node (``node.<id>`` queue, ``root``); the control worker serves API phases
and has no node root. Prefork children inherit the runtime through ``fork``; the launcher also
exports it in ``KUBEBOOT_WORKER_*`` variables so a spawned child can rebuild it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kubeboot.config.settings import Settings

if TYPE_CHECKING:
    import redis

    from kubeboot.config.join import JoinConfig
    from kubeboot.config.resolved import InitConfig
    from kubeboot.tasks.kubelet import KubeletDriver
    from kubeboot.tasks.state import RunStore
    from kubeboot.tasks.state.lease import Lease, LeaseKeeper
    from kubeboot.tasks.trust.keyring import Keyring

ENV_ROLE = "KUBEBOOT_WORKER_ROLE"
ENV_NODE_ID = "KUBEBOOT_WORKER_NODE_ID"
ENV_ROOT = "KUBEBOOT_WORKER_ROOT"
ENV_BROKER = "KUBEBOOT_WORKER_REDIS_URL"
ENV_KUBELET = "KUBEBOOT_WORKER_KUBELET"
ENV_ADDRESS = "KUBEBOOT_WORKER_ADDRESS"
ENV_QUEUES = "KUBEBOOT_WORKER_QUEUES"
# Scratch spaces kept per process (keys the certs phase makes ahead for its sub-phases). A control worker
# running a dry-run batch interleaves the phases of every cluster in flight: with fewer spaces than that,
# keys made ahead are evicted before use and made again (measured: +45 % CPU per cluster at 16 in flight).
_SCRATCH_RUNS = 128
_RUNS_CACHED = 256  # configs and routes kept per process: a long-lived worker serves thousands of runs
K = TypeVar("K")
V = TypeVar("V")


def _cached(cache: OrderedDict[K, V], key: K, limit: int, load: Callable[[], V]) -> V:
    """``cache[key]``, loaded on first use; past ``limit`` entries the oldest goes (a miss only costs a load)."""
    if key not in cache:
        cache[key] = load()
        while len(cache) > limit:
            cache.popitem(last=False)
    return cache[key]


@dataclass
class WorkerRuntime:
    role: str  # "node" or "control"
    redis_url: str
    settings: Settings
    node_id: str = ""
    root: Path = Path("/")
    kubelet_name: str = "none"
    # The node's own address when several simulated nodes share this host: whatever the node's
    # manifests bind to loopback lives there, so local health checks go there too.
    address: str = ""
    # The queues this worker consumes: a task whose token sends it elsewhere is refused (tasks.trust.guard).
    queues: tuple[str, ...] = ()
    _scratch: OrderedDict[tuple[str, str], dict[str, Any]] = field(default_factory=OrderedDict)
    _configs: OrderedDict[str, InitConfig] = field(default_factory=OrderedDict)
    _join_configs: OrderedDict[str, JoinConfig] = field(default_factory=OrderedDict)
    _routes: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)

    def export(self) -> None:
        os.environ.update({ENV_ROLE: self.role, ENV_NODE_ID: self.node_id, ENV_ROOT: str(self.root),
                           ENV_BROKER: self.redis_url, ENV_KUBELET: self.kubelet_name, ENV_ADDRESS: self.address,
                           ENV_QUEUES: ",".join(self.queues)})

    @classmethod
    def from_env(cls) -> WorkerRuntime:
        """A spawned child, or a worker started as ``celery -A kubeboot.workers.celery_app worker``."""
        settings = Settings.from_env()
        redis_url = os.environ.get(ENV_BROKER) or settings.redis_url
        if not redis_url:
            raise RuntimeError(f"{ENV_BROKER} or KUBEBOOT_REDIS_URL must name the run state's Redis")
        return cls(
            role=os.environ.get(ENV_ROLE, "control"),
            redis_url=redis_url,
            settings=settings,
            node_id=os.environ.get(ENV_NODE_ID, ""),
            root=Path(os.environ.get(ENV_ROOT, "/")),
            kubelet_name=os.environ.get(ENV_KUBELET, "none"),
            address=os.environ.get(ENV_ADDRESS, ""),
            queues=tuple(q for q in os.environ.get(ENV_QUEUES, "").split(",") if q),
        )

    @cached_property
    def redis(self) -> redis.Redis:
        import redis as redis_lib

        return redis_lib.Redis.from_url(self.redis_url, health_check_interval=30,
                                        **self.settings.redis_ssl(self.redis_url))

    @cached_property
    def keyring(self) -> Keyring:
        """This worker's keys: a node worker's own key pair and pin of the control side; the control
        worker's master key (``tasks.trust.keyring``)."""
        from kubeboot.tasks.trust.keyring import keyring_for

        return keyring_for(self.settings, self.role, worker=self.node_id)

    @cached_property
    def store(self) -> RunStore:
        from kubeboot.tasks.state import RunStore

        return RunStore(self.redis, self.keyring, secret_ttl=self.settings.secret_ttl,
                        lock_ttl=self.settings.lock_ttl, task_ttl=self.settings.task_ttl)

    @cached_property
    def leases(self) -> LeaseKeeper:
        """Keeps the leases of the phases this process runs (``tasks.state.lease``)."""
        from kubeboot.tasks.state.lease import LEASE_TTL, LeaseKeeper

        def renew(lease: Lease) -> bool:
            return self.store.renew_lease(lease.run_id, lease.node, lease.path, owner=lease.owner, lease=LEASE_TTL)

        return LeaseKeeper(renew)

    def config(self, run_id: str) -> InitConfig:
        """The run's config (decrypted from the run state), cached: a run's config never changes."""
        from kubeboot.config.loader import build_init_config

        return _cached(self._configs, run_id, _RUNS_CACHED, lambda: build_init_config(
            self.store.run_config(run_id), f"run {run_id}", fill_node_defaults=False))

    def join_config(self, run_id: str) -> JoinConfig:
        """A join run's JoinConfiguration (decrypted from the run state), cached like ``config``; a discovery
        file comes from the run (read where the join was submitted), never from this machine."""
        from kubeboot.config.join import build_join_config

        return _cached(self._join_configs, run_id, _RUNS_CACHED,
                       lambda: build_join_config(self.store.run_config(run_id), f"run {run_id}", run=True))

    # --- dry runs (tasks.dryrun) ---------------------------------------------------------------------
    def route(self, run_id: str) -> dict[str, Any]:
        """The run's route (``RunRecord.route``, from its verified metadata), cached: it never changes."""
        import json

        return _cached(self._routes, run_id, _RUNS_CACHED,
                       lambda: dict(json.loads(self.store.meta(run_id).get("route") or "{}")))

    def dry_run(self, run_id: str) -> bool:
        return bool(self.route(run_id).get("dryRun"))

    def dry_run_scope(self, run_id: str) -> Path:
        """The run's dry-run directory: its cluster run's when it has one (one fake API per cluster)."""
        from kubeboot.tasks import dryrun

        scope = str(self.route(run_id).get("scope") or run_id)
        return dryrun.scope_dir(self.settings.state_dir / dryrun.DRY_RUN_DIR, scope)

    def dry_run_root(self, run_id: str, node: str) -> Path:
        return self.dry_run_scope(run_id) / "nodes" / node

    def dry_run_session(self, run_id: str, out: Any, *, workflow: str) -> Any:
        from kubeboot.tasks import dryrun

        return dryrun.session(self.dry_run_scope(run_id) / "api", out, workflow=workflow, show_secrets=False)

    def scratch(self, run_id: str, node: str) -> dict[str, Any]:
        """Per-(run, node) scratch shared by the phases this process runs (e.g. keys made ahead)."""
        return _cached(self._scratch, (run_id, node), _SCRATCH_RUNS, dict)

    @cached_property
    def kubelet(self) -> KubeletDriver | None:
        from kubeboot.tasks.kubelet import NodeInfo, make_driver

        return make_driver(self.kubelet_name, NodeInfo(self.root, self.node_id, self.address))

    @property
    def address_map(self) -> dict[str, str]:
        """Loopback names → the node's own address (empty: the node is the host)."""
        return loopback_map(self.address)


def loopback_map(address: str) -> dict[str, str]:
    if not address:
        return {}
    return {"127.0.0.1": address, "localhost": address, "::1": address}


_current: WorkerRuntime | None = None


def install(runtime: WorkerRuntime) -> None:
    global _current  # noqa: PLW0603 - one runtime per process, set once by the launcher
    _current = runtime
    runtime.export()


def current() -> WorkerRuntime:
    global _current  # noqa: PLW0603
    if _current is None:
        _current = WorkerRuntime.from_env()
    return _current
