"""Conveyor.search_jobs against a real PostgreSQL: every filter, id search, keyset paging
(also while a worker finishes jobs and more arrive), and bad cursors and filters."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from conveyor import Conveyor, Registry, SyncConveyor
from conveyor.errors import ConveyorError, InvalidOptionError, UnknownQueueError
from conveyor.queue import pages
from conveyor.queue.enqueue import JobRequest
from conveyor.queue.pages import Page

from ..helpers import DB, wait_until
from .tables import bury, finish, ids_of


async def all_pages(client: Conveyor, limit: int, **filters: Any) -> list[int]:
    """Every id a listing shows, page by page."""
    seen: list[int] = []
    cursor = None
    while True:
        page = await client.search_jobs(limit=limit, cursor=cursor, **filters)
        seen += ids_of(page.items)
        assert len(page.items) <= limit
        if page.next_cursor is None:
            return seen
        assert len(page.items) == limit  # a page short of its limit is the last
        cursor = page.next_cursor


@pytest.fixture
def noop(registry: Registry) -> Any:
    @registry.task(queue="default")
    async def noop(n: int = 0) -> None:
        pass

    @registry.task(queue="emails")
    async def send(n: int = 0) -> None:
        pass

    return noop


async def test_search_finds_jobs_wherever_they_are_by_every_filter(
    client: Conveyor, noop: Any, db: DB
) -> None:
    await client.create_queue("emails")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    a = await client.enqueue("noop", {"n": 1}, key="tenant-a", unique_key="u-1")
    b = await client.enqueue("send", {"n": 2}, queue="emails", key="tenant-b")
    c = await client.enqueue("noop", {"n": 3}, delay=3600)
    d = await client.enqueue("send", {"n": 4}, queue="emails", unique_key="u-4")
    e = await client.enqueue("noop", {"n": 5}, key="tenant-a")
    f = await client.enqueue("noop", {"n": 6})
    blocked = await client.enqueue("noop", {"n": 7}, after=f)
    db.all("update {schema}.jobs set enqueued_at = %s where id = %s", [t0, a])
    finish(db, [a], t0 + timedelta(hours=1))
    finish(db, [b], t0 + timedelta(hours=2), state="cancelled")
    bury(db, [d], t0 + timedelta(hours=2, minutes=30))

    async def ids(**filters: Any) -> list[int]:
        page = await client.search_jobs(**filters)
        assert page.next_cursor is None
        return ids_of(page.items)

    assert await ids() == [blocked, f, e, d, c, b, a]
    assert await ids(queue="emails") == [d, b]
    assert await ids(task="noop") == [blocked, f, e, c, a]
    assert await ids(state="completed") == [a]
    assert await ids(state=["dead", "cancelled"]) == [d, b]
    assert await ids(state="scheduled") == [c]
    assert await ids(state="blocked") == [blocked]
    assert await ids(state="available") == [f, e]
    assert await ids(key="tenant-a") == [e, a]
    assert await ids(unique_key="u-4") == [d]
    assert await ids(unique_key="u-1") == [a]
    assert await ids(enqueued_before=t0 + timedelta(seconds=1)) == [a]
    assert await ids(enqueued_after=t0 + timedelta(seconds=1)) == [blocked, f, e, d, c, b]
    # A finish-time bound leaves live jobs out; dead jobs count by when they died.
    assert await ids(finished_after=t0) == [d, b, a]
    assert await ids(finished_after=t0 + timedelta(hours=2)) == [d, b]
    assert await ids(finished_before=t0 + timedelta(hours=2)) == [a]
    assert await ids(finished_after=t0, finished_before=t0 + timedelta(hours=2, minutes=30)) == [b, a]
    assert await ids(queue="emails", state="dead", unique_key="u-4") == [d]
    assert await ids(queue="default", state="dead") == []

    rows = {row["id"]: row for row in (await client.search_jobs()).items}
    assert (rows[a]["state"], rows[a]["finished_at"], rows[a]["progress"]) == (
        "completed",
        t0 + timedelta(hours=1),
        100,
    )
    assert (rows[d]["state"], rows[d]["last_error"]) == ("dead", "ValueError: boom")
    assert (rows[c]["state"], rows[c]["finished_at"], rows[c]["key"]) == ("scheduled", None, None)
    assert set(rows[a]) == {
        "id", "queue", "task", "state", "priority", "attempt", "max_attempts", "run_at", "enqueued_at",
        "started_at", "finished_at", "key", "unique_key", "worker_id", "progress", "last_error",
    }  # fmt: skip
    assert all(set(row) == set(rows[a]) for row in rows.values())


async def test_an_id_search_finds_the_ids_starting_with_the_digits_highest_first(
    client: Conveyor, noop: Any, db: DB
) -> None:
    # Ids chosen by hand in every table: 7, 70-79, 700-799 ... and others around them.
    wanted = [7, 70, 75, 79, 700, 701, 799, 7000, 7999, 70000]
    others = [6, 8, 69, 80, 699, 800, 6999, 8000, 69999, 80000]
    for job_id in wanted + others:
        db.all(
            "insert into {schema}.jobs (id, run_at, enqueued_at, max_attempts, queue, task)"
            " values (%s, now(), now(), 3, 'default', 'noop')",
            [job_id],
        )
    finish(db, [75, 701, 8], datetime.now(UTC))
    bury(db, [7999, 6], datetime.now(UTC))

    page = await client.search_jobs(id_prefix="7")
    assert ids_of(page.items) == sorted(wanted, reverse=True)
    assert page.next_cursor is None
    assert ids_of((await client.search_jobs(id_prefix=" 70 ")).items) == [70000, 7000, 701, 700, 70]
    assert ids_of((await client.search_jobs(id_prefix="799")).items) == [7999, 799]
    assert ids_of((await client.search_jobs(id_prefix="7", state="dead")).items) == [7999]
    assert ids_of((await client.search_jobs(id_prefix="0")).items) == []
    assert ids_of((await client.search_jobs(id_prefix="12345")).items) == []

    # Paged two at a time, the ranges are read highest first and nothing repeats.
    assert await all_pages(client, 2, id_prefix="7") == sorted(wanted, reverse=True)
    assert await all_pages(client, 3, id_prefix="7", state=["available", "completed"]) == sorted(
        set(wanted) - {7999}, reverse=True
    )


async def test_paging_shows_every_job_once_while_a_worker_finishes_them_and_more_arrive(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    gate = asyncio.Semaphore(0)
    finished: list[int] = []

    @registry.task
    async def step(n: int) -> None:
        await gate.acquire()
        finished.append(n)

    # Priorities spread over the ids, so the worker finishes jobs in pages not yet read and in
    # pages read already, not only from the oldest up.
    at_start = await client.enqueue_many(
        [JobRequest("step", {"n": n}, priority=(n * 7) % 4) for n in range(1200)]
    )
    seen: list[int] = []
    states: dict[str, int] = {}
    added: list[int] = []
    async with start_worker(concurrency=8):
        cursor = None
        pages_read = 0
        while True:
            page = await client.search_jobs(limit=37, cursor=cursor)
            pages_read += 1
            seen += ids_of(page.items)
            for row in page.items:
                states[row["state"]] = states.get(row["state"], 0) + 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
            # Between two pages, 30 jobs move from jobs to job_history and 5 new ones arrive.
            done = len(finished)
            for _ in range(30):
                gate.release()
            await wait_until(lambda done=done: len(finished) >= done + 30)
            await wait_until(lambda: db.one("select count(*) from {schema}.job_history") >= len(finished))
            added += await client.enqueue_many([JobRequest("step", {"n": -1}) for _ in range(5)])
        for _ in range(2000):
            gate.release()
        await wait_until(lambda: db.one("select count(*) from {schema}.jobs") == 0, within=60)

    assert pages_read == 33  # 1,200 jobs, 37 a page
    assert len(seen) == len(set(seen)), "a job was shown twice"
    assert set(at_start) <= set(seen), f"jobs skipped: {sorted(set(at_start) - set(seen))[:10]}"
    assert not set(added) & set(seen)  # newer than the first page: not shown
    assert seen == sorted(seen, reverse=True)
    # Jobs really moved while the pages were read: some were read waiting, some finished.
    assert states.get("completed", 0) > 100
    assert states.get("available", 0) + states.get("running", 0) > 100


async def test_a_page_costs_the_same_deep_down_and_ties_never_split(
    client: Conveyor, noop: Any, db: DB
) -> None:
    ids = await client.enqueue_many([JobRequest("noop", {"n": n}) for n in range(120)])
    finish(db, ids[:60], datetime.now(UTC))  # one finish time for all: ordering is by id
    assert await all_pages(client, 7) == sorted(ids, reverse=True)
    assert await all_pages(client, 1, state="completed") == sorted(ids[:60], reverse=True)
    assert await all_pages(client, 1000) == sorted(ids, reverse=True)


async def test_bad_cursors_and_filters_are_clear_refusals(client: Conveyor, noop: Any, db: DB) -> None:
    ids = await client.enqueue_many([JobRequest("noop", {"n": n}) for n in range(5)])
    first = await client.search_jobs(limit=2)
    assert first.next_cursor is not None
    history = await client.history(limit=1)
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"cursor": "not a cursor"}, "the cursor is not valid"),
        ({"cursor": first.next_cursor[:-2]}, "the cursor is not valid"),
        ({"cursor": first.next_cursor + "AA"}, "the cursor is not valid"),
        (
            {"cursor": pages.encode(pages.HISTORY, pages.Position(5, datetime.now(UTC)))},
            "continues the history",
        ),
        ({"cursor": 5}, "a cursor is a string"),
        ({"limit": 0}, "limit must be 1 to 1000"),
        ({"limit": 1001}, "limit must be 1 to 1000"),
        ({"state": "lost"}, "unknown state 'lost'"),
        ({"state": []}, "name at least one"),
        ({"queue": "no such queue!"}, "queue name 'no such queue!' is not allowed"),
        ({"task": "a\x00b"}, "holds a NUL character"),
        ({"unique_key": 5}, "unique_key must be a string"),
        ({"id_prefix": "12a"}, "id must be 1 to 19 digits"),
        ({"enqueued_after": datetime(2026, 1, 1)}, "must carry a time zone"),
        (
            {"finished_after": datetime.now(UTC), "finished_before": datetime.now(UTC) - timedelta(1)},
            "earlier than",
        ),
    ]
    for filters, message in refusals:
        with pytest.raises(InvalidOptionError, match=message):
            await client.search_jobs(**filters)
    with pytest.raises(UnknownQueueError, match=r"no queue named 'nowhere'"):
        await client.search_jobs(queue="nowhere")
    assert history.next_cursor is None  # nothing finished: one empty page
    # A cursor someone wrote names a place in the order, no more: the jobs below that id.
    cursor = pages.encode(pages.JOBS, pages.Position(ids[2]))
    assert ids_of((await client.search_jobs(cursor=cursor)).items) == [ids[1], ids[0]]


def test_the_sync_client_has_every_listing(
    database_url: str, schema: str, registry: Registry, db: DB
) -> None:
    @registry.task
    def add(a: int) -> int:
        return a

    with SyncConveyor(database_url, schema=schema, registry=registry) as sync_client:
        ids = sync_client.enqueue_many([JobRequest("add", {"a": n}) for n in range(5)])
        finish(db, ids[:2], datetime.now(UTC) - timedelta(days=2))
        first = sync_client.search_jobs(limit=3)
        assert ids_of(first.items) == ids[:1:-1]
        assert ids_of(sync_client.search_jobs(limit=3, cursor=first.next_cursor).items) == ids[1::-1]
        assert ids_of(sync_client.history().items) == ids[1::-1]
        assert sync_client.dead_letters().items == []
        assert sync_client.clean_history(timedelta(days=1)) == 2
        assert sync_client.workers().workers == ()
        [default] = sync_client.queue_overview("default")
        assert default.waiting == 3
        with pytest.raises(InvalidOptionError, match=r"the cursor is not valid"):
            sync_client.history(cursor="nope")


async def test_any_mix_of_filters_is_a_page_or_a_clear_refusal(client: Conveyor, noop: Any, db: DB) -> None:
    """What an HTTP client may send, valid or not: every call ends in a Page or a ConveyorError."""
    ids = await client.enqueue_many([JobRequest("noop", {"n": n}) for n in range(20)])
    finish(db, ids[:5], datetime.now(UTC) - timedelta(hours=1))
    bury(db, ids[5:8], datetime.now(UTC))
    good_cursor = (await client.search_jobs(limit=2)).next_cursor
    history_cursor = (await client.history(limit=2)).next_cursor
    east = timezone(timedelta(hours=14))
    values: dict[str, list[Any]] = {
        "queue": [None, "default", "emails", "nowhere", "", "a b", "é", "q" * 200, 7, "de\x00fault"],
        "task": [None, "noop", "x" * 2000, "", "🙂", "\x00", 3.5],
        "state": [None, "dead", "available,completed", ["running", "dead"], "nope", [], [None], 5, "dead,"],
        "key": [None, "tenant", "", "k\x00"],
        "unique_key": [None, "u", "\ud800", b"bytes"],
        "enqueued_after": [
            None,
            datetime.now(UTC),
            datetime(1, 1, 1, tzinfo=east),
            datetime(2026, 1, 1),
            "2026",
        ],
        "enqueued_before": [None, datetime.max.replace(tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)],
        "finished_after": [None, datetime.now(UTC) - timedelta(days=1), 0],
        "finished_before": [None, datetime.now(UTC) + timedelta(days=1)],
        "limit": [50, 1, 1000, 0, 1001, -1, "10", None, 2.0, True],
        "cursor": [None, good_cursor, history_cursor, "", "=", "A" * 500, "W10", "WzEsImpvYnMiLDld", 12],
    }
    rng = random.Random(20261207)
    outcomes = {"page": 0, "refused": 0}
    for _ in range(400):
        # Most filters left out in each call, so that valid calls come up too.
        filters = {name: rng.choice(choices) for name, choices in values.items() if rng.random() < 0.25}
        prefix = rng.choice([None, None, "1", "0", "99999999999999999999", "1 2", 3])
        for call in (
            lambda f=filters, p=prefix: client.search_jobs(id_prefix=p, **f),
            lambda f=filters: client.history(**f),
        ):
            try:
                page = await call()
            except ConveyorError:
                outcomes["refused"] += 1
            else:
                assert isinstance(page, Page)
                outcomes["page"] += 1
    assert outcomes["page"] > 20  # the mix also makes valid calls
    assert outcomes["refused"] > 100
