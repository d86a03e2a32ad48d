"""kubeadm's init preflight checks (kubeadm-spec 2.1, preflight/checks.go), with kubeboot's resume rule.

Reads: host facts (``tasks.hostfacts.HostFacts``), the node root (manifests, etcd data dir, CA, the
kubeboot node marker), ``cfg``. Writes: nothing.

A check has kubeadm's name (the ID ``--ignore-preflight-errors`` takes) and returns warnings and errors
with kubeadm's texts. kubeboot adds one thing: when the node marker says the node's files were written
by an earlier kubeboot run of this same cluster (same CA hash, cluster name and node), manifests, a
populated etcd data dir and ports held by that run's components are reported as "Resuming" instead of
blocking the re-run (kubeadm-spec 5.1). A marker of another cluster keeps them errors and says why.

Not done (kubeboot has no CRI client or image puller): ImagePull, SystemVerification, ExternalEtcdVersion.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from kubeboot.config import constants as c
from kubeboot.config.resolved import InitConfig, nth_ip
from kubeboot.config.versions import SUPPORTED_MINORS
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.hostfacts import HostFacts, proxy_for
from kubeboot.tasks.nodemarker import read_node_marker
from kubeboot.tasks.pki import ca_cert_hash, load_cert_or_none

IPV4_FORWARD = "/proc/sys/net/ipv4/ip_forward"
IPV6_FORWARDING = "/proc/sys/net/ipv6/conf/default/forwarding"
# (executable, mandatory) for k8s >= 1.32 (checks_linux.go addExecChecks; conntrack dropped in 1.32).
EXECUTABLES = (("ip", True), ("iptables", True), ("mount", True), ("nsenter", True), ("ebtables", False),
               ("ethtool", False), ("socat", False), ("tc", False), ("touch", False))
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


@dataclass
class Result:
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # "[preflight] Resuming: ..." lines


@dataclass(frozen=True)
class Ownership:
    """Whose files are on this node, according to the kubeboot node marker."""

    ours: bool
    cluster: str = ""
    ca_hash: str = ""
    conflict: str = ""  # why the files belong to someone else; "" when there is no marker

    @property
    def previous_run(self) -> str:
        return f'a previous kubeboot run of cluster "{self.cluster}" (CA {self.ca_hash})'


def node_ownership(fs: NodeFS, cfg: InitConfig) -> Ownership:
    if not fs.exists(c.KUBEBOOT_NODE_MARKER):
        return Ownership(ours=False)
    record = read_node_marker(fs)
    if record is None:
        return Ownership(ours=False, conflict=f"the kubeboot marker {c.KUBEBOOT_NODE_MARKER} cannot be read")
    ca = load_cert_or_none(fs.read_bytes(f"{cfg.pki_dir}/ca.crt"))
    disk_hash = ca_cert_hash(ca) if ca is not None else ""
    theirs = (str(record.get("clusterName")), str(record.get("node")), str(record.get("caCertHash")))
    if theirs == (cfg.cluster.clusterName, cfg.node_name, disk_hash):
        return Ownership(ours=True, cluster=theirs[0], ca_hash=disk_hash)
    on_disk = f"CA {disk_hash}" if disk_hash else f"no readable {cfg.pki_dir}/ca.crt"
    return Ownership(ours=False, conflict=(
        f'the kubeboot marker {c.KUBEBOOT_NODE_MARKER} records cluster "{theirs[0]}", node "{theirs[1]}", '
        f'CA {theirs[2]}; this run is cluster "{cfg.cluster.clusterName}", node "{cfg.node_name}" '
        f"with {on_disk}"))


@dataclass
class Preflight:
    """What the checks look at."""

    cfg: InitConfig
    fs: NodeFS
    host: HostFacts
    owner: Ownership


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Preflight], Result]


def label(prefix: str, path: str) -> str:
    """kubeadm's check name for a path: ``FileAvailable--etc-kubernetes-manifests-etcd.yaml``."""
    return f"{prefix}-{path.replace('/', '-')}"


# --- checks on the machine ------------------------------------------------------------------------


def privileged_user(p: Preflight) -> Result:
    return Result(errors=[] if p.host.euid() == 0 else ["user is not running as root"])


def num_cpu(p: Preflight) -> Result:
    n = p.host.cpu_count()
    need = c.CONTROL_PLANE_NUM_CPU
    return Result(errors=[] if n >= need else [f"the number of available CPUs {n} is less than the required {need}"])


