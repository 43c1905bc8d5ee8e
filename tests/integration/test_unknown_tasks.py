"""A job whose task the worker does not know comes back later instead of dying at once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from conveyor import FrozenClock, Registry

from ..helpers import DB, wait_until


async def test_an_unknown_task_is_tried_again_later_and_runs_once_a_worker_knows_it(
    registry: Registry, db: DB, start_worker: Any
) -> None:
    clock = FrozenClock()
    ran: list[int] = []

    @registry.task
    async def known() -> None:
        pass

    job_id = db.one("select {schema}.enqueue('added_later', '{{\"n\": 7}}', max_attempts => 3)")
    async with start_worker(clock=clock) as worker:
        await wait_until(lambda: db.one("select attempt from {schema}.jobs where id = %s", [job_id]) == 1)
        await wait_until(
            lambda: db.one("select state from {schema}.jobs where id = %s", [job_id]) == "scheduled"
        )
        run_at, errors = db.one("select run_at, errors from {schema}.jobs where id = %s", [job_id])
        assert run_at == clock.now() + timedelta(seconds=60)
        [error] = errors
        assert error["attempt"] == 1
        assert error["error"].startswith("unknown task 'added_later'; registered: known; tried again in 60 s")
        assert db.one("select count(*) from {schema}.dead_jobs") == 0

        @registry.task(name="added_later")  # the deploy that brings the task reaches the worker
        async def added_later(n: int) -> None:
            ran.append(n)

        clock.advance(61)
        worker.wake()
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1)
    assert ran == [7]
    assert db.one("select attempt from {schema}.job_history where id = %s", [job_id]) == 2


async def test_an_unknown_task_goes_to_the_dead_letter_table_when_its_attempts_are_used_up(
    registry: Registry, db: DB, start_worker: Any
) -> None:
    clock = FrozenClock()

    @registry.task
    async def known() -> None:
        pass

    job_id = db.one("select {schema}.enqueue('no_such_task', '{{}}', max_attempts => 3)")
    async with start_worker(clock=clock) as worker:
        for attempt, delay in [(1, 60), (2, 120)]:
            await wait_until(
                lambda attempt=attempt: (
                    db.all("select state, attempt from {schema}.jobs where id = %s", [job_id])
                    == [("scheduled", attempt)]
                )
            )
            assert db.one(
                "select run_at from {schema}.jobs where id = %s", [job_id]
            ) == clock.now() + timedelta(seconds=delay)
            clock.advance(delay)
            worker.wake()
        await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 1)
    errors = db.one("select errors from {schema}.dead_jobs where id = %s", [job_id])
    assert [e["attempt"] for e in errors] == [1, 2, 3]
    assert errors[-1]["error"].endswith("then retry the job from the dead-letter queue")
