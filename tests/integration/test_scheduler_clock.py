"""The scheduler across the daylight-saving transitions of 2026, with its clock injected.

An in-process scheduler with a FrozenClock is walked through the year from fire to fire:
the clock is set to the earliest ``next_fire_at`` in ``schedules`` and ticked, so every fire
is on time. Then ``schedule_fires`` and ``jobs`` must hold exactly one on-time fire and one
job for each day, at the fire times the documented rules give (worked out here from the
calendar, and checked again with PostgreSQL's own time zone data).

A second test ticks the clock at a steady 15 minutes through each New York transition
night, the way a real scheduler sees time, with one schedule pinned to an hour and one
following real time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from conveyor import Conveyor, FrozenClock, Registry
from conveyor.queue.scheduler import Scheduler, SchedulerConfig

from ..helpers import DB

NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
SPRING_NY, AUTUMN_NY = date(2026, 3, 8), date(2026, 11, 1)
DAYS_2026 = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def report_task(registry: Registry) -> Any:
    @registry.task
    def report(city: str) -> str:
        return city

    return report


@asynccontextmanager
async def scheduler_at(
    database_url: str, schema: str, registry: Registry, clock: FrozenClock
) -> AsyncIterator[Scheduler]:
    scheduler = Scheduler(
        database_url, schema=schema, registry=registry, clock=clock, config=SchedulerConfig()
    )
    await scheduler.db.open()
    try:
        yield scheduler
    finally:
        await scheduler.db.close()


def _wall(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The first instant the zone's clocks show ``wall`` on ``day`` (the wall time must exist)."""
    moment = datetime.combine(day, wall, zone).astimezone(UTC)
    assert moment.astimezone(zone).replace(tzinfo=None) == datetime.combine(day, wall)
    return moment


def _expected_sydney_0800() -> list[datetime]:
    return [_wall(day, time(8), SYDNEY) for day in DAYS_2026]


def _expected_new_york_0230() -> list[datetime]:
    # 02:30 does not exist on 8 March: it fires at 03:30 EDT (07:30 UTC).
    return [
        utc(2026, 3, 8, 7, 30) if day == SPRING_NY else _wall(day, time(2, 30), NEW_YORK) for day in DAYS_2026
    ]


def _expected_new_york_0130() -> list[datetime]:
    # 01:30 happens twice on 1 November: it fires the first time, 01:30 EDT (05:30 UTC).
    return [
        utc(2026, 11, 1, 5, 30) if day == AUTUMN_NY else _wall(day, time(1, 30), NEW_YORK)
        for day in DAYS_2026
    ]


def _fires(db: DB, name: str) -> list[tuple[Any, ...]]:
    """(fire_time, kind, window_end, fired_at, job_id) of a schedule's fires, in order."""
    return db.all(
        "select fire_time, kind, window_end, fired_at, job_id from {schema}.schedule_fires"
        " where schedule = %s order by fire_time, id",
        [name],
    )


def _check_fires_and_jobs(db: DB, name: str, expected: list[datetime], city: str) -> None:
    fires = _fires(db, name)
    assert [f[0] for f in fires] == expected
    assert Counter(f[1] for f in fires) == {"on_time": len(expected)}
    assert all(window_end is None for _, _, window_end, _, _ in fires)
    assert all(fired_at == fire_time for fire_time, _, _, fired_at, _ in fires)
    # Each fire enqueued exactly one job, the schedule's task with its arguments, due when fired.
    jobs = db.all(
        "select f.fire_time, j.task, j.args, j.run_at from {schema}.schedule_fires f"
        " join {schema}.jobs j on j.id = f.job_id where f.schedule = %s order by f.fire_time",
        [name],
    )
    assert jobs == [(t, "report", {"city": city}, t) for t in expected]
    assert len({f[4] for f in fires}) == len(expected)
    assert db.one(
        "select count(*) from {schema}.jobs where args = %s::jsonb", [f'{{"city": "{city}"}}']
    ) == len(expected)


async def _walk_fire_to_fire(scheduler: Scheduler, clock: FrozenClock, db: DB, year: int) -> int:
    """Set the clock to the earliest next fire time that falls in ``year`` in its schedule's
    time zone, and tick, until there is none; returns the number of ticks."""
    due_in_year = db.compose(
        "select min(next_fire_at), count(*) filter (where next_fire_at is null) from {schema}.schedules"
        " where next_fire_at is null or extract(year from next_fire_at at time zone timezone) = %s"
    )
    ticks = 0
    async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as conn:
        while True:
            cursor = await conn.execute(due_in_year, [year])
            due, unset = await cursor.fetchone() or (None, 0)
            assert unset == 0, "every schedule has a next fire time after a tick"
            if due is None:
                return ticks
            assert due > clock.now(), "next_fire_at must move forward"
            clock.set(due)
            await scheduler.tick()
            ticks += 1


