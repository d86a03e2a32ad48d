"""``python -m kubeboot.sandbox.scheduler <kube-scheduler flags>``: HTTPS ``/healthz``, ``/livez``, ``/readyz`` on
``--bind-address``:``--secure-port`` (default 10259) with a self-signed certificate, until SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from kubeboot.sandbox.controllermanager import health, klog
from kubeboot.sandbox.controllermanager.flags import Flags

SCHEDULER_PORT = 10259


def main(argv: list[str]) -> int:
    klog.setup()
    flags = Flags.parse(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("scheduler").info('"Starting emulated kube-scheduler" (sandbox: health endpoints only)')
    server = health.serve(flags.bind_address(), flags.port(SCHEDULER_PORT), {})
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
