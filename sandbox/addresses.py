"""Loopback addresses of sandbox nodes, and the rewriting of loopback names to a node's own address.

Reads and writes nothing. Every sandbox node owns one address in 127.0.0.0/8 (Linux routes the whole
block to ``lo``, so any of them can be bound without configuration) and uses kubeadm's standard ports on
it: nodes and clusters never clash. Cluster ``c`` owns the block ``127.77.<c>.0/24``: its nodes take
``.1`` to ``.253`` and ``.254`` is its control-plane endpoint, where the cluster's load balancer
(``sandbox.loadbalancer``) listens when it has several control-plane nodes. Whatever a node's
manifests bind to ``127.0.0.1``, ``localhost`` or ``::1`` is moved to the node's address; the node
worker's health checks follow the same map (``tasks.runtime.loopback_map``).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable

# 127.77.<cluster>.<node>: far from 127.0.0.1 and from the addresses tests pick by hand (127.0.x.y).
SANDBOX_PREFIX = (127, 77)
MAX_CLUSTERS = 256
MAX_NODES = 253  # .0 and .255 left out: they read as network/broadcast addresses to people
ENDPOINT_HOST = 254  # the cluster's load balancer

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")

# A loopback host where it stands as a host: not inside a longer name or address (127.0.0.10,
# localhost.example, fe80::1). "[::1]" loses its brackets: the node's address is IPv4.
_LOOPBACK_RE = re.compile(
    r"\[::1\]"
    r"|(?<![\w.:-])::1(?![\w:])"
    r"|(?<![\w.-])(?:127\.0\.0\.1|localhost)(?![\w-]|\.\w)"
)


def node_address(cluster: int, node: int) -> str:
    """The address of node ``node`` (1-based) of sandbox cluster ``cluster`` (0-based)."""
    if not 0 <= cluster < MAX_CLUSTERS:
        raise ValueError(f"cluster index {cluster} out of range 0..{MAX_CLUSTERS - 1}")
    if not 1 <= node <= MAX_NODES:
        raise ValueError(f"node index {node} out of range 1..{MAX_NODES}")
    return f"{SANDBOX_PREFIX[0]}.{SANDBOX_PREFIX[1]}.{cluster}.{node}"


def endpoint_address(cluster: int) -> str:
    """The control-plane endpoint address of sandbox cluster ``cluster`` (0-based): its load balancer's."""
    if not 0 <= cluster < MAX_CLUSTERS:
        raise ValueError(f"cluster index {cluster} out of range 0..{MAX_CLUSTERS - 1}")
    return f"{SANDBOX_PREFIX[0]}.{SANDBOX_PREFIX[1]}.{cluster}.{ENDPOINT_HOST}"


def map_host(host: str, address: str) -> str:
    """``host`` as the node sees it: a loopback name becomes ``address``; anything else is unchanged."""
    if address and host.strip("[]") in LOOPBACK_NAMES:
        return address
    return host


def map_loopback(text: str, address: str) -> str:
    """Every loopback host in ``text`` (a flag value, a URL, a URL list) replaced by ``address``."""
    if not address:
        return text
    return _LOOPBACK_RE.sub(address, text)


# --- reserving cluster blocks among sandboxes running side by side --------------------------------
# Several sandboxes (a demo, test runs, benchmarks) may be up on one machine at once. Each sandbox
# cluster takes a cluster index (its 127.77.<index>.0/24) by creating a lock file with O_EXCL in a
# machine-wide directory; `sandbox down` removes its own. A lock is stale, and taken over, when the
# sandbox directory it names no longer exists or no longer lists that index as running, once it is
# older than a start-up's grace period.
RESERVATIONS_DIR = "/tmp/kubeboot-sandbox-addresses"
_GRACE_SECONDS = 120.0


def _lock_path(index: int) -> str:
    return f"{RESERVATIONS_DIR}/127.{SANDBOX_PREFIX[1]}.{index}"


def _stale(path: str, owner_alive: Callable[[str, int], bool], index: int) -> bool:
    try:
        with open(path) as fh:
            owner = fh.read().strip()
        age = time.time() - os.stat(path).st_mtime
    except OSError:
        return False
    return age > _GRACE_SECONDS and not owner_alive(owner, index)


def reserve_cluster_indices(count: int, owner: str, owner_alive: Callable[[str, int], bool]) -> list[int]:
    """``count`` cluster indices no other live sandbox holds, reserved for the sandbox ``owner``."""
    os.makedirs(RESERVATIONS_DIR, mode=0o755, exist_ok=True)
    taken: list[int] = []
    for index in range(MAX_CLUSTERS):
        if len(taken) == count:
            break
        path = _lock_path(index)
        if os.path.exists(path) and _stale(path, owner_alive, index):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(owner)
        taken.append(index)
    if len(taken) < count:
        release_cluster_indices(taken, owner)
        raise RuntimeError(f"no free sandbox address block: {MAX_CLUSTERS} clusters are up on this machine")
    return taken


def release_cluster_indices(indices: list[int], owner: str) -> None:
    for index in indices:
        path = _lock_path(index)
        try:
            with open(path) as fh:
                if fh.read().strip() != owner:
                    continue
            os.unlink(path)
        except OSError:
            continue
