"""Bare Celery tasks for the orchestration benchmark: the cost of one hop with nothing in it, and of one
hop that only burns CPU (``busy``: what any engine would pay to run a phase's work in a worker).

Imported by the benchmark's workers (``kubeboot worker ... --include bench.noop``).
"""

from __future__ import annotations

import time

from celery import shared_task

DONE_KEY = "kubeboot:bench:done:{}"


@shared_task(name="kubeboot.bench.noop", ignore_result=True, acks_late=True)  # type: ignore[untyped-decorator]
def noop(run_id: str, node: str) -> None:
    """Nothing: a hop of the chain."""


def burn(seconds: float) -> None:
    """Spend ``seconds`` of this process's CPU time on allocation-heavy Python (a phase's kind of work)."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        _ = [{str(i): [i] * 8} for i in range(200)]


@shared_task(name="kubeboot.bench.busy", ignore_result=True, acks_late=True)  # type: ignore[untyped-decorator]
def busy(run_id: str, node: str, seconds: float) -> None:
    """A hop that does ``seconds`` of CPU work and nothing else."""
    burn(seconds)


@shared_task(name="kubeboot.bench.done", ignore_result=True, acks_late=True)  # type: ignore[untyped-decorator]
def done(run_id: str) -> None:
    """Last link: tell the benchmark the chain ended."""
    from kubeboot.tasks import runtime

    key = DONE_KEY.format(run_id)
    with runtime.current().redis.pipeline() as pipe:  # the benchmark waits on the list with BLPOP
        pipe.rpush(key, "1")
        pipe.expire(key, 600)
        pipe.execute()