async def test_a_year_of_daily_fires_across_both_transitions_in_sydney_and_new_york(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    # Declared in code (written by sync_declared) and created at run time, both.
    registry.schedule(
        "sydney-0800", "0 8 * * *", report_task, {"city": "sydney"}, timezone="Australia/Sydney"
    )
    await client.create_schedule(
        "new-york-0230", "30 2 * * *", report_task, {"city": "ny-0230"}, timezone="America/New_York"
    )
    await client.create_schedule(
        "new-york-0130", "30 1 * * *", report_task, {"city": "ny-0130"}, timezone="America/New_York"
    )
    # Noon UTC on 31 December 2025: after New York's 02:30 and 01:30 that day, and before
    # 08:00 on 1 January 2026 in Sydney (21:00 UTC).
    clock = FrozenClock(utc(2025, 12, 31, 12))
    async with scheduler_at(database_url, schema, registry, clock) as scheduler:
        await scheduler.sync_declared()
        await scheduler.tick()  # new schedules owe nothing: they learn their next fire time
        assert db.all("select name, next_fire_at from {schema}.schedules order by name") == [
            ("new-york-0130", utc(2026, 1, 1, 6, 30)),
            ("new-york-0230", utc(2026, 1, 1, 7, 30)),
            ("sydney-0800", utc(2025, 12, 31, 21)),
        ]
        assert db.one("select count(*) from {schema}.schedule_fires") == 0
        ticks = await _walk_fire_to_fire(scheduler, clock, db, 2026)

    assert ticks == 3 * 365  # no two of these fire at the same instant
    _check_fires_and_jobs(db, "sydney-0800", _expected_sydney_0800(), "sydney")
    _check_fires_and_jobs(db, "new-york-0230", _expected_new_york_0230(), "ny-0230")
    _check_fires_and_jobs(db, "new-york-0130", _expected_new_york_0130(), "ny-0130")
    assert db.one("select count(*) from {schema}.jobs") == 3 * 365

    # PostgreSQL's own reading of the local times: 08:00 every day in Sydney (21:00 or
    # 22:00 UTC); 02:30 in New York except 03:30 on 8 March; 01:30 every day.
    local = db.all(
        "select schedule, (fire_time at time zone s.timezone)::time as wall, count(*),"
        " count(distinct (fire_time at time zone s.timezone)::date)"
        " from {schema}.schedule_fires f join {schema}.schedules s on s.name = f.schedule"
        " group by schedule, wall order by schedule, wall"
    )
    assert local == [
        ("new-york-0130", time(1, 30), 365, 365),
        ("new-york-0230", time(2, 30), 364, 364),
        ("new-york-0230", time(3, 30), 1, 1),
        ("sydney-0800", time(8), 365, 365),
    ]
    assert db.all(
        "select extract(hour from fire_time at time zone 'UTC')::int as h, count(*) from {schema}.schedule_fires"
        " where schedule = 'sydney-0800' group by h order by h"
    ) == [(21, 94 + 89), (22, 182)]
    # The transition days, instant by instant.
    on_day = (
        "select fire_time from {schema}.schedule_fires where schedule = %s"
        " and (fire_time at time zone 'America/New_York')::date = %s"
    )
    assert db.all(on_day, ["new-york-0230", SPRING_NY]) == [(utc(2026, 3, 8, 7, 30),)]
    assert db.all(on_day, ["new-york-0130", AUTUMN_NY]) == [(utc(2026, 11, 1, 5, 30),)]
    # And each schedule waits for its first fire of 2027.
    assert db.all("select name, next_fire_at, last_fire_at from {schema}.schedules order by name") == [
        ("new-york-0130", utc(2027, 1, 1, 6, 30), utc(2026, 12, 31, 6, 30)),
        ("new-york-0230", utc(2027, 1, 1, 7, 30), utc(2026, 12, 31, 7, 30)),
        ("sydney-0800", utc(2026, 12, 31, 21), utc(2026, 12, 30, 21)),  # 1 January 2027, 08:00 AEDT
    ]


def _half_hours(start: datetime, count: int) -> list[datetime]:
    return [start + timedelta(minutes=30 * n) for n in range(1, count + 1)]


@pytest.mark.parametrize(
    ("night_start", "half_hourly_local", "pinned"),
    [
        pytest.param(
            utc(2026, 3, 8, 4),  # 23:00 EST on 7 March; at 02:00 EST clocks go to 03:00 EDT
            # Following real time: nothing at 02:xx (there is no such time).
            "23:30 EST, 00:00 EST, 00:30 EST, 01:00 EST, 01:30 EST, 03:00 EDT, 03:30 EDT, 04:00 EDT,"
            " 04:30 EDT, 05:00 EDT, 05:30 EDT, 06:00 EDT",
            # "30 1,2": 01:30 EST, and 02:30 (which does not exist) at 03:30 EDT.
            [utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 30)],
            id="spring-forward",
        ),
        pytest.param(
            utc(2026, 11, 1, 3),  # 23:00 EDT on 31 October; at 02:00 EDT clocks go to 01:00 EST
            # Following real time: 01:00 and 01:30 in both passes of the hour.
            "23:30 EDT, 00:00 EDT, 00:30 EDT, 01:00 EDT, 01:30 EDT, 01:00 EST, 01:30 EST, 02:00 EST,"
            " 02:30 EST, 03:00 EST, 03:30 EST, 04:00 EST",
            # "30 1,2": 01:30 EDT once (not again at 01:30 EST), then 02:30 EST.
            [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 7, 30)],
            id="fall-back",
        ),
    ],
)
async def test_a_steady_clock_through_a_transition_night_in_new_york(
    database_url: str,
    schema: str,
    registry: Registry,
    client: Conveyor,
    db: DB,
    report_task: Any,
    night_start: datetime,
    half_hourly_local: str,
    pinned: list[datetime],
) -> None:
    await client.create_schedule(
        "pinned", "30 1,2 * * *", report_task, {"city": "p"}, timezone="America/New_York"
    )
    await client.create_schedule(
        "half-hourly", "*/30 * * * *", report_task, {"city": "h"}, timezone="America/New_York"
    )
    clock = FrozenClock(night_start)
    async with scheduler_at(database_url, schema, registry, clock) as scheduler:
        await scheduler.tick()
        for _ in range(4 * 6):  # six hours in steps of 15 minutes
            clock.advance(15 * 60)
            await scheduler.tick()

    fired = [f[0] for f in _fires(db, "half-hourly")]
    assert ", ".join(f.astimezone(NEW_YORK).strftime("%H:%M %Z") for f in fired) == half_hourly_local
    _check_fires_and_jobs(db, "half-hourly", _half_hours(night_start, 12), "h")
    _check_fires_and_jobs(db, "pinned", pinned, "p")
    assert db.one("select count(*) from {schema}.jobs") == 12 + 2


