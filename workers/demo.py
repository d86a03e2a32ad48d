"""``make demo``: the demo cluster's first control-plane node, bootstrapped through the workflow engine.

Starts the embedded Redis, a control worker, the node worker of ``cp1`` and Flower (all state under
``--out``), submits ``init`` for ``sandbox/demo/init.yaml``, shows the run live and the Flower URL,
then lists what the node now holds, and stops everything it started (``--keep`` leaves it running).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DEMO_CONFIG = Path("sandbox/demo/init.yaml")
NODE = "cp1"


def _describe(path: Path) -> str:
    """One line about a produced file: what a kubeadm user would check first."""
    data = path.read_bytes()
    if path.suffix == ".crt":
        from tasks.pki import load_cert

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


class Demo:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.root = out / NODE
        self.logs = out / "logs"
        self.env = {**os.environ, "KUBEBOOT_STATE_DIR": str(out / "state")}
        self.env.pop("KUBEBOOT_REDIS_URL", None)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.kubeboot = [sys.executable, "-m", "workers.cli"]

    def spawn(self, name: str, *args: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        self.procs.append(subprocess.Popen([*self.kubeboot, *args], env=self.env, stdout=log, stderr=log,
                                           start_new_session=True))
        print(f"[demo] started {name} (pid {self.procs[-1].pid}), log {self.logs / name}.log")

    def start(self, flower_port: int) -> None:
        from config.settings import Settings
        from workers.redis_server import EmbeddedRedis

        url = EmbeddedRedis(Settings.from_env(self.env).state_dir).ensure()
        print(f"[demo] embedded Redis at {url}")
        self.spawn("control-worker", "worker", "control")
        self.spawn(f"node-worker-{NODE}", "worker", "node", "--id", NODE, "--root", str(self.root))
        self.spawn("flower", "flower", "--port", str(flower_port))

    def stop(self) -> None:
        from config.settings import Settings
        from workers.redis_server import EmbeddedRedis

        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        EmbeddedRedis(Settings.from_env(self.env).state_dir).stop()
        print("[demo] stopped the workers, Flower and the embedded Redis")

    def inventory(self) -> None:
        print(f"\n[demo] what control-plane node {NODE} holds now, under {self.root}:\n")
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            mode = oct(path.stat().st_mode & 0o777)[2:]
            print(f"  {mode}  /{path.relative_to(self.root)!s:<52} {_describe(path)}")
        print(f"\n  openssl x509 -noout -text -in {self.root}/etc/kubernetes/pki/apiserver.crt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=".kubeboot/demo", help="directory for the demo's state, logs and node root")
    parser.add_argument("--config", default=str(DEMO_CONFIG))
    parser.add_argument("--flower-port", type=int, default=5555)
    parser.add_argument("--keep", action="store_true", help="leave Redis, the workers and Flower running")
    args = parser.parse_args(argv)

    demo = Demo(Path(args.out).resolve())
    port = _free_port(args.flower_port)
    demo.env["KUBEBOOT_FLOWER_PORT"] = str(port)
    demo.start(port)
    try:
        print(f"[demo] Flower: http://127.0.0.1:{port}  (every phase of every run, live)\n")
        print(f"==> kubeboot submit init --config {args.config} --wait\n", flush=True)
        cmd = [*demo.kubeboot, "submit", "init", "--config", args.config, "--wait"]
        submit = subprocess.run(cmd, check=False, env=demo.env)
        if submit.returncode != 0:
            print(f"[demo] the run failed; logs are in {demo.logs}", file=sys.stderr)
            return submit.returncode
        demo.inventory()
        if args.keep:
            print(f"\n[demo] still running (--keep). Stop with: kill the pids above; Flower at http://127.0.0.1:{port}")
            return 0
    finally:
        if not args.keep:
            demo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
