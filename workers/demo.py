"""``make demo``: run every node-local init phase for the demo cluster, then show what was produced.

Runs in-process (no broker yet), twice: the second run shows that every phase converges ("Using
existing ...") and changes nothing on disk.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "sandbox" / "demo" / "init.yaml"


def _describe(path: Path) -> str:
    """One line about a produced file: what a kubeadm user would check first."""
    data = path.read_bytes()
    if path.suffix == ".crt":
        from tasks.pki import load_cert

        cert = load_cert(data)
        cn = cert.subject.rfc4514_string()
        return f"{cn}, issued by {cert.issuer.rfc4514_string()}, expires {cert.not_valid_after_utc:%Y-%m-%d}"
    if path.suffix == ".conf":
        import yaml

        doc = yaml.safe_load(data)
        server = doc["clusters"][0]["cluster"]["server"]
        return f"user {doc['users'][0]['name']} -> {server}"
    if path.parent.name == "manifests":
        import yaml

        pod = yaml.safe_load(data)
        return f"static Pod {pod['metadata']['name']}, image {pod['spec']['containers'][0]['image']}"
    return f"{len(data)} bytes"


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=".kubeboot/demo", help="directory that holds the demo node roots")
    parser.add_argument("--config", default=str(DEMO_CONFIG))
    args = parser.parse_args(argv)

    from workers.local_run import run_init_phase

    root = Path(args.out).resolve() / "cp1"
    print(f"==> kubeboot init phase all --config {args.config} --root {root}\n")
    # The demo machine has no container runtime or kubelet: those checks report, they do not stop it.
    run = {"path": "all", "config_file": args.config, "root": str(root), "ignore": ["all"]}
    code, message = run_init_phase(**run)
    if code:
        print(message, file=sys.stderr)
        return code
    before = _snapshot(root)
    print("\n==> running every phase again: each one converges and nothing on disk changes\n")
    code, message = run_init_phase(**run, out=lambda line: None)
    if code:
        print(message, file=sys.stderr)
        return code
    unchanged = _snapshot(root) == before
    print(f"second run: {'no file changed' if unchanged else 'FILES CHANGED'} ({len(before)} files)\n")

    print(f"==> what a control-plane node holds now, under {root}:\n")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = "/" + str(path.relative_to(root))
        mode = oct(path.stat().st_mode & 0o777)[2:]
        print(f"  {mode}  {rel:<52} {_describe(path)}")
    print("\nInspect them with openssl or kubectl --kubeconfig, e.g.:")
    print(f"  openssl x509 -noout -text -in {root}/etc/kubernetes/pki/apiserver.crt")
    return 0 if unchanged else 1


if __name__ == "__main__":
    sys.exit(main())
