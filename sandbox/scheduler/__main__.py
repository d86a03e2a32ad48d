"""``python -m kubeboot.sandbox.scheduler <kube-scheduler flags>``: HTTPS ``/healthz``, ``/livez``, ``/readyz`` on
``--bind-address``:``--secure-port`` (default 10259) with a self-signed certificate, until SIGTERM.

With ``--leader-elect`` (the default; kubeadm sets it) and ``--kubeconfig`` (scheduler.conf) it is a
candidate for the Lease ``kube-system/kube-scheduler`` (``controllermanager.leaderelection``), as the
schedulers of every control-plane node of a cluster are; the leader would schedule (the emulated one has
no pods to place: static Pods never go through a scheduler). It serves health from the start, leader or
not, and without an API server. A leader that cannot renew exits 1 ("Leaderelection lost"); on SIGTERM
it releases the lease (the real scheduler's ReleaseOnCancel) and exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from kubeboot.sandbox.controllermanager import health, klog, leaderelection, rest
from kubeboot.sandbox.controllermanager.flags import Flags

SCHEDULER_PORT = 10259
LEASE_NAME = "kube-scheduler"
log = logging.getLogger("scheduler")


def elector(flags: Flags, access: rest.ClusterAccess) -> leaderelection.LeaderElector:
    config = leaderelection.ElectionConfig.from_flags(flags, LEASE_NAME, leaderelection.identity(),
                                                      release_on_cancel=True)
    lock = leaderelection.LeaseLock(access, config.namespace, config.name, config.renew_deadline / 2)
    return leaderelection.LeaderElector(lock, config)


def main(argv: list[str]) -> int:
    klog.setup()
    flags = Flags.parse(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    elect = flags.boolean("leader-elect", default=True) and bool(flags.get("kubeconfig"))
    log.info('"Starting emulated kube-scheduler" (sandbox: health and leader election) leaderElect=%s',
             str(elect).lower())
    try:
        candidate = elector(flags, rest.load_access(flags.get("kubeconfig"))) if elect else None
    except ValueError as e:
        log.error('"invalid leader election flags" err="%s"', e)
        return 1
    checks: dict[str, health.Check] = {"leaderElection": candidate.check} if candidate else {}
    server = health.serve(flags.bind_address(), flags.port(SCHEDULER_PORT), checks)
    try:
        if candidate is None:
            stop.wait()
            return 0
        if candidate.run(stop, lambda: log.info('"Starting scheduling" (no pods to schedule in the sandbox)')):
            log.info('"Requested to terminate, exiting"')
            return 0
        log.error('"Leaderelection lost"')
        return 1
    finally:
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
