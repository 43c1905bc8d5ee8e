"""Leases, rescue, heartbeats and fencing, with the clock pinned where time matters."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from conveyor import Conveyor, FrozenClock, JobContext, Registry
from conveyor.db.database import Database
from conveyor.jobs import Held, Outcomes

from ..helpers import DB, wait_until


async def claim_as_ghost(
    database_url: str, schema: str, clock: FrozenClock, lease: float
) -> tuple[uuid.UUID, Any]:
    """Claim the next job as a worker that will never come back."""
    ghost = uuid.uuid4()
    db = Database(database_url, schema)
    await db.open()
    try:
        [job] = await db.claim_jobs(
            worker_id=ghost,
            queues=["default"],
            limits=[1],
            limit=1,
            lease=timedelta(seconds=lease),
            now=clock.now(),
        )
    finally:
        await db.close()
    return ghost, job


async def test_expired_lease_is_rescued_rerun_and_the_stale_ack_is_fenced(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    clock = FrozenClock()
    runs: list[int] = []

    @registry.task
    async def charge(order: int, ctx: JobContext) -> str:
        runs.append(ctx.attempt)
        return f"charged on attempt {ctx.attempt}"

    async with Conveyor(database_url, schema=schema, registry=registry, clock=clock) as client:
        job_id = await client.enqueue(charge, {"order": 1})
    ghost, claimed = await claim_as_ghost(database_url, schema, clock, lease=30)
    assert claimed.id == job_id

    async with start_worker(clock=clock, lease=30) as worker:
        clock.advance(29)  # still leased: nobody may touch it
        worker.wake()
        passes = worker.maintenance.passes
        await wait_until(lambda: worker.maintenance.passes > passes + 1)
        assert db.one("select worker_id from {schema}.jobs where id = %s", [job_id]) == ghost
        assert runs == []

        clock.advance(2)  # the ghost's lease is over
        worker.wake()
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1)

    assert runs == [2]
    errors = db.one("select errors from {schema}.job_history where id = %s", [job_id])
    assert [(e["attempt"], e["worker"]) for e in errors] == [(1, str(ghost))]
    assert errors[0]["error"].startswith("lease expired")

    stale = Database(database_url, schema)
    await stale.open()
    try:
        recorded = await stale.record_outcomes(
            Outcomes(completed=[(job_id, 1, '"charged twice"')]), worker_id=ghost, now=clock.now()
        )
        extended = await stale.extend_leases(
            [Held(job_id, 1)], worker_id=ghost, lease=timedelta(seconds=30), now=clock.now()
        )
    finally:
        await stale.close()
    assert recorded.completed == frozenset()
    assert extended.kept == set()
    assert db.all("select result from {schema}.job_history") == [("charged on attempt 2",)]


async def test_expired_lease_on_the_last_attempt_goes_to_the_dead_letter_table(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    clock = FrozenClock()

    @registry.task(max_attempts=1)
    async def once() -> None:
        raise AssertionError("must not run again")

    async with Conveyor(database_url, schema=schema, registry=registry, clock=clock) as client:
        job_id = await client.enqueue(once)
    await claim_as_ghost(database_url, schema, clock, lease=10)
    async with start_worker(clock=clock, lease=10) as worker:
        clock.advance(11)
        worker.wake()
        await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 1)
    assert db.one(
        "select errors -> 0 ->> 'error' from {schema}.dead_jobs where id = %s", [job_id]
    ).startswith("lease expired")
    assert db.one("select count(*) from {schema}.jobs") == 0


async def test_heartbeat_keeps_a_long_job_leased(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    release = asyncio.Event()

    @registry.task
    async def long_export(ctx: JobContext) -> int:
        await release.wait()
        return ctx.attempt

    job_id = await client.enqueue(long_export)
    async with start_worker(lease=1.5) as worker:  # heartbeat every 0.5 s
        await wait_until(lambda: db.one("select count(*) from {schema}.jobs where state = 'running'") == 1)
        first = db.one("select lease_expires_at from {schema}.jobs where id = %s", [job_id])
        # Outlive the first lease several times over; the heartbeat must keep pushing it back.
        await wait_until(
            lambda: (
                db.one("select lease_expires_at from {schema}.jobs where id = %s", [job_id])
                > first + timedelta(seconds=3)
            ),
            within=15,
        )
        assert db.one("select attempt from {schema}.jobs where id = %s", [job_id]) == 1
        assert worker.running_jobs == [job_id]
        release.set()
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1)
    assert db.one("select result from {schema}.job_history") == 1  # never rescued, never re-run


async def test_jobs_still_run_after_the_listen_connection_is_killed(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    ran: list[int] = []

    @registry.task
    async def ping(n: int) -> None:
        ran.append(n)

    async with start_worker(poll_interval=0.3) as worker:
        await client.enqueue(ping, {"n": 1})
        await wait_until(lambda: ran == [1])

        assert worker.notifier.connection is not None
        backend = worker.notifier.connection.info.backend_pid
        db.all("select pg_terminate_backend(%s)", [backend])
        await client.enqueue(ping, {"n": 2})  # its NOTIFY may be lost with the connection
        await wait_until(lambda: ran == [1, 2])
        await wait_until(
            lambda: (
                worker.notifier.listening.is_set()
                and worker.notifier.connection is not None
                and worker.notifier.connection.info.backend_pid != backend
            )
        )
        await client.enqueue(ping, {"n": 3})
        await wait_until(lambda: ran == [1, 2, 3])
