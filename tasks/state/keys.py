"""Names of the run state's Redis keys, computed here and nowhere else (schema: ``tasks.state.store``,
``tasks.state.lock``, ``tasks.state.presence``)."""

from __future__ import annotations

import re
from typing import Final

from kubeboot.config import constants as c

PREFIX: Final = c.STATE_KEY_PREFIX
RUNS_INDEX: Final = f"{PREFIX}runs"
ACTIVE_RUNS: Final = f"{PREFIX}runs:active"
LEASES: Final = f"{PREFIX}leases"
# Passed to the transition scripts in place of a lock key when a run's kind takes no lock: never written.
NO_LOCK: Final = f"{PREFIX}no-lock"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # no ':' so one name cannot forge another's key

# The kinds of run. A run records the cluster lock it holds (if any) when it is created, so the kind
# does not decide it: an init holds the cluster's init lock, a join none at submit (a control-plane
# join's etcd-join takes the cluster's join-control-plane lock when it gets there, ``tasks.joinrun``);
# a cluster or batch run is a parent whose child runs (``tasks.state.parents``) hold theirs.
RUN_KINDS: Final = ("init", "join", "cluster", "batch")
PARENTS_DUE: Final = f"{PREFIX}parents:due"


def check_name(kind: str, value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"invalid {kind} {value!r}: use letters, digits, '.', '_' and '-'")
    return value


def run_key(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}"


def cluster_runs_key(cluster: str) -> str:
    return f"{PREFIX}cluster:{cluster}:runs"


def lock_key(cluster: str, purpose: str) -> str:
    return f"{PREFIX}cluster:{check_name('cluster name', cluster)}:lock:{check_name('lock purpose', purpose)}"


def queue_consumer_key(queue: str) -> str:
    return f"{PREFIX}queue:{queue}:consumer"


def worker_alive_key(hostname: str) -> str:
    return f"{PREFIX}worker:{hostname}:alive"


# --- secondary indexes of runs (``tasks.state.index``) and parent runs (``tasks.state.parents``) ----------
def kind_runs_key(kind: str) -> str:
    return f"{PREFIX}runs:kind:{kind}"


def status_runs_key(status: str) -> str:
    return f"{PREFIX}runs:status:{status}"


def batch_runs_key(batch: str) -> str:
    return f"{PREFIX}batch:{batch}:runs"


def batch_slots_key(batch: str, part: str) -> str:
    """``running`` (set), ``next`` (int), ``again`` (list): the slot scheme of one batch."""
    return f"{PREFIX}batch:{batch}:{part}"
