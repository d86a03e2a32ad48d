"""One full sandbox init (RSA-2048, the default encryptionAlgorithm) against its node-local phases alone.

Each round brings up a sandbox of two one-node clusters and runs, through the same workers, one after
the other (the order alternates between rounds, and the kubelet and static pods of a finished run are
stopped before the next starts, so neither run shares the CPUs with a booting control plane):

  full    ``submit init`` of sb1: every phase, the control plane started and waited for
  local   ``submit init`` of sb2 with every phase after kubelet-start skipped (``workflows.init_tree
          .AFTER_LOCAL``): preflight, certs, kubeconfig, etcd, control-plane, kubelet-start

From the run state (``RunStore.phase_records`` and the run's events), per run:

  wall           run created -> run finished
  per phase      finished - started of the last attempt, and attempts
  waiting        wait-control-plane (first start to its end) + retry delays (a retrying attempt's end
                 to the next attempt's start)
  working        the phases' attempts, wait-control-plane left out
  orchestration  the rest: submit to the first phase, the hops between phases

Target: apart from waiting on the control plane to become healthy, the whole init costs <= 1.5x its
node-local phases alone:  ratio = (full wall - wait-control-plane) / local wall.
Medians of ``--rounds`` rounds.

    python -m bench.full_init [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bench.sandbox_node import Ended, Sandbox, private_state, seconds

WAIT_CP = "wait-control-plane"
TARGET = 1.5


@dataclass
class Breakdown:
    wall: float
    wait_cp: float  # first start of wait-control-plane to its end
    retry_delays: float
    working: float

    @property
    def waiting(self) -> float:
        return self.wait_cp + self.retry_delays

    @property
    def orchestration(self) -> float:
        return self.wall - self.working - self.waiting


def breakdown(ended: Ended) -> Breakdown:
    """Attempts and retry gaps from the run's event stream (the records keep the last attempt only)."""
    by_phase: dict[str, list[Any]] = defaultdict(list)
    for event in ended.events:
        if event.phase:
            by_phase[event.phase].append(event)
    working = retry_delays = wait_cp = 0.0
    for phase, events in by_phase.items():
        begun: str | None = None
        retried: str | None = None
        first = next((e.ts for e in events if e.event == "started"), None)
        for e in events:
            if e.event == "started":
                if retried is not None and phase != WAIT_CP:
                    retry_delays += seconds(retried, e.ts)
                begun, retried = e.ts, None
            elif begun is not None and e.event in ("retry", "succeeded", "failed"):
                if phase != WAIT_CP:
                    working += seconds(begun, e.ts)
                retried = e.ts if e.event == "retry" else None
                begun = None
        if phase == WAIT_CP and first is not None:
            wait_cp = seconds(first, ended.phase(WAIT_CP).finished)  # its own retries included
    return Breakdown(ended.wall, wait_cp, retry_delays, working)


def one_round(svc: Any, directory: Any, full_first: bool) -> tuple[Ended, Ended]:
    from kubeboot.workflows.init_tree import AFTER_LOCAL

    with Sandbox(svc, directory, 2) as sb:
        runs: dict[str, Ended] = {}
        order = [("full", "sb1", ()), ("local", "sb2", AFTER_LOCAL)]
        for kind, cluster, skip in order if full_first else order[::-1]:
            runs[kind] = sb.init(cluster, skip)
            node = next(n for n in sb.box.nodes if n.cluster == cluster)
            sb.kubelet(node).stop_all()  # its control plane must not share the CPUs with the next run
        return runs["full"], runs["local"]


def report(full: list[Ended], local: list[Ended]) -> None:
    med = statistics.median
    rounds = len(full)
    local_by_path = [{p.path: p for p in e.phases} for e in local]
    print(f"full sandbox init (RSA-2048), per phase: wall of the last attempt, median of {rounds} rounds")
    print(f"  {'phase':<46} {'full init':>10} {'attempts':>9} {'local only':>11}")
    for i, record in enumerate(full[0].phases):
        if record.status == "skipped":
            continue
        walls = [e.phases[i].duration for e in full]
        attempts = ",".join(str(e.phases[i].attempts) for e in full)
        local_walls = [d[record.path].duration for d in local_by_path if d.get(record.path)
                       and d[record.path].duration is not None]
        local_cell = f"{med(local_walls):>9.3f} s" if local_walls else f"{'-':>11}"
        print(f"  {record.path:<46} {med(walls):>8.3f} s {attempts:>9} {local_cell}")

    for r, e in enumerate(full + local):
        kind, n = ("full", r + 1) if r < rounds else ("local", r - rounds + 1)
        for p in e.phases:
            if p.attempts > 1:
                print(f"  retried in round {n} ({kind}): {p.path}, {p.attempts} attempts: {p.last_error}")

    fb, lb = [breakdown(e) for e in full], [breakdown(e) for e in local]
    print(f"\nwhere the time goes (s, median of {rounds} rounds){'':<4}{'full init':>12} {'share':>6} "
          f"{'local only':>11} {'share':>6}")
    rows = (("wall (created -> finished)", "wall"), ("waiting: wait-control-plane", "wait_cp"),
            ("waiting: retry delays", "retry_delays"), ("working: phase attempts", "working"),
            ("orchestration: between phases", "orchestration"))
    for label, attr in rows:
        f, lo = med([getattr(b, attr) for b in fb]), med([getattr(b, attr) for b in lb])
        fw, lw = med([b.wall for b in fb]), med([b.wall for b in lb])
        print(f"  {label:<48}{f:>10.3f} {f / fw:>6.0%} {lo:>11.3f} {lo / lw:>6.0%}")
    waiting = med([b.waiting / b.wall for b in fb])
    print(f"  waiting share of the full init: {waiting:.0%}; working + orchestration: {1 - waiting:.0%}")

    ratios = [(f.wall - f.wait_cp) / lo.wall for f, lo in zip(fb, lb, strict=True)]
    print(f"\n(full wall - wait-control-plane) / node-local wall, per round: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}")
    verdict = "met" if med(ratios) <= TARGET else "MISSED"
    print(f"  median ratio {med(ratios):.2f}   target <= {TARGET}  ({verdict})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    full: list[Ended] = []
    local: list[Ended] = []
    with private_state() as (state, svc):
        for r in range(args.rounds):
            f, lo = one_round(svc, state / f"sandbox-{r}", full_first=r % 2 == 0)
            full.append(f)
            local.append(lo)
    report(full, local)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
