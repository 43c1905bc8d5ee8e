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
from conveyor.errors import ArgumentsError, ConveyorError, InvalidOptionError, JobFailed
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


# -- lock order: job rows before batch rows, in link_jobs_v1 as in every statement ending jobs --


def test_a_member_completing_while_a_follower_joins_its_batch_after_it_both_succeed(
    db: DB, database_url: str, schema: str
) -> None:
    """A (member of batch X) completes while B is enqueued with after=A into X. Once,
    link_jobs_v1 locked X then A while complete_jobs locks A (its DELETE) then X (settle_v1):
    a deadlock. Made deterministic by holding A's row while both start."""
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

    def waiting_for_locks(n: int) -> bool:
        waiting = db.one(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and query like %s"
            " and pid <> pg_backend_pid()",
            [f"%{schema}%"],
        )
        return bool(waiting >= n)

    with db.connect() as holder:
        holder.execute(db.compose("select 1 from {schema}.jobs where id = %s for update"), [a])
        t1 = threading.Thread(target=ack)
        t1.start()
        wait_until_sync(lambda: waiting_for_locks(1))  # the ack queues for A's row first
        t2 = threading.Thread(target=follow)
        t2.start()
        wait_until_sync(lambda: waiting_for_locks(2))
        holder.commit()
    t1.join(10)
    t2.join(10)
    assert errors == {}, {k: f"{type(v).__name__}: {v}" for k, v in errors.items()}
    assert db.one("select total, completed, pending from {schema}.batches where id = %s", [x]) == (2, 1, 2)


async def test_a_chain_inside_a_batch_enqueues_while_a_worker_completes_its_members(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    """The natural form of the deadlock above: in an open batch, enqueue A, then B after A,
    300 times, while a worker completes the A's. Once: a raw DeadlockDetected now and then."""

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
            except (psycopg.Error, ConveyorError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
    assert errors == []
    assert db.one("select total from {schema}.batches where id = %s", [batch.id]) == 600


async def test_a_lock_conflict_on_a_linked_enqueue_is_retried_or_refused_clearly(
    client: Conveyor, registry: Registry, db: DB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deadlock met by an enqueue with batch=: on Conveyor's own connection its transaction
    is run again; on the caller's, a ConveyorError says it was rolled back (not a raw error)."""

    @registry.task
    async def member() -> None:
        pass

    batch = await client.create_batch()
    real_run = client.db.run
    failures = [psycopg.errors.DeadlockDetected("deadlock detected (injected)")]

    async def run_once_deadlocked(flow: Any, **kwargs: Any) -> Any:
        if failures:
            flow.close()
            raise failures.pop()
        return await real_run(flow, **kwargs)

    monkeypatch.setattr(client.db, "run", run_once_deadlocked)
    job = await client.enqueue(member, batch=batch)
    assert db.one("select batch_id from {schema}.jobs where id = %s", [job]) == batch
    monkeypatch.undo()

    async with await psycopg.AsyncConnection.connect(db.url) as conn:
        # A deadlock the caller's own transaction makes, faked at the server: a function raising it.
        await conn.execute(
            "create function pg_temp.deadlock() returns trigger language plpgsql as"
            " $$ begin raise exception 'deadlock detected (made here)' using errcode = 'deadlock_detected'; end $$"
        )
        await conn.execute(
            psycopg.sql.SQL(
                "create trigger deadlock before update of batch_id on {}.jobs for each row execute function pg_temp.deadlock()"
            ).format(psycopg.sql.Identifier(db.schema))
        )
        with pytest.raises(ConveyorError, match=r"lock conflict.*rolled back"):
            await client.enqueue(member, batch=batch, conn=conn)
        await conn.rollback()
    assert db.one("select total from {schema}.batches where id = %s", [batch]) == 1


async def test_batch_entry_points_refuse_bad_ids_meta_and_priority_clearly(
    client: Conveyor, registry: Registry, db: DB
) -> None:
    @registry.task
    async def member() -> None:
        pass

    for bad in (2**63, 0, -1, True, "1"):
        with pytest.raises(InvalidOptionError, match="batch must be an id"):
            await client.enqueue(member, batch=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidOptionError, match="batch_id must be an id"):
            await client.seal_batch(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidOptionError, match="batch_id must be an id"):
            await client.get_batch(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="meta must be a JSON object, got list"):
        await client.create_batch(None, meta=[1])  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="65536 byte limit"):
        await client.create_batch(None, meta={"x": "y" * 70_000})
    with pytest.raises(InvalidOptionError, match="priority 9 is out of range"):
        await client.create_batch(None, priority=9)
    assert db.one("select count(*) from {schema}.batches") == 0
    # SQL keeps the same meta limit.
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="create_batch: meta takes"):
        db.one("select {schema}.create_batch(meta => jsonb_build_object('x', repeat('y', 70000)))")
