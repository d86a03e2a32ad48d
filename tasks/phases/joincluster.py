"""Discovery and the cluster's configuration, done once per join and kept in the run (kubeadm's lazy
``data.TLSBootstrapCfg()`` and ``data.InitCfg()``, which any join phase may trigger).

Reads: cluster-info (``tasks.discovery``), then with the TLS bootstrap token ``kube-system/kubeadm-config``
(``kubeadm:nodes-kubeadm-config``) and ``kube-system/kubelet-config`` (``kubeadm:kubelet-config``).
File discovery starts from the kubeconfig the join carries (read where it was submitted) or from an
https URL the node fetches; it never reads a local path on the node.
Writes: the run secrets ``join.cluster-info``, ``join.cluster``, ``join.discovery-since`` (see
``joincontext``); sets ``ctx.cfg`` to the join's InitConfig.

One attempt polls once: kubeadm polls every 5 s up to ``timeouts.discovery``; here a discovery that is
not there yet is a ``TemporaryError(5 s)`` and the deadline counts from the first attempt, then it is
kubeadm's error ("couldn't validate the identity of the API Server: <last error>"). An API server that
cannot be trusted (bad signature, CA not pinned) fails at once. A token the API server refuses (401)
is unknown or expired: that is said plainly, and it fails at once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from kubeboot.config import constants as c
from kubeboot.config.duration import format_duration
from kubeboot.config.models import ClusterConfiguration, dump
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import discovery as disc
from kubeboot.tasks import goyaml, kubeapi
from kubeboot.tasks.errors import PermanentError, TemporaryError
from kubeboot.tasks.phases.joincontext import (
    CLUSTER,
    CLUSTER_INFO,
    DISCOVERY_SINCE,
    JoinNodeContext,
    cluster_info,
    stored_cluster,
)

IDENTITY = "couldn't validate the identity of the API Server"


def _now() -> datetime:
    return datetime.now(UTC)


def _discover(ctx: JoinNodeContext) -> disc.ClusterInfo:
    join = ctx.join
    td = join.token_discovery
    if td is not None:
        pins = [] if td.unsafeSkipCAVerification and not td.caCertHashes else list(td.caCertHashes)
        return disc.token_discovery(td.apiServerEndpoint, td.token, pins, ctx.fetch)
    assert join.join.discovery.file is not None
    source = join.join.discovery.file.kubeConfigPath
    text = join.discovery_kubeconfig  # a local file's text, carried in the run (config.join_discovery)
    return disc.file_discovery(_download_discovery_file(source) if text is None else text, source, ctx.fetch)


def _download_discovery_file(source: str) -> str:
    """An https discovery URL, fetched by the joining node as kubeadm does; a local file is never read
    here: its text came with the join (the path is of the machine that submitted it)."""
    if not source.startswith("https://"):
        raise disc.DiscoveryError(f"the discovery file {source} was not carried with the join; submit it again")
    import urllib.request

    try:  # the host's CA bundle verifies an https discovery URL, as in kubeadm
        with urllib.request.urlopen(source, timeout=disc.REQUEST_TIMEOUT) as resp:
            return str(resp.read().decode())
    except OSError as e:
        raise disc.DiscoveryPending(f"failed to load the discovery file {source}: {e}") from None


def discover(ctx: JoinNodeContext, now: datetime | None = None) -> disc.ClusterInfo:
    """The trusted cluster-info, from the run or from one discovery attempt (see the module docstring)."""
    known = cluster_info(ctx)
    if known is not None:
        return known
    now = now or _now()
    since_raw = ctx.secrets.get(DISCOVERY_SINCE)
    since = datetime.fromisoformat(since_raw.decode()) if since_raw else now
    if not since_raw:
        ctx.secrets.put(DISCOVERY_SINCE, now.isoformat().encode())
    try:
        info = _discover(ctx)
    except disc.DiscoveryError as e:
        raise PermanentError(f"{IDENTITY}: {e}") from None
    except disc.DiscoveryPending as e:
        timeout = ctx.join.join.timeouts.seconds("discovery")
        if (now - since).total_seconds() >= timeout:
            raise PermanentError(f"{IDENTITY}: {e} (gave up after {format_duration(timeout)}, "
                                 "timeouts.discovery)") from None
        raise TemporaryError(f"{IDENTITY} yet: {e}", disc.RETRY_INTERVAL) from None
    ctx.secrets.put(CLUSTER_INFO, info.kubeconfig.encode())
    return info


def bootstrap_client(ctx: JoinNodeContext, info: disc.ClusterInfo) -> Any:
    """An API client authenticated with the TLS bootstrap token, at the discovered server."""
    text = disc.bootstrap_kubeconfig(info, ctx.join.tls_bootstrap_token, c.DEFAULT_CLUSTER_NAME)
    return kubeapi.api_client(text.encode())


def read_configmap(api: Any, namespace: str, name: str) -> dict[str, Any]:
    """One ConfigMap read with the bootstrap token: 401 is a token the cluster does not know (any more)."""
    what = f"unable to read the ConfigMap {namespace}/{name}"
    try:
        return kubeapi.call(lambda: kubeapi.request(api, "GET", kubeapi.object_path("ConfigMap", namespace, name)),
                            what)
    except kubeapi.ApiException as e:
        if e.status == 401:
            raise PermanentError(f"{what}: the bootstrap token was refused (401 Unauthorized): it is unknown to the "
                                 "cluster or has expired; create a new one with `kubeadm token create "
                                 "--print-join-command` on a control-plane node") from None
        if e.status == 404:
            raise PermanentError(f"{what}: it does not exist; was this cluster initialised by kubeadm or "
                                 "kubeboot (upload-config)?") from None
        raise TemporaryError(f"{what}: {kubeapi.describe(e)}") from e


def _cluster_configuration(text: str) -> ClusterConfiguration:
    from pydantic import ValidationError

    from kubeboot.config.v1beta3 import convert_document

    doc = goyaml.load(text) or {}
    if doc.get("apiVersion") == c.V1BETA3:
        doc = convert_document(doc, "kubeadm-config")
    try:
        return ClusterConfiguration.model_validate(doc)
    except ValidationError as e:
        raise PermanentError(f"unable to fetch the kubeadm-config ConfigMap: its ClusterConfiguration does not "
                             f"load: {e.errors()[0]['msg']} at {'.'.join(map(str, e.errors()[0]['loc']))}") from None


def fetch_cluster(ctx: JoinNodeContext, info: disc.ClusterInfo) -> dict[str, Any]:
    ctx.log("preflight", f'Reading configuration from the "{c.KUBEADM_CONFIG_CONFIGMAP}" ConfigMap in namespace '
                         f'"{c.NAMESPACE_SYSTEM}"...')
    ctx.log("preflight", "Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.")
    api = bootstrap_client(ctx, info)
    kubeadm_cm = read_configmap(api, c.NAMESPACE_SYSTEM, c.KUBEADM_CONFIG_CONFIGMAP)
    cluster = _cluster_configuration(str((kubeadm_cm.get("data") or {}).get(c.CLUSTER_CONFIGURATION_KEY) or ""))
    kubelet_cm = read_configmap(api, c.NAMESPACE_SYSTEM, c.KUBELET_CONFIG_CONFIGMAP)
    kubelet = goyaml.load(str((kubelet_cm.get("data") or {}).get(c.KUBELET_CONFIG_KEY) or "")) or {}
    return {"ClusterConfiguration": dump(cluster), "kubelet": kubelet}


def ensure_cluster(ctx: JoinNodeContext) -> InitConfig:
    """Discovery and the cluster's configuration (from the run when done before); sets ``ctx.cfg``."""
    cfg = stored_cluster(ctx.join, ctx.secrets.get)
    if cfg is None:
        info = discover(ctx)
        ctx.secrets.put(CLUSTER, json.dumps(fetch_cluster(ctx, info)).encode())
        cfg = stored_cluster(ctx.join, ctx.secrets.get)
        assert cfg is not None
    ctx.cfg = cfg
    return cfg


def trusted_cluster(ctx: JoinNodeContext) -> disc.ClusterInfo:
    ensure_cluster(ctx)
    info = cluster_info(ctx)
    assert info is not None  # ensure_cluster stores it first
    return info
