"""Awaiting a job's result: woken by its end (LISTEN/NOTIFY), errors, timeouts, reconnects."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest
from psycopg import sql

from conveyor import Backoff, Conveyor, JobContext, JobRequest, Registry
from conveyor.db.queries import for_schema
from conveyor.errors import InvalidOptionError, JobCancelled, JobFailed, NotFoundError
from conveyor.queue import results
from conveyor.queue.sync_client import SyncConveyor

from ..helpers import DB, wait_until, wait_until_sync


@pytest.fixture(autouse=True)
def slow_safety_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    # A waiter woken only by its slow re-check would take a minute here: every wait below
    # that returns in seconds was woken by the notification.
    monkeypatch.setattr(results, "SAFETY_RECHECK", 60.0)


async def test_result_is_returned_when_the_job_completes_woken_by_its_notification(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    release = asyncio.Event()

    @registry.task
    async def answer(ctx: JobContext) -> dict[str, Any]:
        await release.wait()
        return {"answer": 42, "job": ctx.job_id}

    job_id = await client.enqueue(answer)
    async with start_worker():
        waiting = asyncio.create_task(client.result(job_id, timeout=20))
        await wait_until(lambda: db.one("select awaited from {schema}.jobs where id = %s", [job_id]))
        assert not waiting.done()
        release.set()
        started = time.monotonic()
        assert await waiting == {"answer": 42, "job": job_id}
        assert time.monotonic() - started < 5
    # Once ended, a second wait reads the stored result at once.
    assert await client.result(job_id, timeout=1) == {"answer": 42, "job": job_id}


async def test_a_dead_job_raises_job_failed_with_its_last_error(
    client: Conveyor, registry: Registry, start_worker: Any
) -> None:
    @registry.task(max_attempts=2, backoff=Backoff.none())
    async def broken(attempts: list[int] | None = None) -> None:
        raise RuntimeError("the printer is on fire")

    job_id = await client.enqueue(broken)
    async with start_worker():
        with pytest.raises(JobFailed) as failed:
            await client.result(job_id, timeout=20)
    assert failed.value.job_id == job_id
    assert failed.value.error is not None
    assert "the printer is on fire" in str(failed.value.error["error"])
    assert failed.value.error["attempt"] == 2
    assert "the printer is on fire" in str(failed.value)


async def test_a_wait_times_out_and_an_unknown_job_is_refused(client: Conveyor, registry: Registry) -> None:
    @registry.task
    async def never_run() -> None:
        pass

    job_id = await client.enqueue(never_run)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=f"job {job_id} did not end within 0.3 s"):
        await client.result(job_id, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 3
    with pytest.raises(NotFoundError, match="no job with id 999999"):
        await client.result(999_999, timeout=1)


async def test_many_waiters_share_one_listen_connection(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task
    async def double(n: int) -> int:
        return 2 * n

    ids = [await client.enqueue(double, {"n": n}) for n in range(20)]
    async with start_worker(concurrency=5):
        got = await asyncio.wait_for(asyncio.gather(*(client.result(i, timeout=20) for i in ids)), 30)
    assert got == [2 * n for n in range(20)]
    assert client._results is not None
    assert client._results.notifier.connects == 1


async def test_a_dropped_listen_connection_is_made_again_and_every_waiter_rechecks(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    release = asyncio.Event()

    @registry.task
    async def gated() -> str:
        await release.wait()
        return "through"

    job_id = await client.enqueue(gated)
    async with start_worker():
        waiting = asyncio.create_task(client.result(job_id, timeout=30))
        await wait_until(lambda: db.one("select awaited from {schema}.jobs where id = %s", [job_id]))
        assert client._results is not None
        notifier = client._results.notifier
        # The waiter marks the job awaited before its LISTEN connection is up: wait for it.
        await wait_until(lambda: notifier.connection is not None)
        listener = notifier.connection
        assert listener is not None
        # The job ends while nobody listens: its notification is lost.
        db.all("select pg_terminate_backend(%s)", [listener.info.backend_pid])
        release.set()
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1)
        assert await asyncio.wait_for(waiting, 10) == "through"
        assert notifier.connects == 2


async def test_a_cancelled_job_raises_job_cancelled_with_the_reason(
    client: Conveyor, registry: Registry, start_worker: Any
) -> None:
    @registry.task(max_attempts=1)
    async def fails() -> None:
        raise ValueError("no")

    @registry.task
    async def follows() -> None:
        pass

    parent = await client.enqueue(fails)
    child = await client.enqueue(follows, after=parent)
    async with start_worker():
        with pytest.raises(JobCancelled) as cancelled:
            await client.result(child, timeout=20)
    assert cancelled.value.error is not None
    assert cancelled.value.error["error"] == f"cancelled: job {parent}, which this job was to run after, died"


async def test_get_job_shows_progress_while_running_and_the_result_after(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    release = asyncio.Event()

    @registry.task
    async def steps(ctx: JobContext) -> str:
        ctx.progress(40, "rows 400/1000")
        await release.wait()
        return "done"

    job_id = await client.enqueue(steps)
    async with start_worker():
        await wait_until(lambda: db.one("select progress from {schema}.jobs where id = %s", [job_id]) == 40)
        running = await client.get_job(job_id)
        assert (running["state"], running["progress"], running["progress_message"]) == (
            "running",
            40,
            "rows 400/1000",
        )
        assert {"key", "meta", "after_id", "batch_id", "result"} <= running.keys()
        release.set()
        assert await client.result(job_id, timeout=20) == "done"
    finished = await client.get_job(job_id)
    assert (finished["state"], finished["result"], finished["progress"]) == ("completed", "done", 100)


def test_the_sync_client_awaits_results_too(database_url: str, schema: str, db: DB) -> None:
    registry = Registry()

    @registry.task
    def elsewhere() -> None:
        pass

    with SyncConveyor(database_url, schema=schema, registry=registry) as sync:
        job_id = sync.enqueue(elsewhere)
        # Claimed and then completed by hand, as a worker would.
        worker = db.one(
            "update {schema}.jobs set state = 'running', worker_id = gen_random_uuid(),"
            " lease_expires_at = now() + interval '1 hour', claims = 1, attempt = 1 where id = %s"
            " returning worker_id",
            [job_id],
        )
        with pytest.raises(TimeoutError):
            sync.result(job_id, timeout=2)
        # That wait had its LISTEN up and marked the job: the next one is woken by the job's
        # notification alone (no reconnect to re-check on).
        assert db.one("select awaited from {schema}.jobs where id = %s", [job_id]) is True

        def complete_once_awaited() -> None:
            wait_until_sync(lambda: db.one("select awaited from {schema}.jobs where id = %s", [job_id]))
            with db.connect(autocommit=True) as conn:
                conn.execute(
                    for_schema(schema)["complete_jobs"],
                    {"jobs": f'{{"{job_id}": [1, "sync"]}}', "worker_id": worker, "now": None},
                )

        db.all("update {schema}.jobs set awaited = false where id = %s", [job_id])
        finisher = threading.Thread(target=complete_once_awaited)
        finisher.start()
        started = time.monotonic()
        try:
            assert sync.result(job_id, timeout=20) == "sync"
        finally:
            finisher.join()
        assert time.monotonic() - started < 10  # woken, not found by the check at the deadline


async def test_a_schema_with_the_longest_name_still_announces_ends(database_url: str, db: DB) -> None:
    """A channel name holds 63 bytes; "<schema>.done" for the longest schema name allowed (62
    characters) would not, and a NOTIFY on it would make every ack of an awaited job fail."""
    from conveyor.db import migrations

    name = "r" * 54 + uuid.uuid4().hex[:8]
    migrations.upgrade(database_url, name)
    registry = Registry()

    @registry.task
    async def quick() -> str:
        return "ok"

    try:
        async with Conveyor(database_url, schema=name, registry=registry) as client:
            job_id = await client.enqueue(quick)
            waiting = asyncio.create_task(client.result(job_id, timeout=20))
            await wait_until(
                lambda: DB(database_url, name).one(
                    "select awaited from {schema}.jobs where id = %s", [job_id]
                )
            )
            worker = DB(database_url, name).one(
                "update {schema}.jobs set state = 'running', worker_id = gen_random_uuid(),"
                " lease_expires_at = now() + interval '1 hour', claims = 1, attempt = 1 where id = %s"
                " returning worker_id",
                [job_id],
            )
            started = time.monotonic()
            with db.connect(autocommit=True) as conn:
                conn.execute(
                    for_schema(name)["complete_jobs"],
                    {"jobs": f'{{"{job_id}": [1, "ok"]}}', "worker_id": worker, "now": None},
                )
            assert await waiting == "ok"
            assert time.monotonic() - started < 10
    finally:
        with db.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


# -- a job is read before LISTEN is up; timeout=0 checks once; bad input ----------------------


async def test_result_with_timeout_0_of_a_completed_job_returns_its_result(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    """docs: TimeoutError only if the job 'has not ended when timeout seconds have passed'.
    Once, the wait for the LISTEN connection came first and timed out at once."""

    @registry.task
    async def answer() -> int:
        return 42

    job = await client.enqueue(answer)
    async with start_worker():
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job]) == 1
        )
    assert await client.result(job, timeout=0) == 42


async def test_result_finds_ended_jobs_while_its_listen_connection_cannot_be_made(
    database_url: str,
    schema: str,
    registry: Registry,
    db: DB,
    start_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CONVEYOR_LISTEN_URL at a closed port (a wrong URL, a pooler in transaction mode): a job
    that ended is read at once, and one ending during the wait is found by the slow re-check.
    Once, result() waited for LISTEN first: TimeoutError, or a hang without a timeout."""
    monkeypatch.setattr(results, "SAFETY_RECHECK", 0.3)
    release = asyncio.Event()

    @registry.task
    async def answer(n: int) -> int:
        if n == 2:
            await release.wait()
        return n

    async with start_worker():  # the worker listens where it should; the client cannot
        monkeypatch.setenv("CONVEYOR_LISTEN_URL", "postgresql://postgres@127.0.0.1:1/postgres")
        async with Conveyor(database_url, schema=schema, registry=registry) as client:
            first = await client.enqueue(answer, {"n": 1})
            second = await client.enqueue(answer, {"n": 2})
            await wait_until(
                lambda: db.one("select count(*) from {schema}.job_history where id = %s", [first]) == 1
            )
            assert await asyncio.wait_for(client.result(first), 5) == 1
            assert await client.result(first, timeout=0) == 1
            waiting = asyncio.create_task(client.result(second, timeout=10))
            await asyncio.sleep(0.1)
            release.set()
            assert await waiting == 2
            assert not client._results.notifier.listening.is_set()  # type: ignore[union-attr]