def mem(p: Preflight) -> Result:
    text = (p.host.read_file("/proc/meminfo") or b"").decode(errors="replace")
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    if not m:
        return Result(errors=["failed to get system info: /proc/meminfo has no MemTotal"])
    actual = int(m.group(1)) // 1024
    need = c.CONTROL_PLANE_MEM_MB
    return Result(errors=[] if actual >= need else [f"the system RAM ({actual} MB) is less than the minimum {need} MB"])


def kubernetes_version(p: Preflight) -> Result:
    newest = max(SUPPORTED_MINORS)
    v = p.cfg.version
    if (v.major, v.minor) > (1, newest):
        return Result(warnings=[f"Kubernetes version is greater than kubeadm version. Please consider to upgrade "
                                f"kubeadm. Kubernetes version: {v.text.lstrip('v')}. Kubeadm version: 1.{newest}.x"])
    return Result()


_NO_INIT_SYSTEM = "no supported init system detected, skipping checking for services"


def firewalld(p: Preflight) -> Result:
    if p.host.systemctl() is None:
        return Result(warnings=[_NO_INIT_SYSTEM])
    if p.host.service_exists("firewalld") and p.host.service_active("firewalld"):
        ports = f"[{p.cfg.bind_port} {c.KUBELET_PORT}]"
        return Result(warnings=[f"firewalld is active, please ensure ports {ports} are open or your cluster "
                                "may not function correctly"])
    return Result()


def service_kubelet(p: Preflight) -> Result:
    if p.host.systemctl() is None:
        return Result(warnings=[_NO_INIT_SYSTEM])
    if not p.host.service_exists("kubelet"):
        return Result(warnings=["kubelet service does not exist"])
    if not p.host.service_enabled("kubelet"):
        return Result(warnings=["kubelet service is not enabled, please run 'systemctl enable kubelet.service'"])
    return Result()


def http_proxy(p: Preflight) -> Result:
    host = p.cfg.advertise_address
    url = f"https://[{host}]:1234" if ":" in host else f"https://{host}"
    proxy = proxy_for(host, "https", p.host.environ())
    if proxy:
        return Result(warnings=[f'Connection to "{url}" uses proxy "{proxy}". If that is not intended, adjust your '
                                "proxy settings"])
    return Result()


def http_proxy_cidr(cidr: str) -> Callable[[Preflight], Result]:
    def check(p: Preflight) -> Result:
        proxy = proxy_for(nth_ip(cidr, 1), "https", p.host.environ())
        if proxy:
            return Result(warnings=[f'connection to "{cidr}" uses proxy "{proxy}". This may lead to malfunctional '
                                    "cluster setup. Make sure that Pod and Services IP ranges specified correctly "
                                    "as exceptions in proxy configuration"])
        return Result()

    return check


def cri(p: Preflight) -> Result:
    err = p.host.cri_error(p.cfg.init.nodeRegistration.criSocket)
    return Result(errors=[err] if err else [])


def swap(p: Preflight) -> Result:
    text = p.host.read_file("/proc/swaps")
    if text is not None and len(text.decode(errors="replace").splitlines()) > 1:
        return Result(warnings=["swap is supported for cgroup v2 only. The kubelet must be properly configured to "
                                "use swap. Please refer to https://kubernetes.io/docs/concepts/architecture/nodes/"
                                "#swap-memory, or disable swap on the node"])
    return Result()


def in_path(executable: str, mandatory: bool) -> Callable[[Preflight], Result]:
    def check(p: Preflight) -> Result:
        if p.host.which(executable):
            return Result()
        msg = f"{executable} not found in system path"
        return Result(errors=[msg]) if mandatory else Result(warnings=[msg])

    return check


def hostname(p: Preflight) -> Result:
    name = p.cfg.node_name
    warnings = []
    if len(name) > 63:
        warnings.append(f'invalid node name format "{name}": name part must be no more than 63 characters')
    if not _QUALIFIED_NAME.match(name):
        warnings.append(f'invalid node name format "{name}": name part must consist of alphanumeric characters, '
                        "'-', '_' or '.', and must start and end with an alphanumeric character")
    addrs, err = p.host.lookup_host(name)
    if not addrs:
        warnings.append(f'hostname "{name}" could not be reached')
    if err:
        warnings.append(f'hostname "{name}": lookup {name}: {err}')
    return Result(warnings=warnings)


