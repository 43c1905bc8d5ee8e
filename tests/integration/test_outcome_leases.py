"""A finished job stays leased until its outcome is written, however long the write waits;
and the completer's backlog counts the batch it is writing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from conveyor import Conveyor, JobContext, Registry, Worker

from ..helpers import DB, wait_until


@contextmanager
def history_locked(db: DB) -> Iterator[psycopg.Connection[Any]]:
    """job_history locked (as DDL or a long retention step locks it) until the block ends."""
    conn = db.connect()
    try:
        conn.execute(db.compose("LOCK TABLE {schema}.job_history IN ACCESS EXCLUSIVE MODE"))
        yield conn
    finally:
        conn.rollback()
        conn.close()


def writes_waiting_on_history(db: DB) -> int:
    return int(
        db.one(
            "select count(*) from pg_locks where not granted and relation = %s::regclass",
            [f'"{db.schema}".job_history'],
        )
    )


async def outlast_the_lease(db: DB, worker: Worker, lease: float) -> None:
    """Let real time pass beyond several leases, then see a rescue pass run after that."""
    since = db.one("select now()")
    await wait_until(lambda: db.one("select now() > %s + %s * interval '1 s'", [since, 3 * lease]), within=30)
    passes = worker.maintenance.passes
    worker.maintenance.poke()
    await wait_until(lambda: worker.maintenance.passes >= passes + 2, within=30)


@pytest.mark.parametrize("max_attempts", [1, 3])
async def test_a_finished_job_stays_leased_while_its_outcome_waits_for_a_lock(
    max_attempts: int, client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    runs: list[int] = []

    @registry.task(max_attempts=max_attempts)
    async def quick(ctx: JobContext) -> str:
        runs.append(ctx.attempt)
        return "done"

    lease = 2.0
    async with start_worker(lease=lease) as worker:
        await wait_until(lambda: worker.maintenance.passes >= 1)  # its upkeep is done
        with history_locked(db):
            job_id = await client.enqueue(quick)
            await wait_until(lambda: runs == [1] and writes_waiting_on_history(db) == 1)
            await outlast_the_lease(db, worker, lease)
            # Rescue passes ran long after the claim's lease: the heartbeat kept it.
            assert db.all("select state, attempt from {schema}.jobs where id = %s", [job_id]) == [
                ("running", 1)
            ]
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1)
        await wait_until(lambda: worker.completer.pending == 0)
    assert runs == [1]
    assert db.all("select id, attempt, result from {schema}.job_history") == [(job_id, 1, "done")]
    assert db.one("select count(*) from {schema}.dead_jobs") == 0
    assert db.one("select count(*) from {schema}.jobs") == 0


async def test_pending_outcomes_include_the_batch_being_written(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    runs: list[int] = []

    @registry.task
    async def quick(n: int) -> None:
        runs.append(n)

    async with start_worker(concurrency=1) as worker:
        await wait_until(lambda: worker.maintenance.passes >= 1)
        with history_locked(db):
            for n in range(3):
                await client.enqueue(quick, {"n": n})
            await wait_until(lambda: len(runs) == 3 and writes_waiting_on_history(db) == 1)
            # Every finished job's outcome is unwritten: the one in the stuck write too.
            await wait_until(lambda: worker.completer.pending == 3)
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 3)
        await wait_until(lambda: worker.completer.pending == 0)