async def test_result_refuses_bad_ids_and_timeouts_clearly(client: Conveyor) -> None:
    for bad in (True, "5", 2**63, 0, -1, 1.5, None):
        with pytest.raises(InvalidOptionError, match="job_id must be an id"):
            await client.result(bad, timeout=1)  # type: ignore[arg-type]
    for bad_timeout in (-1, float("nan"), "1", True):
        with pytest.raises(InvalidOptionError, match="timeout must be None or a number of seconds"):
            await client.result(1, timeout=bad_timeout)  # type: ignore[arg-type]


async def test_300_waiters_at_once_each_get_their_result(
    client: Conveyor, registry: Registry, start_worker: Any
) -> None:
    """docs: 'many waiters' share one LISTEN connection; each wait is marked and re-read on
    the client's pool (4 connections by default)."""

    @registry.task
    async def square(n: int) -> int:
        await asyncio.sleep(0.5)
        return n * n

    ids = await client.enqueue_many([JobRequest(square, {"n": n}) for n in range(300)])
    async with start_worker(concurrency=50):
        started = time.monotonic()
        outcomes = await asyncio.gather(*(client.result(i, timeout=60) for i in ids), return_exceptions=True)
        took = time.monotonic() - started
    errors = [f"{type(r).__name__}: {r}" for r in outcomes if isinstance(r, BaseException)]
    assert errors == [], (len(errors), errors[:3], took)
    assert outcomes == [n * n for n in range(300)]


