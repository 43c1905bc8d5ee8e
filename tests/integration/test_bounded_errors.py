"""A job's errors are bounded (first 3, last 7, a count of the rest) and so are its
graceful hand-backs (from the sixth on they count as attempts)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from conveyor import Backoff, Conveyor, JobContext, Registry
from conveyor.db.database import Database
from conveyor.jobs import Held

from ..helpers import DB, wait_until


def append(db: DB, errors: list[Any], entry: Any) -> list[Any]:
    return list(
        db.one("select {schema}.append_error_v1(%s::jsonb, %s::jsonb)", [_json(errors), _json(entry)])
    )


def _json(value: Any) -> str:
    return json.dumps(value)


def test_errors_keep_the_first_three_the_last_seven_and_count_the_rest(db: DB) -> None:
    errors: list[Any] = []
    for attempt in range(1, 26):
        errors = append(db, errors, {"attempt": attempt, "at": f"t{attempt}", "error": f"e{attempt}"})
        assert len(errors) == min(attempt, 11)
    head, marker, tail = errors[:3], errors[3], errors[4:]
    assert [e["attempt"] for e in head] == [1, 2, 3]
    assert [e["attempt"] for e in tail] == list(range(19, 26))
    assert marker["dropped"] == 15  # attempts 4 to 18
    assert (marker["attempt"], marker["at"]) == (18, "t18")
    assert marker["error"].startswith("15 earlier errors not kept")
    # Ten or fewer are kept as they are.
    assert append(db, [{"attempt": n} for n in range(1, 10)], {"attempt": 10}) == [
        {"attempt": n} for n in range(1, 11)
    ]
    # A job with more errors than that from before the bound is cut down at its next error.
    longer = append(db, [{"attempt": n} for n in range(1, 31)], {"attempt": 31})
    assert [e.get("attempt") for e in longer] == [1, 2, 3, 24, *range(25, 32)]
    assert longer[3]["dropped"] == 21


async def test_a_job_retried_many_times_keeps_a_bounded_errors_list(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task(max_attempts=15, backoff=Backoff.none())
    async def flaky(ctx: JobContext) -> None:
        raise RuntimeError("x" * 10_000 + f" attempt {ctx.attempt}")

    async with Conveyor(database_url, schema=schema, registry=registry) as client:
        job_id = await client.enqueue(flaky)
    async with start_worker():
        await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 1)
    errors = db.one("select errors from {schema}.dead_jobs where id = %s", [job_id])
    assert [e["attempt"] for e in errors] == [1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15]
    assert errors[3]["dropped"] == 5
    assert errors[-1]["error"].endswith("attempt 15")


async def test_hand_backs_after_the_fifth_count_as_attempts(
    database_url: str, schema: str, registry: Registry, db: DB
) -> None:
    @registry.task(max_attempts=2)
    async def long_job() -> None:
        pass

    async with Conveyor(database_url, schema=schema, registry=registry) as client:
        job_id = await client.enqueue(long_job)
    worker = uuid.uuid4()
    seam = Database(database_url, schema)
    await seam.open()
    seen: list[tuple[int, int, str]] = []
    try:
        for _ in range(8):
            [job] = await seam.claim_jobs(
                worker_id=worker,
                queues=["default"],
                limits=[1],
                limit=1,
                lease=timedelta(seconds=30),
                now=None,
            )
            released, dead = await seam.release_jobs([Held.of(job)], worker_id=worker, now=None)
            if dead:
                assert dead == {job_id}
                break
            assert released == {job_id}
            seen.append(db.one("select attempt, handbacks, state from {schema}.jobs where id = %s", [job_id]))
    finally:
        await seam.close()
    # Five free hand-backs (the attempt given back), the sixth counts, the seventh is on the
    # last attempt: the job goes to the dead-letter table instead of coming back forever.
    assert seen == [(0, n, "available") for n in range(1, 6)] + [(1, 6, "available")]
    attempt, errors = db.one("select attempt, errors from {schema}.dead_jobs where id = %s", [job_id])
    assert attempt == 2
    assert [e["counted"] for e in errors] == [False] * 5 + [True, True]
    assert errors[-1]["error"].endswith("on its last attempt, after 5 hand-backs")
