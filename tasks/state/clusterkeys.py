"""One data key per cluster, wrapped by the master key, kept in Redis: the control side's copies of a
cluster's run state values (configs, tokens, certificate keys, what nodes sent back) are sealed with it.

| key                              | type   | content                                                 |
|----------------------------------|--------|---------------------------------------------------------|
| ``kubeboot:cluster:<name>:key``  | string | the cluster's 32-byte data key, sealed (``k1:``) with   |
|                                  |        | the master key's wrap key, bound to the cluster's name  |

Created by the first control-side process that needs it (SET NX: of two at once, one key wins and both
use it), never by a node worker (it holds no master key, and node users' Redis ACL does not reach the
key). Deleting a cluster's key makes every value sealed with it unreadable: crypto-shredding. A process
that already unwrapped the key keeps it in memory (up to 256 clusters' keys, for the run state's hot
path), so shredding is deleting the key, then restarting the control workers; the next value sealed for
the cluster gets a new key. (``tests/integration/test_cluster_keys.py``.)
"""

from __future__ import annotations

import secrets

import redis

from kubeboot.tasks.state.keys import PREFIX, check_name
from kubeboot.tasks.state.records import text
from kubeboot.tasks.trust import seal


def cluster_key_name(cluster: str) -> str:
    return f"{PREFIX}cluster:{check_name('cluster name', cluster)}:key"


class ClusterKeys:
    def __init__(self, client: redis.Redis, wrap: bytes) -> None:
        self._r = client
        self._wrap = wrap
        self._cache: dict[str, bytes] = {}

    def get(self, cluster: str) -> bytes:
        if cluster not in self._cache:
            name = cluster_key_name(cluster)
            bound = f"kubeboot/v2|cluster-key|{cluster}".encode()
            raw = self._r.get(name)
            if raw is None:
                self._r.set(name, seal.seal_with_key(self._wrap, secrets.token_bytes(32), bound), nx=True)
                raw = self._r.get(name)
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[cluster] = seal.open_with_key(self._wrap, text(raw), bound, name)
        return self._cache[cluster]