async def test_waiters_get_results_while_their_listen_connection_is_killed_again_and_again(
    client: Conveyor,
    registry: Registry,
    db: DB,
    start_worker: Any,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pg_terminate_backend on the client's LISTEN connection every 100 ms while 100 awaited
    jobs complete: every waiter returns, within the 5 s re-check of its job at worst."""
    monkeypatch.setattr(results, "SAFETY_RECHECK", 5.0)

    @registry.task
    async def slowish(n: int) -> int:
        await asyncio.sleep(0.05 * (n % 20))
        return n

    ids = await client.enqueue_many([JobRequest(slowish, {"n": n}) for n in range(100)])
    stop = asyncio.Event()

    async def killer() -> int:
        kills = 0
        while not stop.is_set():
            kills += db.one(
                "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity"
                " where query ilike 'listen%%' and query like %s and pid <> pg_backend_pid()) k",
                [f"%{schema}.done%"],
            )
            await asyncio.sleep(0.1)
        return kills

    killing = asyncio.create_task(killer())
    async with start_worker(concurrency=20):
        started = time.monotonic()
        outcomes = await asyncio.gather(*(client.result(i, timeout=30) for i in ids), return_exceptions=True)
        took = time.monotonic() - started
    stop.set()
    kills = await killing
    errors = [f"{type(r).__name__}: {r}" for r in outcomes if isinstance(r, BaseException)]
    assert errors == [], (errors[:3], kills, took)
    assert outcomes == list(range(100))
    assert kills > 0
    assert took < 10, (took, kills)


async def test_deleting_an_awaited_job_wakes_its_waiter_at_once_with_not_found(
    client: Conveyor, registry: Registry, db: DB
) -> None:
    """delete_job notifies the job's waiters like an end does (the slow re-check is 60 s here:
    a waiter that returns in seconds was woken)."""

    @registry.task
    async def later() -> None:
        pass

    job = await client.enqueue(later, delay=3600)
    waiting = asyncio.create_task(client.result(job, timeout=30))
    await wait_until(lambda: db.one("select awaited from {schema}.jobs where id = %s", [job]) is True)
    assert await client.delete_job(job) == "deleted"
    with pytest.raises(NotFoundError, match=f"no job with id {job}"):
        await asyncio.wait_for(waiting, 10)
