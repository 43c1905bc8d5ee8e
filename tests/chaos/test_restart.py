"""PostgreSQL restarted (fast and immediate) under running workers and a scheduler: they
reconnect by themselves, LISTEN is set up again, work resumes within a second or two, and
nothing is lost. These tests run on a server of their own (tests/chaos/cluster.py, started
once for the module), restarted with its own pg_ctl."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from conveyor import Conveyor, JobContext, Registry, Worker, WorkerConfig
from conveyor.queue.scheduler import Scheduler, SchedulerConfig

from ..helpers import DB, wait_until
from .cluster import Cluster


@asynccontextmanager
async def running(part: Worker | Scheduler) -> AsyncIterator[None]:
    task = asyncio.create_task(part.run())
    try:
        await asyncio.wait_for(part.started.wait(), 20)
        await asyncio.wait_for(part.notifier.listening.wait(), 20)
        yield
    finally:
        part.stop()
        await asyncio.wait_for(task, 30)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_after_a_restart_the_next_job_starts_within_a_second_not_a_poll_interval(
    cluster: Cluster, restart_schema: str, mode: str
) -> None:
    registry = Registry()
    started: dict[int, float] = {}
    finished: set[int] = set()

    @registry.task
    async def note(ctx: JobContext) -> None:
        started.setdefault(ctx.job_id, time.monotonic())
        async with ctx.connection() as conn:  # the tasks' own pool died in the restart too
            await conn.execute("SELECT 1")
        finished.add(ctx.job_id)

    db = DB(cluster.url, restart_schema)
    # A poll interval far longer than the wait allowed: only a prompt reconnect and claim
    # can start the job in time.
    worker = Worker(
        cluster.url,
        schema=restart_schema,
        registry=registry,
        config=WorkerConfig(poll_interval=10, grace=1),
    )
    async with running(worker), Conveyor(cluster.url, schema=restart_schema, registry=registry) as client:
        before = await client.enqueue(note)
        await wait_until(lambda: before in finished)

        cluster.restart(mode)
        back = time.monotonic()
        async with Conveyor(cluster.url, schema=restart_schema, registry=registry) as fresh:
            after = await fresh.enqueue(note)
        await wait_until(lambda: after in finished, within=5)
        assert started[after] - back < 1.5, started[after] - back
        assert db.one("select count(*) from {schema}.dead_jobs") == 0
        await wait_until(lambda: worker.notifier.connects >= 2 and worker.notifier.listening.is_set())
        # LISTEN is back: a job enqueued now is announced, not polled for.
        sent = time.monotonic()
        again = await client.enqueue(note)  # on the client's pool, whose connections died too
        await wait_until(lambda: again in finished, within=5)
        assert started[again] - sent < 1.0


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_workers_and_a_scheduler_ride_out_a_restart_and_lose_nothing(
    cluster: Cluster, restart_schema: str, mode: str
) -> None:
    registry = Registry()
    runs: list[int] = []

    @registry.task(queue="default")
    async def work(n: int, ctx: JobContext) -> int:
        await asyncio.sleep(0.01)
        runs.append(ctx.job_id)
        return n

    db = DB(cluster.url, restart_schema)
    config = WorkerConfig(concurrency=5, poll_interval=1, grace=2)
    workers = [Worker(cluster.url, schema=restart_schema, registry=registry, config=config) for _ in range(2)]
    scheduler = Scheduler(
        cluster.url, schema=restart_schema, registry=registry, config=SchedulerConfig(lease=3, tick=0.2)
    )
    async with (
        running(workers[0]),
        running(workers[1]),
        running(scheduler),
        Conveyor(cluster.url, schema=restart_schema, registry=registry) as client,
    ):
        ids = [await client.enqueue(work, {"n": n}) for n in range(100)]
        await wait_until(lambda: len(runs) >= 20)
        await wait_until(lambda: scheduler.elector.is_leader)

        cluster.restart(mode)
        back = time.monotonic()
        ids += [await client.enqueue(work, {"n": n}) for n in range(100, 150)]
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where state = 'completed'") == 150,
            within=30,
        )
        # Everything reconnected by itself: LISTEN on every process, the scheduler leads again.
        for part in (*workers, scheduler):
            await wait_until(
                lambda part=part: part.notifier.connects >= 2 and part.notifier.listening.is_set()
            )
        ticks = scheduler.ticks
        await wait_until(lambda: scheduler.ticks > ticks + 2 and scheduler.elector.is_leader)
        assert time.monotonic() - back < 30

    assert set(runs) >= set(ids)
    assert db.one("select count(*) from {schema}.jobs") == 0
    assert db.one("select count(*) from {schema}.dead_jobs") == 0
    assert db.one("select count(distinct id) from {schema}.job_history") == 150
