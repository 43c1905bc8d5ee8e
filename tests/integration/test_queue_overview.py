"""Conveyor.queue_overview against a real PostgreSQL: counts by state (agreeing with
queue_stats), blocked jobs, throughput with and without the rollup behind queue_stats,
pauses and limits, and bad names."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from conveyor import Conveyor, FrozenClock, Registry
from conveyor.db.database import Database
from conveyor.errors import InvalidOptionError, UnknownQueueError
from conveyor.queue.enqueue import JobRequest
from conveyor.queue.overview import QueueOverview
from conveyor.queue.scheduler import Scheduler, SchedulerConfig

from ..helpers import DB
from .tables import bury, finish


async def test_the_overview_counts_every_state_and_the_throughput_of_the_last_minute_and_hour(
    database_url: str, schema: str, registry: Registry, db: DB
) -> None:
    @registry.task(queue="work")
    async def job(n: int = 0) -> None:
        pass

    now = datetime.now(UTC)
    clock = FrozenClock(now)
    async with Conveyor(database_url, schema=schema, registry=registry, clock=clock) as client:
        waiting = await client.enqueue_many([JobRequest("job", {"n": n}) for n in range(3)])
        await client.enqueue_many([JobRequest("job", {"n": n}, delay=3600) for n in range(2)])
        for n in range(2):
            await client.enqueue("job", {"n": 10 + n}, after=waiting[1])  # blocked behind it
        seam = Database(database_url, schema)
        await seam.open()
        try:
            await seam.claim_jobs(
                worker_id=uuid.uuid4(),
                queues=["work"],
                limits=[1],
                limit=1,
                lease=timedelta(minutes=1),
                now=now,
            )
        finally:
            await seam.close()
        assert db.one("select id from {schema}.jobs where state = 'running'") == waiting[0]
        db.all("update {schema}.jobs set run_at = %s where id = %s", [now - timedelta(minutes=7), waiting[2]])
        # Finished jobs around the minute and the hour (ids come from enqueued jobs).
        spans = {
            timedelta(seconds=30): 2,
            timedelta(minutes=10): 3,
            timedelta(minutes=50): 4,
            timedelta(minutes=59, seconds=30): 2,  # before the hour's first whole 5-minute bucket
            timedelta(minutes=60, seconds=30): 5,  # outside the hour
            timedelta(hours=30): 1,
        }
        for ago, count in spans.items():
            ids = await client.enqueue_many([JobRequest("job", {"n": n}) for n in range(count)])
            finish(db, ids, now - ago)
        cancelled = await client.enqueue("job", {})
        finish(db, [cancelled], now - timedelta(seconds=20), state="cancelled")
        dead = await client.enqueue_many([JobRequest("job", {}) for _ in range(2)])
        bury(db, [dead[0]], now - timedelta(minutes=10))
        bury(db, [dead[1]], now - timedelta(hours=2))

        async def overview() -> QueueOverview:
            [work] = [o for o in await client.queue_overview() if o.queue == "work"]
            return work

        work = await overview()
        assert (work.waiting, work.scheduled, work.running, work.blocked, work.dead) == (2, 2, 1, 2, 2)
        assert (work.completed_last_minute, work.completed_last_hour, work.dead_last_hour) == (2, 11, 1)
        assert work.oldest_waiting_age is not None
        assert work.oldest_waiting_age >= timedelta(minutes=7) - timedelta(seconds=1)
        assert (work.paused, work.all_paused, work.paused_tasks, work.limits) == (False, False, (), None)

        # The same once the rollup behind queue_stats has counted the buckets: the hour then
        # comes from its buckets and the rows on either side of them.
        db.all("select {schema}.count_finished_v1(%s, 1000)", [now])
        mark = db.one("select counted_to from {schema}.finished_counts_mark")
        assert now - timedelta(minutes=7) < mark < now
        # Counted: the rows of the last 24 hours before the mark (not the last 30 s, not 30 h ago).
        assert db.one("select sum(completed) from {schema}.finished_counts where queue = 'work'") == 14
        assert (await overview()).completed_last_hour == 11
        # Rows finished since the mark are counted from job_history.
        late = await client.enqueue("job", {})
        finish(db, [late], now - timedelta(seconds=5))
        work = await overview()
        assert (work.completed_last_minute, work.completed_last_hour) == (3, 12)
        clock.advance(120)  # two minutes on: the minute is empty, the two of 59.5 minutes ago left the hour
        work = await overview()
        assert (work.completed_last_minute, work.completed_last_hour) == (0, 10)

        await client.pause_queue("work")
        await client.set_queue_limits("work", concurrency=5, rate="10/1m")
        [one] = await client.queue_overview("work")
        assert one.paused
        assert one.limits is not None
        assert (one.limits.limits.concurrency, one.limits.running) == (5, 1)
        assert str(one.limits.limits.rate) == "10/1m"

        # The counts are queue_stats' own.
        stats = {s.queue: s for s in await client.queue_stats()}
        for row in await client.queue_overview():
            s = stats[row.queue]
            assert (row.waiting, row.scheduled, row.running, row.completed_24h, row.dead, row.paused) == (
                s.waiting,
                s.scheduled,
                s.running,
                s.completed_24h,
                s.dead,
                s.paused,
            )
        assert {row.queue for row in await client.queue_overview()} == set(stats)


async def test_an_unknown_or_malformed_queue_is_refused(client: Conveyor) -> None:
    with pytest.raises(UnknownQueueError, match=r"no queue named 'nowhere'"):
        await client.queue_overview("nowhere")
    with pytest.raises(InvalidOptionError, match=r"is not allowed"):
        await client.queue_overview("no where")
    [default] = await client.queue_overview("default")
    assert (default.queue, default.waiting, default.completed_last_hour) == ("default", 0, 0)


async def test_the_scheduler_counts_the_rollup_every_metrics_interval_not_only_at_retention(
    database_url: str, schema: str, registry: Registry, db: DB
) -> None:
    """So the overview reads at most a few minutes of job_history since the rollup's mark,
    whatever the retention interval."""

    @registry.task(queue="work")
    async def job() -> None:
        pass

    start = datetime.now(UTC) - timedelta(minutes=30)
    clock = FrozenClock(start)
    scheduler = Scheduler(
        database_url,
        schema=schema,
        registry=registry,
        clock=clock,
        config=SchedulerConfig(retention_interval=24 * 3600, metrics_interval=60),
    )
    await scheduler.db.open()
    try:
        async with Conveyor(database_url, schema=schema, registry=registry, clock=clock) as client:
            await scheduler.keep_house()  # retention (its first run) counts up to the start
            mark = db.one("select counted_to from {schema}.finished_counts_mark")
            assert mark <= start
            ids = await client.enqueue_many([JobRequest("job", {}) for _ in range(4)])
            finish(db, ids, start + timedelta(minutes=5))
            clock.advance(20 * 60)
            await scheduler.keep_house()  # not retention's time: the metrics' interval is up
            assert db.one("select counted_to from {schema}.finished_counts_mark") > start + timedelta(
                minutes=5
            )
            assert db.one("select sum(completed) from {schema}.finished_counts where queue = 'work'") == 4
            [work] = await client.queue_overview("work")
            assert work.completed_24h == 4
    finally:
        await scheduler.db.close()
