"""The secure health endpoints of kube-controller-manager and kube-scheduler.

Without ``--tls-cert-file`` a real component generates an in-memory self-signed pair at start
(client-go certutil.GenerateSelfSignedCertKey for "localhost": a ``localhost-ca@<unix>`` CA and a
``localhost@<unix>`` serving certificate); this does the same (ECDSA P-256 rather than RSA, to start
quickly; nobody verifies it: probes skip verification). ``/healthz``, ``/livez`` and ``/readyz`` are
open to anonymous clients, as ``--authorization-always-allow-paths`` makes them by default, and answer
``ok`` when every check passes, else 500 with ``[-]<check> failed`` lines like the apiserver library;
``?verbose`` lists every check. Any other path is refused (403) like an unauthorized anonymous request.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubeboot.tasks import pki
from kubeboot.tasks.fsutil import load_cert_chain_pem

HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
Check = Callable[[], str | None]  # None when healthy, else the reason
log = logging.getLogger("health")


def self_signed_pair(host: str = "localhost", extra_ips: tuple[str, ...] = (),
                     now: datetime | None = None) -> tuple[bytes, bytes]:
    """(certificate chain PEM, key PEM) as GenerateSelfSignedCertKey makes them."""
    now = now or datetime.now(UTC)
    stamp = int(now.timestamp())
    ca_key = pki.generate_key("ECDSA-P256")
    ca = pki.build_certificate(pki.CertSpec(f"{host}-ca@{stamp}", is_ca=True), ca_key.public_key(), ca_key,
                               None, now)
    ips = ["127.0.0.1", *[i for i in extra_ips if _is_ip(i)]]
    key = pki.generate_key("ECDSA-P256")
    spec = pki.CertSpec(f"{host}@{stamp}", dns_names=(host,), ips=tuple(ips), usages=(pki.SERVER_AUTH,))
    cert = pki.build_certificate(spec, key.public_key(), ca_key, ca, now)
    return pki.cert_to_pem(cert) + pki.cert_to_pem(ca), pki.key_to_pem(key)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def tls_context(chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    load_cert_chain_pem(ctx, chain_pem, key_pem)
    return ctx


def health_body(checks: dict[str, Check], verbose: bool) -> tuple[int, str]:
    """(status, text) of a health path: ``ok`` or the failed checks, as k8s.io/apiserver/pkg/server/healthz."""
    results = [("ping", None), *[(name, check()) for name, check in checks.items()]]
    failed = [name for name, reason in results if reason is not None]
    if not failed and not verbose:
        return 200, "ok"
    lines = [f"[+]{name} ok" if reason is None else f"[-]{name} failed: reason withheld"
             for name, reason in results]
    lines.append("healthz check failed" if failed else "healthz check passed")
    return (500 if failed else 200), "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer
    timeout = 10
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        base = next((p for p in HEALTH_PATHS if path == p or path.startswith(p + "/")), None)
        if base is None:
            status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": f'forbidden: User "system:anonymous" cannot get path "{url.path}"',
                      "reason": "Forbidden", "details": {}, "code": 403}
            self._send(403, json.dumps(status), "application/json")
            return
        checks = self.server.checks
        if path != base:  # /healthz/<check>: that one only
            name = path[len(base) + 1:]
            if name != "ping" and name not in checks:
                self._send(404, "404 page not found\n", "text/plain; charset=utf-8")
                return
            checks = {name: checks[name]} if name in checks else {}
        code, text = health_body(checks, "verbose" in parse_qs(url.query, keep_blank_values=True))
        self._send(code, text, "text/plain; charset=utf-8")

    def _send(self, code: int, text: str, content_type: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes every few seconds: not worth a log line each


class HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, checks: dict[str, Check]) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.checks = checks
        self._ctx = ctx
        super().__init__((host, port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the request's own thread: a stalled client cannot
        # block the accept loop.
        request.settimeout(_Handler.timeout)
        try:
            tls = self._ctx.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


def serve(host: str, port: int, checks: dict[str, Check]) -> HealthServer:
    """Start the secure health server in a daemon thread; raises OSError if the port is taken."""
    chain, key = self_signed_pair("localhost", (host,))
    server = HealthServer(host, port, tls_context(chain, key), checks)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info('"Serving securely on %s"', f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return server
