"""Retention: finished work leaves job_history (by whole-day partition drops where it can,
row by row where it must) into the run log, dead jobs follow after dead_keep, the run log
and fire log are trimmed after runs_keep; and the live jobs table never keeps finished jobs.

History rows are written straight into the tables with old finish times, after creating
daily partitions for those days; retention runs with a pinned clock at ``AT``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor import Conveyor, ConveyorError, FrozenClock, JobRequest, Registry
from conveyor.queue.scheduler import Scheduler, SchedulerConfig

from ..helpers import DB, wait_until

AT = datetime(2020, 3, 10, 12, tzinfo=UTC)  # "now" for every retention run here
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
NOTHING = {
    "history partitions dropped": 0,
    "finished jobs moved to the run log": 0,
    "dead jobs moved to the run log": 0,
    "run log partitions dropped": 0,
    "run log rows deleted": 0,
    "fire log rows deleted": 0,
}


@pytest.fixture
async def pinned(database_url: str, schema: str, registry: Registry) -> Any:
    """A client whose clock stands at AT."""
    async with Conveyor(database_url, schema=schema, registry=registry, clock=FrozenClock(AT)) as client:
        yield client


def partitions(db: DB, parent: str) -> list[str]:
    """The daily partitions of a table that exist in this schema, by name."""
    return [
        name
        for (name,) in db.all(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where i.inhparent = %s::regclass and n.nspname = %s and c.relname ~ '_[0-9]{{8}}$'"
            " order by c.relname",
            [f'"{db.schema}".{parent}', db.schema],
        )
    ]


def days(parent: str, first: datetime, count: int) -> list[str]:
    return [f"{parent}_{(first + DAY * n):%Y%m%d}" for n in range(count)]


def ensure_days(db: DB, around: datetime, ahead: int = 3) -> None:
    """Daily partitions of job_history and job_runs from the day before ``around`` to ``ahead`` days after."""
    db.all("select {schema}.ensure_history_partitions(%s, %s)", [ahead, around])


def finished(db: DB, job_id: int, queue: str, finished_at: datetime, *, error: str | None = None) -> None:
    errors = [{"attempt": 1, "error": error}] if error else []
    db.all(
        "insert into {schema}.job_history (id, run_at, enqueued_at, started_at, finished_at, worker_id,"
        " attempt, max_attempts, priority, state, queue, task, args, result, errors)"
        " values (%s, %s, %s, %s, %s, gen_random_uuid(), %s, 5, 2, 'completed', %s, 'report',"
        " '{{\"n\": 1}}', '\"done\"', %s::jsonb)",
        [
            job_id,
            finished_at - HOUR,
            finished_at - HOUR,
            finished_at - timedelta(seconds=2),
            finished_at,
            len(errors) + 1,
            queue,
            json.dumps(errors),
        ],
    )


def dead(db: DB, job_id: int, queue: str, died_at: datetime, error: str) -> None:
    db.all(
        "insert into {schema}.dead_jobs (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts,"
        " priority, queue, task, args, errors)"
        " values (%s, %s, %s, %s, %s, 5, 5, 2, %s, 'report', '{{}}', %s::jsonb)",
        [job_id, died_at - HOUR, died_at - 2 * HOUR, died_at - timedelta(seconds=1), died_at, queue,
         json.dumps([{"attempt": 5, "error": error}])],
    )  # fmt: skip


def run_logged(db: DB, job_id: int, queue: str, finished_at: datetime) -> None:
    db.all(
        "insert into {schema}.job_runs (id, enqueued_at, started_at, finished_at, worker_id, attempt, state,"
        " queue, task, error) values (%s, %s, %s, %s, null, 1, 'completed', %s, 'report', null)",
        [job_id, finished_at - HOUR, finished_at - HOUR, finished_at, queue],
    )


IDS = {
    "job_history": "select id from {schema}.job_history order by id",
    "job_runs": "select id from {schema}.job_runs order by id",
    "dead_jobs": "select id from {schema}.dead_jobs order by id",
}


def ids(db: DB, table: str) -> list[int]:
    return [row[0] for row in db.all(IDS[table])]


def create_queues(db: DB, names: Iterable[str]) -> None:
    for name in names:
        db.all("insert into {schema}.queues (name) values (%s)", [name])


# -- finished jobs ---------------------------------------------------------------------


@pytest.mark.parametrize("via", ["client", "scheduler"])
async def test_whole_old_days_are_dropped_into_the_run_log_and_recent_history_stays(
    database_url: str, schema: str, registry: Registry, pinned: Conveyor, db: DB, via: str
) -> None:
    ensure_days(db, AT - 9 * DAY)  # 29 Feb to 4 Mar
    ensure_days(db, AT - DAY)  # 8 to 12 Mar
    ensure_days(db, AT)  # 9 to 13 Mar
    # 8 March ended 36 h before AT: older than the 24 h kept, as a whole day; 9 March did not.
    old_days = [*days("job_history", datetime(2020, 2, 29, tzinfo=UTC), 5), "job_history_20200308"]
    recent_days = days("job_history", datetime(2020, 3, 9, tzinfo=UTC), 5)
    assert set(old_days + recent_days) <= set(partitions(db, "job_history"))

    for job_id in (1, 2, 3):
        finished(db, job_id, "default", datetime(2020, 3, 1, 10, tzinfo=UTC))
    finished(db, 4, "default", datetime(2020, 3, 3, 23, 59, 59, tzinfo=UTC), error="RuntimeError: once")
    finished(db, 5, "default", datetime(2020, 3, 8, 23, tzinfo=UTC))
    finished(db, 6, "default", datetime(2020, 2, 1, tzinfo=UTC))  # no partition that day: the default one
    finished(db, 7, "default", AT - 23 * HOUR)
    finished(db, 8, "default", AT - 2 * HOUR)
    assert db.one("select count(*) from {schema}.job_history_default") == 1

    if via == "client":
        done = await pinned.apply_retention()
        assert done == {**NOTHING, "history partitions dropped": 6, "finished jobs moved to the run log": 1}
    else:
        scheduler = Scheduler(
            database_url, schema=schema, registry=registry, clock=FrozenClock(AT), config=SchedulerConfig()
        )
        await scheduler.db.open()
        try:
            await scheduler.tick()  # the leader applies retention on its first round
        finally:
            await scheduler.db.close()

    kept = partitions(db, "job_history")
    assert not set(old_days) & set(kept)
    assert set(recent_days) <= set(kept)
    assert ids(db, "job_history") == [7, 8]
    assert db.all(
        "select id, state, queue, task, finished_at, attempt, error from {schema}.job_runs order by id"
    ) == [
        (1, "completed", "default", "report", datetime(2020, 3, 1, 10, tzinfo=UTC), 1, None),
        (2, "completed", "default", "report", datetime(2020, 3, 1, 10, tzinfo=UTC), 1, None),
        (3, "completed", "default", "report", datetime(2020, 3, 1, 10, tzinfo=UTC), 1, None),
        (4, "completed", "default", "report", datetime(2020, 3, 3, 23, 59, 59, tzinfo=UTC), 2, "RuntimeError: once"),
        (5, "completed", "default", "report", datetime(2020, 3, 8, 23, tzinfo=UTC), 1, None),
        (6, "completed", "default", "report", datetime(2020, 2, 1, tzinfo=UTC), 1, None),
    ]  # fmt: skip
    # job_list still shows them, from the run log (without their arguments).
    assert db.all("select id, state, args from {schema}.job_list where id <= 6 order by id") == [
        (n, "completed", None) for n in range(1, 7)
    ]
    assert await pinned.apply_retention() == NOTHING  # nothing left to do


async def test_a_queue_keeping_less_loses_only_its_own_rows(pinned: Conveyor, db: DB) -> None:
    ensure_days(db, AT)
    create_queues(db, ["fast", "slow"])
    await pinned.set_retention("fast", completed_keep=HOUR)
    finished(db, 1, "fast", AT - 3 * HOUR)
    finished(db, 2, "fast", AT - 30 * timedelta(minutes=1))
    finished(db, 3, "slow", AT - 3 * HOUR)
    finished(db, 4, "default", AT - 3 * HOUR)

    assert await pinned.apply_retention() == {**NOTHING, "finished jobs moved to the run log": 1}
    assert ids(db, "job_history") == [2, 3, 4]
    assert db.all("select id, queue from {schema}.job_runs") == [(1, "fast")]


async def test_a_queue_keeping_more_holds_back_the_partition_drop(pinned: Conveyor, db: DB) -> None:
    ensure_days(db, AT - 3 * DAY)
    ensure_days(db, AT)
    create_queues(db, ["slow"])
    await pinned.set_retention("slow", completed_keep=7 * DAY)
    finished(db, 1, "slow", AT - 3 * DAY)
    finished(db, 2, "default", AT - 3 * DAY)  # older than the default 24 h: goes, row by row
    finished(db, 3, "default", AT - 2 * HOUR)

    assert await pinned.apply_retention() == {**NOTHING, "finished jobs moved to the run log": 1}
    assert ids(db, "job_history") == [1, 3]
    assert ids(db, "job_runs") == [2]
    assert "job_history_20200307" in partitions(db, "job_history")


async def test_completed_max_keeps_the_newest_of_that_queue(pinned: Conveyor, db: DB) -> None:
    ensure_days(db, AT)
    create_queues(db, ["capped", "other"])
    await pinned.set_retention("capped", completed_max=3)
    for n in range(5):
        finished(db, 10 + n, "capped", AT - timedelta(minutes=10 - n))  # 10 is the oldest
        finished(db, 20 + n, "other", AT - timedelta(minutes=10 - n))

    assert await pinned.apply_retention() == {**NOTHING, "finished jobs moved to the run log": 2}
    assert ids(db, "job_history") == [12, 13, 14, 20, 21, 22, 23, 24]
    assert ids(db, "job_runs") == [10, 11]


async def test_dead_jobs_older_than_dead_keep_move_to_the_run_log(pinned: Conveyor, db: DB) -> None:
    create_queues(db, ["fast"])
    await pinned.set_retention("fast", dead_keep=DAY)
    dead(db, 1, "default", AT - 8 * DAY, "RuntimeError: too old")
    dead(db, 2, "default", AT - 6 * DAY, "RuntimeError: kept 7 days")
    dead(db, 3, "fast", AT - 2 * DAY, "RuntimeError: fast keeps a day")
    dead(db, 4, "fast", AT - 2 * HOUR, "RuntimeError: recent")

    assert await pinned.apply_retention() == {**NOTHING, "dead jobs moved to the run log": 2}
    assert ids(db, "dead_jobs") == [2, 4]
    assert db.all(
        "select id, state, queue, finished_at, attempt, error from {schema}.job_runs order by id"
    ) == [
        (1, "dead", "default", AT - 8 * DAY, 5, "RuntimeError: too old"),
        (3, "dead", "fast", AT - 2 * DAY, 5, "RuntimeError: fast keeps a day"),
    ]


async def test_the_run_log_and_fire_log_drop_what_is_older_than_runs_keep(pinned: Conveyor, db: DB) -> None:
    ensure_days(db, AT - 100 * DAY, ahead=1)  # 30 Nov to 2 Dec 2019
    ensure_days(db, AT - 10 * DAY)
    create_queues(db, ["fast"])
    await pinned.set_retention("fast", runs_keep=5 * DAY)
    run_logged(db, 1, "default", AT - 100 * DAY)  # in a partition of its own day
    run_logged(db, 2, "default", AT - 95 * DAY)  # no partition that day: the default one
    run_logged(db, 3, "default", AT - 10 * DAY)
    run_logged(db, 4, "fast", AT - 10 * DAY)  # fast keeps its run log 5 days
    run_logged(db, 5, "fast", AT - 2 * DAY)
    db.all(
        "insert into {schema}.schedule_fires (schedule, fire_time, kind, job_id, fired_at)"
        " values ('nightly', %s, 'on_time', 1, %s), ('nightly', %s, 'on_time', 3, %s)",
        [AT - 100 * DAY, AT - 100 * DAY, AT - 10 * DAY, AT - 10 * DAY],
    )
    old_days = days("job_runs", datetime(2019, 11, 30, tzinfo=UTC), 3)
    assert set(old_days) <= set(partitions(db, "job_runs"))

    assert await pinned.apply_retention() == {
        **NOTHING,
        # job_history's empty days made alongside go too: 3 of late 2019, 5 around 1 March.
        "history partitions dropped": 8,
        "run log partitions dropped": 3,
        "run log rows deleted": 2,
        "fire log rows deleted": 1,
    }
    assert not set(old_days) & set(partitions(db, "job_runs"))
    assert ids(db, "job_runs") == [3, 5]
    assert db.all("select fire_time from {schema}.schedule_fires") == [(AT - 10 * DAY,)]


async def test_set_retention_refuses_unknown_queues_and_negative_values(pinned: Conveyor, db: DB) -> None:
    await pinned.set_retention("default", completed_keep=2 * HOUR)
    before = await pinned.retention()
    assert before[0] == {
        "queue": "*",
        "completed_keep": 24 * HOUR,
        "completed_max": None,
        "dead_keep": 7 * DAY,
        "runs_keep": 90 * DAY,
    }

    with pytest.raises(ConveyorError) as unknown:
        await pinned.set_retention("nope", completed_keep=HOUR)
    assert str(unknown.value) == "unknown queue 'nope'"
    for option in (
        {"completed_keep": -HOUR},
        {"completed_max": -1},
        {"dead_keep": -DAY},
        {"runs_keep": -DAY},
        {"completed_keep": HOUR, "runs_keep": -timedelta(seconds=1)},
    ):
        for queue in ("*", "default"):
            with pytest.raises(ConveyorError) as negative:
                await pinned.set_retention(queue, **option)
            assert str(negative.value) == "retention must not be negative", (queue, option)
    assert await pinned.retention() == before
    assert db.one("select count(*) from {schema}.retention where queue = 'nope'") == 0


# -- the live table --------------------------------------------------------------------


async def test_the_live_jobs_table_does_not_grow_with_finished_jobs(
    client: Conveyor, registry: Registry, db: DB, schema: str, start_worker: Any
) -> None:
    """Three rounds of 3,000 no-op jobs, with VACUUM between rounds: after each round the live
    table is empty, and its size does not grow round over round.

    Margin: a round's peak may exceed the first round's by up to 50%. Identical rounds are
    not identical page for page: each claim writes a new row version, and where it lands
    depends on when pages get pruned, which depends on timing (measured on PostgreSQL 15:
    54 to 58 pages per round; 88 every round on 18, whose COPY extends the file in bulk; more spread on a loaded
    machine). A table that kept finished jobs would at least double by the second round."""

    @registry.task
    async def noop() -> None:
        pass

    def heap_pages() -> int:
        return int(db.one("select pg_relation_size(%s::regclass) / 8192", [f'"{schema}".jobs']))

    per_round, peaks, after_vacuum = 3000, [], []
    for round_number in range(1, 4):
        await client.enqueue_many([JobRequest(noop) for _ in range(per_round)])
        async with start_worker(concurrency=20):
            await wait_until(
                lambda n=round_number: db.one("select count(*) from {schema}.job_history") == n * per_round,
                within=30,
            )
        assert db.one("select count(*) from {schema}.jobs") == 0
        peaks.append(heap_pages())
        db.all("vacuum {schema}.jobs")
        after_vacuum.append(heap_pages())

    assert peaks[0] > 0
    assert all(peak <= peaks[0] * 1.5 for peak in peaks[1:]), peaks
    assert all(size <= peaks[0] for size in after_vacuum), after_vacuum
    assert db.one("select count(*) from {schema}.job_history where state = 'completed'") == 3 * per_round
