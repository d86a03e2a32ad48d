"""kubeconfig documents as kubeadm writes and reads them (kubeadm util/kubeconfig + phases/kubeconfig).

Reads: nothing from disk (pure). Provides:
- ``KUBECONFIG_FILES``: the table of the five files ``kubeadm init`` writes under ``/etc/kubernetes``
  (file name, client identity, which API server it points at), and ``client_name`` / ``server_for``
  to resolve a row against the configuration;
- builders of the clientcmd ``Config`` document: with an embedded client certificate (``admin.conf``
  ...), with a bootstrap token (``bootstrap-kubelet.conf``), without any user (the ``cluster-info``
  ConfigMap's kubeconfig);
- ``dump``: the YAML bytes clientcmd writes;
- ``parse`` + ``credential_problem``: what an existing file says, and whether its embedded client
  certificate still works with the cluster CA.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kubeboot.config import constants as c
from kubeboot.tasks import goyaml
from kubeboot.tasks.pki import load_cert, load_key, public_key_der

if TYPE_CHECKING:  # annotations only: reading a kubeconfig (the sandbox's light clients) needs no pydantic
    from kubeboot.config.resolved import InitConfig

ServerKind = Literal["cluster", "local", "kubelet"]


@dataclass(frozen=True)
class KubeconfigFile:
    """One row of kubeadm's getKubeConfigSpecsBase."""

    phase: str  # the phase name: kubeconfig/<phase>
    file_name: str
    common_name: str  # client CN and kubeconfig user; "" = system:node:<node name>
    organizations: tuple[str, ...]
    server: ServerKind

    def path(self) -> str:
        return f"{c.KUBERNETES_DIR}/{self.file_name}"


KUBECONFIG_FILES: tuple[KubeconfigFile, ...] = (
    KubeconfigFile("admin", c.ADMIN_CONF, c.ADMIN_USER, (c.CLUSTER_ADMINS_GROUP,), "cluster"),
    KubeconfigFile("super-admin", c.SUPER_ADMIN_CONF, c.SUPER_ADMIN_USER, (c.SYSTEM_MASTERS,), "cluster"),
    KubeconfigFile("kubelet", c.KUBELET_CONF, "", (c.NODES_GROUP,), "kubelet"),
    KubeconfigFile("controller-manager", c.CONTROLLER_MANAGER_CONF, c.KCM_USER, (), "local"),
    KubeconfigFile("scheduler", c.SCHEDULER_CONF, c.SCHEDULER_USER, (), "local"),
)
BY_PHASE: dict[str, KubeconfigFile] = {f.phase: f for f in KUBECONFIG_FILES}

CONTROL_PLANE_KUBELET_LOCAL_MODE = "ControlPlaneKubeletLocalMode"


def client_name(spec: KubeconfigFile, cfg: InitConfig) -> str:
    return spec.common_name or f"{c.NODE_USER_PREFIX}{cfg.node_name}"


def kubelet_local_mode(cfg: InitConfig) -> bool:
    """kubeadm's feature gate: the minor's default unless ClusterConfiguration.featureGates sets it."""
    gates = cfg.cluster.featureGates
    return gates.get(CONTROL_PLANE_KUBELET_LOCAL_MODE, cfg.profile.kubelet_local_mode)


def server_for(spec: KubeconfigFile, cfg: InitConfig) -> str:
    """The API server URL a file points at (kubeadm-spec 2.3, Server column)."""
    local = spec.server == "local" or (spec.server == "kubelet" and kubelet_local_mode(cfg))
    return cfg.local_server if local else cfg.cluster_server


# --- building ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    # clientcmd's *-data fields are []byte: JSON encodes them as standard, padded base64.
    return base64.b64encode(data).decode()


def _basic(server: str, cluster_name: str, user: str, ca_pem: bytes, auth: dict[str, Any]) -> dict[str, Any]:
    """kubeadm's CreateBasic + one AuthInfo: one cluster, one user, one ``<user>@<cluster>`` context."""
    context = f"{user}@{cluster_name}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster_name, "cluster": {"certificate-authority-data": _b64(ca_pem), "server": server}}
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": context,
        "preferences": {},
        "users": [{"name": user, "user": auth}],
    }


def kubeconfig_with_certs(
    server: str, cluster_name: str, user: str, ca_pem: bytes, key_pem: bytes, cert_pem: bytes
) -> dict[str, Any]:
    auth = {"client-certificate-data": _b64(cert_pem), "client-key-data": _b64(key_pem)}
    return _basic(server, cluster_name, user, ca_pem, auth)


def kubeconfig_with_token(
    server: str,
    ca_pem: bytes,
    token: str,
    user: str = c.TLS_BOOTSTRAP_TOKEN_USER,
    cluster_name: str = c.DEFAULT_CLUSTER_NAME,
) -> dict[str, Any]:
    """``bootstrap-kubelet.conf``: kubeadm join's CreateWithToken (cluster ``kubernetes``)."""
    return _basic(server, cluster_name, user, ca_pem, {"token": token})


