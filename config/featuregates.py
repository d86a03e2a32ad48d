"""kubeadm's own feature gates (``ClusterConfiguration.featureGates``) per target minor.

Reads: nothing. Writes: nothing. kubeadm rejects a gate it does not know ("X is not a valid feature
name.", validation.ValidateFeatureGates over features.InitFeatureGates) and a deprecated one; once a
gate is removed from kubeadm, a config that still names it stops validating. The table follows the
graduation history in kubeadm-spec section 1:

- WaitForAllControlPlaneComponents: GA/locked 1.34, removed 1.35 (k/k#132594, #134781)
- ControlPlaneKubeletLocalMode: beta 1.33, GA/locked 1.35, removed 1.36 (k/k#129956, #134106, #135773)
- NodeLocalCRISocket: beta 1.34, GA 1.36, removed 1.37 (k/k#135742, #138645)
- RootlessControlPlane: alpha since 1.22, still listed; off by default, implemented by ``tasks.rootless``
- EtcdLearnerMode (removed 1.33) and PublicKeysECDSA (deprecated 1.31, replaced by
  ``encryptionAlgorithm``) are gone from every supported minor.
"""

from __future__ import annotations

from typing import Final

_ROOTLESS = "RootlessControlPlane"
_WAIT_ALL = "WaitForAllControlPlaneComponents"
_LOCAL_MODE = "ControlPlaneKubeletLocalMode"
_CRI_SOCKET = "NodeLocalCRISocket"

KUBEADM_FEATURE_GATES: Final[dict[int, tuple[str, ...]]] = {
    34: (_CRI_SOCKET, _LOCAL_MODE, _ROOTLESS, _WAIT_ALL),
    35: (_CRI_SOCKET, _LOCAL_MODE, _ROOTLESS),
    36: (_CRI_SOCKET, _ROOTLESS),
}


def known_feature_gates(minor: int) -> tuple[str, ...]:
    """The gates kubeadm v1.<minor> accepts, sorted; empty for an unsupported minor."""
    return KUBEADM_FEATURE_GATES.get(minor, ())
