"""``kubeadm join`` discovery: make the joining node trust the control plane (kubeadm-spec 3.1;
kubeadm discovery/token/token.go, discovery/discovery.go, util/pubkeypin).

Reads: ``kube-public/cluster-info`` from the given endpoint (anonymously), or a discovery kubeconfig
file / https URL. Writes: nothing; returns the validated cluster (server + CA) for the TLS bootstrap.

Token discovery, exactly as kubeadm:
1. insecure GET of cluster-info (no server verification: nothing is trusted yet, nothing secret is sent);
2. its ``jws-kubeconfig-<token id>`` must be the detached JWS (HS256, header ``{"alg":"HS256","kid":<id>}``,
   payload = the ``kubeconfig`` value, HMAC-SHA256 keyed with the token secret) — recomputed here and
   compared in constant time; any other algorithm is refused. No signature yet: keep polling (the
   bootstrap signer adds it asynchronously; an unknown or expired token never gets one);
3. the CA in that kubeconfig must match one of the pins ``sha256:<hex of the DER SubjectPublicKeyInfo>``
   (skipped with ``unsafeSkipCAVerification``);
4. GET cluster-info again over TLS verified with that CA; the kubeconfig must be byte-for-byte the
   same as the insecure copy.
File discovery: the file's (or https URL's) current cluster; then cluster-info fetched with that CA
replaces it when reachable.

Each call is ONE attempt: ``DiscoveryPending`` when kubeadm would poll again (endpoint unreachable, no
signature yet), ``DiscoveryError`` when the API server cannot be trusted (bad signature, CA not pinned,
second copy differs). The caller spaces attempts 5 s apart up to ``timeouts.discovery``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import yaml
from cryptography import x509

from kubeboot.config import constants as c
from kubeboot.tasks import goyaml
from kubeboot.tasks import kubeconfig as kc
from kubeboot.tasks.pki import ca_cert_hash

CLUSTER_INFO_PATH: Final = f"/api/v1/namespaces/{c.NAMESPACE_PUBLIC}/configmaps/{c.CLUSTER_INFO_CONFIGMAP}"
JWS_PREFIX: Final = "jws-kubeconfig-"
RETRY_INTERVAL: Final = 5.0  # kubeadm constants.DiscoveryRetryInterval
REQUEST_TIMEOUT: Final = 10.0  # the ?timeout=10s of kubeadm's discovery client
HS256: Final = "HS256"

# (endpoint host:port, CA PEM to verify the server with, or None for the insecure first fetch) -> ConfigMap
Fetch = Callable[[str, bytes | None], dict[str, Any]]


class DiscoveryPending(Exception):
    """Not yet: kubeadm keeps polling (the message is its last error)."""


class DiscoveryError(Exception):
    """The API server cannot be trusted; polling will not change that."""


@dataclass(frozen=True)
class ClusterInfo:
    """What discovery established: the cluster's API server URL and CA, and the kubeconfig text they came in."""

    server: str
    ca_pem: bytes
    kubeconfig: str

    @property
    def ca_hash(self) -> str:
        return ca_cert_hash(x509.load_pem_x509_certificate(self.ca_pem))


# --- the pieces --------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def detached_jws_valid(jws: str, payload: str, token_id: str, token_secret: str) -> bool:
    """k8s.io/cluster-bootstrap jws.DetachedTokenIsValid: recompute ``<header>..<signature>`` and compare.

    The header must say HS256 (a forged ``none`` or asymmetric header never passes) and be go-jose's
    serialisation for this token id; the HMAC key is the token secret alone."""
    parts = jws.split(".")
    if len(parts) != 3 or parts[1]:
        return False
    try:
        header = json.loads(_b64url_decode(parts[0]))
    except (ValueError, binascii.Error):
        return False
    if not isinstance(header, dict) or header.get("alg") != HS256:
        return False
    return hmac.compare_digest(detached_jws(payload, token_id, token_secret).encode(), jws.encode())


