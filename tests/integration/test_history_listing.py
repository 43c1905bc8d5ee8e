"""Conveyor.history and Conveyor.dead_letters against a real PostgreSQL: finish-time order with
ties, filters, paging while jobs finish, and retry and purge of dead jobs by filter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor import Conveyor, Registry
from conveyor.errors import InvalidOptionError, UnknownQueueError
from conveyor.queue.enqueue import JobRequest

from ..helpers import DB, wait_until
from .tables import bury, finish, ids_of

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def tasks(registry: Registry) -> None:
    @registry.task
    async def noop(n: int = 0) -> None:
        pass

    @registry.task(queue="emails")
    async def send(n: int = 0) -> None:
        pass


async def pages_of(read: Any, limit: int, **filters: Any) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        page = await read(limit=limit, cursor=cursor, **filters)
        seen += ids_of(page.items)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


async def test_history_is_finish_time_order_with_ties_broken_by_id(
    client: Conveyor, tasks: None, db: DB
) -> None:
    await client.create_queue("emails")
    ids = await client.enqueue_many([JobRequest("noop", {"n": n}) for n in range(30)])
    mail = await client.enqueue_many([JobRequest("send", {"n": n}) for n in range(10)])
    # Ten share one finish time (a batch acked at once): a page boundary falls among them.
    finish(db, ids[:10], T0)
    finish(db, ids[10:20], T0 + timedelta(minutes=1), state="cancelled")
    bury(db, ids[20:25], T0 + timedelta(seconds=30))
    finish(db, mail, T0 + timedelta(seconds=30))  # the same time as the burials: ties across tables
    expected = (
        sorted(ids[10:20], reverse=True)
        + sorted(ids[20:25] + mail, reverse=True)
        + sorted(ids[:10], reverse=True)
    )
    for limit in (1, 3, 4, 7, 50):
        assert await pages_of(client.history, limit) == expected, limit

    page = await client.history(limit=2)
    assert [(r["id"], r["state"], r["finished_at"]) for r in page.items] == [
        (ids[19], "cancelled", T0 + timedelta(minutes=1)),
        (ids[18], "cancelled", T0 + timedelta(minutes=1)),
    ]
    row = next(r for r in (await client.history(state="dead", limit=1)).items)
    assert (row["id"], row["last_error"], row["worker_id"]) == (ids[24], "ValueError: boom", None)

    assert await pages_of(client.history, 4, queue="emails") == sorted(mail, reverse=True)
    assert await pages_of(client.history, 4, state="completed") == sorted(mail, reverse=True) + sorted(
        ids[:10], reverse=True
    )
    assert await pages_of(client.history, 3, state=["dead", "cancelled"]) == sorted(
        ids[10:20], reverse=True
    ) + sorted(ids[20:25], reverse=True)
    assert await pages_of(client.history, 5, finished_after=T0 + timedelta(seconds=30)) == expected[:25]
    assert await pages_of(client.history, 5, finished_before=T0 + timedelta(seconds=30)) == expected[25:]
    assert await pages_of(client.history, 5, task="send", state="dead") == []
    assert ids_of((await client.history()).items) == expected  # live jobs are not history
    assert len(await pages_of(client.search_jobs, 50)) == 40


async def test_history_pages_show_each_job_once_while_jobs_finish(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    gate = asyncio.Semaphore(0)
    done: list[int] = []

    @registry.task
    async def step(n: int) -> None:
        await gate.acquire()
        done.append(n)

    jobs = await client.enqueue_many([JobRequest("step", {"n": n}) for n in range(1100)])
    async with start_worker(concurrency=8):
        for _ in range(1000):
            gate.release()
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1000, within=60)
        at_start = {row[0] for row in db.all("select id from {schema}.job_history")}
        seen: list[int] = []
        cursor = None
        while True:
            page = await client.history(limit=41, cursor=cursor)
            seen += ids_of(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
            finished = len(done)
            for _ in range(4):
                gate.release()
            await wait_until(lambda finished=finished: len(done) >= finished + 4)
        for _ in range(200):
            gate.release()
        await wait_until(lambda: db.one("select count(*) from {schema}.jobs") == 0)
    assert len(seen) == len(set(seen))
    assert at_start <= set(seen)
    assert len(set(seen) - at_start) < 4  # finished after the first page was read: at most one page's worth
    assert set(jobs) >= set(seen)


async def test_dead_letters_page_by_death_and_filter(client: Conveyor, tasks: None, db: DB) -> None:
    await client.create_queue("emails")
    ids = await client.enqueue_many([JobRequest("noop", {"n": n}) for n in range(12)])
    mail = await client.enqueue_many([JobRequest("send", {"n": n}) for n in range(4)])
    for n, job_id in enumerate(ids):
        bury(db, [job_id], T0 + timedelta(minutes=n // 2))  # two by two at one time
    bury(db, mail, T0 + timedelta(hours=1), error="SMTPError: down")
    everything = await pages_of(client.dead_letters, 5)
    assert everything == sorted(mail, reverse=True) + [
        job_id for pair in reversed(range(6)) for job_id in sorted(ids[2 * pair : 2 * pair + 2], reverse=True)
    ]
    page = await client.dead_letters(queue="emails", limit=2)
    assert [r["last_error"] for r in page.items] == ["SMTPError: down"] * 2
    assert set(page.items[0]) == {
        "id", "queue", "task", "priority", "attempt", "max_attempts", "run_at", "enqueued_at", "started_at",
        "died_at", "key", "unique_key", "last_error",
    }  # fmt: skip
    assert page.items[0]["died_at"] == T0 + timedelta(hours=1)
    assert await pages_of(
        client.dead_letters, 3, task="noop", died_before=T0 + timedelta(minutes=2)
    ) == sorted(ids[:4], reverse=True)
    assert await pages_of(client.dead_letters, 3, died_after=T0 + timedelta(minutes=5)) == sorted(
        mail, reverse=True
    ) + sorted(ids[10:], reverse=True)
    # The old listing agrees with the new one.
    assert ids_of(await client.dead_jobs(limit=100)) == everything

    with pytest.raises(InvalidOptionError, match=r"continues the history listing, not the dead one"):
        await client.dead_letters(cursor=(await client.history(limit=1)).next_cursor)
    with pytest.raises(InvalidOptionError, match=r"died_after must be earlier than died_before"):
        await client.dead_letters(died_after=T0, died_before=T0)
    with pytest.raises(UnknownQueueError):
        await client.dead_letters(queue="nowhere")
    with pytest.raises(InvalidOptionError, match=r"unknown state 'running'"):
        await client.history(state="running")


async def test_retry_and_purge_dead_jobs_by_death_time_and_limit(
    client: Conveyor, tasks: None, db: DB
) -> None:
    ids = await client.enqueue_many([JobRequest("noop", {"n": n}) for n in range(2500)])
    bury(db, ids[:1200], T0)
    bury(db, ids[1200:2400], T0 + timedelta(hours=2))
    bury(db, ids[2400:], datetime.now(UTC) - timedelta(minutes=5))

    retried, refused = await client.retry_dead_matching(died_before=T0 + timedelta(hours=1), limit=1100)
    assert (retried, refused) == (ids[:1100], {})  # lowest ids first, across two batches of ids
    retried, refused = await client.retry_dead_matching(died_before=T0 + timedelta(hours=1))
    assert retried == ids[1100:1200]
    assert db.one("select count(*) from {schema}.jobs") == 1200

    purged = await client.purge_dead(died_after=T0, died_before=T0 + timedelta(hours=3))
    assert purged == 1200  # more than one batch of ids
    assert await client.purge_dead(older_than=timedelta(hours=1)) == 0  # the rest died 5 minutes ago
    assert await client.purge_dead(older_than=timedelta(minutes=1), task="other") == 0
    assert await client.purge_dead(older_than=timedelta(minutes=1)) == 100
    assert db.one("select count(*) from {schema}.dead_jobs") == 0

    with pytest.raises(InvalidOptionError, match=r"by ids or by death time, not both"):
        await client.purge_dead(ids=[1], died_after=T0)
    with pytest.raises(InvalidOptionError, match=r"limit must be 1 to"):
        await client.retry_dead_matching(limit=0)
    with pytest.raises(InvalidOptionError, match=r"older_than must not be negative"):
        await client.purge_dead(older_than=timedelta(seconds=-1))
