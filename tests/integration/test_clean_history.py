"""Conveyor.clean_history against a real PostgreSQL: what goes and what stays, batches, a day
retention is copying, bad input, and a clean running beside a worker that acks meanwhile."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor import Conveyor, FrozenClock, Registry
from conveyor.errors import InvalidOptionError, UnknownQueueError
from conveyor.queue import cleaning
from conveyor.queue.enqueue import JobRequest

from ..helpers import DB, wait_until
from .tables import bury, finish


@pytest.fixture
def tasks(registry: Registry) -> None:
    @registry.task
    async def noop(n: int = 0) -> None:
        pass

    @registry.task(queue="emails")
    async def send(n: int = 0) -> None:
        pass


def run_log(db: DB) -> list[tuple[Any, ...]]:
    return db.all("select id, state, queue, task, error from {schema}.job_runs order by id")


async def test_clean_moves_what_finished_before_the_grace_to_the_run_log(
    database_url: str, schema: str, registry: Registry, tasks: None, db: DB
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    async with Conveyor(database_url, schema=schema, registry=registry, clock=FrozenClock(now)) as client:
        await client.create_queue("emails")
        old = await client.enqueue_many([JobRequest("noop", {"n": n}) for n in range(6)])
        mail = await client.enqueue_many([JobRequest("send", {"n": n}) for n in range(4)])
        fresh = await client.enqueue("noop", {"n": 9})
        live = await client.enqueue("noop", {"n": 10})
        finish(db, old[:3], now - timedelta(days=2))
        finish(db, old[3:5], now - timedelta(days=2), state="cancelled")
        bury(db, [old[5]], now - timedelta(days=3))
        finish(db, mail[:2], now - timedelta(hours=30))
        finish(db, mail[2:], now - timedelta(hours=2))
        finish(db, [fresh], now - timedelta(minutes=10))

        assert await client.clean_history(timedelta(days=1), queue="emails") == 2
        assert [row[0] for row in run_log(db)] == mail[:2]
        assert await client.clean_history(timedelta(days=1), state="cancelled") == 2
        assert await client.clean_history(timedelta(days=1)) == 3
        assert await client.clean_history(timedelta(days=1)) == 0
        # Dead jobs only when asked for, by when they died.
        assert db.one("select count(*) from {schema}.dead_jobs") == 1
        assert await client.clean_history(timedelta(days=4), state="dead") == 0
        assert await client.clean_history(timedelta(days=1), state="dead") == 1
        assert sorted(row[0] for row in db.all("select id from {schema}.job_history")) == [*mail[2:], fresh]
        assert {row[0]: row[1:] for row in run_log(db)} == {
            **{i: ("completed", "default", "noop", None) for i in old[:3]},
            **{i: ("cancelled", "default", "noop", None) for i in old[3:5]},
            old[5]: ("dead", "default", "noop", "ValueError: boom"),
            **{i: ("completed", "emails", "send", None) for i in mail[:2]},
        }
        # A grace of nothing (or seconds) takes everything finished so far; live jobs stay.
        assert await client.clean_history(0) == 3
        assert db.one("select count(*) from {schema}.job_history") == 0
        assert db.all("select id from {schema}.jobs") == [(live,)]
        assert await client.clean_history(60.0) == 0


async def test_clean_goes_in_batches_and_stops_when_its_time_is_spent(
    client: Conveyor, tasks: None, db: DB
) -> None:
    ids = await client.enqueue_many([JobRequest("noop", {"n": n}) for n in range(230)])
    base = datetime.now(UTC) - timedelta(hours=5)
    for n in range(0, 230, 10):
        finish(db, ids[n : n + 10], base + timedelta(seconds=n))  # ten at each time
    calls: list[int] = []
    real = client.db.transaction

    def counted() -> Any:
        calls.append(1)
        return real()

    client.db.transaction = counted  # type: ignore[method-assign]
    # 25 a batch: a batch ends on a whole time (its ties go with it), so 30 rows each.
    moved = await cleaning.clean_history(
        client.db, timedelta(hours=1), queue="default", state=None, now=None, batch=25
    )
    assert moved == 230
    assert len(calls) == 8  # 7 full batches and the short last one
    assert db.one("select count(*) from {schema}.job_runs") == 230

    more = await client.enqueue_many([JobRequest("noop", {"n": n}) for n in range(100)])
    finish(db, more, base)
    calls.clear()
    moved = await cleaning.clean_history(
        client.db, timedelta(hours=1), queue=None, state=None, now=None, batch=10, budget=0
    )
    assert (moved, len(calls)) == (100, 1)  # one batch (its ties all go), then the budget is spent


async def test_clean_leaves_a_day_retention_is_copying_to_it(client: Conveyor, tasks: None, db: DB) -> None:
    day = (datetime.now(UTC) - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
    ids = await client.enqueue_many([JobRequest("noop", {"n": n}) for n in range(4)])
    finish(db, ids[:2], day)
    finish(db, ids[2:], day - timedelta(days=2))  # in the default partition: no day of its own
    partition = db.one(
        "select tableoid::regclass::text from {schema}.job_history where id = %s", [ids[0]]
    ).split(".")[-1]
    assert partition == f"job_history_{day:%Y%m%d}"
    db.all("insert into {schema}.partition_copies (partition, copied_to) values (%s, -1)", [partition])
    assert await client.clean_history(timedelta(minutes=1)) == 2
    assert sorted(row[0] for row in db.all("select id from {schema}.job_history")) == ids[:2]


async def test_bad_cleans_are_refused_and_change_nothing(client: Conveyor, tasks: None, db: DB) -> None:
    job = await client.enqueue("noop", {})
    finish(db, [job], datetime.now(UTC) - timedelta(days=3))
    for older_than, options, error, message in [
        (timedelta(seconds=-1), {}, InvalidOptionError, "older_than must not be negative"),
        ("1d", {}, InvalidOptionError, "older_than must be a timedelta or seconds"),
        (timedelta(days=1), {"state": "running"}, InvalidOptionError, "unknown state 'running'"),
        (timedelta(days=1), {"queue": "nowhere"}, UnknownQueueError, "no queue named 'nowhere'"),
        (timedelta(days=1), {"queue": "bad name!"}, InvalidOptionError, "is not allowed"),
    ]:
        with pytest.raises(error, match=message):
            await client.clean_history(older_than, **options)  # type: ignore[arg-type]
    assert db.one("select count(*) from {schema}.job_history") == 1


async def test_a_clean_beside_a_working_worker_loses_and_repeats_nothing(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    gate = asyncio.Semaphore(0)

    @registry.task
    async def step(n: int) -> int:
        await gate.acquire()
        return n

    ids = await client.enqueue_many([JobRequest("step", {"n": n}) for n in range(1500)])
    cleaned = []
    async with start_worker(concurrency=10):
        while db.one("select count(*) from {schema}.jobs") > 0:
            for _ in range(300):
                gate.release()
            # Wait until some of them are old enough for the counting step (it stays a
            # second behind now), so the clean below has counted rows to take.
            await wait_until(
                lambda: (
                    db.one(
                        "select count(*) from {schema}.job_history where finished_at < now() - interval '1.2 s'"
                    )
                    > 0
                ),
                within=20,
            )
            # Cleans while the worker acks: small batches, each under the retention lock.
            cleaned.append(
                await cleaning.clean_history(
                    client.db, timedelta(0), queue=None, state=None, now=None, batch=40
                )
            )
        await wait_until(lambda: db.one("select count(*) from {schema}.jobs") == 0)
    among_acks = list(cleaned)

    async def cleaned_all() -> bool:
        # Only jobs the metrics have counted go: the last ones wait for a count (the
        # counting step stays a second behind now), which each clean runs first.
        cleaned.append(await client.clean_history(0))
        return sum(cleaned) >= 1500

    await wait_until(cleaned_all, interval=0.2)
    assert sum(cleaned) == 1500
    # Every job cleaned was counted first, once.
    assert (
        db.one("select total from {schema}.metric_totals where event = 'completed' and task = 'step'") == 1500
    )
    assert sum(1 for n in among_acks if n) >= 3  # the cleans really ran among the acks
    assert db.one("select count(*) from {schema}.job_history") == 0
    assert db.all("select count(*), count(distinct id), min(state), max(state) from {schema}.job_runs") == [
        (1500, 1500, "completed", "completed")
    ]
    assert sorted(row[0] for row in db.all("select id from {schema}.job_runs")) == ids


async def test_a_clean_right_after_jobs_finish_takes_only_counted_ones_and_every_one_is_counted(
    client: Conveyor, tasks: None, db: DB, start_worker: Any
) -> None:
    ids = await client.enqueue_many([JobRequest("noop", {"n": n}) for n in range(50)])
    async with start_worker(concurrency=10):
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 50)
    # At once: the jobs finished within the counting step's settle, so none may go yet
    # (before, they went to the run log uncounted and /metrics never counted them).
    await client.clean_history(0)
    mark = db.one("select counted_to from {schema}.metric_mark")
    assert db.one("select count(*) from {schema}.job_runs where finished_at >= %s", [mark]) == 0
    moved = [0]

    async def cleaned_all() -> bool:
        moved[0] += await client.clean_history(0)
        return db.one("select count(*) from {schema}.job_history") == 0

    await wait_until(cleaned_all, interval=0.2)
    assert sorted(row[0] for row in db.all("select id from {schema}.job_runs")) == ids
    assert (
        db.one("select total from {schema}.metric_totals where event = 'completed' and task = 'noop'") == 50
    )
