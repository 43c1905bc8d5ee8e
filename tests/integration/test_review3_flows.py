"""Review 3 of issue 11 (results, chains, batches): problems found, each a failing test."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import psycopg

from conveyor import Conveyor, JobRequest, Registry
from conveyor.db.queries import for_schema

from ..helpers import DB, wait_until


async def test_result_with_timeout_0_of_a_completed_job_returns_its_result(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    """docs/results-and-flows.md: TimeoutError only if the job 'has not ended when timeout
    seconds have passed'. A job that ended long ago has ended at once."""

    @registry.task
    async def answer() -> int:
        return 42

    job = await client.enqueue(answer)
    async with start_worker():
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job]) == 1
        )
    assert await client.result(job, timeout=0) == 42


def claim_by_hand(db: DB, ids: list[int]) -> uuid.UUID:
    worker = uuid.uuid4()
    db.all(
        "update {schema}.jobs set state = 'running', worker_id = %s, lease_expires_at = now() + interval '1 hour',"
        " claims = claims + 1, attempt = attempt + 1 where id = any(%s)",
        [worker, ids],
    )
    return worker


def test_a_member_completing_while_a_follower_joins_its_batch_do_not_deadlock(
    db: DB, database_url: str, schema: str
) -> None:
    """A (member of batch X) completes while B is enqueued with after=A into X. link_jobs_v1
    locks X then A; complete_jobs locks A (its DELETE) then X (settle_v1): opposite orders.
    Made deterministic by holding A's row while both start."""
    db.all("select {schema}.create_queue('default')")
    x = db.one("select {schema}.create_batch()")
    a = db.one("select {schema}.enqueue_flow('t', batch_id => %s)", [x])
    worker = claim_by_hand(db, [a])
    queries = for_schema(schema)
    errors: dict[str, BaseException] = {}

    def ack() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(
                    queries["complete_jobs"],
                    {"jobs": f'{{"{a}": [1, null]}}', "worker_id": worker, "now": None},
                )
        except BaseException as exc:
            errors["ack"] = exc

    def follow() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(
                    psycopg.sql.SQL("select {}.enqueue_flow('t', after_id => %s, batch_id => %s)").format(
                        psycopg.sql.Identifier(schema)
                    ),
                    [a, x],
                )
        except BaseException as exc:
            errors["follow"] = exc

    with db.connect() as holder:
        holder.execute(db.compose("select 1 from {schema}.jobs where id = %s for update"), [a])
        t1 = threading.Thread(target=ack)
        t1.start()
        time.sleep(0.3)  # the ack queues for A's row first
        t2 = threading.Thread(target=follow)
        t2.start()
        time.sleep(0.3)
        holder.commit()
    t1.join(10)
    t2.join(10)
    assert errors == {}, {k: f"{type(v).__name__}: {v}" for k, v in errors.items()}


def long_chain(db: DB, links: int) -> list[int]:
    """A head job and `links` jobs each after the one before, written through the SQL API."""
    db.all("select {schema}.create_queue('default')")
    ids = [db.one("select {schema}.enqueue_flow('head', max_attempts => 1)")]
    for _ in range(links):
        ids.append(db.one("select {schema}.enqueue_flow('link', after_id => %s)", [ids[-1]]))
    return ids


def test_cancelling_the_head_of_a_chain_of_1000_cancels_the_chain(db: DB) -> None:
    """settle_v1 recurses once per link (PERFORM settle_v1 for the cancelled followers): with
    the default max_stack_depth (2 MB) a chain of ~500+ blocked jobs overflows the stack."""
    ids = long_chain(db, 1000)
    assert db.one("select {schema}.cancel_job(%s)", [ids[0]]) == "cancelled"
    assert db.one("select count(*) from {schema}.job_history where state = 'cancelled'") == 1001


def test_a_chain_head_dying_by_lease_rescue_does_not_stop_the_rescue_of_other_jobs(
    db: DB, schema: str
) -> None:
    """The head of a 1000-link chain, on its last attempt, whose worker was killed; and an
    unrelated job whose worker was killed too. One rescue pass must rescue both; the head's
    settle overflowing the stack makes the whole statement fail, every pass, for every job."""
    ids = long_chain(db, 1000)
    other = db.one("select {schema}.enqueue('plain')")
    claim_by_hand(db, [ids[0], other])
    db.all(
        "update {schema}.jobs set lease_expires_at = now() - interval '1 minute' where id = any(%s)",
        [[ids[0], other]],
    )
    queries = for_schema(schema)
    with db.connect(autocommit=True) as conn:
        rows = conn.execute(
            queries["rescue_expired_jobs"], {"now": None, "limit": 100, "channel": queries.channel}
        ).fetchall()
    assert sorted((row[0], row[1]) for row in rows) == sorted([("dead", ids[0]), ("retried", other)])


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
        results = await asyncio.gather(*(client.result(i, timeout=60) for i in ids), return_exceptions=True)
        took = time.monotonic() - started
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    assert errors == [], (len(errors), errors[:3], took)
    assert results == [n * n for n in range(300)]


async def test_the_head_of_a_chain_of_800_dying_in_a_worker_is_buried_and_the_chain_cancelled(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    """bury_jobs settles the head's death; settle_v1's recursion overflows the stack, the
    completer takes the refusal as final and leaves the job to its lease, whose rescue fails
    the same way (see the rescue test above)."""

    @registry.task(max_attempts=1)
    async def head() -> None:
        raise RuntimeError("the head dies")

    @registry.task
    async def link() -> None:
        pass

    ids = await client.chain(JobRequest(head), *[JobRequest(link) for _ in range(800)])
    async with start_worker():
        await wait_until(
            lambda: (
                db.one("select count(*) from {schema}.jobs where id = %s and state = 'running'", [ids[0]])
                == 1
            )
        )
        try:
            await wait_until(
                lambda: db.one("select count(*) from {schema}.dead_jobs where id = %s", [ids[0]]) == 1,
                within=8,
            )
        finally:
            state = db.all("select state, count(*) from {schema}.jobs group by 1 order by 1")
    assert db.one("select count(*) from {schema}.job_history where state = 'cancelled'") == 800, state


async def test_waiters_get_results_while_their_listen_connection_is_killed_again_and_again(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any, schema: str
) -> None:
    """pg_terminate_backend on the client's LISTEN connection every 100 ms while 100 awaited
    jobs complete: every waiter returns, within the 5 s re-check of its job at worst."""

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
        results = await asyncio.gather(*(client.result(i, timeout=30) for i in ids), return_exceptions=True)
        took = time.monotonic() - started
    stop.set()
    kills = await killing
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    assert errors == [], (errors[:3], kills, took)
    assert results == list(range(100))
    assert kills > 0
    assert took < 10, (took, kills)


async def test_a_chain_inside_a_batch_enqueues_without_deadlock_errors(
    client: Conveyor, registry: Registry, start_worker: Any
) -> None:
    """The natural form of the deadlock above: in an open batch, enqueue A, then B after A,
    300 times, while a worker completes the A's. Seen here: 1 raw DeadlockDetected raised to
    the caller (B not enqueued; total 599 of 600) and 1 ack retried."""

    @registry.task
    async def quick() -> None:
        pass

    errors: list[str] = []
    async with start_worker(concurrency=10, poll_interval=0.05), client.batch() as batch:
        for _ in range(300):
            a = await batch.enqueue(quick)
            await asyncio.sleep(0.002)
            try:
                await batch.enqueue(quick, after=a)
            except psycopg.Error as exc:
                errors.append(type(exc).__name__)
    assert errors == []
