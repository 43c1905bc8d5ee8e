"""Through PgBouncer in transaction mode: enqueue, a worker (LISTEN on a direct connection)
and the scheduler. What a pooler in transaction mode needs is set in the environment:

- CONVEYOR_PREPARED_STATEMENTS=off: PgBouncer before 1.21 (or without max_prepared_statements)
  does not carry prepared statements between server connections;
- CONVEYOR_SERVER_TIMEOUTS=off: PgBouncer refuses the ``options`` startup parameter that
  carries the statement and lock timeouts (set them on the role instead);
- CONVEYOR_LISTEN_URL: a direct connection for LISTEN, which a transaction pooler cannot hold.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import psycopg
import pytest

from conveyor import Conveyor, JobContext, Registry, Worker, WorkerConfig
from conveyor.queue.scheduler import Scheduler, SchedulerConfig

from ..helpers import DB, PgBouncer, pgbouncer, wait_until

pytestmark = [
    pytest.mark.processes,
    # Skipped only outside CI: .ci/run installs pgbouncer, so there a missing binary fails.
    pytest.mark.skipif(
        PgBouncer.binary() is None and os.environ.get("CI") != "true",
        reason="pgbouncer is not installed (Debian: apt-get install -y pgbouncer; .ci/run does it)",
    ),
]


@pytest.fixture
def bouncer(database_url: str) -> Iterator[PgBouncer]:
    with pgbouncer(database_url) as pooler:
        yield pooler


@pytest.fixture
def through_pooler(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("CONVEYOR_PREPARED_STATEMENTS", "off")
    monkeypatch.setenv("CONVEYOR_SERVER_TIMEOUTS", "off")
    monkeypatch.setenv("CONVEYOR_LISTEN_URL", database_url)


@pytest.mark.usefixtures("through_pooler")
async def test_enqueue_a_worker_and_the_scheduler_through_pgbouncer_in_transaction_mode(
    bouncer: PgBouncer, schema: str, db: DB
) -> None:
    registry = Registry()
    ran: list[int] = []

    @registry.task
    async def note(n: int, ctx: JobContext) -> int:
        ran.append(ctx.job_id)
        return n

    url = bouncer.url()
    worker = Worker(
        url, schema=schema, registry=registry, config=WorkerConfig(concurrency=4, poll_interval=5)
    )
    scheduler = Scheduler(url, schema=schema, registry=registry, config=SchedulerConfig(lease=3, tick=0.2))
    parts = [asyncio.create_task(worker.run()), asyncio.create_task(scheduler.run())]
    try:
        async with Conveyor(url, schema=schema, registry=registry) as client:
            await asyncio.wait_for(worker.notifier.listening.wait(), 20)
            # Many single enqueues from several tasks at once, each statement run often enough
            # that psycopg would have prepared it, spread over PgBouncer's server connections.
            batches = await asyncio.gather(
                *[
                    asyncio.gather(*[client.enqueue(note, {"n": n}) for n in range(k, 200, 4)])
                    for k in range(4)
                ]
            )
            ids = {job_id for batch in batches for job_id in batch}
            await wait_until(lambda: set(ran) == ids, within=30)
            # LISTEN on the direct connection: a job enqueued now starts without a poll.
            one = await client.enqueue(note, {"n": -1})
            await wait_until(lambda: one in ran, within=2)
        await wait_until(lambda: scheduler.elector.is_leader and scheduler.ticks >= 5)
    finally:
        worker.stop()
        scheduler.stop()
        await asyncio.wait_for(asyncio.gather(*parts), 30)
    assert db.one("select count(*) from {schema}.job_history") == 201
    assert db.one("select count(*) from {schema}.dead_jobs") == 0


async def test_pgbouncer_refuses_the_startup_options_that_carry_the_server_timeouts(
    bouncer: PgBouncer, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What does not work, and why CONVEYOR_SERVER_TIMEOUTS=off is needed behind PgBouncer."""
    monkeypatch.setenv("CONVEYOR_PREPARED_STATEMENTS", "off")
    worker = Worker(
        bouncer.url(), schema=schema, registry=Registry(), config=WorkerConfig(queues=["default"])
    )
    with pytest.raises(psycopg.OperationalError, match="options"):
        await worker.db.open()
    await worker.db.close()
