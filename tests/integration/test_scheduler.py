"""The scheduler against real PostgreSQL, driven tick by tick with a pinned clock.

Every test builds its schedulers in-process (``Scheduler(..., clock=FrozenClock(...))``),
moves the clock and calls ``tick()`` (or ``fire_due()`` when a test forces two leaders),
then checks the rows: ``schedule_fires`` (fire time, kind, job) and the jobs enqueued.
Nothing sleeps: time moves only when the test moves it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor import Conveyor, FrozenClock, Registry
from conveyor.queue.leader import Elector
from conveyor.queue.scheduler import Scheduler, SchedulerConfig

from ..helpers import DB

# A whole minute plus 30 s, in the past (so a worker with the database's clock could run
# the jobs fired): every-minute schedules fire at START + 30 s, + 90 s, ...
START = datetime(2025, 6, 2, 9, 0, 30, tzinfo=UTC)


def at(minute: int, second: float = 0.0) -> datetime:
    """9:MM:SS on START's day."""
    return START.replace(second=0) + timedelta(minutes=minute, seconds=second)


@asynccontextmanager
async def running_scheduler(
    database_url: str, schema: str, registry: Registry, clock: FrozenClock, **config: Any
) -> AsyncIterator[Scheduler]:
    scheduler = Scheduler(
        database_url, schema=schema, registry=registry, clock=clock, config=SchedulerConfig(**config)
    )
    await scheduler.db.open()
    try:
        yield scheduler
    finally:
        await scheduler.db.close()


def fires(db: DB, name: str) -> list[tuple[datetime, str, datetime | None, bool]]:
    """(fire_time, kind, window_end, has a job) of each fire of a schedule, oldest first."""
    return db.all(
        "select fire_time, kind, window_end, job_id is not null from {schema}.schedule_fires"
        " where schedule = %s order by fire_time, id",
        [name],
    )


def fired_jobs(db: DB, name: str) -> list[tuple[datetime, str, Any, datetime]]:
    """(fire_time, task, args, run_at) of each job a schedule's fires enqueued."""
    return db.all(
        "select f.fire_time, j.task, j.args, j.run_at from {schema}.schedule_fires f"
        " join {schema}.jobs j on j.id = f.job_id where f.schedule = %s order by f.fire_time, f.id",
        [name],
    )


def schedule_row(db: DB, name: str) -> tuple[Any, ...]:
    """(paused, next_fire_at, last_fire_at, error)."""
    return db.one(
        "select paused, next_fire_at, last_fire_at, error from {schema}.schedules where name = %s", [name]
    )


def job_count(db: DB) -> int:
    return int(db.one("select count(*) from {schema}.jobs"))


@pytest.fixture
def report_task(registry: Registry) -> Any:
    @registry.task
    def report(what: str = "") -> str:
        return what

    return report


# -- firing on time, late, and after a gap --------------------------------------------------


