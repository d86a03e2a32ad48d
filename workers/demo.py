"""``make demo``: one HA cluster (3 control-plane nodes behind a load balancer, 2 workers) on sandbox
machines, bootstrapped by ONE ``kubeboot submit cluster``, live in the terminal and in Flower.

Brings up the sandbox (``kubeboot sandbox up --control-planes 3 --workers 2``: embedded Redis, a control
worker, per node a node worker and a sandbox kubelet, the load balancer, a supervisor) and Flower, submits
the cluster.yaml the sandbox wrote (``submit cluster -f ... --wait``: the init, the control-plane joins
one at a time, the workers together), then lists the cluster's Nodes as ``kubectl get nodes`` does,
through the official ``kubernetes`` client and the generated admin.conf. Everything started is stopped at
the end (``--keep`` leaves it running). All state lives under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CONTROL_PLANES, WORKERS = 3, 2


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def _age(created: datetime | None) -> str:
    """kubectl's AGE column, roughly: 42s, 3m, 2h."""
    if created is None:
        return "<unknown>"
    seconds = int((datetime.now(UTC) - created).total_seconds())
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


def get_nodes(admin_conf: Path) -> list[str]:
    """``kubectl get nodes`` of the cluster, read with the official client (kubectl may not be installed)."""
    import yaml
    from kubernetes import client, config

    api = config.new_client_from_config_dict(yaml.safe_load(admin_conf.read_text()))
    rows = [("NAME", "STATUS", "ROLES", "AGE", "VERSION")]
    for node in sorted(client.CoreV1Api(api).list_node().items, key=lambda n: n.metadata.name):
        ready = next((c.status for c in node.status.conditions or [] if c.type == "Ready"), "Unknown")
        roles = sorted(k.split("/", 1)[1] for k in node.metadata.labels or {}
                       if k.startswith("node-role.kubernetes.io/"))
        rows.append((node.metadata.name, "Ready" if ready == "True" else "NotReady", ",".join(roles) or "<none>",
                     _age(node.metadata.creation_timestamp), node.status.node_info.kubelet_version))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _run(cli: list[str], *args: str) -> int:
    print(f"\n==> kubeboot {' '.join(args)}\n", flush=True)
    return subprocess.run([*cli, *args], check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=".kubeboot/demo", help="directory for the demo's state, logs and nodes")
    parser.add_argument("--flower-port", type=int, default=5555)
    parser.add_argument("--keep", action="store_true", help="leave the sandbox and Flower running")
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    port = _free_port(args.flower_port)
    os.environ.update({"KUBEBOOT_STATE_DIR": str(out / "state"), "KUBEBOOT_FLOWER_PORT": str(port)})
    os.environ.pop("KUBEBOOT_REDIS_URL", None)
    cli = [sys.executable, "-m", "kubeboot.workers.cli"]
    from kubeboot.workers.sandbox_env import SandboxEnv

    env = SandboxEnv(out / "state" / "sandbox", print)
    flower: subprocess.Popen[bytes] | None = None
    try:
        if _run(cli, "sandbox", "up", "--control-planes", str(CONTROL_PLANES), "--workers", str(WORKERS)):
            return 1
        flower = _start_flower(cli, out, port)
        box = env.load()
        document = box.cluster_docs["sb1"]
        print(f"\n[demo] Flower: http://127.0.0.1:{port}  (search the cluster run's id: every task of the cluster)")
        code = _run(cli, "submit", "cluster", "-f", document, "--wait")
        if code:
            print(f"[demo] the cluster failed; logs are in {out / 'state' / 'sandbox' / 'logs'}", file=sys.stderr)
            return code
        admin = Path(box.cluster_nodes("sb1", "control-plane")[0].root) / "etc/kubernetes/admin.conf"
        print("\n==> kubectl get nodes   (the official kubernetes client, admin.conf of sb1-cp1)\n")
        for line in get_nodes(admin):
            print(line)
        print(f"\n[demo] reach the cluster: kubectl --kubeconfig {admin} get nodes")
        if args.keep:
            print(f"\n[demo] still running (--keep). Stop it with: KUBEBOOT_STATE_DIR={out / 'state'} "
                  "kubeboot sandbox down")
        return 0
    finally:
        if not args.keep:
            _stop(flower)
            subprocess.run([*cli, "sandbox", "down"], check=False)


def _start_flower(cli: list[str], out: Path, port: int) -> subprocess.Popen[bytes]:
    (out / "logs").mkdir(parents=True, exist_ok=True)
    with (out / "logs" / "flower.log").open("ab") as log:
        return subprocess.Popen([*cli, "flower", "--port", str(port)], stdout=log, stderr=log,
                                start_new_session=True)


def _stop(proc: Any) -> None:
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(20)


if __name__ == "__main__":
    sys.exit(main())
