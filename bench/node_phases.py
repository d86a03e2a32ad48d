"""Node-local init phases against the floor: the same keys and certificates from a bare loop.

For one control-plane node, kubeboot's `init phase all` (preflight, certs, kubeconfig, etcd,
control-plane, kubelet-start) is timed against a plain `cryptography` loop that generates the same
number of keys and signs the same number of certificates, one after another, with nothing else. The
two run interleaved in this one process (A, B, A, B ...) so machine noise hits both alike; the
figure is the ratio of medians. Target: kubeboot <= 1.2x the floor for RSA-2048.

    python -m bench.node_phases [--rounds 7] [--algorithms RSA-2048,ECDSA-P256]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

# 10 certificates + sa key from the certs phase, 5 kubeconfig client certificates.
KEYS = 16
CERTS = 15


def config_docs(algorithm: str) -> list[dict[str, object]]:
    v4 = "kubeadm.k8s.io/v1beta4"
    return [
        {"apiVersion": v4, "kind": "InitConfiguration", "nodeRegistration": {"name": "bench-cp"},
         "localAPIEndpoint": {"advertiseAddress": "127.0.20.1"}},
        {"apiVersion": v4, "kind": "ClusterConfiguration", "encryptionAlgorithm": algorithm},
    ]


def run_kubeboot(algorithm: str) -> float:
    from kubeboot.config.loader import build_init_config
    from kubeboot.tasks.fsutil import NodeFS
    from kubeboot.tasks.phases.context import NodeContext
    from kubeboot.workflows.local import plan_init, run_steps

    cfg = build_init_config(config_docs(algorithm))  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        ctx = NodeContext(cfg=cfg, fs=NodeFS(tmp), out=lambda _: None, ignore_preflight_errors=frozenset({"all"}))
        start = time.perf_counter()
        run_steps(plan_init(cfg, "local"), ctx)
        elapsed = time.perf_counter() - start
        assert (Path(tmp) / "etc/kubernetes/manifests/kube-apiserver.yaml").exists()
    return elapsed


def run_floor(algorithm: str) -> float:
    """The same cryptographic work with no phase machinery: keys, then signed certificates."""
    from kubeboot.tasks.pki import CertSpec, build_certificate, cert_to_pem, generate_key, key_to_pem

    start = time.perf_counter()
    now = datetime.now(UTC)
    ca_key = generate_key(algorithm)
    ca = build_certificate(CertSpec("kubernetes", is_ca=True), ca_key.public_key(), ca_key, None, now)
    for i in range(KEYS - 1):
        key = generate_key(algorithm)
        key_to_pem(key)
        if i < CERTS - 1:
            cert_to_pem(build_certificate(CertSpec(f"leaf-{i}"), key.public_key(), ca_key, ca, now))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--algorithms", default="RSA-2048,ECDSA-P256")
    args = parser.parse_args(argv)

    print(f"{'algorithm':<12} {'kubeboot (median)':>18} {'floor (median)':>15} {'ratio':>7}  target")
    for algorithm in args.algorithms.split(","):
        run_kubeboot(algorithm)  # warm-up: imports, first-use costs
        ours: list[float] = []
        floor: list[float] = []
        for _ in range(args.rounds):
            ours.append(run_kubeboot(algorithm))
            floor.append(run_floor(algorithm))
        a, b = statistics.median(ours), statistics.median(floor)
        target = "<= 1.2" if algorithm == "RSA-2048" else "-"
        print(f"{algorithm:<12} {a * 1000:>15.0f} ms {b * 1000:>12.0f} ms {a / b:>7.2f}  {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
