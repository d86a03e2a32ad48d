"""Phases ``check-etcd`` and ``etcd-join`` of a control-plane join (kubeadm phases/etcd/local.go
CreateStackedEtcdStaticPodManifestFile, util/etcd/etcd.go; kubeadm-spec 3.3 and 6.2).

Reads: ``admin.conf`` (the etcd Pods' ``kubeadm.kubernetes.io/etcd.advertise-client-urls`` annotations
name the first endpoints; the member list then names them all), the etcd CA and
``etcd/healthcheck-client`` certificate. Writes: the etcd data directory (0700), ``etcd.yaml``, the
run secret ``join.etcd`` (when each wait started), etcd's membership.

``etcd-join`` is the one join phase that is not naturally idempotent: a blind retry of MemberAdd adds
a second member. So every attempt, holding the cluster's membership turn (``ctx.turn``; one change at a
time per cluster, as etcd admits one learner at a time):
1. reconciles the member list: a member whose peer URL is this node's (``https://<adv>:2380``) was added
   by an earlier attempt of this join and is reused, learner or voter, never added twice;
2. otherwise adds this node as a learner (MemberAddAsLearner); "too many learner members" (another
   learner still catching up) is a short retry; a data directory left by a member that no longer
   exists is moved aside, so the new member starts empty;
3. writes ``etcd.yaml`` with the full ``--initial-cluster`` and ``--initial-cluster-state=existing``
   (kept as written when a previous attempt wrote it, so a retry does not restart a running member);
   with the RootlessControlPlane gate the data directory and etcd's keys are chowned to kubeadm-etcd
   and the Pod runs as that user first (``tasks.rootless``, kubeadm's prepareAndWriteEtcdStaticPod);
4. promotes the learner once it has caught up ("can only promote a learner member which is in sync
   with leader" is a retry, bounded by ``timeouts.etcdAPICall``);
5. waits until every member answers its status (kubeadm: 8 x 5 s), then gives the turn back.

A dry run adds no member: like kubeadm it writes ``etcd.yaml`` into the dry-run root as a first member
would have it (no member list to name) and only announces the rest.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from kubeboot.config import constants as c
from kubeboot.config.models import Arg
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import etcdclient as ec
from kubeboot.tasks import goyaml, kubeapi, rootless
from kubeboot.tasks import manifests as m
from kubeboot.tasks.errors import PermanentError, TemporaryError
from kubeboot.tasks.phases.etcd import SCRATCH_PATCHES, etcd_pod, peer_url
from kubeboot.tasks.phases.joincluster import ensure_cluster
from kubeboot.tasks.phases.joincontext import JoinNodeContext

PHASE = "etcd"
STATE = "join.etcd"  # run secret: {"promote_since": iso, "healthy_since": iso}
HEALTHY_WAIT = 8 * 5.0  # kubeadm: etcdHealthyCheckRetries x etcdHealthyCheckInterval
RETRY = 2.0
DATA_DIR_MODE = 0o700


def _now() -> datetime:
    return datetime.now(UTC)


class LearnerBusy(TemporaryError):
    """Another node's learner is catching up: this join gives its turn back while it waits, so the
    join that owns that learner (a stale one of a dead attempt, resumed) can take the turn and finish."""


# --- talking to etcd ------------------------------------------------------------------------------


def pod_endpoints(ctx: JoinNodeContext) -> list[str]:
    """The etcd client URLs the cluster's etcd Pods advertise (kubeadm getRawEtcdEndpointsFromPodAnnotation)."""
    admin = ctx.fs.read_bytes(f"{c.KUBERNETES_DIR}/{c.ADMIN_CONF}")
    if admin is None:
        raise PermanentError(f"{c.KUBERNETES_DIR}/{c.ADMIN_CONF} is missing: run control-plane-prepare/kubeconfig")
    api = kubeapi.api_client(admin)
    selector = quote(f"component={c.ETCD},tier={c.CONTROL_PLANE_TIER}")
    path = f"/api/v1/namespaces/{c.NAMESPACE_SYSTEM}/pods?labelSelector={selector}"
    pods = kubeapi.call(lambda: kubeapi.request(api, "GET", path), "could not list the etcd Pods")
    found = [str(((p.get("metadata") or {}).get("annotations") or {}).get(c.ETCD_ADVERTISE_ANNOTATION) or "")
             for p in pods.get("items") or []]
    endpoints = [e for e in found if e]
    if not endpoints:
        raise TemporaryError("could not retrieve the list of etcd endpoints: no etcd Pod with the "
                             f"{c.ETCD_ADVERTISE_ANNOTATION} annotation yet", RETRY)
    return endpoints