def kubelet_version(p: Preflight) -> Result:
    version, err = p.host.kubelet_version()
    if err:
        return Result(errors=[f"couldn't get kubelet version: {err}"])
    major, minor = (int(x) for x in version.split(".")[:2])
    lowest = (1, max(SUPPORTED_MINORS) - 3)
    if (major, minor) < lowest:
        return Result(errors=[f'Kubelet version "v{version}" is lower than kubeadm can support. '
                              "Please upgrade kubelet"])
    cp = p.cfg.version
    if major > cp.major or minor > cp.minor:
        return Result(errors=["the kubelet version is higher than the control plane version. This is not a supported "
                              "version skew and may lead to a malfunctional cluster. Kubelet version: "
                              f'"{version}" Control plane version: "{cp.text.lstrip("v")}"'])
    return Result()


def file_content(path: str, content: bytes) -> Callable[[Preflight], Result]:
    # A /proc/sys setting belongs to the host kernel that every simulated node shares: read the real one.
    def check(p: Preflight) -> Result:
        data = p.host.read_file(path)
        if data is None:
            return Result(errors=[f"{path} does not exist"])
        if data[: len(content)] != content:
            return Result(errors=[f"{path} contents are not set to {content.decode()}"])
        return Result()

    return check


# --- checks on the node's own files and ports (where a previous run may be resumed) ---------------


def file_available(path: str) -> Callable[[Preflight], Result]:
    def check(p: Preflight) -> Result:
        if not p.fs.path(path).exists():
            return Result()
        if p.owner.ours:
            return Result(resumed=[f'"{path}" was written by {p.owner.previous_run}'])
        return Result(errors=[_conflict(f"{path} already exists", p.owner)])

    return check


def dir_available(path: str) -> Callable[[Preflight], Result]:
    def check(p: Preflight) -> Result:
        real = p.fs.path(path)
        if not real.exists():
            return Result()
        try:
            empty = not any(real.iterdir())
        except OSError as e:
            return Result(errors=[f"unable to check if {path} is empty: {e}"])
        if empty:
            return Result()
        if p.owner.ours:
            return Result(resumed=[f'"{path}" was written by {p.owner.previous_run}'])
        return Result(errors=[_conflict(f"{path} is not empty", p.owner)])

    return check


def port_open(port: int, owner_file: str, component: str) -> Callable[[Preflight], Result]:
    """Port free on the advertise address; held by our own component of a resumed run is fine.

    ``owner_file`` is what that run left for the component (its manifest, or the kubelet's
    config.yaml): without it the port is somebody else's.
    """

    def check(p: Preflight) -> Result:
        if not p.host.port_in_use(p.cfg.advertise_address, port):
            return Result()
        if p.owner.ours and p.fs.exists(owner_file):
            return Result(resumed=[f"port {port} is in use, taken to be the {component} of {p.owner.previous_run}"])
        return Result(errors=[f"Port {port} is in use"])

    return check


def _conflict(message: str, owner: Ownership) -> str:
    return f"{message} and belongs to another cluster: {owner.conflict}" if owner.conflict else message


# --- running checks -------------------------------------------------------------------------------


def ignored(name: str, ignore: frozenset[str]) -> bool:
    """kubeadm's setHasItemOrAll: case-insensitive, ``all`` ignores every check."""
    return "all" in ignore or name.lower() in ignore


def run_checks(checks: list[Check], p: Preflight, ignore: frozenset[str], out: Callable[[str], None]) -> str:
    """Run ``checks`` in order, printing warnings and resumes; kubeadm's fatal text, or "" if none."""
    errors: list[str] = []
    for check in checks:
        result = check.run(p)
        warnings, errs = result.warnings, result.errors
        if ignored(check.name, ignore):
            warnings, errs = warnings + errs, []
        for line in result.resumed:
            out(f"[preflight] Resuming: {line}")
        for w in warnings:
            out(f"\t[WARNING {check.name}]: {w}")
        errors += [f"\t[ERROR {check.name}]: {e}\n" for e in errs]
    if not errors:
        return ""
    return ("[preflight] Some fatal errors occurred:\n" + "".join(errors)
            + "[preflight] If you know what you are doing, you can make a check non-fatal with "
            "`--ignore-preflight-errors=...`")
