"""RetryIn with a real worker: the next attempt waits for the time the task asked for."""

from __future__ import annotations

from typing import Any

from conveyor import Backoff, Conveyor, FrozenClock, JobContext, Registry, RetryIn

from ..helpers import DB, wait_until


async def test_next_attempt_runs_no_sooner_than_asked_and_the_attempts_still_count(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    clock = FrozenClock()
    attempts: list[int] = []

    @registry.task(max_attempts=3, backoff=Backoff.fixed(5))
    async def polite(ctx: JobContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RetryIn(600, "the service said: come back in 10 minutes")
        if ctx.attempt == 2:
            raise RetryIn(1, "once more")  # shorter than the backoff: the backoff wins
        return "done"

    async with Conveyor(database_url, schema=schema, registry=registry, clock=clock) as client:
        job_id = await client.enqueue(polite)
        async with start_worker(clock=clock) as worker:

            def scheduled_after(attempt: int) -> bool:
                row = db.all("select state, attempt from {schema}.jobs where id = %s", [job_id])
                return row == [("scheduled", attempt)]

            await wait_until(lambda: scheduled_after(1))
            run_at = db.one("select run_at from {schema}.jobs where id = %s", [job_id])
            assert (run_at - clock.now()).total_seconds() == 600
            errors = db.one("select errors from {schema}.jobs where id = %s", [job_id])
            assert errors[-1]["error"] == (
                "RetryIn: the service said: come back in 10 minutes (next attempt in 600 s or later)"
            )

            clock.advance(599)
            worker.wake()
            passes = worker.maintenance.passes
            await wait_until(lambda: worker.maintenance.passes > passes + 1)
            assert attempts == [1]  # not due yet

            clock.advance(1)
            worker.wake()
            await wait_until(lambda: scheduled_after(2))
            run_at = db.one("select run_at from {schema}.jobs where id = %s", [job_id])
            assert (run_at - clock.now()).total_seconds() == 5

            clock.advance(5)
            worker.wake()
            await wait_until(
                lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1
            )
    assert attempts == [1, 2, 3]
    assert db.one("select result from {schema}.job_history where id = %s", [job_id]) == "done"


async def test_a_job_that_keeps_asking_goes_dead_after_its_attempts(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    clock = FrozenClock()

    @registry.task(max_attempts=2, backoff=Backoff.none())
    async def never_ready() -> None:
        raise RetryIn(30, "not yet")

    async with Conveyor(database_url, schema=schema, registry=registry, clock=clock) as client:
        job_id = await client.enqueue(never_ready)
        async with start_worker(clock=clock) as worker:
            await wait_until(
                lambda: db.all("select state from {schema}.jobs where id = %s", [job_id]) == [("scheduled",)]
            )
            clock.advance(30)
            worker.wake()
            await wait_until(
                lambda: db.one("select count(*) from {schema}.dead_jobs where id = %s", [job_id]) == 1
            )
    errors = db.one("select errors from {schema}.dead_jobs where id = %s", [job_id])
    assert [e["attempt"] for e in errors] == [1, 2]
    assert all("not yet" in e["error"] for e in errors)
