"""Chains: a job that runs after another succeeds, and is cancelled, saying why, if it does not."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conveyor import Conveyor, JobRequest, Registry
from conveyor.db.queries import for_schema
from conveyor.errors import ConveyorError, InvalidOptionError, JobCancelled, JobFailed, UnknownTaskError

from ..helpers import DB, wait_until


async def test_b_runs_after_a_succeeds(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    release = asyncio.Event()
    ran: list[str] = []

    @registry.task
    async def first() -> str:
        await release.wait()
        ran.append("A")
        return "a"

    @registry.task
    async def second() -> str:
        ran.append("B")
        return "b"

    a = await client.enqueue(first)
    b = await client.enqueue(second, after=a)
    assert db.one("select state, after_id from {schema}.jobs where id = %s", [b]) == ("blocked", a)
    assert db.one("select has_followers from {schema}.jobs where id = %s", [a]) is True
    assert [job["id"] for job in await client.list_jobs(state="blocked")] == [b]
    async with start_worker(concurrency=4):
        await wait_until(lambda: db.one("select state from {schema}.jobs where id = %s", [a]) == "running")
        # A runs, B waits however many slots are free.
        assert db.one("select state from {schema}.jobs where id = %s", [b]) == "blocked"
        release.set()
        assert await client.result(b, timeout=20) == "b"
    assert ran == ["A", "B"]
    a_end, b_start, b_after, b_due = db.one(
        "select a.finished_at, b.started_at, b.after_id, b.run_at"
        " from {schema}.job_history a, {schema}.job_history b where a.id = %s and b.id = %s",
        [a, b],
    )
    # Due from its release: past the claim cursors of workers that claimed since its enqueue.
    assert b_due == a_end
    assert b_start >= a_end
    assert b_after == a


async def test_a_b_c_where_b_fails_cancels_c_which_never_runs_and_says_why(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    ran: list[str] = []

    @registry.task
    async def step_a() -> None:
        ran.append("A")

    @registry.task(max_attempts=1)
    async def step_b() -> None:
        ran.append("B")
        raise RuntimeError("B broke")

    @registry.task
    async def step_c() -> None:
        ran.append("C")

    a, b, c = await client.chain(JobRequest(step_a), JobRequest(step_b), JobRequest(step_c))
    assert db.all("select id, state, after_id from {schema}.jobs order by id") == [
        (a, "available", None),
        (b, "blocked", a),
        (c, "blocked", b),
    ]
    async with start_worker(concurrency=4):
        with pytest.raises(JobFailed, match="B broke"):
            await client.result(b, timeout=20)
        with pytest.raises(JobCancelled) as cancelled:
            await client.result(c, timeout=20)
    assert ran == ["A", "B"]
    assert cancelled.value.error is not None
    assert cancelled.value.error["error"] == f"cancelled: job {b}, which this job was to run after, died"
    assert db.one("select state, after_id from {schema}.job_history where id = %s", [c]) == ("cancelled", b)
    assert db.one("select after_id from {schema}.dead_jobs where id = %s", [b]) == a
    assert db.one("select count(*) from {schema}.jobs") == 0
    job = await client.get_job(c)
    assert (job["state"], job["after_id"]) == ("cancelled", b)
    assert job["errors"][-1]["error"].startswith(f"cancelled: job {b}")


async def test_a_long_chain_is_cancelled_to_its_end_when_its_head_dies(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task(max_attempts=1)
    async def dies() -> None:
        raise RuntimeError("gone")

    @registry.task
    async def link() -> None:
        pass

    ids = await client.chain(JobRequest(dies), *[JobRequest(link) for _ in range(5)])
    async with start_worker():
        with pytest.raises(
            JobCancelled, match=f"job {ids[-2]}, which this job was to run after, was cancelled"
        ):
            await client.result(ids[-1], timeout=20)
    assert db.all("select id from {schema}.job_history where state = 'cancelled' order by id") == [
        (i,) for i in ids[1:]
    ]


async def test_enqueue_after_a_job_that_already_ended(client: Conveyor, registry: Registry, db: DB) -> None:
    @registry.task
    async def anything() -> None:
        pass

    done, dead = await client.enqueue(anything), await client.enqueue(anything)
    db.all(
        "insert into {schema}.job_history (id, run_at, enqueued_at, finished_at, attempt, max_attempts,"
        " priority, state, queue, task, args, errors)"
        " select id, run_at, enqueued_at, now(), 1, 5, 2, 'completed', queue, task, args, errors"
        " from {schema}.jobs where id = %s",
        [done],
    )
    db.all(
        "insert into {schema}.dead_jobs (id, run_at, enqueued_at, died_at, attempt, max_attempts, priority,"
        " queue, task, args, errors) select id, run_at, enqueued_at, now(), 1, 5, 2, queue, task, args, errors"
        " from {schema}.jobs where id = %s",
        [dead],
    )
    db.all("delete from {schema}.jobs where id in (%s, %s)", [done, dead])

    runs = await client.enqueue(anything, after=done)
    assert db.one("select state, after_id from {schema}.jobs where id = %s", [runs]) == ("available", done)

    never = await client.enqueue(anything, after=dead)
    assert db.one("select count(*) from {schema}.jobs where id = %s", [never]) == 0
    with pytest.raises(JobCancelled, match=f"job {dead}, which this job was to run after, died"):
        await client.result(never, timeout=5)

    with pytest.raises(ConveyorError, match="no job with id 987654 to run after"):
        await client.enqueue(anything, after=987_654)
    with pytest.raises(InvalidOptionError, match="unique_key cannot be combined"):
        await client.enqueue(anything, after=runs, unique_key="k")
    with pytest.raises(InvalidOptionError, match="after must be an id"):
        await client.enqueue(anything, after=0)


async def test_a_follower_enqueued_while_its_parent_ends_is_released(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any, database_url: str
) -> None:
    """The enqueue marks the parent's row (has_followers): the parent's end waits for the
    enqueue's transaction and then sees the follower, so the follower is never stranded."""
    release = asyncio.Event()

    @registry.task
    async def parent() -> None:
        await release.wait()

    @registry.task
    async def follower() -> str:
        return "released"

    a = await client.enqueue(parent)
    async with start_worker():
        await wait_until(lambda: db.one("select state from {schema}.jobs where id = %s", [a]) == "running")
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            b = await client.enqueue(follower, after=a, conn=conn)  # open transaction: A's row is locked
            release.set()
            # A's completion waits for this transaction's lock on A's row.
            await wait_until(
                lambda: (
                    db.one(
                        "select count(*) from pg_locks l join pg_stat_activity s using (pid)"
                        " where not l.granted and s.datname = current_database() and s.query like '%%job_history%%'"
                    )
                    >= 1
                )
            )
            await conn.commit()
        assert await client.result(b, timeout=20) == "released"


