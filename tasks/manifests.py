"""The building blocks of kubeadm's static Pod manifests (kubeadm-spec 2.4, 2.5), their YAML, their writing.

Reads: ``InitConfig``; the patches directory (``finish_pod``). Writes: ``write_static_pod`` writes one
manifest through a ``NodeFS`` (0600, directory 0700, only when the bytes change). The Pods themselves are
built in ``tasks.phases.etcd`` (etcd_pod) and ``tasks.phases.controlplane`` (control_plane_pod).

Sources, kubeadm v1.34-v1.36: util/staticpod/utils.go, util/{arguments,env}.go, phases/etcd/local.go,
phases/controlplane/{manifests,volumes}.go. The shape every Pod shares (ComponentPod): labels
``component``/``tier``, ``hostNetwork``, ``priority`` 2000001000 with ``priorityClassName``
system-node-critical, seccomp RuntimeDefault, volumes sorted by name, probes on the named port
``probe-port``. Flags are ``--name=value`` sorted by (name, value); an ``extraArgs`` name replaces
every default of that name and may repeat (ArgumentsToCommand). Env vars are merged by name, later
lists winning, and sorted by name.

Serialisation follows kubeadm's MarshalToYaml (JSON, then sigs.k8s.io/yaml): map keys in go-yaml v2
order, strings that would read back as another type double-quoted, ``status: {}``; no
``creationTimestamp: null`` since apimachinery v1.34 omits the zero timestamp (k/k#130989).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from kubeboot.config import constants as c
from kubeboot.config.models import Arg, EnvVar, HostPathMount
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import goyaml
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.patches import apply_patches

Pod = dict[str, Any]
DIR_OR_CREATE = "DirectoryOrCreate"
FILE_OR_CREATE = "FileOrCreate"
PROBE_PERIOD = 10  # seconds, liveness and startup probes


# --- flags ------------------------------------------------------------------------------------------


def arg_value(args: Iterable[Arg], name: str) -> str | None:
    """The value of the last ``name`` in ``args`` (kubeadmapi.GetArgValue with startIdx -1)."""
    found = None
    for a in args:
        if a.name == name:
            found = a.value
    return found


def set_arg(args: list[Arg], name: str, value: str) -> list[Arg]:
    """kubeadmapi.SetArgValues(args, name, value, 1): update the last ``name``, or append it."""
    for a in reversed(args):
        if a.name == name:
            a.value = value
            return args
    args.append(Arg(name=name, value=value))
    return args


def arguments_to_command(defaults: Iterable[Arg], overrides: Iterable[Arg]) -> list[str]:
    """kubeadm's ArgumentsToCommand: overrides replace defaults by name, result sorted by (name, value)."""
    over = list(overrides)
    names = {a.name for a in over}
    merged = over + [a for a in defaults if a.name not in names]
    return [f"--{a.name}={a.value}" for a in sorted(merged, key=lambda a: (a.name, a.value))]


def args(*pairs: tuple[str, str]) -> list[Arg]:
    return [Arg(name=n, value=v) for n, v in pairs]


# --- env --------------------------------------------------------------------------------------------


def proxy_env(environ: Mapping[str, str]) -> list[EnvVar]:
    """kubeadm's GetProxyEnvVars: every non-empty ``*_proxy`` variable (any case) of the process."""
    return [EnvVar(name=k, value=v) for k, v in environ.items() if k.lower().endswith("_proxy") and v]


def merge_env(*lists: Iterable[EnvVar]) -> list[dict[str, Any]]:
    """MergeKubeadmEnvVars: merged by name (later lists win), sorted by name, empty value omitted."""
    merged: dict[str, dict[str, Any]] = {}
    for env in lists:
        for e in env:
            item = e.model_dump(mode="json", exclude_none=True)
            if item.get("value") == "":
                del item["value"]  # corev1.EnvVar.Value is omitempty
            merged[e.name] = item
    return [merged[k] for k in sorted(merged)]


# --- probes, ports, resources -----------------------------------------------------------------------


def probe_host(address: str) -> str:
    """getProbeAddress: an unspecified bind address probes the pod IP (empty host)."""
    return "" if address in ("0.0.0.0", "::") else address


def _http_get(host: str, path: str, scheme: str) -> dict[str, Any]:
    action = {"path": path, "port": c.PROBE_PORT_NAME, "scheme": scheme}
    if host:
        action["host"] = host
    return action


def liveness_probe(host: str, path: str, scheme: str) -> dict[str, Any]:
    return {"failureThreshold": 8, "httpGet": _http_get(host, path, scheme), "initialDelaySeconds": 10,
            "periodSeconds": PROBE_PERIOD, "timeoutSeconds": 15}


def readiness_probe(host: str, path: str, scheme: str) -> dict[str, Any]:
    return {"failureThreshold": 3, "httpGet": _http_get(host, path, scheme), "periodSeconds": 1,
            "timeoutSeconds": 15}


