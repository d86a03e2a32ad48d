"""Shared types of the emulated kube-apiserver.

Read by the authorizers (RBAC, Node) and the controllers; written by nothing (pure declarations).
`ObjectReader.get/list` take a resource spelled "<group>/<plural>", with an empty group for the core
API: "/secrets", "rbac.authorization.k8s.io/clusterroles".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


@dataclass(frozen=True)
class RequestAttributes:
    user: UserInfo
    verb: str  # get list watch create update patch delete deletecollection
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True
    # The list's ?fieldSelector= (the Node authorizer lets a node list only pods bound to it).
    field_selector: str = ""


class Authorizer(Protocol):
    def authorize(self, attrs: RequestAttributes) -> tuple[bool, str]: ...


class ObjectReader(Protocol):
    """What authorizers and controllers may read from the store."""

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]: ...
