"""The worker engine under a slow database and misbehaving tasks: a statement timeout on an ack
is retried, never a refusal; leases outlive a locked workers row; a stop names why outcomes
were left; a task whose error or result cannot be printed still has its attempt recorded."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from conveyor import Conveyor, JobContext, Registry
from conveyor.jobs import ClaimedJob
from conveyor.queue import worker as worker_module
from conveyor.queue.executor import Executor

from ..helpers import DB, wait_until
from .test_outcome_leases import history_locked, outlast_the_lease, writes_waiting_on_history


def slow_inserts(db: DB, table: str, task: str, seconds: float) -> None:
    """Rows of ``task`` inserted into ``table`` take ``seconds`` each while {schema}.slow has a
    row (a slow disk, say)."""
    db.all("create table if not exists {schema}.slow (on_ boolean)")
    db.all("insert into {schema}.slow values (true)")
    db.all(
        "create or replace function {schema}.slow_insert() returns trigger language plpgsql as $$ "
        "begin if new.task = tg_argv[0] and exists (select from {schema}.slow) then "
        "perform pg_sleep(tg_argv[1]::float); end if; return new; end $$"
    )
    db.all(
        "create trigger slow_insert before insert on {schema}." + table + " for each row "
        f"execute function {{schema}}.slow_insert('{task}', '{seconds}')"
    )


def fast_again(db: DB) -> None:
    db.all("delete from {schema}.slow")


async def test_an_ack_past_the_statement_timeout_is_retried_until_it_is_written(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_STATEMENT_TIMEOUT", "0.3")
    monkeypatch.setenv("CONVEYOR_LOCK_TIMEOUT", "0.2")
    runs: list[int] = []

    @registry.task(max_attempts=1)
    async def slow_ack(ctx: JobContext) -> str:
        runs.append(ctx.attempt)
        return "done"

    slow_inserts(db, "job_history", "slow_ack", 0.6)
    async with start_worker(lease=2.0) as worker:
        job_id = await client.enqueue(slow_ack)
        # Retried, again and again, while the job stays leased (the heartbeat extends it).
        await wait_until(lambda: worker.stats.write_errors >= 3, within=15)
        assert db.one("select count(*) from {schema}.dead_jobs") == 0
        assert db.one("select worker_id is not null from {schema}.jobs where id = %s", [job_id])
        fast_again(db)
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1
        )
    assert runs == [1]
    assert db.one("select state from {schema}.job_history where id = %s", [job_id]) == "completed"
    assert db.one("select count(*) from {schema}.dead_jobs") == 0


async def test_follow_up_jobs_are_written_under_a_longer_statement_timeout(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_STATEMENT_TIMEOUT", "0.3")

    @registry.task
    async def kid() -> None:
        pass

    @registry.task(max_attempts=1)
    async def parent(ctx: JobContext) -> None:
        ctx.enqueue(kid)

    # The follow-up's insert takes longer than the statement timeout, well within 6 times it.
    slow_inserts(db, "jobs", "kid", 0.6)
    async with start_worker(lease=3.0) as worker:
        job_id = await client.enqueue(parent)
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1
        )
        assert worker.stats.write_errors == 0
    assert db.one("select state from {schema}.job_history where id = %s", [job_id]) == "completed"
    assert db.one("select count(*) from {schema}.dead_jobs") == 0


async def test_leases_are_extended_while_the_workers_row_is_locked(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    runs: list[int] = []
    release = asyncio.Event()

    @registry.task(max_attempts=3)
    async def long_job(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        await release.wait()

    lease = 1.5
    async with start_worker(lease=lease) as worker:
        job_id = await client.enqueue(long_job)
        await wait_until(lambda: runs == [1])
        with db.connect() as locker:
            # A long transaction holding the workers rows: the heartbeat's write to its row
            # waits behind it (up to the lock timeout, longer than the lease).
            locker.execute(db.compose("SELECT id FROM {schema}.workers FOR UPDATE"))
            await outlast_the_lease(db, worker, lease)
            locker.rollback()
        release.set()
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1
        )
    assert runs == [1]
    assert db.one("select attempt from {schema}.job_history where id = %s", [job_id]) == 1


async def test_a_lease_lost_while_running_is_logged_once(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @registry.task
    async def long_job() -> None:
        started.set()
        await release.wait()

    lease = 1.5
    caplog.set_level(logging.WARNING, logger="conveyor.worker")
    async with start_worker(lease=lease) as worker:
        job_id = await client.enqueue(long_job)
        await started.wait()
        # Another claim took the job (as a rescue and a new claim would): this execution's
        # fencing token no longer matches, on every heartbeat from now on.
        db.all("update {schema}.jobs set claims = claims + 1 where id = %s", [job_id])
        beats = len([r for r in caplog.records if "lease lost while running" in r.getMessage()])
        since = db.one("select now()")
        await wait_until(
            lambda: db.one("select now() > %s + %s * interval '1 s'", [since, 2 * lease]), within=30
        )
        release.set()
        await wait_until(lambda: not worker.running_jobs)
    assert beats <= 1
    assert len([r for r in caplog.records if "lease lost while running" in r.getMessage()]) == 1


async def test_a_stop_that_cannot_write_an_outcome_says_why(
    client: Conveyor,
    registry: Registry,
    db: DB,
    start_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("CONVEYOR_LOCK_TIMEOUT", "0")  # the ack waits on the lock for good
    monkeypatch.setattr(worker_module, "SHUTDOWN_WRITE_TIMEOUT", 0.5)

    @registry.task
    async def quick() -> None:
        pass

    with history_locked(db):
        async with start_worker(lease=5.0) as worker:
            await client.enqueue(quick)
            # Another write (a maintenance pass) may wait on the lock before the job is even
            # claimed: wait for this job's own outcome to be the one held up.
            await wait_until(lambda: worker.completer.pending >= 1 and writes_waiting_on_history(db) >= 1)
    [record] = [r for r in caplog.records if "stopping without recording" in r.getMessage()]
    assert "could not be written within 0.5s (the database is unreachable or a lock held them)" in (
        record.getMessage()
    )


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


class Opaque:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


async def test_an_exception_that_cannot_be_printed_still_fails_the_attempt(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task(max_attempts=1)
    async def raises_unprintable() -> None:
        raise Unprintable

    async with start_worker(lease=30.0):
        job_id = await client.enqueue(raises_unprintable)
        await wait_until(
            lambda: db.one("select count(*) from {schema}.dead_jobs where id = %s", [job_id]) == 1
        )
    [entry] = db.one("select errors from {schema}.dead_jobs where id = %s", [job_id])
    assert entry["error"] == "Unprintable: <exception of type Unprintable with an unprintable message>"


async def test_a_result_that_cannot_be_printed_still_completes_the_job(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task(max_attempts=1)
    async def returns_opaque() -> Opaque:
        return Opaque()

    async with start_worker(lease=30.0):
        job_id = await client.enqueue(returns_opaque)
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1
        )
    result = db.one("select result from {schema}.job_history where id = %s", [job_id])
    assert result["unstorable_result"] == "<Opaque object with an unprintable repr>"
    assert db.one("select count(*) from {schema}.dead_jobs") == 0


async def test_an_executor_that_raises_records_a_failed_attempt(
    client: Conveyor,
    registry: Registry,
    db: DB,
    start_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    @registry.task(max_attempts=2)
    async def fine() -> None:
        pass

    async def broken(self: Executor, job: ClaimedJob) -> Any:
        raise RuntimeError("a bug in judging the outcome")

    monkeypatch.setattr(Executor, "execute", broken)
    async with start_worker(lease=30.0):
        job_id = await client.enqueue(fine)
        await wait_until(
            lambda: (
                db.one("select jsonb_array_length(errors) from {schema}.jobs where id = %s", [job_id]) == 1
            )
        )
    [entry] = db.one("select errors from {schema}.jobs where id = %s", [job_id])
    assert (
        entry["error"]
        == "the worker failed while judging this attempt: RuntimeError: a bug in judging the outcome"
    )
    assert db.one("select state from {schema}.jobs where id = %s", [job_id]) in ("scheduled", "available")
    assert any(getattr(r, "event", None) == "executor_error" for r in caplog.records)
