"""Phase ``etcd/local``: the static Pod manifest of a local, single-member etcd (kubeadm-spec 2.4).

Reads: the configuration; the patches directory (``etcd`` target). Writes: the etcd data directory
(``etcd.local.dataDir``, missing directories created 0700 as kubeadm's CreateDataDirectory does); then
``/etc/kubernetes/manifests/etcd.yaml`` (0600, directory 0700), only when its bytes change, so a re-run
keeps the file and its mtime, and the kubelet restarts etcd only when the manifest really changed.
With the RootlessControlPlane gate, the users and groups first, then the owner of etcd's keys and data
(``tasks.rootless``).

The Pod is kubeadm's GetEtcdPodSpec (phases/etcd/local.go) for an init: ``--initial-cluster`` holds
this member only. Flags follow the etcd version of the image tag: etcd 3.6 renamed the
``--experimental-*`` flags kubeadm sets (``--feature-gates=InitialCorruptCheck=true``,
``--watch-progress-notify-interval``), so a user pinning ``etcd.local.imageTag`` to 3.5 gets 3.5 spellings.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from kubeboot.config import constants as c
from kubeboot.config.paths import go_join
from kubeboot.config.resolved import InitConfig, join_host_port
from kubeboot.tasks import manifests as m
from kubeboot.tasks import rootless
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.phases.context import NodeContext

PHASE = "etcd"
SCRATCH_PATCHES = "patches.announced"  # ctx.scratch: patches directories already announced this run

_SEMVER = re.compile(r"^\s*v?(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def etcd_is_36(tag: str) -> bool:
    """version.ParseSemantic(tag).AtLeast(3.6.0): a pre-release of 3.6.0 is older; unparsable is older."""
    v = _SEMVER.match(tag)
    if not v:
        return False
    triple = (int(v[1]), int(v[2]), int(v[3]))
    return triple > (3, 6, 0) or (triple == (3, 6, 0) and not v[4])


def probe_endpoint(cfg: InitConfig) -> tuple[str, int, str]:
    """GetEtcdProbeEndpoint: host, port and scheme of the first ``listen-metrics-urls`` URL."""
    host, port, scheme = cfg.loopback, c.ETCD_METRICS_PORT, "HTTP"
    value = m.arg_value(cfg.cluster.local_etcd.extraArgs, "listen-metrics-urls")
    if value is None:
        return host, port, scheme
    try:
        url = urlsplit(value.split(",")[0])
        parsed_port = url.port
    except ValueError:
        return host, port, scheme
    if parsed_port is not None and 1 <= parsed_port <= 65535:
        port = parsed_port
    return url.hostname or host, port, "HTTPS" if url.scheme == "https" else "HTTP"


def client_url(cfg: InitConfig) -> str:
    return f"https://{join_host_port(cfg.advertise_address, c.ETCD_CLIENT_PORT)}"


def peer_url(cfg: InitConfig) -> str:
    return f"https://{join_host_port(cfg.advertise_address, c.ETCD_PEER_PORT)}"


def etcd_command(cfg: InitConfig) -> list[str]:
    etcd, pki, lo = cfg.cluster.local_etcd, cfg.pki_dir, cfg.loopback
    defaults = m.args(
        ("name", cfg.node_name),
        ("listen-client-urls", f"https://{join_host_port(lo, c.ETCD_CLIENT_PORT)},{client_url(cfg)}"),
        ("advertise-client-urls", client_url(cfg)),
        ("listen-peer-urls", peer_url(cfg)),
        ("initial-advertise-peer-urls", peer_url(cfg)),
        ("data-dir", etcd.dataDir),
        ("cert-file", f"{pki}/etcd/server.crt"),
        ("key-file", f"{pki}/etcd/server.key"),
        ("trusted-ca-file", f"{pki}/etcd/ca.crt"),
        ("client-cert-auth", "true"),
        ("peer-cert-file", f"{pki}/etcd/peer.crt"),
        ("peer-key-file", f"{pki}/etcd/peer.key"),
        ("peer-trusted-ca-file", f"{pki}/etcd/ca.crt"),
        ("peer-client-cert-auth", "true"),
        ("snapshot-count", "10000"),
        ("listen-metrics-urls", f"http://{join_host_port(lo, c.ETCD_METRICS_PORT)}"),
        ("initial-cluster", f"{cfg.node_name}={peer_url(cfg)}"),
    )
    if etcd_is_36(etcd.imageTag or cfg.profile.etcd_version):
        defaults += m.args(("feature-gates", "InitialCorruptCheck=true"), ("watch-progress-notify-interval", "5s"))
    else:
        defaults += m.args(("experimental-initial-corrupt-check", "true"),
                           ("experimental-watch-progress-notify-interval", "5s"))
    return [c.ETCD, *m.arguments_to_command(defaults, etcd.extraArgs)]


def etcd_pod(cfg: InitConfig) -> dict[str, Any]:
    etcd = cfg.cluster.local_etcd
    # kubeadm writes certificatesDir+"/etcd", which a trailing slash turns into "pki//etcd"; kubeboot joins
    # it as filepath.Join would (the one place it departs from kubeadm's bytes: the same directory).
    certs_dir = go_join(cfg.cluster.certificatesDir, "etcd")
    volumes = {"etcd-data": m.host_path_volume("etcd-data", etcd.dataDir, m.DIR_OR_CREATE),
               "etcd-certs": m.host_path_volume("etcd-certs", certs_dir, m.DIR_OR_CREATE)}
    host, port, scheme = probe_endpoint(cfg)
    box = m.container(
        c.ETCD, cfg.etcd_image, etcd_command(cfg), port=port,
        # local.go lists these mounts itself (read-write), so they keep this order, unsorted.
        mounts=[m.volume_mount("etcd-data", etcd.dataDir, False), m.volume_mount("etcd-certs", certs_dir, False)],
        env=m.merge_env(etcd.extraEnvs),  # no proxy variables for etcd, unlike the control plane
        cpu=c.CPU_REQUESTS[c.ETCD], memory=c.ETCD_MEMORY_REQUEST,
        liveness=m.liveness_probe(host, "/livez", scheme), readiness=m.readiness_probe(host, "/readyz", scheme),
        startup=m.startup_probe(host, "/readyz", scheme, m.health_timeout(cfg)),
    )
    return m.component_pod(box, volumes, {c.ETCD_ADVERTISE_ANNOTATION: client_url(cfg)})


DATA_DIR_MODE = 0o700  # etcdutil.CreateDataDirectory: os.MkdirAll(dir, 0700)


def ensure_data_dir(ctx: NodeContext) -> None:
    """etcdutil.CreateDataDirectory: missing directories of dataDir created 0700; existing ones kept."""
    data_dir = ctx.cfg.cluster.local_etcd.dataDir
    if ctx.cfg.init.dryRun:
        ctx.log(PHASE, f'Would ensure that "{data_dir}" directory is present')
        return
    try:
        ctx.fs.mkdir(data_dir, DATA_DIR_MODE)
    except OSError as e:
        raise PermanentError(f'failed to create the etcd data directory: "{data_dir}": {e.strerror}') from e


def run_etcd_local(ctx: NodeContext) -> None:
    cfg = ctx.cfg
    if cfg.cluster.is_external_etcd:
        raise PermanentError("etcd static pod manifest cannot be generated for cluster using external etcd")
    ensure_data_dir(ctx)
    ctx.log(PHASE, f'Creating static Pod manifest for local etcd in "{c.MANIFESTS_DIR}"')
    announced = ctx.scratch.setdefault(SCRATCH_PATCHES, set())
    pod = rootless.apply(ctx.fs, cfg, c.ETCD, etcd_pod(cfg), lambda line: ctx.log(PHASE, line))
    pod = m.finish_pod(c.ETCD, pod, cfg.patches_dir, ctx.out, announced)
    m.write_static_pod(ctx.fs, c.ETCD, pod)