def test_the_sql_api_links_jobs_and_makes_batches(db: DB) -> None:
    """conveyor.create_batch, enqueue_flow and seal_batch, as psql or another language calls them."""
    db.all("select {schema}.create_queue('default')")
    parent = db.one("select {schema}.enqueue('first')")
    batch = db.one("select {schema}.create_batch('summary', '{{\"label\": \"x\"}}')")
    child = db.one(
        "select {schema}.enqueue_flow('second', after_id => %s, batch_id => %s, meta => '{{\"t\": 1}}')",
        [parent, batch],
    )
    assert db.one("select state, after_id, batch_id, meta from {schema}.jobs where id = %s", [child]) == (
        "blocked",
        parent,
        batch,
        {"t": 1},
    )
    assert db.one("select {schema}.seal_batch(%s)", [batch]) is None
    assert db.one("select total, pending from {schema}.batches where id = %s", [batch]) == (1, 1)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=f"batch {batch} is sealed"):
        db.one("select {schema}.enqueue_flow('third', batch_id => %s)", [batch])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="no job with id 5555 to run after"):
        db.one("select {schema}.enqueue_flow('third', after_id => 5555)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match='may not hold "batch"'):
        db.one("select {schema}.create_batch('summary', '{{\"batch\": 1}}')")
    assert db.one("select count(*) from {schema}.jobs") == 2  # the refused calls wrote nothing


# -- long chains: settle_v1 cancels one generation at a time, whatever the chain's length ------


def long_chain(db: DB, links: int, *, batch: int | None = None) -> list[int]:
    """A head job (one attempt) and ``links`` jobs each after the one before, written through
    the SQL API; the last link joins ``batch`` if given."""
    db.all("select {schema}.create_queue('default')")
    with db.connect() as conn:  # one transaction: a connection per link would take seconds
        ids = [
            conn.execute(db.compose("select {schema}.enqueue_flow('head', max_attempts => 1)")).fetchone()[0]
        ]
        follow = db.compose("select {schema}.enqueue_flow('link', after_id => %s, batch_id => %s)")
        for n in range(links):
            ids.append(conn.execute(follow, [ids[-1], batch if n == links - 1 else None]).fetchone()[0])
    return ids


def claim_by_hand(db: DB, ids: list[int]) -> uuid.UUID:
    worker = uuid.uuid4()
    db.all(
        "update {schema}.jobs set state = 'running', worker_id = %s, lease_expires_at = now() + interval '1 hour',"
        " claims = claims + 1, attempt = attempt + 1 where id = any(%s)",
        [worker, ids],
    )
    return worker


def test_cancelling_the_head_of_a_chain_of_1000_cancels_the_chain_its_batch_and_waiter(db: DB) -> None:
    """Once, settle_v1 recursed once per link and a chain of ~500 overflowed max_stack_depth:
    the cancel failed. The last link is in a sealed batch and awaited: both are settled."""
    db.all("select {schema}.create_queue('default')")
    batch = db.one("select {schema}.create_batch()")
    ids = long_chain(db, 1000, batch=batch)
    db.one("select {schema}.seal_batch(%s)", [batch])
    db.all("update {schema}.jobs set awaited = true where id = %s", [ids[-1]])
    with db.connect(autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(f"{db.schema[:58]}.done")))
        assert db.one("select {schema}.cancel_job(%s)", [ids[0]]) == "cancelled"
        woken = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert woken == [str(ids[-1])]
    assert db.one("select count(*) from {schema}.job_history where state = 'cancelled'") == 1001
    assert db.one("select count(*) from {schema}.jobs") == 0
    assert db.one(
        "select cancelled, pending, finished_at is not null from {schema}.batches where id = %s", [batch]
    ) == (
        1,
        0,
        True,
    )