def startup_probe(host: str, path: str, scheme: str, health_timeout: float) -> dict[str, Any]:
    # kubeadm: failureThreshold big enough for the whole controlPlaneComponentHealthCheck timeout.
    failures = math.ceil(health_timeout / PROBE_PERIOD)
    return {"failureThreshold": failures, "httpGet": _http_get(host, path, scheme), "initialDelaySeconds": 10,
            "periodSeconds": PROBE_PERIOD, "timeoutSeconds": 15}


def probe_port(port: int) -> list[dict[str, Any]]:
    return [{"containerPort": port, "name": c.PROBE_PORT_NAME, "protocol": "TCP"}]


def health_timeout(cfg: InitConfig) -> float:
    return cfg.init.timeouts.seconds("controlPlaneComponentHealthCheck")


# --- volumes ----------------------------------------------------------------------------------------


def host_path_volume(name: str, path: str, path_type: str) -> dict[str, Any]:
    return {"hostPath": {"path": path, "type": path_type}, "name": name}


def volume_mount(name: str, path: str, read_only: bool) -> dict[str, Any]:
    mount: dict[str, Any] = {"mountPath": path, "name": name}
    if read_only:
        mount["readOnly"] = True  # omitempty
    return mount


class HostPathMounts:
    """controlPlaneHostPathMounts for one component: volumes and mounts unique by name, last one wins."""

    def __init__(self) -> None:
        self.volumes: dict[str, dict[str, Any]] = {}
        self.mounts: dict[str, dict[str, Any]] = {}

    def add(self, name: str, host: str, container: str, read_only: bool, path_type: str) -> None:
        self.volumes[name] = host_path_volume(name, host, path_type)
        self.mounts[name] = volume_mount(name, container, read_only)

    def add_extra(self, extra: Iterable[HostPathMount]) -> None:
        for v in extra:  # AddExtraHostPathMounts: the user's readOnly and pathType as given
            self.add(v.name, v.hostPath, v.mountPath, v.readOnly, v.pathType)

    def mount_list(self) -> list[dict[str, Any]]:
        return [self.mounts[k] for k in sorted(self.mounts)]  # VolumeMountMapToSlice sorts by name


# --- the Pod ----------------------------------------------------------------------------------------


def component_pod(container: dict[str, Any], volumes: Mapping[str, dict[str, Any]],
                  annotations: Mapping[str, str] | None = None) -> Pod:
    """staticpodutil.ComponentPod, as the JSON kubeadm marshals (empty fields omitted)."""
    metadata: dict[str, Any] = {
        "labels": {"component": container["name"], "tier": c.CONTROL_PLANE_TIER},
        "name": container["name"],
        "namespace": "kube-system",
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec: dict[str, Any] = {
        "containers": [{k: v for k, v in container.items() if v not in (None, [], {})}],
        "hostNetwork": True,
        "priority": c.PRIORITY_NODE_CRITICAL_VALUE,
        "priorityClassName": c.PRIORITY_CLASS_NODE_CRITICAL,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
    }
    if volumes:
        spec["volumes"] = [volumes[k] for k in sorted(volumes)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": {}}


def container(name: str, image: str, command: list[str], *, port: int, mounts: list[dict[str, Any]],
              env: list[dict[str, Any]], cpu: str, memory: str | None = None,
              liveness: dict[str, Any], readiness: dict[str, Any] | None,
              startup: dict[str, Any]) -> dict[str, Any]:
    requests = {"cpu": cpu} if memory is None else {"cpu": cpu, "memory": memory}
    # kubeadm hard-codes IfNotPresent in every manifest; nodeRegistration.imagePullPolicy only
    # governs kubeadm's own image pulls during preflight.
    return {"command": command, "env": env, "image": image, "imagePullPolicy": "IfNotPresent",
            "livenessProbe": liveness, "name": name, "ports": probe_port(port), "readinessProbe": readiness,
            "resources": {"requests": requests}, "startupProbe": startup, "volumeMounts": mounts}



def manifest_path(component: str) -> str:
    return f"{c.MANIFESTS_DIR}/{component}.yaml"


# --- writing -----------------------------------------------------------------------------------------

MANIFEST_MODE = 0o600  # WriteStaticPodToDisk
MANIFESTS_DIR_MODE = 0o700


def finish_pod(component: str, pod: Pod, patches_dir: str, out: Callable[[str], None],
               announced: set[str] | None = None) -> Pod:
    """The user's patches last (PatchStaticPod), then the shape kubeadm's round trip through v1.Pod keeps."""
    if not patches_dir:
        return pod
    try:
        patched = apply_patches(component, pod, Path(patches_dir), out, announced=announced)
    except PermanentError as e:
        raise PermanentError(f'failed to patch static Pod manifest file for "{component}": {e}') from e
    patched = {k: _drop_nulls(v) for k, v in patched.items() if v is not None}
    patched.setdefault("status", {})  # PodStatus is not a pointer: always marshalled
    return patched


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def write_static_pod(fs: NodeFS, component: str, pod: Pod) -> bool:
    """Write the manifest 0600 (directory 0700); False when the file already holds these bytes."""
    return fs.write(manifest_path(component), goyaml.dump(pod), mode=MANIFEST_MODE, dir_mode=MANIFESTS_DIR_MODE)