def kubeconfig_without_user(server: str, ca_pem: bytes) -> dict[str, Any]:
    """The ``cluster-info`` kubeconfig: one unnamed cluster copied from admin.conf, nothing else.

    clientcmd writes the empty lists of a Go Config as ``null``, and kubeadm's clusterinfo phase
    fills only ``Clusters[""]``.
    """
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "", "cluster": {"certificate-authority-data": _b64(ca_pem), "server": server}}],
        "contexts": None,
        "current-context": "",
        "preferences": {},
        "users": None,
    }


# --- serialising ---------------------------------------------------------------------------------


def dump(config: dict[str, Any]) -> str:
    """The YAML text clientcmd.Write produces for ``config``."""
    return goyaml.dump(config)


# --- parsing -------------------------------------------------------------------------------------


class KubeconfigError(ValueError):
    """The file is not a usable kubeconfig (kubeadm: failed to load / failed to find ...)."""


@dataclass(frozen=True)
class Kubeconfig:
    """What kubeadm looks at in an existing file: its current cluster and current user."""

    current_context: str
    cluster_name: str
    server: str
    ca_data: bytes  # decoded certificate-authority-data, b"" when absent
    ca_file: str  # certificate-authority (a path), "" when absent
    user_name: str
    client_cert_data: bytes  # b"" when the user has no embedded certificate
    client_key_data: bytes
    token: str


def _named(doc: dict[str, Any], key: str, inner: str) -> dict[str, dict[str, Any]]:
    entries = doc.get(key) or []
    if not isinstance(entries, list):
        raise KubeconfigError(f"{key} is not a list")
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get(inner) or {}, dict):
            raise KubeconfigError(f"{key} has an entry that is not a named {inner}")
        out[str(entry.get("name") or "")] = entry.get(inner) or {}
    return out


def _decode(section: dict[str, Any], key: str) -> bytes:
    raw = section.get(key)
    if not raw:
        return b""
    try:
        return base64.b64decode(str(raw), validate=True)
    except (binascii.Error, ValueError) as e:
        raise KubeconfigError(f"{key} is not valid base64: {e}") from None


def parse(text: str) -> Kubeconfig:
    """Load a kubeconfig as clientcmd.LoadFromFile + kubeadm's current-context lookups do."""
    try:
        doc = goyaml.load(text)
    except yaml.YAMLError as e:
        raise KubeconfigError(f"not YAML: {e}") from None
    if not isinstance(doc, dict):
        raise KubeconfigError("not a kubeconfig document")
    clusters = _named(doc, "clusters", "cluster")
    contexts = _named(doc, "contexts", "context")
    users = _named(doc, "users", "user")
    current = str(doc.get("current-context") or "")
    if current not in contexts:
        raise KubeconfigError("failed to find CurrentContext in Contexts")
    cluster_name = str(contexts[current].get("cluster") or "")
    if cluster_name not in clusters:
        raise KubeconfigError("failed to find the given CurrentContext Cluster in Clusters")
    cluster = clusters[cluster_name]
    user_name = str(contexts[current].get("user") or "")
    user = users.get(user_name, {})
    return Kubeconfig(
        current_context=current,
        cluster_name=cluster_name,
        server=str(cluster.get("server") or ""),
        ca_data=_decode(cluster, "certificate-authority-data"),
        ca_file=str(cluster.get("certificate-authority") or ""),
        user_name=user_name,
        client_cert_data=_decode(user, "client-certificate-data"),
        client_key_data=_decode(user, "client-key-data"),
        token=str(user.get("token") or ""),
    )


def same_ca(current: bytes, expected: bytes) -> bool:
    # kubeadm trims whitespace before comparing: hand-made files often end without or with extra newlines.
    return current.strip() == expected.strip()


def credential_problem(kc: Kubeconfig, ca: x509.Certificate, now: datetime) -> str | None:
    """Why the embedded client certificate cannot authenticate, or None.

    Users without an embedded certificate (token, certificate file paths, exec plugins) are trusted,
    as kubeadm trusts every existing file whose CA and server it accepted.
    """
    if not kc.client_cert_data:
        return None
    try:
        cert = load_cert(kc.client_cert_data)
    except ValueError:
        return "its client certificate is not a PEM certificate"
    return _cert_problem(cert, ca, now) or _key_problem(cert, kc.client_key_data)


def _cert_problem(cert: x509.Certificate, ca: x509.Certificate, now: datetime) -> str | None:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "its client certificate is not signed by the cluster CA"
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        until = f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
        return f"its client certificate is not valid now (valid until {until})"
    return None


def _key_problem(cert: x509.Certificate, key_pem: bytes) -> str | None:
    if not key_pem:
        return None
    try:
        key = load_key(key_pem)
    except ValueError:
        return "its client key is not a PEM private key"
    cert_pub = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if public_key_der(key.public_key()) != cert_pub:
        return "its client key does not match its client certificate"
    return None
