"""The scheduler's last tick: every successful leader attempt (one per tick) records it in
``leaders.renewed_at``, and the status read by ``Conveyor.scheduler_status()`` (and so
``conveyor status`` and the worker's start-up warning) tells how long ago it was and warns
when no scheduler ticked within its lease. The clock is moved, not waited on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor import Conveyor, FrozenClock
from conveyor.queue.leader import Elector

from ..helpers import DB

START = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


async def test_each_tick_is_recorded_and_the_status_counts_from_the_last(
    database_url: str, schema: str, db: DB
) -> None:
    db.all("insert into {schema}.schedules (name, cron, task) values ('nightly', '0 3 * * *', 'add')")
    clock = FrozenClock(START)
    async with Conveyor(database_url, schema=schema, clock=clock) as client:
        elector = Elector(client.db, clock, ttl=15, tick=1)
        assert await elector.attempt()
        elected = db.one("select elected_at, renewed_at from {schema}.leaders where role = 'scheduler'")
        assert elected == (START, START)

        clock.advance(5)
        assert await elector.attempt()  # a tick, five seconds on: the lease renewed
        assert db.one("select elected_at, renewed_at from {schema}.leaders") == (
            START,
            START + timedelta(seconds=5),
        )

        clock.advance(3)
        status = await client.scheduler_status()
        assert status.renewed_at == START + timedelta(seconds=5)
        assert status.last_tick_age == timedelta(seconds=3)
        assert status.running
        assert status.warning() is None

        # No tick for a whole lease (15 s from the last tick): no scheduler is running.
        clock.advance(12)
        status = await client.scheduler_status()
        assert not status.running
        assert status.last_tick_age == timedelta(seconds=15)
        assert status.warning() == (
            "1 schedule(s) will not fire: no scheduler has ticked within its lease (the last tick was 15 s ago);"
            " start `conveyor scheduler` (or `conveyor dev`)"
        )


async def test_a_lease_written_before_ticks_were_recorded_goes_by_its_expiry(
    database_url: str, schema: str, db: DB
) -> None:
    """A scheduler of an older release renews its lease without renewed_at: the status still
    reads it by its expiry, with no last tick to show."""
    db.all(
        "insert into {schema}.leaders (role, holder, hostname, pid, elected_at, expires_at) values"
        " ('scheduler', gen_random_uuid(), 'old-box', 7, %s, %s)",
        [START, START + timedelta(seconds=15)],
    )
    clock = FrozenClock(START + timedelta(seconds=10))
    async with Conveyor(database_url, schema=schema, clock=clock) as client:
        status = await client.scheduler_status()
        assert status.running
        assert status.renewed_at is None
        assert status.last_tick_age is None