def etcd_client(ctx: JoinNodeContext, cfg: InitConfig) -> ec.EtcdClient:
    """kubeadm NewFromCluster: endpoints from the Pods, then every started member's client URLs."""
    pki = cfg.pki_dir
    files = [ctx.fs.read_bytes(f"{pki}/etcd/{n}") for n in ("ca.crt", "healthcheck-client.crt",
                                                             "healthcheck-client.key")]
    if any(f is None for f in files):
        raise PermanentError(f"the etcd CA and healthcheck-client certificate are needed in {pki}/etcd: run "
                             "control-plane-prepare/download-certs and control-plane-prepare/certs")
    ca, cert, key = (f or b"" for f in files)
    client = ec.EtcdClient(pod_endpoints(ctx), ca, cert, key)
    try:
        synced = [u for mem in client.members() for u in mem.client_urls]
    except ec.EtcdUnavailable as e:
        raise TemporaryError(f"error syncing endpoints with etcd: {e}", RETRY) from None
    return ec.EtcdClient(synced or client.endpoints, ca, cert, key)


# --- state across attempts ------------------------------------------------------------------------


def _state(ctx: JoinNodeContext) -> dict[str, str]:
    raw = ctx.secrets.get(STATE)
    return dict(json.loads(raw)) if raw else {}


def _since(ctx: JoinNodeContext, key: str) -> float:
    """Seconds since the wait ``key`` started (0 when it starts now)."""
    state = _state(ctx)
    if key not in state:
        state[key] = _now().isoformat()
        ctx.secrets.put(STATE, json.dumps(state).encode())
        return 0.0
    return (_now() - datetime.fromisoformat(state[key])).total_seconds()


# --- the steps ------------------------------------------------------------------------------------


def initial_cluster(members: list[ec.Member], mine: str, node_name: str) -> str:
    """kubeadm's --initial-cluster of a joining member: every member, this one under its node name,
    an unstarted other one under its hex id (concurrent joins leave members without a name)."""
    parts = []
    for mem in members:
        peer = mem.peer_urls[0] if mem.peer_urls else ""
        name = node_name if peer == mine else (mem.name or mem.hex_id)
        parts.append(f"{name}={peer}")
    return ",".join(parts)


def joined_command(command: list[str], cluster: str, extra: list[Any]) -> list[str]:
    """The init command with ``--initial-cluster`` set and ``--initial-cluster-state=existing``; the
    user's etcd extraArgs still win, and the list stays sorted as ArgumentsToCommand sorts it."""
    pairs = [a.removeprefix("--").split("=", 1) for a in command[1:]]
    args = [Arg(name=n, value=v) for n, v in pairs]
    user = {a.name for a in extra}
    for name, value in (("initial-cluster", cluster), ("initial-cluster-state", "existing")):
        if name not in user:
            m.set_arg(args, name, value)
    return [command[0], *(f"--{a.name}={a.value}" for a in sorted(args, key=lambda a: (a.name, a.value)))]


def existing_initial_cluster(ctx: JoinNodeContext) -> str | None:
    """The --initial-cluster of an etcd.yaml an earlier attempt wrote for joining (state existing)."""
    import yaml

    text = ctx.fs.read_text(m.manifest_path(c.ETCD))
    if not text:
        return None
    try:
        command = goyaml.load(text)["spec"]["containers"][0]["command"]
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        return None
    if "--initial-cluster-state=existing" not in command:
        return None
    return next((a.split("=", 1)[1] for a in command if a.startswith("--initial-cluster=")), None)


