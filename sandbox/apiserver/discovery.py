"""Discovery documents (``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>[/<version>]``) and ``/version``.

Reads: the resource table, the server's address, env ``KUBEBOOT_SANDBOX_VERSION`` (the kube-apiserver image
tag, set by the sandbox kubelet; the flags do not carry it). Writes nothing. The documents have the shape
the real server returns (unaggregated discovery), enough for the official Python client and kubectl.
"""

from __future__ import annotations

import os
import re
from typing import Any

from kubeboot.sandbox.apiserver.resources import RESOURCES, ResourceType, group_versions

DEFAULT_VERSION = "v1.36.1"
VERSION_ENV = "KUBEBOOT_SANDBOX_VERSION"


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_version(group: str, version: str) -> dict[str, str]:
    return {"groupVersion": f"{group}/{version}", "version": version}


def api_group(group: str) -> dict[str, Any] | None:
    versions = group_versions().get(group)
    if not group or not versions:
        return None
    gvs = [_group_version(group, v) for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list() -> dict[str, Any]:
    groups = [api_group(g) for g in group_versions() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{k: v for k, v in g.items() if k not in ("kind", "apiVersion")} for g in groups if g]}


def _entries(r: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                            "kind": r.kind, "verbs": list(r.verbs)}
    if r.short_names:
        main["shortNames"] = list(r.short_names)
    subs = [{"name": f"{r.plural}/{s}", "singularName": "", "namespaced": r.namespaced, "kind": r.kind,
             "verbs": ["get", "patch", "update"]} for s in r.subresources]
    return [main, *subs]


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    rows = [e for r in RESOURCES if r.group == group and r.version == version for e in _entries(r)]
    if not rows:
        return None
    doc: dict[str, Any] = {"kind": "APIResourceList"}
    if group:
        doc["apiVersion"] = "v1"
    doc.update(groupVersion=f"{group}/{version}" if group else version, resources=rows)
    return doc


def version_info() -> dict[str, str]:
    git = os.environ.get(VERSION_ENV) or DEFAULT_VERSION
    m = re.match(r"v?(\d+)\.(\d+)", git)
    major, minor = (m[1], m[2]) if m else ("1", "36")
    return {"major": major, "minor": minor, "emulationMajor": major, "emulationMinor": minor,
            "minCompatibilityMajor": major, "minCompatibilityMinor": str(max(0, int(minor) - 1)),
            "gitVersion": git, "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z", "goVersion": "go1.24.0",
            "compiler": "gc", "platform": "linux/amd64"}
