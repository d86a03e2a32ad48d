"""The emulated kube-controller-manager: flags in, health server and controllers running.

Reads: the flags of the generated manifest (paths and addresses already mapped into the node by the
sandbox kubelet): ``--kubeconfig``, ``--bind-address``/``--secure-port``, ``--controllers``,
``--use-service-account-credentials``, ``--service-account-private-key-file``,
``--cluster-signing-cert-file``/``--cluster-signing-key-file``/``--cluster-signing-duration``.
Start-up, as a real one: serve health (failing until the controllers run), make sure each controller's
ServiceAccount exists (with the manager's own certificate), then start every enabled controller with
its own service-account identity. With ``--leader-elect`` (the default, and what kubeadm sets) the
controllers start only once this manager holds the Lease ``kube-system/kube-controller-manager``
(``leaderelection``; ``--leader-elect-*`` flags as the real one's): the managers of every control-plane
node of a cluster are candidates and one of them runs the controllers. A candidate is healthy; a leader
that misses its renew deadline has lost the lease and exits 1 ("leaderelection lost"), as the real one
does, for the kubelet to restart it. SIGTERM / SIGINT stop it (exit 0); the lease is kept, to expire.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import kubernetes.client as k8s

from kubeboot.sandbox.controllermanager import base, client, health, klog, leaderelection
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
LEASE_NAME = "kube-controller-manager"
log = logging.getLogger("controllermanager")
Factory = tuple[str, str, Callable[[k8s.ApiClient], Controller]]


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


def controller_factories(flags: Flags) -> list[Factory]:
    """(controller name, service account, factory) of every enabled controller, in start order."""
    wanted = flags.controllers()
    out: list[Factory] = []
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
    elect = flags.boolean("leader-elect", default=True)
    log.info('"Starting emulated kube-controller-manager" (sandbox) leaderElect=%s', str(elect).lower())
    kubeconfig = flags.get("kubeconfig")
    if not kubeconfig:
        raise StartError("--kubeconfig is required by the emulated kube-controller-manager")
    use_sa = flags.boolean("use-service-account-credentials")
    sa_key_file = flags.get("service-account-private-key-file")
    if use_sa and not sa_key_file:
        raise StartError("--use-service-account-credentials was specified without providing a "
                         "--service-account-private-key-file")
    factories = controller_factories(flags)
    elector = None
    creds = client.Credentials(client.load_access(kubeconfig))
    try:
        if elect:
            try:
                config = leaderelection.ElectionConfig.from_flags(
                    flags, LEASE_NAME, leaderelection.identity(), release_on_cancel=False)
            except ValueError as e:
                raise StartError(f"invalid leader election flags: {e}") from None
            lock = leaderelection.LeaseLock(creds.access, config.namespace, config.name, config.renew_deadline / 2)
            elector = leaderelection.LeaderElector(lock, config)
        return _serve(flags, creds, factories, elector, stop, sa_key_file if use_sa else "")
    finally:
        creds.close()


def _serve(flags: Flags, creds: client.Credentials, factories: list[Factory],
           elector: leaderelection.LeaderElector | None, stop: threading.Event, sa_key_file: str) -> int:
    """Health server up, then the controllers: at once, or once ``elector`` holds the lease."""
    started = threading.Event()
    checks: dict[str, health.Check] = {
        # A candidate is healthy; a leader is once its controllers run.
        "controllers": lambda: None if started.is_set() or (elector is not None and not elector.is_leader())
        else "controllers not started"}
    if elector is not None:
        checks["leaderElection"] = elector.check
    server = health.serve(flags.bind_address(), flags.port(KCM_PORT), checks)
    threads: list[threading.Thread] = []

    def lead() -> None:
        threads.extend(start_controllers(creds, factories, sa_key_file, stop))
        started.set()

    # OnStartedLeading runs beside the renewals: creating the accounts may wait for the API server.
    leading = threading.Thread(target=lead, name="start-controllers", daemon=True)
    try:
        if elector is None:
            leading.start()
            stop.wait()
            stopped = True
        else:
            stopped = elector.run(stop, leading.start)
        stop.set()  # a lost lease stops the controllers too
        if leading.is_alive():
            leading.join(timeout=5)
        for thread in threads:
            thread.join(timeout=5)
        if not stopped:
            log.error('"leaderelection lost"')
            return 1
        return 0
    finally:
        server.shutdown()


def start_controllers(creds: client.Credentials, factories: list[Factory], sa_key_file: str,
                      stop: threading.Event) -> list[threading.Thread]:
    """Every enabled controller in its thread, each with its own service-account identity when
    ``sa_key_file`` is set (after making sure those accounts exist)."""
    threads: list[threading.Thread] = []
    sa_key = pki.load_key(Path(sa_key_file).read_bytes()) if sa_key_file else None
    if sa_key is not None and not ensure_accounts(creds, sorted({account for _, account, _ in factories}), stop):
        return threads
    for name, account, factory in factories:
        api = (creds.token_client(TokenSource(sa_key, client.NAMESPACE, account)) if sa_key is not None
               else creds.own_client())
        threads.append(base.start(factory(api), stop))
        log.info('"Started controller" controller="%s"', name)
    return threads
