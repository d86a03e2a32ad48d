"""A node's own record of the newest dispatch it ran, per cluster, kept on the node (not in Redis).

``<state dir>/dispatch/<worker id>.json`` (the node worker's machine; never the node root, whose files are
kubeadm's)::

    {"clusters": {"demo": {"iat": 1764600000.123, "run": "r-1a2b3c4d"}}}

Every chain is signed at one moment (its tokens' ``iat``, Redis's clock); a resume or a recovery re-send
signs a new one. A node worker refuses a task whose token is older than the newest one it already ran
for the same cluster: an old run's task sent again (a replay, after its status, phase records and
cluster lock were reset in Redis) cannot roll the node back to an older configuration, and Redis holds
nothing that could make it. Tasks of one chain share their ``iat``, so redeliveries and retries pass.
Written only when a newer dispatch arrives: once per chain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubeboot.config import constants as c
from kubeboot.tasks.fsutil import atomic_write
from kubeboot.tasks.trust.tokens import Refused, TaskToken


class Journal:
    def __init__(self, state_dir: Path, worker: str) -> None:
        self.path = state_dir / c.DISPATCH_JOURNAL.format(worker=worker)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {"clusters": {}}
        return data if isinstance(data.get("clusters"), dict) else {"clusters": {}}

    def admit(self, token: TaskToken) -> None:
        """``Refused`` if a newer dispatch of the token's cluster already ran here; else record it."""
        data = self._read()
        newest = data["clusters"].get(token.cluster) or {}
        seen = float(newest.get("iat") or 0)
        if token.iat < seen:
            raise Refused(f"older than the newest dispatch this node ran for cluster {token.cluster} (run "
                          f"{newest.get('run')}, signed {seen - token.iat:.0f}s later): an old task sent again")
        if token.iat > seen:
            data["clusters"][token.cluster] = {"iat": token.iat, "run": token.run}
            atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True), 0o600, dir_mode=0o700)
