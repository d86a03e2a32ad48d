"""Conversion of ``kubeadm.k8s.io/v1beta3`` documents to ``v1beta4``, as kubeadm converts them.

Reads: the raw documents of one file, keyed by kind. Writes: nothing; returns new dicts. Follows
kubeadm's v1beta3/conversion.go, v1beta4/conversion.go and the v1beta4 doc.go changelog:

- ``extraArgs`` maps (apiServer, controllerManager, scheduler, etcd.local) and
  ``nodeRegistration.kubeletExtraArgs`` become ``[{name, value}]`` lists sorted by name, then value
  (convertToArgs);
- ``ClusterConfiguration.apiServer.timeoutForControlPlane`` is dropped from the ClusterConfiguration
  and, when non-zero, becomes ``InitConfiguration.timeouts.controlPlaneComponentHealthCheck``;
- the fields v1beta3 does not have take their v1beta4 defaults (the models supply them);
- a v1beta4-only field written in a v1beta3 document is an unknown field, as kubeadm's strict decoder
  of v1beta3 reports it. Any other unknown field is left in place for the v1beta4 models to reject.
"""

from __future__ import annotations

import copy
from typing import Any

from kubeboot.config import constants as c
from kubeboot.config.duration import parse_duration
from kubeboot.config.errors import ConfigError

_COMPONENTS = ("apiServer", "controllerManager", "scheduler")

# Fields added in v1beta4 (doc.go changelog): (kind, dotted path) -> present only in v1beta4.
_V1BETA4_ONLY = {
    "InitConfiguration": ("dryRun", "timeouts", "nodeRegistration.imagePullSerial"),
    "ClusterConfiguration": (
        "encryptionAlgorithm",
        "certificateValidityPeriod",
        "caCertificateValidityPeriod",
        "dns.disabled",
        "proxy",
        "apiServer.extraEnvs",
        "controllerManager.extraEnvs",
        "scheduler.extraEnvs",
        "etcd.local.extraEnvs",
    ),
}


def _get(doc: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _reject_v1beta4_only(doc: dict[str, Any], kind: str, file: str) -> None:
    for dotted in _V1BETA4_ONLY.get(kind, ()):
        if _get(doc, dotted)[0]:
            raise ConfigError(
                f"unknown field in {c.V1BETA3}: it is new in {c.V1BETA4}; set apiVersion: {c.V1BETA4} to use it",
                file=file,
                document=kind,
                field=dotted,
            )


def args_from_map(value: Any, *, file: str, kind: str, field: str) -> list[dict[str, str]]:
    """convertToArgs: a ``{flag: value}`` map as a name/value list sorted by name, then value."""
    if not isinstance(value, dict):
        raise ConfigError(
            f"must be a map of flag names to string values in {c.V1BETA3} (name/value lists are {c.V1BETA4})",
            file=file,
            document=kind,
            field=field,
        )
    for name, arg in value.items():
        if not isinstance(arg, str):
            raise ConfigError(
                f"value {arg!r} must be a string (quote it)", file=file, document=kind, field=f"{field}.{name}"
            )
    return [{"name": str(k), "value": v} for k, v in sorted(value.items(), key=lambda kv: (str(kv[0]), kv[1]))]


def _convert_args_at(doc: dict[str, Any], dotted: str, *, file: str, kind: str) -> None:
    parent_path, _, key = dotted.rpartition(".")
    found, parent = _get(doc, parent_path) if parent_path else (True, doc)
    if found and isinstance(parent, dict) and parent.get(key) is not None:
        parent[key] = args_from_map(parent[key], file=file, kind=kind, field=dotted)


def convert_document(doc: dict[str, Any], file: str) -> dict[str, Any]:
    """One v1beta3 InitConfiguration or ClusterConfiguration as v1beta4 (timeoutForControlPlane dropped)."""
    return _convert(doc, file)[0]


def _convert(doc: dict[str, Any], file: str) -> tuple[dict[str, Any], str | None]:
    """The v1beta4 document and the ``timeoutForControlPlane`` it carried (None if unset or zero)."""
    kind = str(doc.get("kind", ""))
    out = copy.deepcopy(doc)
    _reject_v1beta4_only(out, kind, file)
    out["apiVersion"] = c.V1BETA4
    timeout: str | None = None
    if kind == "InitConfiguration":
        _convert_args_at(out, "nodeRegistration.kubeletExtraArgs", file=file, kind=kind)
    elif kind == "ClusterConfiguration":
        for component in _COMPONENTS:
            _convert_args_at(out, f"{component}.extraArgs", file=file, kind=kind)
        _convert_args_at(out, "etcd.local.extraArgs", file=file, kind=kind)
        timeout = _pop_timeout(out, file)
    return out, timeout


def _pop_timeout(cluster: dict[str, Any], file: str) -> str | None:
    api_server = cluster.get("apiServer")
    if not isinstance(api_server, dict) or "timeoutForControlPlane" not in api_server:
        return None
    value = api_server.pop("timeoutForControlPlane")
    try:
        seconds = parse_duration(str(value))
    except ValueError as e:
        raise ConfigError(
            str(e), file=file, document="ClusterConfiguration", field="apiServer.timeoutForControlPlane"
        ) from None
    return str(value) if seconds else None  # kubeadm ignores a zero timeout


def convert_documents(by_kind: dict[str, dict[str, Any]], file: str) -> dict[str, dict[str, Any]]:
    """Convert every v1beta3 document of one file; other documents pass through unchanged.

    ``timeoutForControlPlane`` moves to the InitConfiguration (created if the file has none), unless a
    v1beta4 InitConfiguration sets ``timeouts.controlPlaneComponentHealthCheck`` itself.
    """
    out = dict(by_kind)
    timeout: str | None = None
    for kind, doc in by_kind.items():
        if doc.get("apiVersion") == c.V1BETA3:
            out[kind], carried = _convert(doc, file)
            timeout = timeout or carried
    if timeout is not None:
        init = copy.deepcopy(out.get("InitConfiguration", {}))
        timeouts = init.setdefault("timeouts", {})
        if isinstance(timeouts, dict):
            timeouts.setdefault("controlPlaneComponentHealthCheck", timeout)
        out["InitConfiguration"] = init
    return out
