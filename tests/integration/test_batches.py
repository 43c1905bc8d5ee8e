"""Batches: a callback that runs exactly once after the last member ended, with the counts."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import psycopg
import pytest

from conveyor import Backoff, Conveyor, JobContext, JobRequest, Registry
from conveyor.db.queries import for_schema
from conveyor.errors import ArgumentsError, ConveyorError, JobFailed
from conveyor.queue.sync_client import SyncConveyor

from ..helpers import DB, wait_until, wait_until_sync


def claim_by_hand(db: DB, ids: list[int]) -> uuid.UUID:
    """Claim jobs as a worker would (running, leased, claims 1); returns the worker id."""
    worker = uuid.uuid4()
    db.all(
        "update {schema}.jobs set state = 'running', worker_id = %s, lease_expires_at = now() + interval '1 hour',"
        " claims = claims + 1, attempt = attempt + 1 where id = any(%s)",
        [worker, ids],
    )
    return worker


async def test_the_callback_runs_once_after_every_member_with_the_counts(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    summaries: list[dict[str, Any]] = []

    @registry.task(max_attempts=1)
    async def member(n: int) -> int:
        if n == 3:
            raise RuntimeError("three is bad")
        return n

    @registry.task
    async def summary(batch: dict[str, int], label: str) -> None:
        summaries.append({**batch, "label": label})

    async with client.batch(callback=summary, args={"label": "nightly"}) as batch:
        ids = [await batch.enqueue(member, {"n": n}) for n in range(5)]
        ids += await batch.enqueue_many([JobRequest(member, {"n": n}) for n in range(5, 8)])
    assert db.one("select count(*) from {schema}.jobs where batch_id = %s", [batch.id]) == 8
    async with start_worker(concurrency=4):
        await wait_until(lambda: len(summaries) == 1)
        info = await client.get_batch(batch.id)
        assert info["callback_job_id"] is not None
        await client.result(info["callback_job_id"], timeout=20)
    assert summaries == [
        {"id": batch.id, "total": 8, "completed": 7, "dead": 1, "cancelled": 0, "label": "nightly"}
    ]
    assert (info["pending"], info["total"], info["finished_at"] is not None) == (0, 8, True)
    assert db.one("select count(*) from {schema}.job_history where batch_id = %s", [batch.id]) == 7
    assert db.one("select count(*) from {schema}.dead_jobs where batch_id = %s", [batch.id]) == 1


async def test_the_last_two_members_ending_at_the_same_instant_enqueue_one_callback(
    client: Conveyor, registry: Registry, db: DB, database_url: str, schema: str
) -> None:
    @registry.task
    async def member() -> None:
        pass

    @registry.task
    async def summary(batch: dict[str, int]) -> None:
        pass

    async with client.batch(callback=summary) as batch:
        first = await batch.enqueue(member)
        second = await batch.enqueue(member)
    worker = claim_by_hand(db, [first, second])
    complete = for_schema(schema)["complete_jobs"]

    def params(job_id: int) -> dict[str, Any]:
        return {"jobs": f'{{"{job_id}": [1, null]}}', "worker_id": worker, "now": None}

    # The worst moment: the first ending has counted itself (pending 1, the batch row locked)
    # and not committed; the second ends meanwhile, from another connection.
    with psycopg.connect(database_url) as one, psycopg.connect(database_url, autocommit=True) as two:
        one.execute(complete, params(first))
        assert db.one("select callback_job_id from {schema}.batches where id = %s", [batch.id]) is None
        other = threading.Thread(target=lambda: two.execute(complete, params(second)))
        other.start()
        try:
            # The second waits for the first's lock on the batch row.
            wait_until_sync(
                lambda: (
                    db.one(
                        "select count(*) from pg_locks where pid = %s and not granted", [two.info.backend_pid]
                    )
                    >= 1
                )
            )
            one.commit()
        finally:
            other.join(10)
    row = db.one(
        "select pending, completed, callback_job_id is not null from {schema}.batches where id = %s",
        [batch.id],
    )
    assert row == (0, 2, True)
    assert db.one("select count(*) from {schema}.jobs where task = 'summary'") == 1
    assert db.one("select args -> 'batch' ->> 'completed' from {schema}.jobs where task = 'summary'") == "2"


async def test_a_retried_member_counts_only_at_its_final_outcome(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    attempts: list[int] = []
    summaries: list[dict[str, int]] = []

    @registry.task(max_attempts=3, backoff=Backoff.fixed(0.2))
    async def flaky(ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt} failed")

    @registry.task
    async def steady() -> None:
        pass

    @registry.task
    async def summary(batch: dict[str, int]) -> None:
        summaries.append(batch)

    async with client.batch(callback=summary) as batch:
        await batch.enqueue(steady)
        retried = await batch.enqueue(flaky)
    async with start_worker():
        await wait_until(lambda: len(summaries) == 1)
    assert attempts == [1, 2, 3]
    assert summaries == [{"id": batch.id, "total": 2, "completed": 2, "dead": 0, "cancelled": 0}]
    callback = db.one("select callback_job_id from {schema}.batches where id = %s", [batch.id])
    started = db.one("select started_at from {schema}.job_history where id = %s", [callback])
    ended = db.one("select finished_at from {schema}.job_history where id = %s", [retried])
    assert started >= ended


async def test_sealing_after_every_member_ended_fires_at_once_and_an_empty_batch_too(
    client: Conveyor, registry: Registry, db: DB
) -> None:
    @registry.task
    async def member() -> None:
        pass

    @registry.task
    async def summary(batch: dict[str, int]) -> None:
        pass

    batch_id = await client.create_batch(summary)
    job = await client.enqueue(member, batch=batch_id)
    worker = claim_by_hand(db, [job])
    with db.connect(autocommit=True) as conn:
        conn.execute(
            for_schema(client.settings.schema)["complete_jobs"],
            {"jobs": f'{{"{job}": [1, null]}}', "worker_id": worker, "now": None},
        )
    assert db.one("select pending, callback_job_id from {schema}.batches where id = %s", [batch_id]) == (
        1,
        None,
    )
    callback = await client.seal_batch(batch_id)
    assert callback is not None
    assert db.one("select args from {schema}.jobs where id = %s", [callback]) == {
        "batch": {"id": batch_id, "total": 1, "completed": 1, "dead": 0, "cancelled": 0}
    }
    async with client.batch(callback=summary) as empty:
        pass
    info = await client.get_batch(empty.id)
    assert info["total"] == 0
    assert info["callback_job_id"] is not None

    with pytest.raises(ConveyorError, match=f"batch {batch_id} is sealed"):
        await client.enqueue(member, batch=batch_id)
    with pytest.raises(ConveyorError, match=f"batch {batch_id} is sealed already"):
        await client.seal_batch(batch_id)
    with pytest.raises(ConveyorError, match="no batch with id 424242"):
        await client.enqueue(member, batch=424_242)
    with pytest.raises(ArgumentsError, match="may not hold 'batch'"):
        await client.create_batch(summary, {"batch": 1})
    with pytest.raises(ArgumentsError, match="unexpected argument"):
        await client.create_batch(summary, {"other": 1})


async def test_a_batch_in_the_callers_transaction_rolls_back_whole(
    client: Conveyor, registry: Registry, db: DB, database_url: str
) -> None:
    @registry.task
    async def member() -> None:
        pass

    @registry.task
    async def summary(batch: dict[str, int]) -> None:
        pass

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        async with client.batch(callback="summary", conn=conn) as batch:
            await batch.enqueue(member)
            await batch.enqueue_many([JobRequest(member), JobRequest(member)])
        assert db.one("select count(*) from {schema}.batches") == 0  # not committed yet
        await conn.rollback()
    assert db.one("select count(*) from {schema}.jobs") == 0
    assert db.one("select count(*) from {schema}.batches") == 0


async def test_a_running_job_fans_out_a_batch_written_with_its_completion(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    summaries: list[dict[str, int]] = []

    @registry.task
    async def child(n: int) -> int:
        return n

    @registry.task
    async def summary(batch: dict[str, int], challenge: str) -> None:
        summaries.append({**batch, "challenge": challenge})  # type: ignore[dict-item]

    @registry.task
    async def evaluate(challenge: str, members: int, ctx: JobContext) -> None:
        group = ctx.batch(summary, {"challenge": challenge})
        for n in range(members):
            group.enqueue(child, {"n": n})

    await client.enqueue(evaluate, {"challenge": "c1", "members": 50})
    async with start_worker(concurrency=10):
        await wait_until(lambda: len(summaries) == 1, within=30)
    assert summaries[0]["total"] == 50
    assert summaries[0]["completed"] == 50
    assert summaries[0]["challenge"] == "c1"  # type: ignore[comparison-overlap]
    assert db.one("select count(*) from {schema}.job_history where batch_id is not null") == 50


def test_the_sync_client_makes_batches_and_chains(database_url: str, schema: str, db: DB) -> None:
    registry = Registry()

    @registry.task
    def member(n: int) -> int:
        return n

    @registry.task
    def summary(batch: dict[str, int]) -> None:
        pass

    with SyncConveyor(database_url, schema=schema, registry=registry) as sync:
        with sync.batch(callback=summary) as batch:
            first = batch.enqueue(member, {"n": 1})
            rest = batch.enqueue_many([JobRequest(member, {"n": n}) for n in (2, 3)])
        a, b = sync.chain(JobRequest(member, {"n": 4}), JobRequest(member, {"n": 5}))
        info = sync.get_batch(batch.id)
    assert (info["total"], info["pending"], info["sealed_at"] is not None) == (3, 3, True)
    assert db.all("select id from {schema}.jobs where batch_id = %s order by id", [batch.id]) == [
        (i,) for i in [first, *rest]
    ]
    assert db.one("select state, after_id from {schema}.jobs where id = %s", [b]) == ("blocked", a)


async def test_members_dying_by_lease_rescue_or_hand_back_are_counted_dead(
    client: Conveyor, registry: Registry, db: DB, schema: str
) -> None:
    @registry.task(max_attempts=1)
    async def member() -> None:
        pass

    @registry.task
    async def summary(batch: dict[str, int]) -> None:
        pass

    async with client.batch(callback=summary) as batch:
        rescued = await batch.enqueue(member)
        handed_back = await batch.enqueue(member)
    waiting = asyncio.create_task(client.result(rescued, timeout=20))
    await wait_until(lambda: db.one("select awaited from {schema}.jobs where id = %s", [rescued]))
    worker = claim_by_hand(db, [rescued, handed_back])
    db.all("update {schema}.jobs set lease_expires_at = now() - interval '1 second' where id = %s", [rescued])
    db.all("update {schema}.jobs set handbacks = 5 where id = %s", [handed_back])
    queries = for_schema(schema)
    with db.connect(autocommit=True) as conn:
        outcomes = conn.execute(
            queries["rescue_expired_jobs"], {"now": None, "limit": 100, "channel": schema}
        ).fetchall()
        assert [(row[0], row[1]) for row in outcomes] == [("dead", rescued)]
        released = conn.execute(
            queries["release_jobs"],
            {"jobs": f'{{"{handed_back}": 1}}', "worker_id": worker, "now": None, "channel": schema},
        ).fetchall()
        assert [(row[0], row[1]) for row in released] == [("dead", handed_back)]
    with pytest.raises(JobFailed, match="lease expired"):
        await waiting
    info = await client.get_batch(batch.id)
    assert (info["dead"], info["pending"], info["callback_job_id"] is not None) == (2, 0, True)
    assert db.all("select batch_id from {schema}.dead_jobs order by id") == [(batch.id,), (batch.id,)]
