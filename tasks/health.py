"""Bounded HTTP(S) health probes, as kubeadm's waiters do them (util/apiclient/wait.go).

Reads: nothing on disk; writes nothing. ``probe`` does ONE ``GET`` with a short timeout and reports
the status code or the error in the words of Go's net/http (``Get "<url>": dial tcp ...: connect:
connection refused``), so a failure message reads like kubeadm's. HTTPS probes skip certificate
verification (kubeadm's ``InsecureSkipVerify``: the component's serving certificate may be a
throw-away self-signed one). A client certificate may be presented (the API server's ``/livez`` is
checked with the admin credentials, like kubeadm's client, so it also works with anonymous auth off).
``probe_all`` runs several probes in parallel threads and returns when the slowest one ends.

Nothing here retries or sleeps: waiting is the caller's business (one bounded attempt per phase run).
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from kubeboot.tasks import kubeconfig as kc
from kubeboot.tasks.fsutil import load_cert_chain_pem

DEFAULT_TIMEOUT = 2.0  # seconds per probe: a healthy local component answers in milliseconds
_BODY_LIMIT = 4096  # health bodies are "ok" or a short check list; never read more


@dataclass(frozen=True)
class ClientCert:
    """A client certificate and key (PEM) presented during the TLS handshake."""

    cert_pem: bytes
    key_pem: bytes


def kubeconfig_client_cert(data: bytes | None) -> ClientCert | None:
    """The embedded client certificate of a kubeconfig's current user; None when it has none."""
    if not data:
        return None
    try:
        parsed = kc.parse(data.decode())
    except (kc.KubeconfigError, UnicodeDecodeError):
        return None
    if not parsed.client_cert_data or not parsed.client_key_data:
        return None
    return ClientCert(parsed.client_cert_data, parsed.client_key_data)


@dataclass(frozen=True)
class Probe:
    url: str
    client_cert: ClientCert | None = None


@dataclass(frozen=True)
class ProbeResult:
    url: str
    status: int | None  # the HTTP status; None when no response arrived
    error: str  # "" when the status is 200; else why the probe failed, Go-style

    @property
    def ok(self) -> bool:
        return self.status == 200


def _tls_context(client_cert: ClientCert | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # kubeadm: InsecureSkipVerify
    if client_cert is not None:
        load_cert_chain_pem(ctx, client_cert.cert_pem, client_cert.key_pem)
    return ctx


def _connection(url: str, timeout: float, client_cert: ClientCert | None) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port
    if parts.scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=_tls_context(client_cert))
    if parts.scheme == "http":
        return http.client.HTTPConnection(host, port, timeout=timeout)
    raise ValueError(f"unsupported URL scheme in {url!r}")


def _dial_target(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2]


def _describe(url: str, err: BaseException) -> str:
    """The error as Go's http.Client would phrase it."""
    if isinstance(err, ConnectionRefusedError):
        reason = f"dial tcp {_dial_target(url)}: connect: connection refused"
    elif isinstance(err, TimeoutError | socket.timeout):
        reason = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    elif isinstance(err, ssl.SSLError):
        reason = f"remote error: tls: {err.reason or err}"
    elif isinstance(err, OSError) and err.strerror:
        reason = f"dial tcp {_dial_target(url)}: {err.strerror.lower()}"
    else:
        reason = str(err) or type(err).__name__
    return f'Get "{url}": {reason}'


def probe(url: str, timeout: float = DEFAULT_TIMEOUT, client_cert: ClientCert | None = None) -> ProbeResult:
    """One ``GET url`` within ``timeout`` seconds (connect and response each)."""
    path = urlsplit(url).path or "/"
    try:
        conn = _connection(url, timeout, client_cert)
    except (ValueError, ssl.SSLError) as e:
        return ProbeResult(url, None, f'Get "{url}": {e}')
    try:
        conn.request("GET", path, headers={"Accept": "*/*", "User-Agent": "kubeboot"})
        resp = conn.getresponse()
        resp.read(_BODY_LIMIT)
        status = resp.status
    except (OSError, http.client.HTTPException) as e:
        return ProbeResult(url, None, _describe(url, e))
    finally:
        conn.close()
    return ProbeResult(url, status, "" if status == 200 else f"status code: {status}")


def probe_all(probes: Sequence[Probe], timeout: float = DEFAULT_TIMEOUT) -> list[ProbeResult]:
    """Every probe at once, in parallel threads; results in the order of ``probes``."""
    if not probes:
        return []
    with ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="probe") as pool:
        futures = [pool.submit(probe, p.url, timeout, p.client_cert) for p in probes]
        return [f.result() for f in futures]
