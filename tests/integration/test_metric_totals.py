"""The totals behind /metrics' counters (schema 12, count_metrics_v1): every attempt, end,
failure and death counted exactly once, through retries, dead-letter retries and purges,
retention, racing counts, and transactions that commit after a count has run."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import psycopg
import pytest

from conveyor import Backoff, Conveyor, JobRequest, Registry
from conveyor.db.database import Database, by_id
from conveyor.db.queries import for_schema

from ..helpers import DB, wait_until

Totals = dict[tuple[str, str, str], int]


def totals(db: DB) -> Totals:
    return {
        (e, q, t): int(n)
        for e, q, t, n in db.all("select event, queue, task, total from {schema}.metric_totals")
    }


def count(db: DB, settle: str = "0 s", span: str = "1 day") -> tuple[datetime, bool, bool]:
    """One counting step; (counted_to, counted, caught_up)."""
    row: tuple[datetime, bool, bool] = db.one(
        "select counted_to, counted, caught_up from {schema}.count_metrics_v1(%s::interval, %s::interval)",
        [settle, span],
    )
    return row


def count_all(db: DB) -> None:
    """Count until caught up with the watermark (nothing else counts in these tests but the
    worker's first upkeep, which these calls wait out)."""
    for _ in range(100):
        _, counted, caught_up = count(db)
        if counted and caught_up:
            return
    raise AssertionError("the count did not catch up")


def grows(before: Totals, after: Totals) -> bool:
    return all(after.get(key, 0) >= n for key, n in before.items())


@contextmanager
def no_counts(db: DB) -> Iterator[None]:
    """No count runs meanwhile (a worker's upkeep counts when it starts): the mark's row lock
    is held, so every count returns at once. (Dead-letter retries and purges wait for it.)"""
    with db.connect() as conn:
        conn.execute(db.compose("select 1 from {schema}.metric_mark for update"))
        yield


async def claim(database: Database, worker: uuid.UUID, n: int, queue: str = "default") -> list[Any]:
    return await database.claim_jobs(
        worker_id=worker, queues=[queue], limits=[n], limit=n, lease=timedelta(minutes=5), now=None
    )


async def test_every_attempt_end_failure_and_death_is_counted_once(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    """Jobs that complete, fail once then complete, and die; attempts that fail before any
    count runs (the job's row shows only its last start) are counted all the same."""
    runs: dict[int, int] = {}

    @registry.task
    async def fine(n: int) -> None:
        pass

    @registry.task(backoff=Backoff.fixed(0))
    async def flaky(n: int) -> None:
        runs[n] = runs.get(n, 0) + 1
        if runs[n] == 1:
            raise RuntimeError("first attempt fails")

    @registry.task(max_attempts=3, backoff=Backoff.fixed(0))
    async def doomed(n: int) -> None:
        raise RuntimeError("always fails")

    async with Conveyor(database_url, schema=schema, registry=registry) as client:
        await client.enqueue_many(
            [JobRequest(fine, {"n": n}) for n in range(10)]
            + [JobRequest(flaky, {"n": n}) for n in range(4)]
            + [JobRequest(doomed, {"n": n}) for n in range(2)]
        )
        async with start_worker(concurrency=4):
            await wait_until(lambda: db.one("select count(*) from {schema}.jobs") == 0, within=30)
    count_all(db)
    t = totals(db)
    fine_, flaky_, doomed_ = "fine", "flaky", "doomed"
    queue = "default"
    assert t[("started", queue, fine_)] == 10
    assert t[("completed", queue, fine_)] == 10
    assert ("failed", queue, fine_) not in t
    assert t[("started", queue, flaky_)] == 8  # two attempts each
    assert t[("failed", queue, flaky_)] == 4
    assert t[("completed", queue, flaky_)] == 4
    assert t[("started", queue, doomed_)] == 6
    assert t[("failed", queue, doomed_)] == 4  # the third attempt's failure is its death
    assert t[("dead", queue, doomed_)] == 2
    assert db.one("select count(*) from {schema}.attempt_ends") == 0  # consumed
    # The histograms hold the 14 completed jobs, once.
    assert (
        db.one("select sum(jobs) from {schema}.metric_buckets where queue = 'default' and kind = 'run'") == 14
    )
    assert (
        db.one("select sum(jobs) from {schema}.metric_buckets where queue = 'default' and kind = 'wait'")
        == 14
    )
    count_all(db)
    assert totals(db) == t  # counting again adds nothing


async def test_dead_jobs_retried_or_purged_before_any_count_are_counted_once(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task(max_attempts=1)
    async def doomed(n: int) -> None:
        raise RuntimeError("always fails")

    name = "doomed"
    async with Conveyor(database_url, schema=schema, registry=registry) as client:
        ids = await client.enqueue_many([JobRequest(doomed, {"n": n}) for n in range(6)])
        async with start_worker(concurrency=6):
            with no_counts(db):
                await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 6, within=30)
            # Nothing has counted them yet (the mark is before their deaths)...
            assert db.one("select count(*) from {schema}.metric_totals") == 0
            # ... when two are purged and two retried (and die again), each by the engine's functions.
            assert await client.purge_dead(ids=ids[:2]) == 2
            for job_id in ids[2:4]:
                await client.retry_dead(job_id)
            await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 4, within=30)
        count_all(db)
        after_count = totals(db)
        # Purged and retried after the count: counted already, nothing is added.
        assert await client.purge_dead(ids=ids[4:5]) == 1
        await client.retry_dead(ids[5])
        assert totals(db) == after_count
    assert after_count[("dead", "default", name)] == 8  # 6 deaths, and 2 more after the retries
    assert after_count[("started", "default", name)] == 8
    assert ("failed", "default", name) not in after_count
    count_all(db)
    assert totals(db)[("dead", "default", name)] == 8  # the job retried last waits in the queue


async def test_retention_takes_only_what_has_been_counted(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task
    async def fine(n: int) -> None:
        pass

    @registry.task(max_attempts=1)
    async def doomed(n: int) -> None:
        raise RuntimeError("always fails")

    async with Conveyor(database_url, schema=schema, registry=registry) as client:
        await client.set_retention("default", completed_keep=timedelta(0), dead_keep=timedelta(0))
        await client.enqueue_many(
            [JobRequest(fine, {"n": n}) for n in range(20)] + [JobRequest(doomed, {"n": n}) for n in range(3)]
        )
        with no_counts(db):
            async with start_worker(concurrency=4):
                await wait_until(lambda: db.one("select count(*) from {schema}.jobs") == 0, within=30)
        # Nothing has counted them: retention keeping nothing takes none of them, whatever its clock.
        before = totals(db)
        assert before == {}
        rows = db.all(
            "select step, affected from {schema}.retention_batch_v2(now() + interval '1 day', 1000)"
        )
        assert {step: affected for step, affected in rows}["finished jobs moved to the run log"] == 0
        assert {step: affected for step, affected in rows}["dead jobs moved to the run log"] == 0
        assert db.one("select count(*) from {schema}.job_history") == 20
        # Retention as the scheduler runs it counts first, then takes what it counted: at every
        # step, what reached the run log is in the totals, and the totals only grow.
        seen = [before]

        async def all_taken() -> bool:  # each run counts up to a second ago
            await client.apply_retention(budget=30)
            seen.append(totals(db))
            moved = dict(db.all("select state, count(*) from {schema}.job_runs group by state"))
            assert moved.get("completed", 0) <= seen[-1].get(("completed", "default", "fine"), 0)
            assert moved.get("dead", 0) <= seen[-1].get(("dead", "default", "doomed"), 0)
            return db.one("select count(*) from {schema}.job_history") == 0 and (
                db.one("select count(*) from {schema}.dead_jobs") == 0
            )

        await wait_until(all_taken, within=15, interval=0.2)
        assert all(grows(a, b) for a, b in pairwise(seen))
    count_all(db)
    final = totals(db)
    fine_, doomed_ = "fine", "doomed"
    assert final[("completed", "default", fine_)] == 20
    assert final[("started", "default", fine_)] == 20
    assert final[("dead", "default", doomed_)] == 3
    assert db.one("select count(*) from {schema}.job_runs") == 23
    assert db.one("select sum(jobs) from {schema}.metric_buckets where kind = 'run'") == 20


def test_apply_retention_counts_then_takes_everything(database_url: str, db: DB) -> None:
    """The same from psql: CALL apply_retention() counts first, then takes what it counted."""
    db.all("select {schema}.set_retention('default', completed_keep => interval '0')")
    db.all("update {schema}.metric_mark set counted_to = now() - interval '1 hour'")  # nothing counted yet
    db.all(
        "insert into {schema}.job_history (id, run_at, enqueued_at, started_at, finished_at, worker_id, attempt,"
        " max_attempts, priority, state, queue, task, args, errors)"
        " select n, t - interval '3 s', t - interval '3 s', t - interval '2 s', t, gen_random_uuid(), 1, 5, 2,"
        " 'completed', 'default', 'report', '{{}}', '[]'"
        " from generate_series(1, 10) n, (select now() - interval '10 s' as t) c"
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(db.compose("call {schema}.apply_retention()"))
    assert db.one("select count(*) from {schema}.job_history") == 0
    assert db.one("select count(*) from {schema}.job_runs") == 10
    assert totals(db) == {("completed", "default", "report"): 10, ("started", "default", "report"): 10}


def test_a_day_is_dropped_only_once_counted(db: DB) -> None:
    db.all("select {schema}.ensure_history_partitions(0, timestamptz '2020-03-09 12:00+00')")
    assert "job_history_20200309" in [
        r[0] for r in db.all("select * from {schema}.expired_partitions_v1(now())")
    ]
    assert "job_history_20200309" in [
        r[0] for r in db.all("select * from {schema}.expired_partitions(now())")
    ]
    db.all("update {schema}.metric_mark set counted_to = timestamptz '2020-03-09 23:00+00'")
    assert "job_history_20200309" not in [
        r[0] for r in db.all("select * from {schema}.expired_partitions(now())")
    ]
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="not counted yet"):
        db.all("select * from {schema}.drop_partition_v2('job_history_20200309', 100)")
    db.all("update {schema}.metric_mark set counted_to = timestamptz '2020-03-10 00:00+00'")
    assert db.one("select dropped from {schema}.drop_partition_v2('job_history_20200309', 100)") is True


async def test_a_transaction_open_across_the_count_is_counted_after_it_commits(
    database_url: str, schema: str, registry: Registry, db: DB
) -> None:
    """The worst moment: a transaction begins, a count runs, and only then does that
    transaction ack a job, stamping it with its own (earlier) start time, and commit. The
    count's watermark stayed behind the open transaction's start, so the next count sees it."""

    @registry.task
    async def fine(n: int) -> None:
        pass

    name = "fine"
    worker = uuid.uuid4()
    async with Conveyor(database_url, schema=schema, registry=registry) as client:
        await client.enqueue_many([JobRequest(fine, {"n": n}) for n in range(3)])
    database = Database(database_url, schema, min_size=1, max_size=2)
    await database.open()
    try:
        jobs = await claim(database, worker, 3)
        assert len(jobs) == 3
        complete = for_schema(schema)["complete_jobs"]
        with psycopg.connect(database_url) as held:
            began = held.execute("select now()").fetchone()[0]  # type: ignore[index]
            # Another session acks a job meanwhile (finished after `began`), and a count runs.
            with psycopg.connect(database_url, autocommit=True) as other:
                first = by_id([(jobs[0].id, f"[{jobs[0].claim},null]")])
                other.execute(complete, {"jobs": first, "worker_id": worker, "now": None})
            counted_to, counted, _ = count(db)
            assert counted
            assert counted_to <= began  # held back by the open transaction
            assert ("completed", "default", name) not in totals(db)
            # Now the open transaction acks (its rows carry `began`) and commits.
            late = by_id([(j.id, f"[{j.claim},null]") for j in jobs[1:]])
            held.execute(complete, {"jobs": late, "worker_id": worker, "now": None})
            stamped = held.execute(
                db.compose("select finished_at from {schema}.job_history where id <> %s"), [jobs[0].id]
            ).fetchall()
            assert [r[0] for r in stamped] == [began, began]  # its own start, before the count ran
            assert counted_to <= began  # the mark did not pass them
            held.commit()
        count_all(db)
        t = totals(db)
        assert t[("completed", "default", name)] == 3
        assert t[("started", "default", name)] == 3
        count_all(db)
        assert totals(db) == t
    finally:
        await database.close()


def test_the_count_refuses_an_older_snapshot(db: DB) -> None:
    with db.connect(autocommit=True) as conn:
        conn.execute("begin isolation level repeatable read")
        with pytest.raises(psycopg.errors.InvalidTransactionState, match="READ COMMITTED only"):
            conn.execute(db.compose("select * from {schema}.count_metrics_v1()"))
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        count(db, span="0 s")


async def test_two_counts_never_count_an_interval_twice(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    """A count holding the lock: another returns at once, counting nothing; then counts racing
    from many sessions while a worker drains jobs (some failing once) count each exactly once."""
    runs: dict[int, int] = {}

    @registry.task(backoff=Backoff.fixed(0))
    async def job(n: int) -> None:
        runs[n] = runs.get(n, 0) + 1
        if n % 10 == 0 and runs[n] == 1:
            raise RuntimeError("first attempt fails")

    with db.connect() as first:
        first.execute(db.compose("select * from {schema}.count_metrics_v1('0 s', '1 day')"))  # holds the lock
        _, counted, caught_up = count(db)
        assert (counted, caught_up) == (False, False)
        first.commit()
    assert count(db)[1] is True

    stop = threading.Event()
    races = {"counted": 0, "skipped": 0}

    def counter() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute(
                    db.compose("select counted from {schema}.count_metrics_v1('0 s', '50 ms')")
                ).fetchone()
                races["counted" if row and row[0] else "skipped"] += 1
                stop.wait(0.002)  # leave the two cores some room

    threads = [threading.Thread(target=counter) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        async with Conveyor(database_url, schema=schema, registry=registry) as client:
            await client.enqueue_many([JobRequest(job, {"n": n}) for n in range(1500)])
            async with start_worker(concurrency=16):
                await wait_until(lambda: db.one("select count(*) from {schema}.jobs") == 0, within=120)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    count_all(db)
    t = totals(db)
    name = "job"
    assert t[("completed", "default", name)] == 1500
    assert t[("failed", "default", name)] == 150
    assert t[("started", "default", name)] == 1650
    assert db.one("select sum(jobs) from {schema}.metric_buckets where kind = 'run'") == 1500
    assert races["counted"] > 10, races
