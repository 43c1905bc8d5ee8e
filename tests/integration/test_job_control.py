"""Job control against a real PostgreSQL: pausing a task or everything, and cancel, abort,
run now and delete of one job, through the Python client and an in-process worker (the
worker processes are in tests/e2e/test_job_control_processes.py)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from conveyor import Conveyor, FrozenClock, JobContext, JobStateError, NotFoundError, Registry, SyncConveyor
from conveyor.db.database import Database
from conveyor.errors import InvalidOptionError
from conveyor.jobs import Outcomes

from ..helpers import DB, wait_until


def history(db: DB, job_id: int) -> tuple[str, list[dict[str, Any]], Any]:
    state, errors, result = db.one(
        "select state, errors, result from {schema}.job_history where id = %s", [job_id]
    )
    return state, errors, result


async def claim_as_ghost(
    database_url: str, schema: str, *, lease: float, now: Any = None, limit: int = 1
) -> Any:
    """Claim jobs as a worker that never runs them: (worker id, jobs)."""
    ghost = uuid.uuid4()
    seam = Database(database_url, schema)
    await seam.open()
    try:
        jobs = await seam.claim_jobs(
            worker_id=ghost,
            queues=["default"],
            limits=[limit],
            limit=limit,
            lease=timedelta(seconds=lease),
            now=now,
        )
    finally:
        await seam.close()
    return ghost, jobs


# -- pauses ------------------------------------------------------------------------------


async def test_a_paused_task_waits_other_tasks_flow_and_resume_starts_it_at_once(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    ran: list[str] = []

    @registry.task
    async def report(n: int) -> None:
        ran.append(f"report {n}")

    @registry.task
    async def email(n: int) -> None:
        ran.append(f"email {n}")

    await client.pause_task("report")
    # The paused task's jobs come first in the queue: claims must read past them.
    held = [await client.enqueue(report, {"n": n}) for n in range(5)]
    for n in range(5):
        await client.enqueue(email, {"n": n})
    assert (await client.pauses()).tasks.keys() == {"report"}
    [stats] = [s for s in await client.queue_stats() if s.queue == "default"]
    assert stats.paused_tasks == ("report",)
    assert not stats.all_paused

    # A poll interval far longer than the test: only wake-ups make the worker claim.
    async with start_worker(poll_interval=60) as worker:
        await wait_until(lambda: len(ran) == 5)
        rounds = worker.claim_rounds
        worker.wake()
        await wait_until(lambda: worker.claim_rounds >= rounds + 1 and not worker.running_jobs)
        assert sorted(ran) == [f"email {n}" for n in range(5)]
        assert db.one("select count(*) from {schema}.jobs where state = 'available'") == 5

        started = time.monotonic()
        await client.resume_task("report")
        await wait_until(lambda: len(ran) == 10, within=5)
        assert time.monotonic() - started < 2  # woken, not polled
    assert sorted(ran[5:]) == [f"report {n}" for n in range(5)]
    assert [history(db, i)[0] for i in held] == ["completed"] * 5
    assert (await client.pauses()).tasks == {}


async def test_pause_all_lets_running_jobs_finish_and_starts_nothing_until_resume(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    release = asyncio.Event()
    started: list[int] = []

    @registry.task
    async def work(n: int) -> str:
        started.append(n)
        if n == 0:
            await release.wait()
        return "done"

    first = await client.enqueue(work, {"n": 0})
    async with start_worker(poll_interval=60) as worker:
        await wait_until(lambda: started == [0])
        await client.pause_all()
        assert (await client.pauses()).all_paused
        assert all(s.all_paused for s in await client.queue_stats())
        later = [await client.enqueue(work, {"n": n}) for n in (1, 2)]
        release.set()
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where id = %s", [first]) == 1
        )
        rounds = worker.claim_rounds
        worker.wake()
        await wait_until(lambda: worker.claim_rounds >= rounds + 1)
        assert started == [0]

        await client.resume_all()
        await wait_until(lambda: sorted(started) == [0, 1, 2], within=5)
    assert [history(db, i)[0] for i in [first, *later]] == ["completed"] * 3
    assert not (await client.pauses()).all_paused


async def test_pauses_from_sql_and_bad_names(client: Conveyor, db: DB) -> None:
    db.all("select {schema}.pause_task('a'); select {schema}.pause_all()")
    pauses = await client.pauses()
    assert pauses.all_paused
    assert set(pauses.tasks) == {"a"}
    db.all("select {schema}.resume_task('a'); select {schema}.resume_all()")
    assert await client.pauses() == type(pauses)(None, {})
    with pytest.raises(Exception, match="a task name is required"):
        await client.pause_task("")
    with pytest.raises(Exception, match="pause_task: a task name is required"):
        db.all("select {schema}.pause_task('')")


async def test_pause_and_resume_refuse_odd_task_names_with_a_clear_error(client: Conveyor, db: DB) -> None:
    """R6, R7: a NUL character (was psycopg's DataError), a name past 200 characters (was
    taken), and resume_task(NULL) in SQL (was silent) are refused clearly."""
    for name, message in [("a\x00b", "NUL"), ("t" * 201, "at most 200 characters")]:
        with pytest.raises(InvalidOptionError, match=message):
            await client.pause_task(name)
        with pytest.raises(InvalidOptionError, match=message):
            await client.resume_task(name)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="pause_task: a task name is at most 200"):
        db.all("select {schema}.pause_task(repeat('t', 201))")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="resume_task: a task name is required"):
        db.all("select {schema}.resume_task(NULL)")
    await client.pause_task("t" * 200)
    assert set((await client.pauses()).tasks) == {"t" * 200}


async def test_job_control_refuses_odd_ids_and_arguments_with_a_clear_error(client: Conveyor, db: DB) -> None:
    """R6: an id past bigint reached PostgreSQL as numeric (UndefinedFunction cancel_job_v1
    (numeric, ...)); a bool id, a non-string ``by`` or ``reason``, NUL characters in them
    reached it too. Each is refused before, with InvalidOptionError (a ConveyorError)."""
    [job] = [
        row[0]
        for row in db.all(
            "INSERT INTO {schema}.jobs (queue, task, max_attempts) VALUES ('default', 'noop', 3) RETURNING id"
        )
    ]
    for call in [
        lambda: client.cancel(10**30),
        lambda: client.cancel(2**63),
        lambda: client.abort(10**30),
        lambda: client.run_now(2**63),
        lambda: client.delete_job(-1),
        lambda: client.cancel(True),
        lambda: client.cancel(job, by=5),  # type: ignore[arg-type]
        lambda: client.abort(job, reason=b"x"),  # type: ignore[arg-type]
        lambda: client.cancel(job, reason="a\x00b"),
        lambda: client.cancel(job, by="ops\x00"),
    ]:
        with pytest.raises(InvalidOptionError):
            await call()
    assert await client.cancel(job, reason="fine", by="ops") == "cancelled"
    with pytest.raises(NotFoundError):
        await client.cancel(2**63 - 1)


# -- cancel, run now, delete -------------------------------------------------------------


async def test_cancel_waiting_scheduled_and_blocked_jobs(
    client: Conveyor, registry: Registry, db: DB
) -> None:
    @registry.task
    async def noop() -> None:
        pass

    waiting = await client.enqueue(noop)
    scheduled = await client.enqueue(noop, delay=3600)
    blocked = db.one(
        "insert into {schema}.jobs (queue, task, args, state, priority, run_at, max_attempts, after_id)"
        " values ('default', 'noop', '{{}}', 'blocked', 2, now(), 5, %s) returning id",
        [scheduled],
    )
    assert await client.cancel(waiting, reason="not needed", by="ops") == "cancelled"
    assert await client.cancel(scheduled) == "cancelled"
    assert db.one("select {schema}.cancel_job(%s, 'parent gone')", [blocked]) == "cancelled"

    state, errors, _ = history(db, waiting)
    assert state == "cancelled"
    assert errors[-1]["error"] == "cancelled before it ran: not needed"
    assert errors[-1]["by"] == "ops"
    assert history(db, scheduled)[0] == "cancelled"
    assert history(db, blocked)[1][-1]["error"] == "cancelled before it ran: parent gone"
    assert db.one("select count(*) from {schema}.jobs") == 0

    with pytest.raises(JobStateError, match=rf"job {waiting} has already ended \(cancelled\)"):
        await client.cancel(waiting)
    with pytest.raises(NotFoundError, match="no job with id 999999"):
        await client.cancel(999999)


async def test_cancel_of_completed_and_dead_jobs_is_refused(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task(max_attempts=1)
    async def fails() -> None:
        raise RuntimeError("no")

    @registry.task
    async def works() -> None:
        pass

    done = await client.enqueue(works)
    dead = await client.enqueue(fails)
    async with start_worker():
        await wait_until(lambda: db.one("select count(*) from {schema}.jobs") == 0)
    with pytest.raises(JobStateError, match=r"already ended \(completed\)"):
        await client.cancel(done)
    with pytest.raises(JobStateError, match=r"already ended \(dead\)"):
        await client.abort(dead)
    with pytest.raises(JobStateError, match=r"already ended \(completed\)"):
        await client.run_now(done)
    with pytest.raises(JobStateError, match=r"already ended \(completed\)"):
        await client.delete_job(done)


async def test_run_now_starts_a_scheduled_job_at_once(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    ran: dict[int, float] = {}

    @registry.task
    async def later(ctx: JobContext) -> None:
        ran[ctx.job_id] = time.monotonic()

    job_id = await client.enqueue(later, delay=3600)
    waiting = await client.enqueue(later)
    assert await client.run_now(waiting) == "available"  # a waiting job: unchanged
    async with start_worker(poll_interval=60, stage_interval=60):
        await wait_until(lambda: waiting in ran)
        assert job_id not in ran
        asked = time.monotonic()
        assert await client.run_now(job_id) == "available"
        await wait_until(lambda: job_id in ran, within=5)
        assert ran[job_id] - asked < 2
    assert history(db, job_id)[0] == "completed"


async def test_run_now_ends_a_retry_backoff(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    attempts: list[int] = []

    @registry.task(max_attempts=3)
    async def flaky(ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first try fails")

    job_id = await client.enqueue(flaky)
    async with start_worker(poll_interval=60, stage_interval=60):
        await wait_until(
            lambda: db.one("select state from {schema}.jobs where id = %s", [job_id]) == "scheduled"
        )
        assert await client.run_now(job_id) == "available"
        await wait_until(lambda: attempts == [1, 2], within=5)
    assert history(db, job_id)[0] == "completed"


async def test_delete_removes_waiting_jobs_and_refuses_running_ones(
    client: Conveyor, registry: Registry, db: DB
) -> None:
    @registry.task
    async def noop() -> None:
        pass

    waiting = await client.enqueue(noop)
    scheduled = await client.enqueue(noop, delay=60)
    running = await client.enqueue(noop)
    assert await client.delete_job(waiting) == "deleted"
    assert await client.delete_job(scheduled) == "deleted"
    with pytest.raises(NotFoundError):
        await client.get_job(waiting)
    assert db.one("select count(*) from {schema}.job_history") == 0
    await claim_as_ghost(client.settings.database_url or "", client.settings.schema, lease=30)
    with pytest.raises(JobStateError, match=rf"job {running} is running; abort it instead"):
        await client.delete_job(running)
    with pytest.raises(JobStateError, match="is running already"):
        await client.run_now(running)
    assert db.one("select state from {schema}.jobs where id = %s", [running]) == "running"


# -- abort -------------------------------------------------------------------------------


async def test_abort_cancels_an_async_task_within_a_second(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    cancelled = asyncio.Event()
    running = asyncio.Event()

    @registry.task
    async def forever() -> None:
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = await client.enqueue(forever)
    async with start_worker() as worker:
        await asyncio.wait_for(running.wait(), 5)
        started = time.monotonic()
        assert await client.abort(job_id, reason="wrong input", by="ops") == "aborting"
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1
        )
        assert time.monotonic() - started < 1
        assert cancelled.is_set()
        await wait_until(lambda: worker.stats.aborted == 1)  # settled after its commit
    state, errors, _ = history(db, job_id)
    assert state == "cancelled"
    assert [e["error"] for e in errors] == ["abort requested: wrong input", "aborted"]


async def test_abort_sets_ctx_aborted_for_a_sync_task(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    entered = threading.Event()

    @registry.task
    def crunch(ctx: JobContext) -> None:
        entered.set()
        deadline = time.monotonic() + 20
        while not ctx.aborted:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        raise RuntimeError("stopped: aborted")

    job_id = await client.enqueue(crunch)
    async with start_worker():
        await asyncio.to_thread(entered.wait, 5)
        started = time.monotonic()
        assert await client.abort(job_id) == "aborting"
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1
        )
        assert time.monotonic() - started < 1
    state, errors, _ = history(db, job_id)
    assert (state, errors[-1]["error"]) == ("cancelled", "aborted")
    assert db.one("select count(*) from {schema}.dead_jobs") == 0


async def test_a_sync_task_that_ignores_the_abort_and_returns_is_recorded_as_completed(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    entered = threading.Event()

    @registry.task
    def stubborn(ctx: JobContext) -> str:
        entered.set()
        deadline = time.monotonic() + 10
        while not ctx.aborted and time.monotonic() < deadline:
            time.sleep(0.01)
        return f"finished, aborted={ctx.aborted}"  # saw the abort, and finished anyway

    job_id = await client.enqueue(stubborn)
    async with start_worker():
        await asyncio.to_thread(entered.wait, 5)
        assert await client.abort(job_id) == "aborting"
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1
        )
    state, errors, result = history(db, job_id)
    assert (state, result) == ("completed", "finished, aborted=True")
    assert [e["error"] for e in errors] == ["abort requested"]


async def test_an_abort_whose_notification_is_lost_arrives_with_the_heartbeat(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    running = asyncio.Event()

    @registry.task
    async def forever() -> None:
        running.set()
        await asyncio.Event().wait()

    job_id = await client.enqueue(forever)
    async with start_worker(lease=6) as worker:  # a heartbeat every 2 s
        await asyncio.wait_for(running.wait(), 5)
        # The abort as abort_job writes it, without its notification.
        db.all("update {schema}.jobs set abort_requested_at = now() where id = %s", [job_id])
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1,
            within=10,
        )
        await wait_until(lambda: worker.stats.aborted == 1)  # settled after its commit
    assert history(db, job_id)[0] == "cancelled"


async def test_a_failed_attempt_of_an_aborted_job_is_not_retried(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    """The attempt fails before its worker learns of the abort (its notification lost, no
    heartbeat yet): the job ends as aborted instead of running again."""
    go = asyncio.Event()

    @registry.task(max_attempts=5)
    async def fails() -> None:
        await go.wait()
        raise RuntimeError("failed")

    job_id = await client.enqueue(fails)
    async with start_worker(lease=60) as worker:
        await wait_until(
            lambda: db.one("select state from {schema}.jobs where id = %s", [job_id]) == "running"
        )
        db.all("update {schema}.jobs set abort_requested_at = now() where id = %s", [job_id])
        go.set()
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1
        )
        await wait_until(lambda: worker.stats.aborted == 1)  # settled after its commit
        assert worker.stats.retried == 0
    state, errors, _ = history(db, job_id)
    assert (state, errors[-1]["error"]) == ("cancelled", "aborted")


async def test_a_job_with_an_abort_asked_for_is_not_handed_back_at_shutdown(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    running = asyncio.Event()

    @registry.task
    async def forever() -> None:
        running.set()
        await asyncio.Event().wait()

    job_id = await client.enqueue(forever)
    async with start_worker(lease=60, grace=0.1) as worker:
        await asyncio.wait_for(running.wait(), 5)
        # Asked without its notification, and no heartbeat comes before the stop.
        db.all("update {schema}.jobs set abort_requested_at = now() where id = %s", [job_id])
    assert worker.stats.handed_back == 0
    assert worker.stats.aborted == 1
    state, errors, _ = history(db, job_id)
    assert (state, errors[-1]["error"]) == ("cancelled", "aborted")


async def test_abort_of_a_job_whose_worker_is_gone(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    clock = FrozenClock()

    @registry.task
    async def never() -> None:
        raise AssertionError("must not run again")

    async with Conveyor(database_url, schema=schema, registry=registry, clock=clock) as client:
        gone = await client.enqueue(never)
        _ghost, [job] = await claim_as_ghost(database_url, schema, lease=30, now=clock.now())
        asked = await client.enqueue(never)
        ghost2, [job2] = await claim_as_ghost(database_url, schema, lease=30, now=clock.now())
        assert (job.id, job2.id) == (gone, asked)
        # Abort asked while the worker still held its lease; then it died.
        assert await client.abort(asked) == "aborting"
        clock.advance(31)
        # The lease has run out: the abort cancels at once.
        assert await client.abort(gone) == "cancelled"
        assert history(db, gone)[1][-1]["error"] == "aborted (its worker had stopped heartbeating)"

        async with start_worker(clock=clock) as worker:
            worker.wake()  # maintenance: the rescue
            await wait_until(
                lambda: db.one("select count(*) from {schema}.job_history where id = %s", [asked]) == 1
            )
        assert history(db, asked)[0] == "cancelled"
        assert db.one("select count(*) from {schema}.jobs") == 0

        # A late write of the ghost changes nothing.
        seam = Database(database_url, schema)
        await seam.open()
        try:
            recorded = await seam.record_outcomes(
                Outcomes(completed=[(asked, job2.claim, '"late"')], aborted=[(gone, job.claim)]),
                worker_id=ghost2,
                now=clock.now(),
            )
        finally:
            await seam.close()
        assert recorded.completed == frozenset()
        assert recorded.aborted == frozenset()


# -- races -------------------------------------------------------------------------------


async def test_cancel_racing_claims_one_of_the_two_wins(client: Conveyor, registry: Registry, db: DB) -> None:
    @registry.task
    async def noop() -> None:
        pass

    ids = [await client.enqueue(noop) for _ in range(200)]
    url, schema = client.settings.database_url or "", client.settings.schema
    claimer = Database(url, schema, max_size=1)
    await claimer.open()
    claimed: set[int] = set()
    worker_id = uuid.uuid4()

    async def claim() -> None:
        while len(claimed) < 200:
            jobs = await claimer.claim_jobs(
                worker_id=worker_id,
                queues=["default"],
                limits=[3],
                limit=3,
                lease=timedelta(seconds=60),
                now=None,
            )
            if not jobs:
                return
            claimed.update(j.id for j in jobs)

    async def cancel() -> dict[int, str]:
        # Newest first: the claimer takes the oldest first, so the two meet in the middle.
        return {i: await client.cancel(i) for i in reversed(ids[:-1])}

    # Each side wins at least once whatever the scheduling: one claim before the race,
    # and the newest job cancelled before it; the race is over the 196 between.
    first = await claimer.claim_jobs(
        worker_id=worker_id, queues=["default"], limits=[3], limit=3, lease=timedelta(seconds=60), now=None
    )
    claimed.update(j.id for j in first)
    assert await client.cancel(ids[-1]) == "cancelled"
    try:
        _, results = await asyncio.gather(claim(), cancel())
    finally:
        await claimer.close()
    results[ids[-1]] = "cancelled"
    cancelled = {i for i, r in results.items() if r == "cancelled"}
    aborting = {i for i, r in results.items() if r == "aborting"}
    assert cancelled | aborting == set(ids)
    assert cancelled
    assert aborting
    assert not cancelled & claimed
    assert aborting <= claimed
    assert {
        i for (i,) in db.all("select id from {schema}.job_history where state = 'cancelled'")
    } == cancelled


async def test_abort_at_the_moment_of_completion_records_one_outcome(
    client: Conveyor, registry: Registry, db: DB
) -> None:
    @registry.task
    async def noop() -> None:
        pass

    url, schema = client.settings.database_url or "", client.settings.schema
    n = 40
    ids = [await client.enqueue(noop) for _ in range(n)]
    ghost, jobs = await claim_as_ghost(url, schema, lease=60, limit=n)
    seam = Database(url, schema)
    await seam.open()
    outcomes: dict[int, str] = {}

    async def abort(job_id: int) -> None:
        try:
            outcomes[job_id] = await client.abort(job_id)
        except JobStateError as exc:
            outcomes[job_id] = str(exc)

    try:
        for job in jobs:
            await asyncio.gather(
                seam.record_outcomes(
                    Outcomes(completed=[(job.id, job.claim, None)]), worker_id=ghost, now=None
                ),
                abort(job.id),
            )
    finally:
        await seam.close()
    rows = db.all("select id, state from {schema}.job_history")
    assert sorted(i for i, _ in rows) == sorted(ids)  # one row each
    assert {s for _, s in rows} == {"completed"}
    assert db.one("select count(*) from {schema}.jobs") == 0
    assert set(outcomes.values()) <= {"aborting", *(f"job {i} has already ended (completed)" for i in ids)}


def test_the_sync_client_has_every_job_control_operation(
    database_url: str, schema: str, registry: Registry, db: DB
) -> None:
    @registry.task
    async def noop() -> None:
        pass

    with SyncConveyor(database_url, schema=schema, registry=registry) as sync:
        sync.pause_task("noop")
        sync.pause_all()
        assert sync.pauses().all_paused
        assert [t["name"] for t in sync.tasks() if t["paused"]] == ["noop"]
        sync.resume_task("noop")
        sync.resume_all()
        assert sync.pauses().tasks == {}
        a, b, c = (sync.enqueue(noop, delay=60) for _ in range(3))
        assert sync.cancel(a, reason="r") == "cancelled"
        assert sync.abort(b) == "cancelled"  # not running: cancelled
        assert sync.run_now(c) == "available"
        assert sync.delete_job(c) == "deleted"
        with pytest.raises(JobStateError):
            sync.cancel(a)
    assert db.all("select id, state from {schema}.job_history order by id") == [
        (a, "cancelled"),
        (b, "cancelled"),
    ]
