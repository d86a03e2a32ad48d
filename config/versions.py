"""The version matrix: every artifact detail that depends on the target Kubernetes minor.

kubeadm output is not stable across v1.3x minors (kubeadm-spec section 1); phases ask this module,
never compare version strings themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering
from typing import Final

SUPPORTED_MINORS: Final = (34, 35, 36)
DEFAULT_KUBERNETES_VERSION: Final = "v1.36.1"
# The release each supported minor's label names (``stable-1.34`` ...): the patch release kubeboot's
# artifacts of that minor were checked against (kubeadm-spec section 1: v1.34.3 and v1.36.1 logs and
# manifests; v1.35's .0 release).
MINOR_RELEASES: Final = {34: "v1.34.3", 35: "v1.35.0", 36: DEFAULT_KUBERNETES_VERSION}
# kubeadm resolves version labels (kubeReleaseLabelRegex: stable, latest, stable-1, stable-1.34 ...)
# over the internet; kubeboot never goes online for this: a label without a minor means the default
# version, a label with a minor that minor's release above.
_LABEL_RE = re.compile(r"^(?:stable|latest)(?:-1(?:\.(\d+))?)?$")
_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")


def resolve_label(text: str) -> str | None:
    """The version a label such as ``stable-1.35`` stands for; None when ``text`` is not a label;
    ValueError for a label naming a minor kubeboot does not support."""
    m = _LABEL_RE.match(text)
    if not m:
        return None
    if m[1] is None:
        return DEFAULT_KUBERNETES_VERSION
    if int(m[1]) not in MINOR_RELEASES:
        lo, hi = min(MINOR_RELEASES), max(MINOR_RELEASES)
        raise ValueError(f"kubernetesVersion {text} is not supported: kubeboot supports v1.{lo}.x to v1.{hi}.x")
    return MINOR_RELEASES[int(m[1])]


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    text: str

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``v1.36.1`` (or a label such as ``stable-1``); ValueError if neither."""
        text = resolve_label(text) or text
        m = _VERSION_RE.match(text)
        if not m:
            raise ValueError(f"{text!r} is not a Kubernetes version (expected e.g. v1.36.1)")
        major, minor, patch = (int(g) for g in m.groups())
        return cls(major, minor, patch, text if text.startswith("v") else f"v{text}")

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return (self.major, self.minor, self.patch) < (other.major, other.minor, other.patch)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class MinorProfile:
    """What one Kubernetes minor changes in kubeadm's artifacts (kubeadm-spec section 1)."""

    minor: int
    etcd_version: str  # kubeadm constants.SupportedEtcdVersion
    coredns_version: str  # kubeadm constants.CoreDNSVersion
    pause_version: str  # kubeadm constants.PauseVersion
    # v1.35 dropped --pod-infra-container-image from kubeadm-flags.env
    writes_pod_infra_image_flag: bool
    # NodeLocalCRISocket (beta-on 1.34, GA 1.36): CRI socket goes to instance-config.yaml
    node_local_cri_socket: bool
    # v1.36: apiserver-kubelet-client has no O; RBAC via CRB kubeadm:apiserver-kubelet-client
    apiserver_kubelet_client_has_org: bool
    # ControlPlaneKubeletLocalMode: kubelet.conf on a CP node points at the local API server
    kubelet_local_mode: bool

    @property
    def etcd_is_36(self) -> bool:
        return tuple(int(p) for p in self.etcd_version.split("-")[0].split(".")[:2]) >= (3, 6)


# Image versions from kubeadm's cmd/kubeadm/app/constants/constants.go (SupportedEtcdVersion,
# CoreDNSVersion, PauseVersion) as each minor shipped at .0. The search index holds constants.go only
# at pre-1.34 commits (00886ac0: 29-32 -> "3.5.24-0", CoreDNS v1.11.3, pause 3.10), so the values
# below were checked against the change history instead:
# - etcd 34 "3.6.4-0": etcd 3.6 is the default from v1.34 (kubeadm-spec section 1, v1.34 etcd.yaml).
# - etcd 35 "3.6.6-0": k/k#135271 (merged 2025-11, 1.35 cycle) set the current minor to "3.6.6-0".
# - etcd 36 "3.6.8-0": the 1.36-cycle master map is {34,35,36: "3.6.8-0"} (etcd's bump guide, diff of
#   constants.go); the 3.6.9 bump (k/k#137956) was closed unmerged. Later patch releases backport
#   newer etcd to all three minors (k/k#138746: 3.6.11 for v1.34-v1.36): users pinning a patch
#   release set etcd.local.imageTag.
# - CoreDNS v1.12.1 for 1.34, v1.13.1 for 1.35 and 1.36 (the v1.13.2 bump k/k#135814 was closed).
# - pause 3.10.1 for 1.34-1.36 (v1.34 kubeadm-flags.env: pause:3.10.1; v1.35 PauseVersion "3.10.1").
PROFILES: Final = {
    34: MinorProfile(34, "3.6.4-0", "v1.12.1", "3.10.1", True, True, True, True),
    35: MinorProfile(35, "3.6.6-0", "v1.13.1", "3.10.1", False, True, True, True),
    36: MinorProfile(36, "3.6.8-0", "v1.13.1", "3.10.1", False, True, False, True),
}


def profile(version: Version) -> MinorProfile:
    """The profile of a supported version; ValueError naming the supported range otherwise."""
    if version.major != 1 or version.minor not in PROFILES:
        lo, hi = min(SUPPORTED_MINORS), max(SUPPORTED_MINORS)
        raise ValueError(
            f"kubernetesVersion {version} is not supported: kubeboot supports v1.{lo}.x to v1.{hi}.x"
        )
    return PROFILES[version.minor]
