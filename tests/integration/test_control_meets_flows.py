"""Where job control meets chains, batches and results: a job that ends as cancelled (by
cancel, or by an abort while it runs) reaches what depends on it exactly as a job that dies
does: its followers are cancelled saying why, its batch counts it, its waiting callers wake."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conveyor import Conveyor, JobRequest, Registry
from conveyor.errors import JobCancelled

from ..helpers import DB, wait_until


async def test_cancelling_a_parent_cancels_its_chain_saying_why(
    client: Conveyor, registry: Registry, db: DB
) -> None:
    @registry.task
    async def step() -> None: ...

    a, b, c = await client.chain(JobRequest(step), JobRequest(step), JobRequest(step))
    assert await client.cancel(a, reason="not today") == "cancelled"
    assert db.one("select count(*) from {schema}.jobs") == 0
    rows = db.all("select id, state, errors -> -1 ->> 'error' from {schema}.job_history order by id")
    assert rows == [
        (a, "cancelled", "cancelled before it ran: not today"),
        (b, "cancelled", f"cancelled: job {a}, which this job was to run after, was cancelled"),
        (c, "cancelled", f"cancelled: job {b}, which this job was to run after, was cancelled"),
    ]
    with pytest.raises(JobCancelled, match=f"job {c} was cancelled"):
        await client.result(c, timeout=5)


async def test_cancelled_batch_members_are_counted_and_the_callback_runs_once(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    summaries: list[dict[str, Any]] = []

    @registry.task
    async def member(n: int) -> int:
        return n

    @registry.task
    async def summary(batch: dict[str, int]) -> None:
        summaries.append(batch)

    async with client.batch(callback=summary) as batch:
        ids = [await batch.enqueue(member, {"n": n}, delay=3600) for n in range(3)]
    for job_id in ids[:2]:
        assert await client.cancel(job_id) == "cancelled"
    assert await client.run_now(ids[2]) == "available"
    async with start_worker(concurrency=2):
        await wait_until(lambda: len(summaries) == 1)
        info = await client.get_batch(batch.id)
    assert summaries == [{"id": batch.id, "total": 3, "completed": 1, "dead": 0, "cancelled": 2}]
    assert info["pending"] == 0
    assert info["finished_at"] is not None


async def test_an_aborted_running_job_wakes_its_caller_and_cancels_its_follower(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    running = asyncio.Event()

    @registry.task
    async def slow() -> None:
        running.set()
        await asyncio.Event().wait()

    @registry.task
    async def after_slow() -> None: ...

    a = await client.enqueue(slow)
    b = await client.enqueue(after_slow, after=a)
    async with start_worker():
        await asyncio.wait_for(running.wait(), 5)
        waiter = asyncio.create_task(client.result(a, timeout=10))
        await asyncio.sleep(0.05)  # the caller is waiting before the abort
        assert await client.abort(a, reason="stop") == "aborting"
        with pytest.raises(JobCancelled, match=f"job {a} was cancelled"):
            await waiter
        await wait_until(
            lambda: db.one("select state from {schema}.job_history where id = %s", [b]) == "cancelled"
        )
    assert db.one("select errors -> -1 ->> 'error' from {schema}.job_history where id = %s", [b]) == (
        f"cancelled: job {a}, which this job was to run after, was cancelled"
    )
