"""``python -m kubeboot.sandbox.apiserver --advertise-address=... --secure-port=... ...``: the emulated kube-apiserver.

Reads: its flags (the generated manifest's, paths and addresses already mapped by the sandbox kubelet),
among them ``--etcd-servers``, ``--etcd-cafile``/``--etcd-certfile``/``--etcd-keyfile`` and
``--etcd-prefix``. Writes: every object to that etcd (``store``), logs on stderr.

Start-up, as the real one: nothing is served until etcd answers a read. The sandbox kubelet starts the
etcd and API server static Pods together, so the first seconds are a wait, logged once per distinct
error and again every ``WAIT_LOG_EVERY`` seconds. Then the system namespaces and the ``kubernetes``
Service are made (each API server of a cluster tries; the first wins), the informer cache starts, and
the listener opens. SIGTERM or SIGINT stops it cleanly: the listener closes, in-flight requests finish.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType

from kubeboot.sandbox.apiserver import etcd
from kubeboot.sandbox.apiserver import flags as flagmod
from kubeboot.sandbox.apiserver.mirror import Mirror
from kubeboot.sandbox.apiserver.server import ApiServer, log
from kubeboot.sandbox.apiserver.store import Store

RETRY = 1.0
WAIT_LOG_EVERY = 10.0


def connect(flags: flagmod.ApiServerFlags) -> etcd.Etcd:
    try:
        tls = etcd.tls_context(flags.etcd_cafile, flags.etcd_certfile, flags.etcd_keyfile)
    except (OSError, ValueError) as e:
        raise flagmod.FlagError(f"unable to load the etcd client TLS files (--etcd-cafile, --etcd-certfile, "
                                f"--etcd-keyfile): {e}") from None
    return etcd.Etcd(flags.etcd_servers, tls)


def wait_for_etcd(client: etcd.Etcd, servers: str, stop: threading.Event) -> bool:
    """Retry a read until etcd answers; False if stopped first."""
    last, logged_at = "", 0.0
    while not stop.is_set():
        try:
            revision = client.revision()
        except (etcd.EtcdError, OSError) as e:
            message = str(e).splitlines()[0]
            if message != last or time.monotonic() - logged_at > WAIT_LOG_EVERY:
                log(f"waiting for etcd at {servers}: {message} (retrying every {RETRY:.0f}s)")
                last, logged_at = message, time.monotonic()
            stop.wait(RETRY)
            continue
        log(f"etcd at {servers} answers (revision {revision})")
        return True
    return False


def main(argv: list[str]) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log(f"received {signal.Signals(signum).name}, shutting down")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        flags = flagmod.parse(argv)
        client = connect(flags)
    except flagmod.FlagError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    servers = ",".join(flags.etcd_servers)
    log(f"emulated kube-apiserver: storage in etcd at {servers}, prefix {flags.etcd_prefix}")
    if not wait_for_etcd(client, servers, stop):
        return 0
    store = Store(client, flags.etcd_prefix)
    mirror = Mirror(store, log)
    store.cache = mirror.cached
    try:
        store.bootstrap()
        mirror.start()
        server = ApiServer(flags, store, mirror)
    except (OSError, etcd.EtcdError, flagmod.FlagError) as e:
        print(f"Error: {e}", file=sys.stderr)
        mirror.stop()
        return 1
    loop = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    loop.start()
    log(f"Serving securely on {server.address} (authorizer: {type(server.authorizer).__name__})")
    stop.wait()
    server.shutdown()
    server.server_close()
    mirror.stop()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
