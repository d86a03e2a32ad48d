"""``kubeboot runs`` at scale against a real redis-server: filters, pages that cover every run once, the
status index through ends and resumes, pruning, and a page whose cost does not grow with the number of runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from kubeboot.tasks.state.index import BadCursorError, RunFilter, memory_of, prune, query
from kubeboot.tasks.state.secrets import SecretBox
from kubeboot.tasks.state.store import RunStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=10)  # every run created a little later: a strict order
        return self.now


@pytest.fixture
def store(redis_server: str) -> Any:
    client = redis.Redis.from_url(redis_server)
    yield RunStore(client, SecretBox(bytes(32)), clock=Clock())
    client.close()


def make(store: RunStore, n: int, *, kind: str = "init", cluster: str = "c1", batch: str | None = None) -> list[str]:
    ids = []
    for i in range(n):
        extra = {"batch": batch} if batch else {}
        run = store.create_run(kind=kind, cluster=cluster, config=[{"i": i}], plan=[("n1", "preflight")],
                               extra=extra)
        ids.append(run.id)
    return ids


def all_pages(store: RunStore, f: RunFilter, limit: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = query(store.client, f, limit=limit, after=after)
        pages.append([r.id for r in page.runs])
        if page.next is None:
            return pages
        after = page.next


def test_pages_cover_every_run_once_newest_first(store: RunStore) -> None:
    ids = make(store, 23)
    pages = all_pages(store, RunFilter(), limit=5)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [i for p in pages for i in p] == ids[::-1]


def test_filters_combine_and_each_walks_its_own_index(store: RunStore) -> None:
    inits = make(store, 4, cluster="a")
    joins = make(store, 3, kind="join", cluster="a")
    batch = make(store, 5, kind="cluster", cluster="b", batch="b-1")
    make(store, 2, kind="init", cluster="c", batch="b-1")
    store.finish_run(joins[0], status="failed", error="x")
    store.finish_run(inits[1], status="succeeded")
    assert [r.id for r in query(store.client, RunFilter(cluster="a", kind="join")).runs] == joins[::-1]
    assert [r.id for r in query(store.client, RunFilter(batch="b-1", kind="cluster")).runs] == batch[::-1]
    assert [r.id for r in query(store.client, RunFilter(status="failed")).runs] == [joins[0]]
    assert [r.id for r in query(store.client, RunFilter(status="succeeded", cluster="a")).runs] == [inits[1]]
    running = query(store.client, RunFilter(status="pending", cluster="a")).runs
    assert {r.id for r in running} == set(inits + joins) - {joins[0], inits[1]}


def test_a_resumed_run_leaves_the_failed_index_and_an_ended_one_enters_its_status(store: RunStore) -> None:
    (run_id,) = make(store, 1)
    store.finish_run(run_id, status="failed", error="boom")
    assert [r.id for r in query(store.client, RunFilter(status="failed")).runs] == [run_id]
    assert store.reopen_run(run_id).action == "ok"
    assert query(store.client, RunFilter(status="failed")).runs == []
    assert [r.id for r in query(store.client, RunFilter(status="running")).runs] == [run_id]


def test_a_cursor_from_nowhere_is_refused_with_one_line(store: RunStore) -> None:
    make(store, 2)
    with pytest.raises(BadCursorError, match="--after r-nope: no such run in this listing"):
        query(store.client, RunFilter(), after="r-nope")


def test_prune_deletes_runs_that_ended_before_the_cutoff_with_every_key_and_index_entry(store: RunStore) -> None:
    old, recent, going = make(store, 3)
    store.put_secret(old, "token", b"abcdef.0123456789abcdef")
    store.finish_run(old, status="succeeded")
    cutoff = datetime.now(UTC) + timedelta(seconds=1)  # "finished" is the store clock's: in 2026-01-01
    store.finish_run(recent, status="failed", error="x")
    store.client.hset(f"kubeboot:run:{recent}", "finished", (cutoff + timedelta(days=1)).isoformat())
    assert prune(store.client, cutoff, dry_run=True) == [old]
    assert store.get_run(old) is not None  # a dry run deletes nothing
    assert prune(store.client, cutoff) == [old]
    assert store.get_run(old) is None and store.get_run(recent) is not None and store.get_run(going) is not None
    assert store.client.keys(f"kubeboot:run:{old}*") == []
    for key in ("kubeboot:runs", "kubeboot:runs:kind:init", "kubeboot:cluster:c1:runs",
                "kubeboot:runs:status:succeeded"):
        assert store.client.zscore(key, old) is None


def _commands(client: redis.Redis) -> int:
    info: Any = client.info("stats")
    return int(info["total_commands_processed"])


def test_a_page_costs_the_same_commands_with_ten_times_the_runs(store: RunStore) -> None:
    """Not a timing: the number of Redis commands one page of a filtered listing needs, measured with 200
    and with 2,000 runs of other clusters and kinds around it."""
    def page_cost() -> int:
        before = _commands(store.client)
        page = query(store.client, RunFilter(cluster="target", kind="join"), limit=20)
        assert len(page.runs) == 20
        return _commands(store.client) - before

    make(store, 30, kind="join", cluster="target")
    make(store, 170, kind="init", cluster="noise")
    small = page_cost()
    make(store, 1800, kind="init", cluster="noise")
    assert page_cost() == small
    assert memory_of(store.client, make(store, 1)[0]) > 0
