"""An in-process worker against real PostgreSQL: running, results, retries, priorities, delays."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

from conveyor import Backoff, Conveyor, FrozenClock, JobContext, Registry

from ..helpers import DB, wait_until


async def test_runs_async_and_sync_tasks_and_keeps_results(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    threads: list[str] = []

    @registry.task
    async def add(a: int, b: int) -> int:
        return a + b

    @registry.task
    def shout(word: str) -> str:
        threads.append(threading.current_thread().name)
        return word.upper()

    first = await client.enqueue(add, {"a": 2, "b": 3})
    second = await client.enqueue("shout", {"word": "hey"})
    async with start_worker():
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 2)

    assert db.one("select result from {schema}.job_history where id = %s", [first]) == 5
    assert db.one("select result from {schema}.job_history where id = %s", [second]) == "HEY"
    assert db.one("select count(*) from {schema}.jobs") == 0
    assert threads[0].startswith("conveyor-job")  # sync tasks run off the event loop


async def test_higher_priority_runs_first(client: Conveyor, registry: Registry, start_worker: Any) -> None:
    order: list[str] = []

    @registry.task
    async def note(name: str) -> None:
        order.append(name)

    await client.enqueue(note, {"name": "low"}, priority="low")
    await client.enqueue(note, {"name": "normal"})
    await client.enqueue(note, {"name": "critical"}, priority="critical")
    await client.enqueue(note, {"name": "high"}, priority=1)
    async with start_worker(concurrency=1):
        await wait_until(lambda: len(order) == 4)
    assert order == ["critical", "high", "normal", "low"]


async def test_delayed_job_waits_for_its_time(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    clock = FrozenClock()
    ran = asyncio.Event()

    @registry.task
    async def later() -> None:
        ran.set()

    async with Conveyor(database_url, schema=schema, registry=registry, clock=clock) as client:
        job_id = await client.enqueue(later, delay=timedelta(minutes=10))
    assert db.one("select state from {schema}.jobs where id = %s", [job_id]) == "scheduled"

    async with start_worker(clock=clock) as worker:
        clock.advance(9 * 60)
        worker.wake()
        await wait_until(lambda: worker.maintenance.passes >= 2)
        assert not ran.is_set()
        assert db.one("select state from {schema}.jobs where id = %s", [job_id]) == "scheduled"

        clock.advance(61)
        worker.wake()
        await asyncio.wait_for(ran.wait(), 10)


async def test_retries_follow_backoff_then_dead_letter_then_retry_from_dlq(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    clock = FrozenClock()
    backoff = Backoff(base=10, factor=3, cap=100, jitter=0.2)
    calls: list[int] = []
    healed = threading.Event()

    @registry.task(max_attempts=4, backoff=backoff)
    async def flaky(n: int, ctx: JobContext) -> str:
        calls.append(ctx.attempt)
        if not healed.is_set():
            raise RuntimeError(f"attempt {ctx.attempt} failed")
        return "ok"

    async with Conveyor(database_url, schema=schema, registry=registry, clock=clock) as client:
        job_id = await client.enqueue(flaky, {"n": 1})
        async with start_worker(clock=clock) as worker:
            for attempt in range(1, 4):
                await wait_until(
                    lambda a=attempt: (
                        db.one(
                            "select count(*) from {schema}.jobs"
                            " where id = %s and state = 'scheduled' and attempt = %s",
                            [job_id, a],
                        )
                        == 1
                    )
                )
                run_at = db.one("select run_at from {schema}.jobs where id = %s", [job_id])
                waited = (run_at - clock.now()).total_seconds()
                low, high = backoff.bounds(attempt)
                assert low <= waited <= high, (attempt, waited)
                # Not due a moment before its time...
                clock.advance(waited - 0.5)
                worker.wake()
                passes = worker.maintenance.passes
                await wait_until(lambda p=passes: worker.maintenance.passes > p)
                assert db.one("select state from {schema}.jobs where id = %s", [job_id]) == "scheduled"
                # ...and run once it is.
                clock.advance(0.5)
                worker.wake()

            await wait_until(
                lambda: db.one("select count(*) from {schema}.dead_jobs where id = %s", [job_id]) == 1
            )
            assert calls == [1, 2, 3, 4]
            errors = db.one("select errors from {schema}.dead_jobs where id = %s", [job_id])
            assert [e["attempt"] for e in errors] == [1, 2, 3, 4]
            assert all(e["error"] == f"RuntimeError: attempt {e['attempt']} failed" for e in errors)
            assert all("Traceback" in e["traceback"] for e in errors)
            assert db.one("select count(*) from {schema}.jobs") == 0

            healed.set()
            assert await client.retry_dead(job_id) == job_id
            await wait_until(
                lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1
            )
    assert calls == [1, 2, 3, 4, 1]  # a fresh attempt budget
    assert db.one("select result from {schema}.job_history where id = %s", [job_id]) == "ok"
    assert len(db.one("select errors from {schema}.job_history where id = %s", [job_id])) == 4


async def test_unknown_task_goes_to_dead_letter_with_clear_error(
    registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task
    async def known() -> None:
        pass

    # On its last attempt (see test_unknown_tasks for the attempts before).
    job_id = db.one("select {schema}.enqueue('no_such_task', '{{\"x\": 1}}', max_attempts => 1)")
    async with start_worker():
        await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 1)
    error = db.one("select errors -> -1 ->> 'error' from {schema}.dead_jobs where id = %s", [job_id])
    assert "unknown task 'no_such_task'" in error
    assert "--tasks" in error
    assert db.one("select args from {schema}.dead_jobs where id = %s", [job_id]) == {"x": 1}


async def test_arguments_enqueued_from_sql_that_do_not_fit_go_to_dead_letter(
    registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task
    async def greet(name: str) -> None:
        raise AssertionError("must not run with bad arguments")

    bad = db.one("select {schema}.enqueue('greet', '{{\"nme\": \"x\"}}')")
    async with start_worker():
        await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 1)
    error = db.one("select errors -> -1 ->> 'error' from {schema}.dead_jobs where id = %s", [bad])
    assert "task 'greet': unexpected argument 'nme'" in error
    assert db.one("select attempt from {schema}.dead_jobs where id = %s", [bad]) == 1


async def test_timeout_fails_the_attempt(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task(timeout=0.2, max_attempts=1)
    async def slow() -> None:
        await asyncio.sleep(30)

    @registry.task(timeout=0.2, max_attempts=1)
    def slow_sync() -> None:
        threading.Event().wait(0.6)

    await client.enqueue(slow)
    await client.enqueue(slow_sync)
    async with start_worker():
        await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 2)
    errors = [row[0] for row in db.all("select errors -> -1 ->> 'error' from {schema}.dead_jobs")]
    assert errors == ["TimeoutError: the task ran longer than its 0.2 s timeout"] * 2


async def test_follow_up_jobs_are_enqueued_only_when_the_parent_completes(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    seen: list[int] = []

    @registry.task
    async def child(i: int) -> None:
        seen.append(i)

    @registry.task(max_attempts=1)
    async def parent(n: int, fail: bool, ctx: JobContext) -> None:
        for i in range(n):
            ctx.enqueue(child, {"i": i})
        if fail:
            raise ValueError("parent failed after enqueueing")

    await client.enqueue(parent, {"n": 3, "fail": False})
    await client.enqueue(parent, {"n": 5, "fail": True})
    async with start_worker():
        await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 1)
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 4)
    # Children are written in the transaction that records their parent's completion, so
    # once both parents are recorded every child that will ever exist exists.
    assert db.one("select count(*) from {schema}.job_list where task = 'child'") == 3
    assert sorted(seen) == [0, 1, 2]


async def test_progress_is_recorded_while_running(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    release = asyncio.Event()

    @registry.task
    async def export(ctx: JobContext) -> None:
        ctx.progress(40, "rows 400/1000")
        await release.wait()

    job_id = await client.enqueue(export)
    async with start_worker():
        await wait_until(
            lambda: (
                db.all("select progress, progress_message from {schema}.jobs where id = %s", [job_id])
                == [(40, "rows 400/1000")]
            )
        )
        release.set()
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1)


async def test_paused_queue_is_not_claimed(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    ran = asyncio.Event()

    @registry.task(queue="reports")
    async def report() -> None:
        ran.set()

    await client.enqueue(report)
    db.all("select {schema}.pause_queue('reports')")
    async with start_worker() as worker:
        rounds = worker.claim_rounds
        worker.wake()
        await wait_until(lambda: worker.claim_rounds >= rounds + 2 and not worker.running_jobs)
        assert not ran.is_set()
        assert db.one("select state from {schema}.jobs") == "available"
        db.all("select {schema}.resume_queue('reports')")
        await asyncio.wait_for(ran.wait(), 5)


async def test_results_and_errors_postgresql_cannot_store_are_recorded_readably(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task
    async def odd_result() -> dict[str, str]:
        return {"text": "nul\x00 inside"}

    @registry.task(max_attempts=1)
    async def odd_error() -> None:
        raise ValueError("bad byte \x00 and \ud800")

    done = await client.enqueue(odd_result)
    failed = await client.enqueue(odd_error)
    async with start_worker():
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1)
        await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 1)
    result = db.one("select result from {schema}.job_history where id = %s", [done])
    assert "nul" in result["unstorable_result"]
    assert "NUL character" in result["why"]
    error = db.one("select errors -> -1 ->> 'error' from {schema}.dead_jobs where id = %s", [failed])
    assert error == "ValueError: bad byte \\0 and ?"
