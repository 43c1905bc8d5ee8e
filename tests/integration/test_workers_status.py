"""Conveyor.workers against a real PostgreSQL: a running worker with the jobs it holds, silent
workers judged alive or not by the lease rule, and the scheduler leader with its last tick."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor import Conveyor, FrozenClock, Registry
from conveyor.db.database import Database
from conveyor.errors import InvalidOptionError
from conveyor.queue.leader import Elector

from ..helpers import DB, wait_until

START = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


async def test_a_working_worker_shows_its_jobs_and_is_alive(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    release = asyncio.Event()

    @registry.task
    async def hold(n: int) -> None:
        await release.wait()

    first = await client.enqueue("hold", {"n": 1})
    second = await client.enqueue("hold", {"n": 2})
    async with start_worker(concurrency=3, queues=["default", "other"]) as worker:
        await wait_until(lambda: db.one("select count(*) from {schema}.jobs where state = 'running'") == 2)
        found = await client.workers()
        [me] = found.workers
        assert (me.id, me.hostname, me.pid, me.queues, me.concurrency) == (
            worker.id,
            socket.gethostname(),
            os.getpid(),
            ("default", "other"),
            3,
        )
        assert me.alive
        assert timedelta(0) <= me.heartbeat_age < timedelta(seconds=30)
        assert [(j.id, j.task, j.queue, j.attempt, j.aborting, j.lease_expired) for j in me.jobs] == [
            (first, "hold", "default", 1, False, False),
            (second, "hold", "default", 1, False, False),
        ]
        assert all(j.started_at is not None and j.lease_expires_at > j.started_at for j in me.jobs)
        await client.abort(second)
        [me] = (await client.workers()).workers
        assert [j.aborting for j in me.jobs if j.id == second] in ([True], [])
        release.set()
        await wait_until(lambda: db.one("select count(*) from {schema}.jobs") == 0)
        [me] = (await client.workers()).workers
        assert me.jobs == ()
    assert (await client.workers()).workers == ()  # a worker that stopped cleanly is gone


async def test_silent_workers_are_alive_only_within_a_lease_or_while_a_lease_they_hold_runs(
    database_url: str, schema: str, registry: Registry, db: DB
) -> None:
    @registry.task
    async def hold() -> None:
        pass

    clock = FrozenClock(START)
    async with Conveyor(database_url, schema=schema, registry=registry, clock=clock) as client:
        seam = Database(database_url, schema)
        await seam.open()
        try:
            idle, holding = uuid.uuid4(), uuid.uuid4()
            for worker_id, started in ((idle, START), (holding, START + timedelta(seconds=1))):
                await seam.register_worker(
                    worker_id=worker_id, hostname="box", pid=7, queues=["default"], concurrency=2, now=started
                )
            job = await client.enqueue("hold", {})
            await seam.claim_jobs(
                worker_id=holding,
                queues=["default"],
                limits=[1],
                limit=1,
                lease=timedelta(seconds=120),
                now=START + timedelta(seconds=1),
            )
        finally:
            await seam.close()

        clock.set(START + timedelta(seconds=20))
        found = await client.workers()
        assert [(w.id, w.alive, w.heartbeat_age) for w in found.workers] == [
            (idle, True, timedelta(seconds=20)),
            (holding, True, timedelta(seconds=19)),
        ]
        # Past one lease (30 s by default) without a heartbeat: the idle one is not alive; the
        # other holds a job whose own lease (120 s) still runs, so its jobs are not rescued yet.
        clock.set(START + timedelta(seconds=60))
        idle_status, holding_status = (await client.workers()).workers
        assert not idle_status.alive
        assert holding_status.alive
        assert [(j.id, j.lease_expired) for j in holding_status.jobs] == [(job, False)]
        # A longer lease given: the idle one is within it.
        assert (await client.workers(lease=timedelta(minutes=5))).workers[0].alive
        assert (await client.workers(lease=90)).workers[0].alive
        clock.set(START + timedelta(seconds=200))
        _, holding_status = (await client.workers()).workers
        assert not holding_status.alive
        assert [(j.id, j.lease_expired) for j in holding_status.jobs] == [(job, True)]

        for bad in (0, -1, timedelta(0), "30s"):
            with pytest.raises(InvalidOptionError):
                await client.workers(lease=bad)  # type: ignore[arg-type]


async def test_the_scheduler_leader_and_its_last_tick_come_with_the_workers(
    database_url: str, schema: str, db: DB
) -> None:
    clock = FrozenClock(START)
    async with Conveyor(database_url, schema=schema, clock=clock) as client:
        none = (await client.workers()).scheduler
        assert (none.holder, none.running, none.last_tick_age) == (None, False, None)
        elector = Elector(client.db, clock, ttl=15, tick=1)
        assert await elector.attempt()
        clock.advance(4)
        scheduler = (await client.workers()).scheduler
        assert scheduler == await client.scheduler_status()
        assert (scheduler.holder, scheduler.pid, scheduler.running, scheduler.last_tick_age) == (
            elector.holder,
            os.getpid(),
            True,
            timedelta(seconds=4),
        )
