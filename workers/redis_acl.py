"""The Redis users of a kubeboot deployment: one per role, each allowed only what its processes do.

One Redis serves the whole deployment (broker, run state, Flower's events). Its ACL file
(``kubeboot deploy redis-acl``) has these users; passwords are stored as SHA-256 hashes (``#<hex>``), the
clear passwords only in each user's URL file (mode 0600). Rules are Redis 6.2 syntax (Redis 7 reads them
unchanged); ``default`` is turned off.

| user          | keys and channels                                              | commands                  |
|---------------|----------------------------------------------------------------|---------------------------|
| ``control``   | every key and channel (the submitter, the control worker, the  | all but ``@dangerous``    |
|               | recovery sweep: it reads and re-sends every run)               | (FLUSHALL, KEYS, CONFIG,  |
|               |                                                                | DEBUG, ACL, ...)          |
| ``node-<id>`` | its own queue ``node.<id>``; ``control`` (the chain's next link| all but ``@dangerous``    |
|               | after a node phase goes there); kombu's bindings and unacked   |                           |
|               | index; the run state a phase writes (``kubeboot:run:*``, the   |                           |
|               | run indexes, leases, cluster locks, its queue's presence key,  |                           |
|               | worker beats, parents' keys, refusals); publishing events      |                           |
| ``flower``    | subscribing to the event channel and declaring its binding;    | PING, (P)SUBSCRIBE,       |
|               | the length of the queues                                       | SADD/SREM/SMEMBERS, LLEN, |
|               |                                                                | INFO                      |

What the ACL cannot do, and what covers it: key patterns are by name, and run ids are random, so a node
user can write any run's records (tokens and metadata signatures make that useless: a node refuses
what the control side did not sign, and the control side verifies every run record it uses); kombu's
unacked index (``unacked``) is shared by every queue, so a node user could plant a message there that a
restore puts on another queue (it carries no valid token: refused). ``control`` cannot be closed to node
users (a node phase's successor, a control phase or the run's finish, is sent there by the node worker
that ran it), so every task the control worker runs carries a token too: phases, finish, and the cluster
and batch tasks (``workflows.parent_tasks``); a node user's ``parents:due`` entry only has the control
side look at a parent sooner, and send it a task it signs itself. A node user cannot read or write
another node's queue, a cluster's key (``kubeboot:cluster:<name>:key``), nor publish broadcast
commands to workers (``/<db>.celery.pidbox``); Flower reads nothing of the run state and sends nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import quote

SAFE = "-@dangerous +info +client|setname +client|setinfo +client|id"
NODE_KEYS = ("~control", "~_kombu.*", "~unacked", "~unacked_index", "~unacked_mutex", "~kubeboot:run:*",
             "~kubeboot:runs", "~kubeboot:runs:*", "~kubeboot:leases", "~kubeboot:no-lock*",
             "~kubeboot:cluster:*:lock:*", "~kubeboot:worker:*:alive", "~kubeboot:refused", "~kubeboot:parents:due",
             "~kubeboot:batch:*")
EVENTS = "&/0.celeryev/*"  # database 0, the URLs' /0: PSUBSCRIBE needs the pattern exactly


def rules(role: str, worker: str = "") -> str:
    """The ACL rules (without password) of a user of ``role``: control, node (of ``worker``) or flower."""
    if role == "control":
        return f"~* &* +@all {SAFE}"
    if role == "node":
        own = f"~node.{worker} ~kubeboot:queue:node.{worker}:consumer"
        return f"resetkeys resetchannels {own} {' '.join(NODE_KEYS)} {EVENTS} +@all {SAFE}"
    if role == "flower":
        return (f"resetkeys resetchannels ~_kombu.binding.celeryev ~_kombu.binding_permanent.celeryev ~control "
                f"~dry-run ~node.* {EVENTS} -@all "
                "+ping +subscribe +psubscribe +unsubscribe +punsubscribe +sadd +srem +smembers +llen +info "
                "+client|setname +client|setinfo +select")
    raise ValueError(f"unknown Redis role {role!r}")


def user_line(name: str, role: str, password: str, worker: str = "") -> str:
    digest = hashlib.sha256(password.encode()).hexdigest()
    return f"user {name} on #{digest} {rules(role, worker)}"


def acl_text(users: list[tuple[str, str, str, str]]) -> str:
    """An ACL file: (name, role, password, worker) per user; ``default`` off."""
    lines = ["user default off resetkeys resetchannels -@all"]
    lines += [user_line(*u) for u in users]
    return "\n".join(lines) + "\n"


def new_password() -> str:
    return secrets.token_urlsafe(32)


def user_url(scheme_host: str, name: str, password: str, db: int = 0) -> str:
    """``rediss://<name>:<password>@host:port/<db>``; ``scheme_host`` is ``rediss://host:port``."""
    scheme, _, host = scheme_host.partition("://")
    return f"{scheme}://{quote(name, safe='')}:{quote(password, safe='')}@{host}/{db}"
