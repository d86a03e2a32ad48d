"""Bare Celery tasks for the orchestration benchmark: the cost of one hop with nothing in it.

Imported by the benchmark's workers (``kubeboot worker ... --include bench.noop``).
"""

from __future__ import annotations

from celery import shared_task

DONE_KEY = "kubeboot:bench:done:{}"


@shared_task(name="kubeboot.bench.noop", ignore_result=True, acks_late=True)  # type: ignore[untyped-decorator]
def noop(run_id: str, node: str) -> None:
    """Nothing: a hop of the chain."""


@shared_task(name="kubeboot.bench.done", ignore_result=True, acks_late=True)  # type: ignore[untyped-decorator]
def done(run_id: str) -> None:
    """Last link: tell the benchmark the chain ended."""
    from kubeboot.tasks import runtime

    key = DONE_KEY.format(run_id)
    with runtime.current().redis.pipeline() as pipe:  # the benchmark waits on the list with BLPOP
        pipe.rpush(key, "1")
        pipe.expire(key, 600)
        pipe.execute()
