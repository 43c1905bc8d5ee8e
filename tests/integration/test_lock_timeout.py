"""A worker's connections carry a lock_timeout: a write blocked on a lock (DDL on job_history,
a long transaction) fails, and is retried, instead of hanging behind it."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import psycopg
import pytest

from conveyor import Conveyor, Registry, Worker, WorkerConfig
from conveyor.db.errors import is_transient
from conveyor.jobs import Outcomes

from ..helpers import DB


async def test_a_write_blocked_on_a_lock_fails_with_lock_timeout_rather_than_waiting(
    client: Conveyor,
    registry: Registry,
    database_url: str,
    schema: str,
    db: DB,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_LOCK_TIMEOUT", "0.2")

    @registry.task
    async def noop() -> None:
        pass

    job_id = await client.enqueue(noop)
    worker = Worker(database_url, schema=schema, registry=registry, config=WorkerConfig(queues=["default"]))
    await worker.db.open()
    try:
        [job] = await worker.db.claim_jobs(
            worker_id=worker.id,
            queues=["default"],
            limits=[1],
            limit=1,
            lease=timedelta(seconds=30),
            now=None,
        )
        done = Outcomes(completed=[(job.id, job.claim, None)])
        with db.connect() as locker:
            locker.execute("BEGIN")
            locker.execute(db.compose("LOCK TABLE {schema}.job_history IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            with pytest.raises(psycopg.errors.LockNotAvailable) as failure:
                async with asyncio.timeout(5):  # without lock_timeout, it would wait for the lock
                    await worker.db.record_outcomes(done, worker_id=worker.id, now=None)
            assert time.monotonic() - started < 2
            assert is_transient(failure.value)  # the completer retries it
            locker.execute("ROLLBACK")
        recorded = await worker.db.record_outcomes(done, worker_id=worker.id, now=None)
        assert recorded.completed == {job_id}
    finally:
        await worker.db.close()
    assert db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1