def detached_jws(payload: str, token_id: str, token_secret: str) -> str:
    """The detached HS256 JWS of ``payload`` the bootstrap signer writes as ``jws-kubeconfig-<token id>``."""
    protected = _b64url(json.dumps({"alg": HS256, "kid": token_id}, separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{protected}.{_b64url(payload.encode())}".encode("ascii")
    signature = hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{protected}..{_b64url(signature)}"


def check_pins(ca_pem: bytes, pins: list[str]) -> None:
    """pubkeypin.Set.CheckAny over every certificate of the cluster-info CA bundle."""
    wanted = {p.split(":", 1)[1].lower() for p in pins}
    try:
        certs = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as e:
        raise DiscoveryError(f"failed to parse cluster CA from the {c.CLUSTER_INFO_CONFIGMAP} ConfigMap: {e}") from None
    hashes = [ca_cert_hash(cert) for cert in certs]
    if any(h.split(":", 1)[1] in wanted for h in hashes):
        return
    raise DiscoveryError(f"cluster CA found in {c.CLUSTER_INFO_CONFIGMAP} ConfigMap is invalid: none of the public "
                         f'keys "{":".join(hashes)}" are pinned')


def cluster_of(kubeconfig_text: str, what: str) -> tuple[str, bytes]:
    """(server, CA PEM) of the kubeconfig's current cluster, else its only/first cluster
    (kubeconfigutil.GetClusterFromKubeConfig)."""
    try:
        doc = goyaml.load(kubeconfig_text)
    except yaml.YAMLError as e:
        raise DiscoveryError(f"couldn't parse the kubeconfig file in the {what}: {e}") from None
    clusters = (doc or {}).get("clusters") if isinstance(doc, dict) else None
    if not isinstance(clusters, list) or not clusters:
        raise DiscoveryError(f"malformed kubeconfig in the {what}: no cluster")
    by_name = {str(e.get("name") or ""): e.get("cluster") or {} for e in clusters if isinstance(e, dict)}
    current = str(doc.get("current-context") or "")
    context = next((e.get("context") or {} for e in doc.get("contexts") or [] if e.get("name") == current), {})
    cluster = by_name.get(str(context.get("cluster") or ""), next(iter(by_name.values()), {}))
    ca = base64.b64decode(cluster.get("certificate-authority-data") or "")
    return str(cluster.get("server") or ""), ca


def _signed_kubeconfig(cm: dict[str, Any], token_id: str, token_secret: str) -> str:
    """validateClusterInfoToken, with getClusterInfo's "keep polling while the signature is missing"."""
    data = cm.get("data") or {}
    text = data.get(c.CLUSTER_INFO_KUBECONFIG_KEY)
    if not text:
        raise DiscoveryError(f"there is no {c.CLUSTER_INFO_KUBECONFIG_KEY} key in the {c.CLUSTER_INFO_CONFIGMAP} "
                             "ConfigMap. This API Server isn't set up for token bootstrapping, can't connect")
    jws = data.get(JWS_PREFIX + token_id)
    if not jws:
        raise DiscoveryPending(f"could not find a JWS signature in the {c.CLUSTER_INFO_CONFIGMAP} ConfigMap for "
                               f'token ID "{token_id}"')
    if not detached_jws_valid(str(jws), str(text), token_id, token_secret):
        raise DiscoveryError("failed to verify JWS signature of received cluster info object, can't trust this "
                             "API Server")
    return str(text)


# --- the two kinds of discovery --------------------------------------------------------------------


def token_discovery(endpoint: str, token: str, pins: list[str], fetch: Fetch) -> ClusterInfo:
    """One attempt of kubeadm's RetrieveValidatedConfigInfo."""
    token_id, _, token_secret = token.partition(".")
    insecure = _signed_kubeconfig(fetch(endpoint, None), token_id, token_secret)
    server, ca = cluster_of(insecure, f"{c.CLUSTER_INFO_CONFIGMAP} ConfigMap")
    if not pins:  # --discovery-token-unsafe-skip-ca-verification
        return ClusterInfo(server, ca, insecure)
    check_pins(ca, pins)
    secure = (fetch(endpoint, ca).get("data") or {}).get(c.CLUSTER_INFO_KUBECONFIG_KEY)
    if secure != insecure:
        raise DiscoveryError(f"the second kubeconfig from the {c.CLUSTER_INFO_CONFIGMAP} ConfigMap (using validated "
                             "TLS) was different from the first")
    return ClusterInfo(server, ca, insecure)


def file_discovery(text: str, source: str, fetch: Fetch) -> ClusterInfo:
    """The discovery file's cluster; cluster-info read with its CA replaces it when reachable."""
    server, ca = cluster_of(text, f"discovery file {source}")
    if not server or not ca:
        raise DiscoveryError(f"discovery file {source}: its cluster needs a server and certificate-authority-data")
    endpoint = server.removeprefix("https://").rstrip("/")
    try:
        refreshed = (fetch(endpoint, ca).get("data") or {}).get(c.CLUSTER_INFO_KUBECONFIG_KEY)
    except DiscoveryPending:
        refreshed = None
    if refreshed:
        new_server, new_ca = cluster_of(str(refreshed), f"{c.CLUSTER_INFO_CONFIGMAP} ConfigMap")
        return ClusterInfo(new_server or server, new_ca or ca, str(refreshed))
    return ClusterInfo(server, ca, text)


def bootstrap_kubeconfig(info: ClusterInfo, token: str, cluster_name: str, server: str | None = None) -> str:
    """``bootstrap-kubelet.conf``: kubeadm's CreateWithToken (context ``tls-bootstrap-token-user@kubernetes``)
    with the cluster renamed to the cluster's name, as fetchInitConfigurationFromJoinConfiguration does."""
    doc = kc.kubeconfig_with_token(server or info.server, info.ca_pem, token)
    doc["clusters"][0]["name"] = cluster_name
    doc["contexts"][0]["context"]["cluster"] = cluster_name
    return kc.dump(doc)


# --- HTTP ------------------------------------------------------------------------------------------


def _context(ca_pem: bytes | None) -> ssl.SSLContext:
    if ca_pem is None:
        insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # the first fetch trusts nothing and sends nothing secret
        return insecure
    return ssl.create_default_context(cadata=ca_pem.decode())


def http_fetch(endpoint: str, ca_pem: bytes | None) -> dict[str, Any]:
    """GET cluster-info from ``endpoint`` (``host:port``); DiscoveryPending with Go's wording on failure."""
    url = f"https://{endpoint}{CLUSTER_INFO_PATH}?timeout=10s"
    host, _, port = endpoint.rpartition(":")
    conn = http.client.HTTPSConnection(host.strip("[]"), int(port), timeout=REQUEST_TIMEOUT,
                                       context=_context(ca_pem))
    try:
        conn.request("GET", f"{CLUSTER_INFO_PATH}?timeout=10s", headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read(1 << 20)
    except ssl.SSLCertVerificationError as e:
        raise DiscoveryPending(f'failed to request the cluster-info ConfigMap: Get "{url}": '
                               f"tls: failed to verify certificate: {e.verify_message}") from None
    except ConnectionRefusedError:
        raise DiscoveryPending(f'failed to request the cluster-info ConfigMap: Get "{url}": dial tcp {endpoint}: '
                               "connect: connection refused") from None
    except (OSError, http.client.HTTPException) as e:
        raise DiscoveryPending(f'failed to request the cluster-info ConfigMap: Get "{url}": {e}') from None
    finally:
        conn.close()
    if resp.status != 200:
        raise DiscoveryPending(f"failed to request the cluster-info ConfigMap: {resp.status} {resp.reason}")
    try:
        found = json.loads(body)
    except ValueError:
        raise DiscoveryPending("failed to request the cluster-info ConfigMap: the answer is not JSON") from None
    return found if isinstance(found, dict) else {}
