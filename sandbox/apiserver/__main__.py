"""``python -m kubeboot.sandbox.apiserver --advertise-address=... --secure-port=... ...``: the emulated kube-apiserver.

Reads: its flags (the generated manifest's, paths and addresses already mapped by the sandbox kubelet);
env ``KUBEBOOT_SANDBOX_DIR`` (the node's sandbox state directory). Writes: objects to
``$KUBEBOOT_SANDBOX_DIR/apiserver/store.sqlite3`` (in memory, with a warning, when the variable is unset),
logs on stderr. SIGTERM or SIGINT stops it cleanly: the listener closes, in-flight requests finish, the
store is closed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from kubeboot.sandbox.apiserver import flags as flagmod
from kubeboot.sandbox.apiserver.server import ApiServer, log
from kubeboot.sandbox.apiserver.store import Store

SANDBOX_DIR_ENV = "KUBEBOOT_SANDBOX_DIR"
STORE_FILE = "apiserver/store.sqlite3"


def store_path() -> Path | None:
    root = os.environ.get(SANDBOX_DIR_ENV)
    return Path(root) / STORE_FILE if root else None


def main(argv: list[str]) -> int:
    try:
        flags = flagmod.parse(argv)
    except flagmod.FlagError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    path = store_path()
    log(f"emulated kube-apiserver: store {path or 'in memory (' + SANDBOX_DIR_ENV + ' unset)'}; "
        f"etcd servers {','.join(flags.etcd_servers) or '-'} not used")
    store = Store(path)
    try:
        server = ApiServer(flags, store)
    except (OSError, flagmod.FlagError) as e:
        print(f"Error: {e}", file=sys.stderr)
        store.close()
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log(f"received {signal.Signals(signum).name}, shutting down")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    loop.start()
    log(f"Serving securely on {server.address} (authorizer: {type(server.authorizer).__name__})")
    stop.wait()
    server.shutdown()
    server.server_close()
    with store.lock:  # in-flight writes finish before the database closes
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