def test_a_chain_head_of_1000_dying_by_lease_rescue_is_rescued_with_an_unrelated_job(
    db: DB, schema: str
) -> None:
    """The head of a 1000-link chain on its last attempt, and an unrelated job, both with
    their workers gone: one rescue pass rescues both (once, the head's settle overflowed the
    stack and failed the whole statement, every pass, for every expired job of the schema)."""
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
    assert db.one("select count(*) from {schema}.job_history where state = 'cancelled'") == 1000


async def test_the_head_of_a_chain_of_1000_dying_in_a_worker_is_buried_and_the_chain_cancelled(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    """bury_jobs settles the head's death; once, the stack overflowed, the completer took the
    refusal as final and left the job to its lease, whose rescue failed the same way."""

    @registry.task(max_attempts=1)
    async def head() -> None:
        raise RuntimeError("the head dies")

    @registry.task
    async def link() -> None:
        pass

    ids = await client.chain(JobRequest(head), *[JobRequest(link) for _ in range(1000)])
    async with start_worker():
        with pytest.raises(
            JobCancelled, match=f"job {ids[-2]}, which this job was to run after, was cancelled"
        ):
            await client.result(ids[-1], timeout=20)
    assert db.one("select count(*) from {schema}.dead_jobs where id = %s", [ids[0]]) == 1
    assert db.one("select count(*) from {schema}.job_history where state = 'cancelled'") == 1000


async def test_after_refuses_ids_out_of_bigint_and_keys_holding_nul_clearly(
    client: Conveyor, registry: Registry
) -> None:
    @registry.task
    async def plain() -> None:
        pass

    for bad in (2**63, 0, -1, True, "1", 1.0):
        with pytest.raises(InvalidOptionError, match="after must be an id"):
            await client.enqueue(plain, after=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="after must be an id"):
        await client.enqueue_many([JobRequest(plain)], after=2**63)
    with pytest.raises(InvalidOptionError, match="after must be an id"):
        await client.chain(JobRequest(plain), after=2**63)
    with pytest.raises(InvalidOptionError, match="holds a NUL character"):
        await client.enqueue(plain, key="a\x00b")
    with pytest.raises(InvalidOptionError, match="holds a NUL character"):
        await client.enqueue(plain, unique_key="a\x00b")
    with pytest.raises(UnknownTaskError):
        await client.enqueue("a\x00b")
