"""`kubeboot --help` start-up time against `python -c pass`, interleaved, ratio of medians.

    python -m bench.cli_startup [--rounds 30]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    kubeboot = shutil.which("kubeboot") or f"{sys.prefix}/bin/kubeboot"
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "kubeboot --help": [kubeboot, "--help"],
        "kubeboot init phase --help": [kubeboot, "init", "phase", "--help"],
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, cmd in commands.items():
            samples[name].append(_time(cmd))
    base = statistics.median(samples["python -c pass"])
    for name, values in samples.items():
        med = statistics.median(values)
        print(f"{name:<28} {med * 1000:7.1f} ms   {med / base:5.2f}x python -c pass")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