def write_manifest(ctx: JoinNodeContext, cfg: InitConfig, cluster: str | None) -> bool:
    """etcd.yaml for joining (``cluster`` None: a dry run's, without members); True when written.
    RootlessControlPlane applies before the patches, as in kubeadm's prepareAndWriteEtcdStaticPod:
    users and groups, owners of the data directory and keys, the Pod's security contexts."""
    pod = etcd_pod(cfg)
    if cluster is not None:
        box = pod["spec"]["containers"][0]
        box["command"] = joined_command(box["command"], cluster, cfg.cluster.local_etcd.extraArgs)
    pod = rootless.apply(ctx.fs, cfg, c.ETCD, pod, lambda line: ctx.log(PHASE, line))
    announced = ctx.scratch.setdefault(SCRATCH_PATCHES, set())
    return m.write_static_pod(ctx.fs, c.ETCD, m.finish_pod(c.ETCD, pod, cfg.patches_dir, ctx.out, announced))


def _set_stale_data_aside(ctx: JoinNodeContext, cfg: InitConfig) -> None:
    """Data of a member that is no longer in the cluster would make the new member refuse to start."""
    data_dir = ctx.fs.path(cfg.cluster.local_etcd.dataDir)
    if not (data_dir / "member").exists():
        return
    aside = data_dir.with_name(f"{data_dir.name}.stale-{_now():%Y%m%dT%H%M%S}")
    data_dir.rename(aside)
    data_dir.mkdir(mode=DATA_DIR_MODE, parents=True)
    ctx.log(PHASE, f"Moved the data of a removed etcd member of this node aside to {aside.name}")


def _add_learner(ctx: JoinNodeContext, client: ec.EtcdClient, cfg: InitConfig, peer: str) -> list[ec.Member]:
    _set_stale_data_aside(ctx, cfg)
    try:
        _, members = client.add_learner(peer)
    except ec.EtcdError as e:
        if ec.TOO_MANY_LEARNERS in str(e):
            learners = ", ".join(f"{mem.name or mem.hex_id} ({mem.peer_urls[0]})" for mem in client.members()
                                 if mem.is_learner)
            raise LearnerBusy(f"etcd has a learner member still catching up ({learners}); etcd admits one at "
                              f"a time: {e}", 5.0) from None
        if ec.PEER_URL_EXISTS not in str(e):
            raise TemporaryError(f"could not add the etcd member {peer}: {e}", RETRY) from None
        members = client.members()  # added by this very attempt, whose answer was lost
    ctx.log(PHASE, "Announced new etcd member joining to the existing etcd cluster")
    return members


def _promote(ctx: JoinNodeContext, client: ec.EtcdClient, member: ec.Member) -> None:
    if not member.is_learner:
        return
    waited = _since(ctx, "promote_since")
    try:
        client.promote(member.id)
    except ec.EtcdError as e:
        timeout = ctx.cfg.init.timeouts.seconds("etcdAPICall")
        if waited >= timeout:
            raise PermanentError(f"the etcd learner {member.hex_id} could not be promoted within {timeout:.0f}s "
                                 f"(timeouts.etcdAPICall): {e}") from None
        raise TemporaryError(f"the etcd learner {member.hex_id} cannot be promoted yet: {e}", RETRY) from None


def _wait_healthy(ctx: JoinNodeContext, client: ec.EtcdClient) -> None:
    state = _state(ctx)
    if "healthy_since" not in state:
        ctx.log(PHASE, f"Waiting for the new etcd member to join the cluster. This can take up to "
                       f"{HEALTHY_WAIT:.0f}s")
    waited = _since(ctx, "healthy_since")
    members = client.members()
    down = []
    for mem in members:
        if mem.is_learner or not mem.client_urls:
            down.append(f"{mem.name or mem.hex_id} is {'a learner' if mem.is_learner else 'not started'}")
            continue
        try:
            client.status(mem.client_urls[0])
        except (ec.EtcdError, ec.EtcdUnavailable) as e:
            down.append(f"{mem.name}: {e}")
    if not down:
        return
    if waited >= HEALTHY_WAIT:
        raise PermanentError(f"timeout waiting for etcd cluster to be available: {'; '.join(down)}")
    raise TemporaryError(f"the etcd cluster is not available yet: {'; '.join(down)}", RETRY)


