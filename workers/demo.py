"""``make demo``: bootstrap a cluster on a sandbox machine through the whole workflow engine.

Brings up a sandbox node (``kubeboot sandbox up``: embedded Redis, a control worker, the node's
worker and sandbox kubelet) and Flower, submits ``kubeboot submit init --upload-certs --wait`` for
it, shows the run live and the Flower URL, then prints the join commands, how to reach the cluster
with kubectl and what the node holds. Everything started is stopped at the end (``--keep`` leaves it
running). All state lives under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def _describe(path: Path) -> str:
    """One line about a produced file: what a kubeadm user would check first."""
    data = path.read_bytes()
    if path.suffix == ".crt":
        from kubeboot.tasks.pki import load_cert

        cert = load_cert(data)
        return (f"{cert.subject.rfc4514_string()}, issued by {cert.issuer.rfc4514_string()}, "
                f"expires {cert.not_valid_after_utc:%Y-%m-%d}")
    if path.suffix == ".conf":
        import yaml

        doc = yaml.safe_load(data)
        return f"user {doc['users'][0]['name']} -> {doc['clusters'][0]['cluster']['server']}"
    if path.parent.name == "manifests":
        import yaml

        pod = yaml.safe_load(data)
        return f"static Pod {pod['metadata']['name']}, image {pod['spec']['containers'][0]['image']}"
    return f"{len(data)} bytes"


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def _inventory(root: Path) -> None:
    print(f"\n[demo] what the control-plane node holds, under {root}:\n")
    for path in sorted(p for p in (root / "etc/kubernetes").rglob("*") if p.is_file()):
        mode = oct(path.stat().st_mode & 0o777)[2:]
        print(f"  {mode}  /{path.relative_to(root)!s:<52} {_describe(path)}")


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
        print("==> kubeboot sandbox up --nodes 1\n", flush=True)
        if subprocess.run([*cli, "sandbox", "up", "--nodes", "1"], check=False).returncode:
            return 1
        (out / "logs").mkdir(parents=True, exist_ok=True)
        with (out / "logs" / "flower.log").open("ab") as log:
            flower = subprocess.Popen([*cli, "flower", "--port", str(port)], stdout=log, stderr=log,
                                      start_new_session=True)
        box = env.load()
        config = next(iter(box.clusters.values()))
        node = box.nodes[0]
        print(f"\n[demo] Flower: http://127.0.0.1:{port}  (every phase of every run, live)")
        print(f"\n==> kubeboot submit init --config {config} --upload-certs --wait\n", flush=True)
        run = subprocess.run([*cli, "submit", "init", "--config", config, "--upload-certs", "--wait"], check=False)
        if run.returncode:
            print(f"[demo] the run failed; logs are in {out / 'state' / 'sandbox' / 'logs'}", file=sys.stderr)
            return run.returncode
        root = Path(node.root)
        _inventory(root)
        print("\n[demo] reach the cluster with kubectl (or the kubernetes Python client):")
        print(f"  kubectl --kubeconfig {root}/etc/kubernetes/admin.conf get nodes")
        if args.keep:
            print(f"\n[demo] still running (--keep). Stop it with: KUBEBOOT_STATE_DIR={out / 'state'} "
                  "kubeboot sandbox down")
        return 0
    finally:
        if not args.keep:
            if flower is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(flower.pid, signal.SIGTERM)
                flower.wait(20)
            subprocess.run([*cli, "sandbox", "down"], check=False)


if __name__ == "__main__":
    sys.exit(main())
