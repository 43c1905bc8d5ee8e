"""Claims from cursors: what they skip, what they still find, and what the worker does about
jobs that land behind them (see conveyor.queue.cursors)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import tuple_row

from conveyor import Conveyor, JobRequest, Registry
from conveyor.db.database import Database
from conveyor.db.queries import for_schema
from conveyor.jobs import ClaimedJob, Cursors, Outcomes
from conveyor.queue import cursors

from ..helpers import DB, wait_until

LEASE = timedelta(seconds=60)


@pytest.fixture
async def database(database_url: str, schema: str) -> AsyncIterator[Database]:
    db = Database(database_url, schema, min_size=1, max_size=2)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


async def claim(db: Database, worker: uuid.UUID, n: int, after: Cursors | None = None) -> list[ClaimedJob]:
    return await db.claim_jobs(
        worker_id=worker, queues=["default"], limits=[n], limit=n, lease=LEASE, now=None, after=after
    )


def cursor_after(jobs: list[ClaimedJob]) -> Cursors:
    last = max(jobs, key=lambda j: (j.run_at, j.id))
    return {(last.queue, last.priority): (last.run_at, last.id)}


async def test_a_level_without_a_cursor_is_read_from_its_start(
    database: Database, client: Conveyor, registry: Registry
) -> None:
    """A cursor on the normal level does not hide an urgent job, however old its run_at."""

    @registry.task
    async def noop(i: int) -> None:
        pass

    await client.enqueue_many([JobRequest(noop, {"i": i}) for i in range(10)])
    worker = uuid.uuid4()
    first = await claim(database, worker, 5)
    urgent = await client.enqueue(
        noop, {"i": 99}, priority="critical", run_at=datetime(2000, 1, 1, tzinfo=UTC)
    )
    second = await claim(database, worker, 3, cursor_after(first))
    assert urgent in [j.id for j in second]
    assert sorted(j.id for j in second if j.id != urgent) == [j.id + 5 for j in first[:2]]


async def test_a_claim_from_a_cursor_skips_what_lies_behind_it_and_a_full_scan_finds_it(
    database: Database, client: Conveyor, registry: Registry
) -> None:
    @registry.task
    async def noop(i: int) -> None:
        pass

    await client.enqueue_many([JobRequest(noop, {"i": i}) for i in range(10)])
    worker = uuid.uuid4()
    first = await claim(database, worker, 10)
    # Lands behind the cursor: due before every job claimed so far.
    straggler = await client.enqueue(noop, {"i": 100}, run_at=datetime(2000, 1, 1, tzinfo=UTC))
    assert await claim(database, worker, 5, cursor_after(first)) == []
    assert [j.id for j in await claim(database, worker, 5)] == [straggler]


async def test_a_claim_from_a_cursor_reads_past_the_dead_entries_a_held_snapshot_keeps(
    database_url: str, schema: str, database: Database, client: Conveyor, registry: Registry, db: DB
) -> None:
    """While a transaction holds the xmin back, no claimed job's index entry can be removed
    or even marked dead: a claim from the start visits every one of them. From the cursor it
    reads as if they were not there."""

    @registry.task
    async def noop(i: int) -> None:
        pass

    await client.enqueue_many([JobRequest(noop, {"i": i}) for i in range(6_000)])
    db.all("analyze {schema}.jobs")
    worker = uuid.uuid4()
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT txid_current()")  # held open until the end of the test
        done: list[ClaimedJob] = []
        for _ in range(10):
            jobs = await claim(database, worker, 500)
            await database.record_outcomes(
                Outcomes(completed=[(j.id, j.claim, None) for j in jobs]), worker_id=worker, now=None
            )
            done += jobs
        from_start = _claim_index_reads(database_url, schema, worker, {})
        from_cursor = _claim_index_reads(database_url, schema, worker, cursor_after(done))
        holder.rollback()
    print(
        f"\nindex entries read to claim 100 jobs behind 5,000 dead ones: {from_start} from the start, {from_cursor} from the cursor"
    )
    assert from_start >= 5_100
    assert from_cursor <= 110


def _claim_index_reads(url: str, schema: str, worker: uuid.UUID, after: Cursors) -> int:
    """Entries of the claim index read by a claim of 100 jobs (rolled back), each one a heap
    visit: the statistics count them, dead or alive."""
    params: dict[str, Any] = {
        "now": None,
        "queues": ["default"],
        "limits": [100],
        "limit": 100,
        "worker_id": worker,
        "lease": LEASE,
        "after_queues": [queue for queue, _ in after],
        "after_priorities": [priority for _, priority in after],
        "after_run_ats": [run_at for run_at, _ in after.values()],
        "after_ids": [job_id for _, job_id in after.values()],
    }
    read = (
        "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE schemaname = %s AND indexrelname = 'jobs_claim'"
    )
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("SELECT pg_stat_force_next_flush()")
        before = cur.execute(read, [schema]).fetchone()[0]  # type: ignore[index]
        with conn.transaction(force_rollback=True):
            cur.execute(for_schema(schema)["claim_jobs"], params)
            assert len(cur.fetchall()) == 100
        cur.execute("SELECT pg_stat_force_next_flush()")
        cur.execute("SELECT pg_stat_clear_snapshot()")
        after = cur.execute(read, [schema]).fetchone()[0]  # type: ignore[index]
    return int(after - before)


async def test_the_worker_finds_a_job_behind_its_cursors_without_waiting_for_a_poll(
    client: Conveyor, registry: Registry, start_worker: Callable[..., Any]
) -> None:
    """The job's notification wakes the worker, whose claim from its cursors misses the job;
    it looks again from the start when the next full scan is due (tens of ms), not at the
    next poll (an hour here)."""
    ran: dict[int, float] = {}
    drained = asyncio.Event()

    @registry.task
    async def mark(i: int) -> None:
        ran[i] = time.monotonic()
        if len(ran) == 50:
            drained.set()

    await client.enqueue_many([JobRequest(mark, {"i": i}) for i in range(50)])
    async with start_worker(concurrency=10, poll_interval=3600) as worker:
        await asyncio.wait_for(drained.wait(), 10)
        assert worker._cursors._cursors  # the worker has cursors past the 50 jobs
        enqueued = time.monotonic()
        await client.enqueue(mark, {"i": 1000}, run_at=datetime(2000, 1, 1, tzinfo=UTC))
        await wait_until(lambda: 1000 in ran, within=10)  # not the poll: an hour
    print(f"\njob behind the cursor ran {(ran[1000] - enqueued) * 1000:.0f} ms after its enqueue")


async def test_jobs_finishing_meanwhile_do_not_put_off_the_look_from_the_start(
    client: Conveyor, registry: Registry, start_worker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each job that finishes wakes the worker; none of those wake-ups may push the look
    from the start back to the next poll."""
    monkeypatch.setattr(cursors, "MIN_INTERVAL", 1.0)  # full scans at most once a second
    ran: dict[int, float] = {}

    @registry.task
    async def nap(i: int, seconds: float) -> None:
        await asyncio.sleep(seconds)
        ran[i] = time.monotonic()

    await client.enqueue_many([JobRequest(nap, {"i": i, "seconds": 0.0}) for i in range(20)])
    async with start_worker(concurrency=10, poll_interval=3600):
        await wait_until(lambda: len(ran) == 20)
        # Finishing one after another while the straggler waits for its full scan.
        await client.enqueue_many([JobRequest(nap, {"i": 100 + n, "seconds": 0.1 * n}) for n in range(1, 8)])
        enqueued = time.monotonic()
        await client.enqueue(nap, {"i": 1000, "seconds": 0.0}, run_at=datetime(2000, 1, 1, tzinfo=UTC))
        await wait_until(lambda: 1000 in ran, within=10)  # not the poll: an hour
    assert ran[1000] - enqueued < 3
