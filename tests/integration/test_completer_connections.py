"""A connection killed under the completer (while it writes, or between writes): the write
is retried on a fresh connection and the outcome recorded once."""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor import Conveyor, JobContext, Registry, Worker

from ..helpers import DB, wait_until
from .test_outcome_leases import history_locked


def blocked_on_history(db: DB) -> list[int]:
    return [
        row[0]
        for row in db.all(
            "select pid from pg_locks where not granted and relation = %s::regclass",
            [f'"{db.schema}".job_history'],
        )
    ]


def idle_pids(worker: Worker) -> list[int]:
    """The backends of the worker's own pool that no statement is using now."""
    conns = list(worker.db.pool._pool)  # the pool's idle connections
    if worker.db._spare is not None:
        conns.append(worker.db._spare)
    return [conn.info.backend_pid for conn in conns]


async def test_a_connection_killed_while_the_completer_writes_is_replaced_and_the_outcome_recorded_once(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    runs: list[int] = []

    @registry.task(max_attempts=1)
    async def pay(ctx: JobContext) -> str:
        runs.append(ctx.attempt)
        return "paid"

    async with start_worker() as worker:
        await wait_until(lambda: worker.maintenance.passes >= 1)
        with history_locked(db):
            job_id = await client.enqueue(pay)
            await wait_until(lambda: len(blocked_on_history(db)) == 1)
            [writer] = blocked_on_history(db)
            assert db.one("select pg_terminate_backend(%s)", [writer])
            # The write fails, is retried on another connection, and waits on the lock again.
            await wait_until(lambda: worker.stats.write_errors >= 1)
            await wait_until(lambda: blocked_on_history(db) not in ([], [writer]))
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1)
        await wait_until(lambda: worker.completer.pending == 0)
    assert runs == [1]
    assert db.all("select id, result from {schema}.job_history") == [(job_id, "paid")]
    assert db.one("select count(*) from {schema}.dead_jobs") == 0
    assert db.one("select count(*) from {schema}.jobs") == 0


async def test_connections_killed_between_writes_are_replaced_and_the_outcome_recorded_once(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    runs: list[int] = []
    release = asyncio.Event()

    @registry.task(max_attempts=1)
    async def pay(n: int) -> int:
        runs.append(n)
        if n == 2:
            await release.wait()
        return n

    async with start_worker() as worker:
        await client.enqueue(pay, {"n": 1})
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1)
        await client.enqueue(pay, {"n": 2})
        await wait_until(lambda: runs == [1, 2])
        killed = idle_pids(worker)
        assert killed  # at least the connection the last write used
        for pid in killed:
            db.one("select pg_terminate_backend(%s)", [pid])
        await wait_until(
            lambda: not db.one("select count(*) from pg_stat_activity where pid = any(%s)", [killed])
        )
        release.set()
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 2)
        await wait_until(lambda: worker.completer.pending == 0)
    assert runs == [1, 2]
    assert db.all("select result from {schema}.job_history order by id") == [(1,), (2,)]
    assert db.one("select count(*) from {schema}.dead_jobs") == 0