async def test_each_wall_time_of_the_skipped_hour_fires_once_at_its_shifted_time(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    # "15,45 2" in New York: on 8 March 02:15 and 02:45 do not exist; each fires once,
    # shifted forward by the jump, at 03:15 and 03:45 EDT (07:15 and 07:45 UTC).
    await client.create_schedule(
        "quarter-past", "15,45 2 * * *", report_task, {"city": "q"}, timezone="America/New_York"
    )
    clock = FrozenClock(utc(2026, 3, 8, 4))
    async with scheduler_at(database_url, schema, registry, clock) as scheduler:
        await scheduler.tick()
        for _ in range(4 * 6):
            clock.advance(15 * 60)
            await scheduler.tick()
    _check_fires_and_jobs(db, "quarter-past", [utc(2026, 3, 8, 7, 15), utc(2026, 3, 8, 7, 45)], "q")


async def test_a_schedule_created_just_after_the_jump_still_fires_its_shifted_time_that_day(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    # Created at 03:05 EDT on 8 March: 02:30 fires at 03:30 EDT that day, 25 minutes later.
    await client.create_schedule(
        "new-york-0230", "30 2 * * *", report_task, {"city": "n"}, timezone="America/New_York"
    )
    clock = FrozenClock(utc(2026, 3, 8, 7, 5))
    async with scheduler_at(database_url, schema, registry, clock) as scheduler:
        await scheduler.tick()
        assert db.one("select next_fire_at from {schema}.schedules") == utc(2026, 3, 8, 7, 30)
        clock.set(utc(2026, 3, 8, 7, 30))
        await scheduler.tick()
    _check_fires_and_jobs(db, "new-york-0230", [utc(2026, 3, 8, 7, 30)], "n")