async def test_a_new_schedule_fires_once_at_each_fire_time_on_time(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    clock = FrozenClock(START)
    await client.create_schedule("minutely", "* * * * *", report_task, {"what": "sales"})
    async with running_scheduler(database_url, schema, registry, clock) as scheduler:
        await scheduler.tick()  # a new schedule owes nothing: it learns its next fire time
        assert fires(db, "minutely") == []
        assert schedule_row(db, "minutely") == (False, at(1), None, None)

        clock.set(at(1, 0.25))
        await scheduler.tick()
        await scheduler.tick()  # the same moment again fires nothing more
        clock.set(at(2, 0.5))
        await scheduler.tick()

    assert fires(db, "minutely") == [(at(1), "on_time", None, True), (at(2), "on_time", None, True)]
    # The job is the schedule's task and arguments, due when the scheduler fired it.
    assert fired_jobs(db, "minutely") == [
        (at(1), "report", {"what": "sales"}, at(1, 0.25)),
        (at(2), "report", {"what": "sales"}, at(2, 0.5)),
    ]
    assert job_count(db) == 2
    assert schedule_row(db, "minutely") == (False, at(3), at(2), None)


async def test_late_fires_within_the_on_time_window_fire_one_by_one(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    clock = FrozenClock(START)
    await client.create_schedule("minutely", "* * * * *", report_task)
    async with running_scheduler(database_url, schema, registry, clock, on_time_window=300) as scheduler:
        await scheduler.tick()
        # No tick for 3.5 minutes (a leader hand-over, say): 9:01, 9:02 and 9:03 are owed,
        # all within the 300 s window, and 9:04 is due 0.5 s ago.
        clock.set(at(4, 0.5))
        await scheduler.tick()

    assert fires(db, "minutely") == [
        (at(1), "late", None, True),
        (at(2), "late", None, True),
        (at(3), "late", None, True),
        (at(4), "on_time", None, True),
    ]
    assert [run_at for *_, run_at in fired_jobs(db, "minutely")] == [at(4, 0.5)] * 4
    assert job_count(db) == 4
    assert schedule_row(db, "minutely") == (False, at(5), at(4), None)


@pytest.mark.parametrize("policy", ["skip", "once"])
async def test_fires_older_than_the_window_follow_the_catch_up_policy(
    database_url: str,
    schema: str,
    registry: Registry,
    client: Conveyor,
    db: DB,
    report_task: Any,
    policy: str,
) -> None:
    clock = FrozenClock(START)
    await client.create_schedule("minutely", "* * * * *", report_task, catch_up=policy)
    async with running_scheduler(database_url, schema, registry, clock, on_time_window=120) as scheduler:
        await scheduler.tick()
        # No scheduler ran from 9:00:30 to 9:10:00.5. The window reaches back to 9:08:00.5:
        # 9:01 to 9:08 were missed; 9:09 (late) and 9:10 (on time) are within it.
        clock.set(at(10, 0.5))
        await scheduler.tick()
        await scheduler.tick()

    window_start = at(8, 0.5)
    missed = (
        (at(1), "skipped", window_start, False)
        if policy == "skip"
        else (at(1), "catch_up", window_start, True)
    )
    assert fires(db, "minutely") == [missed, (at(9), "late", None, True), (at(10), "on_time", None, True)]
    assert job_count(db) == (2 if policy == "skip" else 3)
    assert schedule_row(db, "minutely") == (False, at(11), at(10), None)


# -- pause, resume, manual trigger --------------------------------------------------------


@pytest.mark.parametrize("policy", ["skip", "once"])
async def test_a_paused_schedule_does_not_fire_and_resumes_from_its_next_fire_time(
    database_url: str,
    schema: str,
    registry: Registry,
    client: Conveyor,
    db: DB,
    report_task: Any,
    policy: str,
) -> None:
    clock = FrozenClock(START)
    await client.create_schedule("paused", "* * * * *", report_task, {"what": "p"}, catch_up=policy)
    await client.create_schedule("running", "* * * * *", report_task, {"what": "r"})
    async with running_scheduler(database_url, schema, registry, clock) as scheduler:
        await scheduler.tick()
        clock.set(at(1, 0.25))
        await scheduler.tick()
        assert fires(db, "paused") == [(at(1), "on_time", None, True)]

        await client.pause_schedule("paused")
        assert schedule_row(db, "paused")[0] is True
        for minute in range(2, 6):  # 9:02 to 9:05 pass while it is paused
            clock.set(at(minute, 0.25))
            await scheduler.tick()
        assert fires(db, "paused") == [(at(1), "on_time", None, True)]
        assert len(fires(db, "running")) == 5  # a paused schedule holds nobody up

        clock.set(at(5, 30))
        await client.resume_schedule("paused")
        assert schedule_row(db, "paused")[:2] == (False, at(2))  # still owes from 9:02
        await scheduler.tick()
        after_resume = fires(db, "paused")
        assert schedule_row(db, "paused")[1] == at(6)

        clock.set(at(6, 0.25))
        await scheduler.tick()

    if policy == "once":
        # One job for everything missed while paused, at the first fire time it missed.
        assert after_resume == [(at(1), "on_time", None, True), (at(2), "catch_up", at(5, 30), True)]
    else:
        # No job, but the skipped window is on record: nothing is skipped silently.
        assert after_resume == [(at(1), "on_time", None, True), (at(2), "skipped", at(5, 30), False)]
    assert fires(db, "paused") == [*after_resume, (at(6), "on_time", None, True)]
    jobs = sum(1 for *_, has_job in after_resume if has_job) + 1
    assert db.one("select count(*) from {schema}.jobs where args->>'what' = 'p'") == jobs


async def test_resuming_a_schedule_that_is_not_paused_changes_nothing(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    clock = FrozenClock(START)
    await client.create_schedule("minutely", "* * * * *", report_task)
    async with running_scheduler(database_url, schema, registry, clock) as scheduler:
        await scheduler.tick()
        clock.set(at(1, 0.25))
        await scheduler.tick()
        await client.resume_schedule("minutely")
        assert schedule_row(db, "minutely") == (False, at(2), at(1), None)
        await scheduler.tick()
    assert fires(db, "minutely") == [(at(1), "on_time", None, True)]


async def test_manual_trigger_enqueues_now_without_moving_the_cadence(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    clock = FrozenClock(START)
    await client.create_schedule("hourly", "0 * * * *", report_task, {"what": "h"})
    async with running_scheduler(database_url, schema, registry, clock) as scheduler:
        await scheduler.tick()
        before = schedule_row(db, "hourly")
        assert before == (False, at(60), None, None)

        first = await client.trigger_schedule("hourly")
        second = await client.trigger_schedule("hourly")  # manual fires may repeat
        assert first != second
        assert schedule_row(db, "hourly") == before
        await scheduler.tick()  # and the scheduler does not take them for fires of its own
        assert schedule_row(db, "hourly") == before

        clock.set(at(60, 0.25))
        await scheduler.tick()

    rows = db.all(
        "select f.kind, f.job_id, j.task, j.args, j.state, j.run_at <= now()"
        " from {schema}.schedule_fires f join {schema}.jobs j on j.id = f.job_id"
        " where f.schedule = 'hourly' order by f.id"
    )
    assert rows == [
        ("manual", first, "report", {"what": "h"}, "available", True),
        ("manual", second, "report", {"what": "h"}, "available", True),
        ("on_time", rows[2][1], "report", {"what": "h"}, "available", True),
    ]
    assert schedule_row(db, "hourly") == (False, at(120), at(60), None)


# -- exactly once, whoever leads --------------------------------------------------------


async def test_two_schedulers_that_both_think_they_lead_fire_each_time_once(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    clock = FrozenClock(START)
    names = [f"every-second-{i}" for i in range(6)]
    for name in names:
        await client.create_schedule(name, "* * * * * *", report_task, {"what": name})

    def expire_lease() -> None:
        db.all("update {schema}.leaders set expires_at = '-infinity' where role = 'scheduler'")

    async with (
        running_scheduler(database_url, schema, registry, clock) as first,
        running_scheduler(database_url, schema, registry, clock) as second,
    ):
        await first.tick()
        for _ in range(3):
            # Each takes the lease from the other in turn, and keeps trusting its own
            # (its trust window is local time): both lead at once.
            clock.advance(1)
            expire_lease()
            await first.tick()
            expire_lease()
            await second.tick()
            assert first.elector.is_leader
            assert second.elector.is_leader
        for _ in range(3):
            clock.advance(1)
            reports = await asyncio.gather(first.fire_due(), second.fire_due())
            assert sum(r.fired for r in reports) == len(names)

        # A leader acting on what it read before the other's commit (here: the bookkeeping
        # set back by two fire times) finds those fire times taken and enqueues nothing.
        before = job_count(db)
        db.all("update {schema}.schedules set next_fire_at = %s", [START + timedelta(seconds=4)])
        report = await second.fire_due()
        assert (report.fired, report.caught_up, report.skipped, report.failed) == (0, 0, 0, 0)
        assert job_count(db) == before

    expected = [START + timedelta(seconds=s) for s in range(1, 7)]
    for name in names:
        assert fires(db, name) == [(t, "on_time", None, True) for t in expected], name
        assert [fire_time for fire_time, *_ in fired_jobs(db, name)] == expected, name
    assert job_count(db) == len(names) * len(expected)


async def test_fire_schedule_in_sql_fires_a_fire_time_once(
    client: Conveyor, db: DB, report_task: Any
) -> None:
    await client.create_schedule("nightly", "0 3 * * *", report_task)
    fire_time = datetime(2025, 6, 2, 3, tzinfo=UTC)
    job_id = db.one("select {schema}.fire_schedule('nightly', %s)", [fire_time])
    assert job_id is not None
    assert db.one("select {schema}.fire_schedule('nightly', %s, 'late')", [fire_time]) is None
    assert db.one("select {schema}.fire_schedule('nightly', %s, 'catch_up')", [fire_time]) is None
    assert fires(db, "nightly") == [(fire_time, "on_time", None, True)]
    assert db.all("select id from {schema}.jobs") == [(job_id,)]


# -- schedules declared in code ---------------------------------------------------------


async def test_declared_schedules_are_written_on_start_keeping_a_pause_and_pruned_only_when_asked(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB
) -> None:
    def report(what: str = "") -> str:
        return what

    old_code = Registry()
    old_code.task(report)
    old_code.schedule("nightly", "0 3 * * *", report, {"what": "v1"}, catch_up="skip")
    old_code.schedule("hourly", "0 * * * *", report, {"what": "hourly"}, queue="reports")
    new_code = Registry()
    new_code.task(report)
    new_code.schedule("nightly", "0 3 * * *", report, {"what": "v2"}, catch_up="skip")
    new_code.schedule("digest", "30 8 * * MON-FRI", report, {"what": "digest"}, timezone="Europe/Paris")
    clock = FrozenClock(START)

    def declared() -> dict[str, tuple[Any, ...]]:
        rows = db.all(
            "select name, cron, timezone, args, queue, catch_up, paused, declared_in_code, next_fire_at"
            " from {schema}.schedules order by name"
        )
        return {row[0]: row[1:] for row in rows}

    async with running_scheduler(database_url, schema, old_code, clock) as scheduler:
        await scheduler.sync_declared()
        await scheduler.tick()
    registry.task(report)  # the client that creates it at run time knows the task too
    await client.create_schedule("by-hand", "*/5 * * * *", "report")
    await client.pause_schedule("nightly")
    nightly_next = datetime(2025, 6, 3, 3, tzinfo=UTC)
    assert declared() == {
        "by-hand": ("*/5 * * * *", "UTC", {}, None, "once", False, False, None),
        "hourly": ("0 * * * *", "UTC", {"what": "hourly"}, "reports", "once", False, True, at(60)),
        "nightly": ("0 3 * * *", "UTC", {"what": "v1"}, None, "skip", True, True, nightly_next),
    }
    assert db.one("select count(*) from {schema}.queues where name = 'reports'") == 1

    # A process whose code declares nothing at all (no task modules loaded) leaves them be.
    async with running_scheduler(database_url, schema, Registry(), clock) as scheduler:
        await scheduler.sync_declared()
    assert set(declared()) == {"by-hand", "hourly", "nightly"}

    # The next release: nightly's arguments change, hourly is gone, digest is new. A process
    # running it keeps hourly (another application, or the old release still running, may
    # declare it) until one is told to prune.
    async with running_scheduler(database_url, schema, new_code, clock) as scheduler:
        await scheduler.sync_declared()
    assert set(declared()) == {"by-hand", "digest", "hourly", "nightly"}
    async with running_scheduler(database_url, schema, new_code, clock, prune_declared=True) as scheduler:
        await scheduler.sync_declared()
        assert declared() == {
            "by-hand": ("*/5 * * * *", "UTC", {}, None, "once", False, False, None),
            "digest": (
                "30 8 * * MON-FRI",
                "Europe/Paris",
                {"what": "digest"},
                None,
                "once",
                False,
                True,
                None,
            ),
            # Still paused by the operator; same cron, so its next fire time stands.
            "nightly": ("0 3 * * *", "UTC", {"what": "v2"}, None, "skip", True, True, nightly_next),
        }
        clock.set(datetime(2025, 6, 3, 3, 0, 0, 250000, tzinfo=UTC))
        await scheduler.tick()
    assert fires(db, "nightly") == []  # paused: the new code did not un-pause it


# -- a schedule that cannot fire --------------------------------------------------------


async def test_a_schedule_that_fails_to_fire_records_why_and_stops_without_blocking_others(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    clock = FrozenClock(START)
    # Ordered by name at equal fire times, the broken ones come first.
    await client.create_schedule("a-refused", "* * * * *", report_task, {"what": "refused"})
    await client.create_schedule("b-bad-cron", "* * * * *", report_task)
    await client.create_schedule("c-fine", "* * * * *", report_task, {"what": "fine"})
    # The database refuses a-refused's jobs; b-bad-cron holds a cron written before checks
    # existed (the scheduler cannot compute its fire times).
    db.all(
        """
        create function {schema}.refuse_job() returns trigger language plpgsql as $$
        begin
            raise exception 'jobs of a-refused are refused';
        end $$;
        create trigger refuse_job before insert on {schema}.jobs for each row
        when (new.args ->> 'what' = 'refused') execute function {schema}.refuse_job();
        update {schema}.schedules set cron = '0 61 * * *' where name = 'b-bad-cron';
        """
    )

    async with running_scheduler(database_url, schema, registry, clock) as scheduler:
        await scheduler.tick()
        assert schedule_row(db, "b-bad-cron") == (
            False,
            None,
            None,
            "cron expression '0 61 * * *': hour value 61 is out of range 0-23",
        )
        clock.set(at(1, 0.25))
        await scheduler.tick()
        paused, next_fire_at, last_fire_at, error = schedule_row(db, "a-refused")
        assert (paused, next_fire_at, last_fire_at) == (False, at(1), None)
        assert error is not None
        assert error.startswith("RaiseException: jobs of a-refused are refused"), error
        assert fires(db, "a-refused") == []  # the failed fire left nothing behind

        # Stopped: even once the database would take its jobs, it waits for an operator.
        db.all("drop trigger refuse_job on {schema}.jobs")
        clock.set(at(2, 0.25))
        await scheduler.tick()
        assert fires(db, "a-refused") == []
        assert fires(db, "b-bad-cron") == []
        assert fires(db, "c-fine") == [(at(1), "on_time", None, True), (at(2), "on_time", None, True)]

        # Redefining it clears the error; it fires again from its next fire time.
        await client.create_schedule("a-refused", "* * * * *", report_task, {"what": "again"}, replace=True)
        assert schedule_row(db, "a-refused")[3] is None
        await scheduler.tick()
        clock.set(at(3, 0.25))
        await scheduler.tick()
    assert fires(db, "a-refused") == [(at(3), "on_time", None, True)]
    assert job_count(db) == 4  # c-fine three times, a-refused once


# -- leader election --------------------------------------------------------------------


@asynccontextmanager
async def two_electors(
    database_url: str, schema: str, clock: FrozenClock
) -> AsyncIterator[tuple[Elector, Elector]]:
    async with running_scheduler(database_url, schema, Registry(), clock) as scheduler:
        yield (
            Elector(scheduler.db, clock, ttl=15, tick=1),
            Elector(scheduler.db, clock, ttl=15, tick=1),
        )


def lease(db: DB) -> tuple[Any, ...]:
    return db.one("select holder, elected_at, expires_at from {schema}.leaders where role = 'scheduler'")


async def test_one_elector_leads_and_the_other_takes_over_when_its_lease_expires(
    database_url: str, schema: str, db: DB
) -> None:
    clock = FrozenClock(START)
    async with two_electors(database_url, schema, clock) as (first, second):
        assert await first.attempt() is True
        assert await second.attempt() is False
        assert (first.is_leader, second.is_leader) == (True, False)
        assert lease(db) == (first.holder, START, START + timedelta(seconds=15))

        clock.advance(10)  # the leader renews: its lease now runs to START + 25 s
        assert await first.attempt() is True
        assert lease(db) == (first.holder, START, START + timedelta(seconds=25))
        clock.advance(14.9)
        assert await second.attempt() is False

        clock.advance(0.2)  # START + 25.1 s: expired
        assert await second.attempt() is True
        assert lease(db) == (second.holder, clock.now(), clock.now() + timedelta(seconds=15))
        # The old leader only learns it lost the lease on its next attempt...
        assert first.is_leader is True
        assert await first.attempt() is False
        # ...and from then on it does not lead.
        assert first.is_leader is False
        assert await second.attempt() is True


async def test_a_leader_that_resigns_hands_over_at_once(database_url: str, schema: str, db: DB) -> None:
    clock = FrozenClock(START)
    async with two_electors(database_url, schema, clock) as (first, second):
        assert await first.attempt() is True
        assert await second.attempt() is False
        await first.resign()
        assert first.is_leader is False
        assert db.one("select count(*) from {schema}.leaders") == 0
        assert await second.attempt() is True  # at the same instant: no wait for expiry
        assert await first.attempt() is False
        assert lease(db)[0] == second.holder


async def test_a_follower_fires_nothing_until_the_leader_resigns(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    clock = FrozenClock(START)
    await client.create_schedule("every-second", "* * * * * *", report_task)
    async with (
        running_scheduler(database_url, schema, registry, clock) as leader,
        running_scheduler(database_url, schema, registry, clock) as follower,
    ):
        await leader.tick()
        for fired_so_far in range(3):
            clock.advance(1)
            await follower.tick()  # first: the schedule is due, but it does not lead
            assert not follower.elector.is_leader
            assert len(fires(db, "every-second")) == fired_so_far
            await leader.tick()
        await leader.elector.resign()
        clock.advance(1)
        await follower.tick()
        assert follower.elector.is_leader
        await leader.tick()
        assert not leader.elector.is_leader
    times = [START + timedelta(seconds=s) for s in range(1, 5)]
    assert fires(db, "every-second") == [(t, "on_time", None, True) for t in times]
    assert job_count(db) == 4


async def test_redefining_a_schedule_owes_no_catch_up_but_resuming_one_does(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    clock = FrozenClock(START)
    await client.create_schedule("hourly", "0 * * * *", report_task, {"what": "x"})
    async with running_scheduler(database_url, schema, registry, clock) as scheduler:
        await scheduler.tick()
        clock.set(at(60, 0.5))  # 10:00 fires
        await scheduler.tick()
        assert [kind for _, kind, _, _ in fires(db, "hourly")] == ["on_time"]

        # Moved to half past at 10:45: 10:30 passed under the new definition, but a deploy
        # that changes a schedule must not fire it on the spot.
        clock.set(at(105))
        await client.create_schedule("hourly", "30 * * * *", report_task, {"what": "x"}, replace=True)
        await scheduler.tick()
        assert [kind for _, kind, _, _ in fires(db, "hourly")] == ["on_time"]
        assert schedule_row(db, "hourly")[1] == at(150)  # next: 11:30

        # Paused over 11:30 and resumed at 11:40: under "once" the missed fire is owed.
        await client.pause_schedule("hourly")
        clock.set(at(160))
        await scheduler.tick()
        await client.resume_schedule("hourly")
        await scheduler.tick()
    assert [(t, kind) for t, kind, _, _ in fires(db, "hourly")] == [
        (at(60), "on_time"),
        (at(150), "catch_up"),
    ]
