"""The context a join phase gets when it runs as a task (``PhaseTask`` of a ``kubeboot.join.*`` task).

Reads: the run's config documents (the JoinConfiguration, encrypted in the run state) and the run
secrets discovery left (``tasks.phases.joincontext``). Writes: nothing itself.

The etcd membership turn of a node phase is the cluster's control-plane join lock
(``tasks.state.lock.control_plane_join_lock``) under ``turn_cluster``: the cluster's name for people
and its CA's public-key hash for uniqueness, both learnt by discovery (clusters sharing one Redis are
often all named ``kubernetes``, kubeadm's default, and must not wait for each other's etcd changes).
One membership change at a time per cluster, the holder being the join run; re-entrant for that run (a
retried or resumed etcd-join keeps its turn), recovered when the holding run has ended, and lapsing with
``KUBEBOOT_LOCK_TTL`` if its worker vanished. It is held from MemberAddAsLearner to a healthy cluster
only, not for the whole join: the rest of control-plane joins run side by side.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubeboot.config.join import JoinConfig
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases.context import ControlContext, PhaseContext, SecretsHandle
from kubeboot.tasks.phases.joincontext import JoinNodeContext, cluster_info, config_for

if TYPE_CHECKING:
    from kubeboot.tasks.runtime import WorkerRuntime

_HASH_CHARS = 16  # of the CA hash in the lock's name: two clusters sharing a prefix only take turns together


def turn_cluster(ctx: JoinNodeContext) -> str:
    """The membership turn's cluster key, once discovery has run: ``<clusterName>-ca-<CA hash prefix>``."""
    info = cluster_info(ctx)
    if info is None:
        raise RuntimeError("the etcd membership turn is taken after discovery; no cluster-info in the run")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", ctx.cfg.cluster.clusterName).strip("-.") or "cluster"
    return f"{name}-ca-{info.ca_hash.partition(':')[2][:_HASH_CHARS]}"


class RedisTurn:
    """``joincontext.Turn`` over the cluster's control-plane join lock, held by the join run."""

    def __init__(self, rt: WorkerRuntime, run_id: str, cluster: Callable[[], str]) -> None:
        self._rt = rt
        self._run_id = run_id
        self._cluster = cluster  # read when used: known once discovery has run

    def _lock(self) -> Any:
        from kubeboot.tasks.state.lock import control_plane_join_lock

        return control_plane_join_lock(self._rt.redis, self._cluster(), self._rt.settings.lock_ttl)

    def acquire(self) -> str:
        from kubeboot.tasks.state.lock import LockHeldError

        lock = self._lock()
        lock.release_if_owner_finished(self._rt.store)  # a failed join's turn is free again
        try:
            lock.acquire(self._run_id)
        except LockHeldError as e:
            return str(e)
        return ""

    def release(self) -> None:
        self._lock().release(self._run_id)


def join_context(rt: WorkerRuntime, run_id: str, node: str, target: str, *, out: Callable[[str], None],
                 secrets: SecretsHandle, scratch: dict[str, Any], root: Path | None = None) -> PhaseContext:
    """``root``: the node root (a dry run's temporary one), default the worker's."""
    join = rt.join_config(run_id)
    dry = rt.dry_run(run_id)
    if dry:
        join = dry_run_discovery(rt, run_id, join, out)
    cfg = config_for(join, secrets.get)
    if target == "control":
        return ControlContext(cfg, node, out=out, secrets=secrets, scratch=scratch, address_map=rt.address_map,
                              show_secrets=False)  # out is the worker log
    ctx = JoinNodeContext(cfg, NodeFS(root or rt.root), out=out, secrets=secrets, scratch=scratch,
                          address_map=rt.address_map, kubelet=rt.kubelet, show_secrets=False, join=join)
    ctx.turn = RedisTurn(rt, run_id, lambda: turn_cluster(ctx))
    if dry and join.token_discovery is not None:
        from kubeboot.tasks import dryrun

        tracker = dryrun.Tracker(rt.dry_run_scope(run_id) / "api")
        ctx.fetch = dryrun.cluster_info_fetch(tracker, join.endpoint, join.token_discovery.token)
    return ctx


def dry_run_discovery(rt: WorkerRuntime, run_id: str, join: JoinConfig, out: Callable[[str], None]) -> JoinConfig:
    """kubeadm's mutateTokenDiscoveryForDryRun: with no cluster-info of this dry run's own (a join dry-run
    on its own), discovery reads a made-up one, whose CA is pinned in addition to the given pins."""
    from kubeboot.tasks import dryrun

    td = join.token_discovery
    if td is None or dryrun.has_cluster_info(dryrun.Tracker(rt.dry_run_scope(run_id) / "api")):
        return join
    _, pin = dryrun.fake_ca()
    out("[dryrun] Mutating the JoinConfiguration.Discovery.BootstrapToken to satisfy the dry-run without a real "
        f"cluster-info ConfigMap: CACertHash {pin}")
    changed = join.join.model_copy(deep=True)
    assert changed.discovery.bootstrapToken is not None
    changed.discovery.bootstrapToken.caCertHashes = [*td.caCertHashes, pin]
    return dataclasses.replace(join, join=changed)
