"""get_job reads the three tables a job can be in (jobs, job_history, dead_jobs) in one
statement, so a job moving between them while it is read is always found, in one place."""

from __future__ import annotations

import asyncio
import json

from conveyor import Conveyor, JobRequest, Registry

from ..helpers import DB, wait_until


def bury(db: DB, job_id: int) -> None:
    db.all(
        "insert into {schema}.dead_jobs (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts,"
        " priority, queue, task, args, errors) values (%s, now(), now(), now(), now(), 3, 3, 2, 'default',"
        " 'report', '{{\"n\": 1}}', %s::jsonb)",
        [job_id, json.dumps([{"attempt": 3, "error": "boom"}])],
    )


async def test_a_job_retried_from_the_dead_letter_table_while_it_is_read_is_found(
    client: Conveyor, db: DB
) -> None:
    """The reader is held at job_history (an exclusive lock, as DDL or a partition drop
    takes) after it looked in jobs; meanwhile the dead job goes back to jobs. Read in
    separate statements, the job was in none of the places looked at when each was looked
    at; read in one statement, it is in jobs."""
    bury(db, 7)
    with db.connect() as locker:
        locker.execute(db.compose("lock table {schema}.job_history in access exclusive mode"))
        reading = asyncio.create_task(client.get_job(7))
        await wait_until(
            lambda: (
                db.one(
                    "select count(*) from pg_locks l join pg_class c on c.oid = l.relation"
                    " where not l.granted and c.relname = 'job_history'"
                    " and c.relnamespace = %s::regnamespace",
                    [f'"{db.schema}"'],
                )
                == 1
            ),
            within=10,
        )
        assert db.one("select {schema}.retry_dead(7)") == 7
        locker.rollback()
    job = await asyncio.wait_for(reading, 10)
    assert (job["id"], job["state"], job["args"]) == (7, "available", {"n": 1})


async def test_get_job_finds_each_job_wherever_it_is_while_a_worker_finishes_them(
    client: Conveyor, registry: Registry, db: DB, start_worker: object
) -> None:
    """Jobs move from jobs to job_history (and the failing ones to dead_jobs) under a real
    worker while every one of them is read again and again: none is ever missing."""

    @registry.task(max_attempts=1)
    async def work(n: int) -> int:
        if n % 5 == 0:
            raise RuntimeError("every fifth fails")
        return n

    ids = await client.enqueue_many([JobRequest(work, {"n": n}) for n in range(200)])
    seen: dict[int, set[str]] = {job_id: set() for job_id in ids}
    passes = 0

    async def read_all() -> None:
        nonlocal passes
        while True:
            unfinished = db.one("select count(*) from {schema}.jobs")
            for job_id in ids:
                seen[job_id].add((await client.get_job(job_id))["state"])
            passes += 1
            if unfinished == 0:
                return

    async with start_worker(concurrency=8):  # type: ignore[operator]
        reader = asyncio.create_task(read_all())
        await asyncio.wait_for(reader, 60)
    assert passes >= 2  # read while the worker ran, and once after
    finals = {job_id: (await client.get_job(job_id))["state"] for job_id in ids}
    assert finals == {job_id: "dead" if n % 5 == 0 else "completed" for n, job_id in enumerate(ids)}
    assert all(states <= {"available", "running", "completed", "dead"} for states in seen.values())
