"""Joins on sandbox machines: a worker join and a control-plane join split into waiting and working,
and 1, 2 and 4 worker joins submitted at once.

One sandbox cluster of 2 control-plane nodes and 7 workers, initialised with --upload-certs; then,
through the same workers and one after the other:

  worker x1     ``submit_join`` of sb1-w1
  worker x2     sb1-w2 and sb1-w3 submitted at the same moment
  worker x4     sb1-w4 .. sb1-w7 submitted at the same moment
  control-plane ``submit_join --control-plane`` of sb1-cp2 (download-certs .. etcd-join .. wait-control-plane)

From the run state, per run (like ``bench.full_init``):

  wall           run created -> run finished
  waiting        kubelet-wait-bootstrap and wait-control-plane (first start to end: waiting on the kubelet's
                 TLS bootstrap and the control plane) + retry delays of the other phases (e.g. etcd-join
                 waiting for its learner to catch up)
  working        the other phases' attempts
  orchestration  the rest: submit to the first phase, the hops between phases

For the parallel batches: the batch's wall (first created -> last finished) against one join alone,
side by side: ``batch wall / single wall`` near 1 means joins of a cluster do not wait on each other.

    python -m bench.join
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bench.sandbox_node import Ended, Sandbox, private_state, seconds

WAITING = ("kubelet-wait-bootstrap", "wait-control-plane")
CLUSTER = "sb1"


@dataclass
class Split:
    wall: float
    waiting: float
    working: float

    @property
    def orchestration(self) -> float:
        return self.wall - self.waiting - self.working


def split(ended: Ended) -> Split:
    by_phase: dict[str, list[Any]] = defaultdict(list)
    for event in ended.events:
        if event.phase:
            by_phase[event.phase].append(event)
    waiting = working = 0.0
    for phase, events in by_phase.items():
        starts = [e.ts for e in events if e.event == "started"]
        if phase in WAITING and starts:
            waiting += seconds(starts[0], ended.phase(phase).finished)
            continue
        begun = retried = None
        for e in events:
            if e.event == "started":
                if retried is not None:
                    waiting += seconds(retried, e.ts)
                begun, retried = e.ts, None
            elif begun is not None and e.event in ("retry", "succeeded", "failed"):
                working += seconds(begun, e.ts)
                retried = e.ts if e.event == "retry" else None
                begun = None
    return Split(ended.wall, waiting, working)


class JoinSandbox(Sandbox):
    """One cluster of 2 control planes and 7 workers (``bench.sandbox_node.Sandbox`` with other counts)."""

    def __enter__(self) -> JoinSandbox:
        try:
            self.box = self.env.up(1, 2, 7, None)
            self._wait_workers(1 + len(self.box.nodes))
        except BaseException:
            self.env.down()
            raise
        return self

    def init_with_certs(self) -> dict[str, str]:
        """Init sb1 with --upload-certs; the token, CA hash and certificate key it printed."""
        from kubeboot.config.loader import load_init_config
        from kubeboot.workflows.runs import submit_init

        cfg = load_init_config(self.box.clusters[CLUSTER])
        sub = submit_init(self.app, self.svc.redis, self.svc.store, self.svc.settings, cfg, upload_certs=True)
        self.wait([sub.run.id])
        text = (self.svc.store.get_secret(sub.run.id, "join-command") or b"").decode()
        return {"endpoint": re.search(r"kubeadm join (\S+)", text).group(1),  # type: ignore[union-attr]
                "token": re.search(r"--token (\S+)", text).group(1),  # type: ignore[union-attr]
                "hash": re.search(r"(sha256:[0-9a-f]{64})", text).group(1),  # type: ignore[union-attr]
                "key": re.search(r"--certificate-key ([0-9a-f]{64})", text).group(1)}  # type: ignore[union-attr]

    def join(self, printed: dict[str, str], nodes: list[str], *, control_plane: bool = False) -> list[Ended]:
        from kubeboot.config.join import build_join_config
        from kubeboot.workflows.join_runs import submit_join

        runs = []
        for node in nodes:
            doc: dict[str, Any] = {
                "apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration",
                "nodeRegistration": {"name": node, "ignorePreflightErrors": ["all"]},
                "discovery": {"bootstrapToken": {"token": printed["token"], "apiServerEndpoint": printed["endpoint"],
                                                 "caCertHashes": [printed["hash"]]}}}
            if control_plane:
                address = next(n.address for n in self.box.nodes if n.name == node)
                doc["controlPlane"] = {"localAPIEndpoint": {"advertiseAddress": address},
                                       "certificateKey": printed["key"]}
            runs.append(submit_join(self.app, self.svc.store, build_join_config([doc])).run.id)
        ended = self.wait(runs)
        return [ended[r] for r in runs]


def report(results: dict[str, list[Ended]]) -> None:
    med = statistics.median
    print(f"  {'scenario':<16} {'joins':>5} {'wall (median)':>14} {'waiting':>8} {'working':>8} {'orchestr.':>9} "
          f"{'batch wall':>11}")
    single = 0.0
    for name, ended in results.items():
        splits = [split(e) for e in ended]
        batch = seconds(min(e.run.created for e in ended), max(e.run.finished for e in ended))
        if name == "worker x1":
            single = batch
        print(f"  {name:<16} {len(ended):>5} {med(s.wall for s in splits):>12.3f} s "
              f"{med(s.waiting for s in splits):>6.3f} s {med(s.working for s in splits):>6.3f} s "
              f"{med(s.orchestration for s in splits):>7.3f} s {batch:>9.3f} s")
    print("\n  per phase of the control-plane join (last attempt, attempts):")
    for p in results["control-plane"][0].phases:
        if p.status != "skipped":
            print(f"    {p.path:<42} {p.duration or 0:>7.3f} s  x{p.attempts}")
    for name in ("worker x2", "worker x4"):
        batch = seconds(min(e.run.created for e in results[name]), max(e.run.finished for e in results[name]))
        print(f"\n  {name}: batch wall / one worker join alone = {batch / single:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    with private_state() as (state, svc), JoinSandbox(svc, state / "sandbox", 1) as sb:
        started = time.monotonic()
        printed = sb.init_with_certs()
        results = {
            "worker x1": sb.join(printed, ["sb1-w1"]),
            "worker x2": sb.join(printed, ["sb1-w2", "sb1-w3"]),
            "worker x4": sb.join(printed, [f"sb1-w{i}" for i in range(4, 8)]),
            "control-plane": sb.join(printed, ["sb1-cp2"], control_plane=True),
        }
        print(f"sandbox joins (the cluster initialised with --upload-certs; {time.monotonic() - started:.0f} s "
              "in all)")
        report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
