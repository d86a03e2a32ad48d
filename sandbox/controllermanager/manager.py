"""The emulated kube-controller-manager: flags in, health server and controllers running.

Reads: the flags of the generated manifest (paths and addresses already mapped into the node by the
sandbox kubelet): ``--kubeconfig``, ``--bind-address``/``--secure-port``, ``--controllers``,
``--use-service-account-credentials``, ``--service-account-private-key-file``,
``--cluster-signing-cert-file``/``--cluster-signing-key-file``/``--cluster-signing-duration``.
Start-up, as a real one: serve health (failing until the controllers run), make sure each controller's
ServiceAccount exists (with the manager's own certificate), then start every enabled controller with
its own service-account identity. Leader election is not emulated: every controller is idempotent and
a lost update race is a 409 retried on the next pass, so several managers of one cluster coexist.
SIGTERM / SIGINT stop it (exit 0).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import kubernetes.client as k8s

from kubeboot.sandbox.controllermanager import base, client, health, klog
from kubeboot.sandbox.controllermanager.base import Controller
from kubeboot.sandbox.controllermanager.bootstrapsigner import BootstrapSigner
from kubeboot.sandbox.controllermanager.csrapprover import CSRApprover
from kubeboot.sandbox.controllermanager.csrsigner import DEFAULT_DURATION, CSRSigner
from kubeboot.sandbox.controllermanager.flags import Flags, enabled, parse_duration
from kubeboot.sandbox.controllermanager.gc import GarbageCollector
from kubeboot.sandbox.controllermanager.satokens import TokenSource
from kubeboot.sandbox.controllermanager.tokencleaner import TokenCleaner
from kubeboot.tasks import pki

KCM_PORT = 10257
log = logging.getLogger("controllermanager")


class StartError(Exception):
    """A flag combination a real kube-controller-manager refuses at start."""


def csr_signer_factory(flags: Flags) -> Callable[[k8s.ApiClient], Controller] | None:
    cert_file, key_file = flags.get("cluster-signing-cert-file"), flags.get("cluster-signing-key-file")
    if not cert_file or not key_file:
        log.info('"Skipping CSR signer controller because no csr cert/key was specified"')
        return None
    ca_cert = pki.load_cert(Path(cert_file).read_bytes())
    ca_key = pki.load_key(Path(key_file).read_bytes())
    ttl = parse_duration(flags.get("cluster-signing-duration")) if flags.get("cluster-signing-duration") \
        else DEFAULT_DURATION
    return lambda api: CSRSigner(api, ca_cert, ca_key, ttl)


def controller_factories(flags: Flags) -> list[tuple[str, str, Callable[[k8s.ApiClient], Controller]]]:
    """(controller name, service account, factory) of every enabled controller, in start order."""
    wanted = flags.controllers()
    out: list[tuple[str, str, Callable[[k8s.ApiClient], Controller]]] = []
    for cls in (BootstrapSigner, TokenCleaner, CSRApprover, GarbageCollector):
        if enabled(cls.name, wanted):
            out.append((cls.name, cls.account, cls))
    if enabled(CSRSigner.name, wanted):
        factory = csr_signer_factory(flags)
        if factory is not None:
            out.append((CSRSigner.name, CSRSigner.account, factory))
    for name in ("bootstrapsigner", "tokencleaner", "csrapproving", "csrsigning", "garbagecollector"):
        if not enabled(name, wanted):
            log.info('"Warning: controller is disabled" controller="%s"', name)
    return out


def ensure_accounts(creds: client.Credentials, accounts: list[str], stop: threading.Event) -> bool:
    """Create the controllers' ServiceAccounts, retrying until the API server answers; False if stopped."""
    own = creds.own_client()
    last = ""
    while not stop.is_set():
        try:
            for name in client.ensure_service_accounts(own, accounts):
                log.info('"Created service account" serviceAccount="kube-system/%s"', name)
            return True
        except Exception as e:
            message = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            if message != last:
                log.error('"Waiting for the API server to create service accounts" err="%s"', message)
                last = message
        stop.wait(1.0)
    return False


def main(argv: list[str] | None = None) -> int:
    klog.setup()
    flags = Flags.parse(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return run(flags, stop)
    except StartError as e:
        log.error("%s", e)
        return 1


def run(flags: Flags, stop: threading.Event) -> int:
    log.info('"Starting emulated kube-controller-manager" (sandbox; leader election not emulated)')
    kubeconfig = flags.get("kubeconfig")
    if not kubeconfig:
        raise StartError("--kubeconfig is required by the emulated kube-controller-manager")
    use_sa = flags.boolean("use-service-account-credentials")
    sa_key_file = flags.get("service-account-private-key-file")
    if use_sa and not sa_key_file:
        raise StartError("--use-service-account-credentials was specified without providing a "
                         "--service-account-private-key-file")
    factories = controller_factories(flags)
    started = threading.Event()
    checks: dict[str, health.Check] = {
        "controllers": lambda: None if started.is_set() else "controllers not started"}
    server = health.serve(flags.bind_address(), flags.port(KCM_PORT), checks)
    creds = client.Credentials(client.load_access(kubeconfig))
    try:
        if use_sa:
            sa_key = pki.load_key(Path(sa_key_file).read_bytes())
            if not ensure_accounts(creds, sorted({account for _, account, _ in factories}), stop):
                return 0
        threads = []
        for name, account, factory in factories:
            api = (creds.token_client(TokenSource(sa_key, client.NAMESPACE, account)) if use_sa
                   else creds.own_client())
            threads.append(base.start(factory(api), stop))
            log.info('"Started controller" controller="%s"', name)
        started.set()
        stop.wait()
        for thread in threads:
            thread.join(timeout=5)
        return 0
    finally:
        server.shutdown()
        creds.close()
