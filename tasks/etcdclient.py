"""A small etcd v3 client over etcd's own JSON gateway (``/v3/...`` on the client port, grpc-gateway),
for what a control-plane join needs: the member list, adding a learner, promoting it, removing a
member, and each member's status. urllib3 over TLS with a client certificate (the cluster's
``etcd/healthcheck-client`` certificate, as kubeadm's etcd client uses); JSON as etcd's gateway maps
its protobuf messages (uint64 ids are decimal strings).

Reads: nothing on disk (PEM bytes are given). Writes: nothing. Each request goes to the endpoints in
turn until one answers; an answer that is an etcd error becomes ``EtcdError`` with etcd's message
("etcdserver: too many learner members in cluster"), a connection failure on every endpoint
``EtcdUnavailable``. No retry here: the phase decides (kubeadm's etcd client retries within its
``etcdAPICall`` timeout; kubeboot's phase does it across short attempts).

The sandbox's emulated kube-apiserver has an etcd gateway client of its own (``sandbox.apiserver.etcd``:
range, transactions and watch streams on kept-alive connections): on purpose. The two share only the
gateway's JSON conventions; one client for both would put the API server's storage and watch code into
production, which needs none of it, or make the sandbox's storage depend on the phases' client.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import Any, Final

import urllib3

from kubeboot.tasks.fsutil import load_cert_chain_pem

TIMEOUT: Final = 2.0  # kubeadm's etcdTimeout per request
TOO_MANY_LEARNERS: Final = "too many learner members in cluster"
LEARNER_NOT_READY: Final = "can only promote a learner member which is in sync with leader"
PEER_URL_EXISTS: Final = "Peer URLs already exists"
NOT_FOR_LEARNER: Final = "rpc not supported for learner"


class EtcdError(Exception):
    """etcd answered with an error (the message is etcd's)."""


class EtcdUnavailable(Exception):
    """No endpoint answered."""


@dataclass(frozen=True)
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool

    @classmethod
    def from_json(cls, m: dict[str, Any]) -> Member:
        return cls(int(m.get("ID") or 0), str(m.get("name") or ""), tuple(m.get("peerURLs") or ()),
                   tuple(m.get("clientURLs") or ()), bool(m.get("isLearner")))

    @property
    def hex_id(self) -> str:
        return f"{self.id:x}"

    @property
    def started(self) -> bool:
        """A member that has not started yet has no name and no client URLs."""
        return bool(self.name and self.client_urls)


class EtcdClient:
    def __init__(self, endpoints: list[str], ca_pem: bytes, cert_pem: bytes, key_pem: bytes,
                 *, timeout: float = TIMEOUT) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoint to talk to")
        self.endpoints = list(endpoints)
        context = ssl.create_default_context(cadata=ca_pem.decode())
        load_cert_chain_pem(context, cert_pem, key_pem)
        self._http = urllib3.PoolManager(ssl_context=context, timeout=urllib3.Timeout(total=timeout),
                                         retries=False, num_pools=8)

    def _post(self, path: str, body: dict[str, Any], endpoints: list[str] | None = None) -> dict[str, Any]:
        tried: list[str] = []
        for endpoint in endpoints or self.endpoints:
            try:
                resp = self._http.request("POST", f"{endpoint.rstrip('/')}{path}", body=json.dumps(body).encode(),
                                          headers={"Content-Type": "application/json"})
            except (urllib3.exceptions.HTTPError, OSError) as e:
                tried.append(f"{endpoint}: {getattr(e, 'reason', None) or e}")
                continue
            try:
                data = json.loads(resp.data or b"{}")
            except ValueError:
                data = {}
            if resp.status == 200 and "error" not in data:
                return data if isinstance(data, dict) else {}
            message = str(data.get("message") or data.get("error") or f"HTTP {resp.status} from {endpoint}")
            if NOT_FOR_LEARNER in message:  # a learner answers almost nothing: ask a voting member
                tried.append(f"{endpoint}: {message}")
                continue
            raise EtcdError(message)
        raise EtcdUnavailable(f"no etcd endpoint answered: {'; '.join(tried)}")

    def members(self) -> list[Member]:
        return [Member.from_json(m) for m in self._post("/v3/cluster/member/list", {}).get("members") or []]

    def add_learner(self, peer_url: str) -> tuple[Member, list[Member]]:
        """MemberAddAsLearner: the new member and the member list after it."""
        reply = self._post("/v3/cluster/member/add", {"peerURLs": [peer_url], "isLearner": True})
        return Member.from_json(reply.get("member") or {}), [Member.from_json(m) for m in reply.get("members") or []]

    def promote(self, member_id: int) -> list[Member]:
        reply = self._post("/v3/cluster/member/promote", {"ID": str(member_id)})
        return [Member.from_json(m) for m in reply.get("members") or []]

    def remove(self, member_id: int) -> list[Member]:
        reply = self._post("/v3/cluster/member/remove", {"ID": str(member_id)})
        return [Member.from_json(m) for m in reply.get("members") or []]

    def status(self, endpoint: str) -> dict[str, Any]:
        """This one endpoint's status (its leader, raft index, whether it is a learner)."""
        return self._post("/v3/maintenance/status", {}, [endpoint])

    def close(self) -> None:
        self._http.clear()
