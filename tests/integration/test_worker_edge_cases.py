"""Edge cases of the worker's life: re-claims, refused follow-ups, cancellation, floods."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from conveyor import Conveyor, FrozenClock, InvalidOptionError, JobContext, Registry, Worker, WorkerConfig
from conveyor.db.database import Database
from conveyor.jobs import Held, Outcomes

from ..helpers import DB, wait_until


async def test_a_worker_that_reclaims_a_job_it_still_runs_tracks_both_executions(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    clock = FrozenClock()
    release_first = asyncio.Event()
    attempts: list[int] = []

    @registry.task
    async def sticky(ctx: JobContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            await release_first.wait()  # a stall long enough to lose the lease
        return ctx.attempt

    async with Conveyor(database_url, schema=schema, registry=registry, clock=clock) as client:
        job_id = await client.enqueue(sticky)
    async with start_worker(clock=clock, lease=30) as worker:
        await wait_until(lambda: attempts == [1])
        clock.advance(31)  # no heartbeat has extended the lease (it would take 10 s of real time)
        worker.wake()  # this worker's own maintenance rescues the job and claims it again
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1)
        assert attempts == [1, 2]
        assert worker.running_jobs == [job_id]  # the stalled first execution is still tracked
        release_first.set()  # its late completion must change nothing
        await wait_until(lambda: worker.running_jobs == [])
    assert db.all("select attempt, result from {schema}.job_history") == [(2, 2)]
    assert db.one("select count(*) from {schema}.jobs") == 0


async def test_refused_follow_up_jobs_bury_the_parent_with_the_reason_instead_of_rerunning_it(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    runs: list[int] = []

    @registry.task
    async def child() -> None:
        pass

    @registry.task(max_attempts=3)
    async def parent(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        ctx.enqueue(child, queue="reprots")  # a typo: no such queue

    job_id = await client.enqueue(parent)
    async with start_worker():
        await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 1)
    assert runs == [1]
    error = db.one("select errors -> -1 ->> 'error' from {schema}.dead_jobs where id = %s", [job_id])
    assert error.startswith("the task completed but its follow-up jobs were refused: unknown queue 'reprots'")
    assert db.one("select count(*) from {schema}.job_list where task = 'child'") == 0


async def test_cancelling_run_hands_running_jobs_back_and_leaves_no_tasks(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB
) -> None:
    @registry.task
    async def forever() -> None:
        await asyncio.sleep(3600)

    job_id = await client.enqueue(forever)
    worker = Worker(database_url, schema=schema, registry=registry, config=WorkerConfig(grace=30))
    running = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.running_jobs == [job_id])

    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(running, 20)
    assert running.cancelled()
    ours = ("conveyor-completer", "conveyor-notifier", "conveyor-maintenance", "conveyor-heartbeat")
    ours += ("conveyor-progress",)
    leftovers = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(ours)]
    leftovers += [str(held) for held in _job_tasks()]
    assert leftovers == []
    assert db.all("select state, attempt from {schema}.jobs where id = %s", [job_id]) == [("available", 0)]
    assert db.one("select count(*) from {schema}.workers") == 0


async def test_a_flood_of_progress_reports_is_coalesced(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    seen = threading.Event()

    @registry.task
    def export(ctx: JobContext) -> None:
        for row in range(3000):
            ctx.progress(row * 100 // 3000, f"row {row}")
        ctx.progress(100, "done")
        seen.wait(10)  # keep running until the test has seen the last report

    job_id = await client.enqueue(export)
    async with start_worker() as worker:
        await wait_until(
            lambda: (
                db.all("select progress, progress_message from {schema}.jobs where id = %s", [job_id])
                == [(100, "done")]
            )
        )
        writes = worker._progress.writes
        seen.set()
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1)
    assert writes <= 10  # not one statement per report


async def test_stop_does_not_hang_on_a_task_that_swallows_cancellation(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    test_over = False

    @registry.task
    async def stubborn() -> None:
        while not test_over:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # a retry loop that catches too much

    job_id = await client.enqueue(stubborn)
    async with start_worker(grace=0.2) as worker:
        await wait_until(lambda: worker.running_jobs == [job_id])
        stopping = time.monotonic()
    # Grace, then a bounded wait for the cancelled task (the fixture fails past 30 s).
    assert time.monotonic() - stopping < 20
    assert db.all("select state, attempt from {schema}.jobs where id = %s", [job_id]) == [("available", 0)]

    test_over = True  # let the abandoned task end, or the test's event loop cannot close
    [abandoned] = [task for held, task in _job_tasks().items() if held.id == job_id]
    abandoned.cancel()


async def test_workers_starting_together_create_history_partitions_without_failing(
    database_url: str, db: DB
) -> None:
    # Make the partitions for 40 days ahead from two sessions at once, repeatedly.
    errors: list[BaseException] = []

    def make(at_days: int) -> None:
        try:
            with db.connect(autocommit=True) as conn:
                conn.execute(
                    db.compose("select {schema}.ensure_history_partitions(3, now() + %s * interval '1 day')"),
                    [at_days],
                )
        except BaseException as exc:
            errors.append(exc)

    for at_days in range(10, 40, 4):
        threads = [threading.Thread(target=make, args=(at_days,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    # Waiting for another session's making is bounded on purpose (lock_timeout 500 ms: a
    # worker logs it and maintenance makes them later); on a loaded machine that wait can run
    # out. Nothing else may fail: no partition made twice, no half-made one left behind.
    assert [e for e in errors if not isinstance(e, psycopg.errors.LockNotAvailable)] == []
    for at_days in range(10, 40, 4):  # and every day is there: nothing is left to make
        with db.connect(autocommit=True) as conn:
            made = conn.execute(
                db.compose("select {schema}.ensure_history_partitions(3, now() + %s * interval '1 day')"),
                [at_days],
            ).fetchone()
        assert made == (0,), at_days


async def test_fencing_survives_the_dead_letter_round_trip_for_the_same_worker(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB
) -> None:
    @registry.task(max_attempts=1)
    async def once() -> None:
        pass

    job_id = await client.enqueue(once)
    worker_id = uuid.uuid4()
    seam = Database(database_url, schema)
    await seam.open()
    try:
        claim = dict(worker_id=worker_id, queues=["default"], limits=[1], limit=1, now=None)
        [first] = await seam.claim_jobs(lease=timedelta(seconds=1), **claim)  # type: ignore[arg-type]
        # The worker stalls; its lease runs out on the last attempt and the job dies...
        db.all("update {schema}.jobs set lease_expires_at = now() - interval '1 s' where id = %s", [job_id])
        assert [job.id for job in (await seam.rescue_expired_jobs(now=None))[1]] == [job_id]
        # ...an operator puts it back, and the same worker claims it again.
        await client.retry_dead(job_id)
        [second] = await seam.claim_jobs(lease=timedelta(seconds=30), **claim)  # type: ignore[arg-type]
        assert (first.attempt, second.attempt) == (1, 1)  # the attempt was reset...
        assert second.claim > first.claim  # ...the fencing token was not

        stale = await seam.record_outcomes(
            Outcomes(completed=[(job_id, first.claim, '"stale"')]), worker_id=worker_id, now=None
        )
        assert stale.completed == frozenset()
        fresh = await seam.record_outcomes(
            Outcomes(completed=[(job_id, second.claim, '"fresh"')]), worker_id=worker_id, now=None
        )
        assert fresh.completed == frozenset({job_id})
    finally:
        await seam.close()
    assert db.all("select result from {schema}.job_history") == [("fresh",)]


def test_a_task_declaring_a_bad_queue_name_is_refused_at_registration(registry: Registry) -> None:
    with pytest.raises(InvalidOptionError, match="queue name 'bad name' is not allowed"):
        registry.task(queue="bad name")(lambda: None)


def _job_tasks() -> dict[Held, asyncio.Task[Any]]:
    """The tasks running jobs (Worker._run_job), by the claim they run."""
    found = {}
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if getattr(coro, "__qualname__", "") == "Worker._run_job" and frame is not None:
            found[frame.f_locals["held"]] = task
    return found


@contextlib.asynccontextmanager
async def _worker_whose_claims_end_with(
    database_url: str, schema: str, registry: Registry, after_claim: Any
) -> Any:
    """A worker polling every 30 s whose claims run ``after_claim(worker)`` once the claim
    statement has returned, before the fetch loop sees its result: what happens while a
    claim is in flight, in a fixed order."""
    worker = Worker(
        database_url, schema=schema, registry=registry, config=WorkerConfig(poll_interval=30, grace=5)
    )
    real_claim = worker.db.claim_jobs
    calls = 0

    async def claim_jobs(**kwargs: Any) -> Any:
        nonlocal calls
        jobs = await real_claim(**kwargs)
        calls += 1
        if calls == 2:  # the first claim is the one at start
            await after_claim(worker)
        return jobs

    worker.db.claim_jobs = claim_jobs  # type: ignore[method-assign]
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.started.wait(), 10)
    await asyncio.wait_for(worker.notifier.listening.wait(), 10)
    try:
        yield worker, running
    finally:
        worker.stop()
        await asyncio.wait_for(running, 20)


async def test_a_stop_that_comes_while_a_claim_is_in_flight_ends_the_worker_without_waiting_a_poll(
    database_url: str, schema: str, registry: Registry
) -> None:
    @registry.task
    async def noop() -> None: ...

    async def stop(worker: Worker) -> None:
        worker.stop()

    async with _worker_whose_claims_end_with(database_url, schema, registry, stop) as (worker, running):
        await asyncio.sleep(0)  # let the loop reach its wait after the first claim
        worker.wake()
        started = time.monotonic()
        await asyncio.wait_for(asyncio.shield(running), 10)  # a poll is 30 s
        assert time.monotonic() - started < 5


async def test_a_job_announced_while_a_claim_is_in_flight_starts_without_waiting_a_poll(
    database_url: str, schema: str, registry: Registry, db: DB
) -> None:
    done = asyncio.Event()

    @registry.task
    async def noop() -> None:
        done.set()

    async def enqueue_behind_the_claim(worker: Worker) -> None:
        # Committed after the claim's snapshot, and announced to the worker before the fetch
        # loop sees the (empty) claim.
        async with Conveyor(database_url, schema=schema, registry=registry) as client:
            await client.enqueue(noop)
        await wait_until(lambda: worker._woken)

    async with _worker_whose_claims_end_with(database_url, schema, registry, enqueue_behind_the_claim) as (
        worker,
        _,
    ):
        await asyncio.sleep(0)
        worker.wake()
        await asyncio.wait_for(done.wait(), 10)  # a poll is 30 s
    assert db.one("select count(*) from {schema}.job_history") == 1
