"""Enqueues on the client's own connection wake idle workers after their commit, and
durable=False enqueues commit without waiting for the disk, for their own transaction only."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from conveyor import Conveyor, Registry
from conveyor.db.queries import for_schema

from ..helpers import DB, wait_until


async def test_an_idle_worker_wakes_for_a_burst_of_enqueues_from_one_client(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task
    async def noop(i: int) -> None:
        pass

    # No poll within the test's 10 s: only notifications can start these jobs. (Not longer:
    # a stop that lands while the worker claims, woken by a late notification, waits for
    # the poll, and the fixture allows a stop 20 s.)
    async with (
        start_worker(poll_interval=15, concurrency=4),
        Conveyor(database_url, schema=schema, registry=registry, pool_size=8) as client,
    ):
        await client.enqueue(noop, {"i": -1})  # the queue is known: the next take the short path
        await asyncio.gather(*(client.enqueue(noop, {"i": i}) for i in range(40)))
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 41, within=10)


def test_a_non_durable_enqueue_commits_without_waiting_for_the_disk_for_its_transaction_only(
    database_url: str, schema: str
) -> None:
    queries = for_schema(schema)
    params = {
        "queue": "default",
        "task": "noop",
        "args": "{}",
        "priority": 2,
        "max_attempts": 1,
        "now": None,
        "channel": queries.channel,
        "notify": True,
        "durable": False,
    }
    with psycopg.connect(database_url) as conn:
        conn.execute(queries["enqueue_job_due_now"], params)
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
        conn.commit()
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        conn.execute(queries["enqueue_job_due_now"], {**params, "durable": True})
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        conn.rollback()


async def test_durable_false_on_the_client_and_per_call(
    database_url: str, schema: str, registry: Registry, db: DB
) -> None:
    @registry.task
    async def noop(i: int) -> None:
        pass

    async with Conveyor(database_url, schema=schema, registry=registry, durable_enqueue=False) as client:
        first = await client.enqueue(noop, {"i": 1})
        second = await client.enqueue(noop, {"i": 2})  # the short path, the queue now known
        third = await client.enqueue(noop, {"i": 3}, delay=60)  # the general path
        async with client.db.connection() as conn:
            # The setting ended with each enqueue's transaction.
            assert await (await conn.execute("SHOW synchronous_commit")).fetchone() == ("on",)
    async with Conveyor(database_url, schema=schema, registry=registry) as client:
        fourth = await client.enqueue(noop, {"i": 4}, durable=False)
    ids = [row[0] for row in db.all("select id from {schema}.jobs order by id")]
    assert ids == [first, second, third, fourth]


async def test_durable_false_leaves_a_callers_transaction_as_it_is(
    database_url: str, schema: str, registry: Registry, db: DB
) -> None:
    @registry.task
    async def noop(i: int) -> None:
        pass

    async with (
        Conveyor(database_url, schema=schema, registry=registry) as client,
        await psycopg.AsyncConnection.connect(database_url) as conn,
    ):
        await client.enqueue(noop, {"i": 1}, conn=conn, durable=False)
        assert await (await conn.execute("SHOW synchronous_commit")).fetchone() == ("on",)
        await conn.commit()
    assert db.one("select count(*) from {schema}.jobs") == 1