def join_etcd(ctx: JoinNodeContext, cfg: InitConfig) -> None:
    client = etcd_client(ctx, cfg)
    try:
        peer = peer_url(cfg)
        members = client.members()
        mine = next((mem for mem in members if peer in mem.peer_urls), None)
        if mine is None:
            members = _add_learner(ctx, client, cfg, peer)
        elif not ctx.fs.exists(m.manifest_path(c.ETCD)):
            ctx.log(PHASE, f"Using the etcd member {mine.hex_id} ({peer}) an earlier attempt of this join added")
        if write_manifest(ctx, cfg, existing_initial_cluster(ctx) or initial_cluster(members, peer, cfg.node_name)):
            ctx.log(PHASE, f'Creating static Pod manifest for "{c.ETCD}"')  # not again by a retry
        current = next((mem for mem in client.members() if peer in mem.peer_urls), None)
        if current is None:
            raise TemporaryError(f"the etcd member {peer} is not in the member list yet", RETRY)
        _promote(ctx, client, current)
        _wait_healthy(ctx, client)
    except ec.EtcdUnavailable as e:
        raise TemporaryError(f"etcd is not reachable: {e}", RETRY) from None
    finally:
        client.close()


def run_etcd_join(ctx: JoinNodeContext) -> None:
    if not ctx.join.is_control_plane:
        return
    cfg = ensure_cluster(ctx)
    if cfg.cluster.is_external_etcd:
        ctx.log("control-plane-join", "Using external etcd - no local stacked instance added")
        return
    if ctx.join.join.dryRun:
        ctx.log("control-plane-join", f'Would ensure that "{cfg.cluster.local_etcd.dataDir}" directory is present')
        ctx.log(PHASE, f"Would add etcd member: {peer_url(cfg)}")
        ctx.log(PHASE, f'Creating static Pod manifest for "{c.ETCD}"')
        write_manifest(ctx, cfg, None)
        ctx.log(PHASE, "Would wait for the new etcd member to join the cluster")
        return
    ctx.fs.mkdir(cfg.cluster.local_etcd.dataDir, mode=DATA_DIR_MODE)
    holder = ctx.turn.acquire() if ctx.turn is not None else ""
    if holder:
        raise TemporaryError(f"waiting for the etcd membership turn: {holder}", RETRY)
    try:
        join_etcd(ctx, cfg)
    except (PermanentError, LearnerBusy):
        if ctx.turn is not None:
            ctx.turn.release()
        raise
    if ctx.turn is not None:
        ctx.turn.release()


def run_check_etcd(ctx: JoinNodeContext) -> None:
    """check-etcd (hidden): every member of the existing cluster answers before this node joins it."""
    if not ctx.join.is_control_plane:
        return
    cfg = ensure_cluster(ctx)
    if cfg.cluster.is_external_etcd:
        ctx.log("check-etcd", "Skipping etcd check in external mode")
        return
    ctx.log("check-etcd", "Checking that the etcd cluster is healthy")
    if ctx.join.join.dryRun:  # there is no etcd to ask
        ctx.log("check-etcd", "[dryrun] Would check that the etcd cluster is healthy")
        return
    client = etcd_client(ctx, cfg)
    try:
        for mem in client.members():
            if mem.client_urls and not mem.is_learner:
                client.status(mem.client_urls[0])
    except (ec.EtcdError, ec.EtcdUnavailable) as e:
        raise TemporaryError(f"etcd cluster is not healthy: {e}", RETRY) from None
    finally:
        client.close()
