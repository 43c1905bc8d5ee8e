"""Changing some fields of a schedule (Conveyor.update_schedule, under PATCH
/api/v1/schedules/{name} through conveyor.ops): read, merged and redefined with the row
locked, so that changes of one schedule take turns and none is lost."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import Conveyor, Registry
from conveyor.errors import InvalidOptionError, NotFoundError

from ..helpers import DB, wait_until


@pytest.fixture
def registry() -> Registry:
    tasks = Registry()

    @tasks.task(name="report")
    def report(day: str = "today") -> None:
        return None

    return tasks


async def test_two_changes_of_different_fields_made_at_once_are_both_kept(client: Conveyor, db: DB) -> None:
    await client.create_schedule("nightly", "0 1 * * *", "report", {"day": "today"}, timezone="UTC")
    with db.connect() as holder:
        # Someone holds the schedule's row: both changes read and wait behind them.
        holder.execute(db.compose("SELECT 1 FROM {schema}.schedules WHERE name = 'nightly' FOR UPDATE"))
        first = asyncio.create_task(client.update_schedule("nightly", {"cron": "0 2 * * *"}))
        second = asyncio.create_task(client.update_schedule("nightly", {"timezone": "Australia/Sydney"}))
        waiting = (
            "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE NOT l.granted AND a.datname = current_database()"
        )
        await wait_until(lambda: db.one(waiting) >= 2)
        holder.commit()
    await asyncio.gather(first, second)
    assert db.one("SELECT cron, timezone, args FROM {schema}.schedules WHERE name = 'nightly'") == (
        "0 2 * * *",
        "Australia/Sydney",
        {"day": "today"},
    )


async def test_a_change_is_checked_and_an_unknown_schedule_or_field_is_refused(
    client: Conveyor, db: DB
) -> None:
    await client.create_schedule("nightly", "0 1 * * *", "report")
    before = db.all("SELECT * FROM {schema}.schedules")
    with pytest.raises(NotFoundError, match="no schedule named 'nope'"):
        await client.update_schedule("nope", {"cron": "0 2 * * *"})
    with pytest.raises(InvalidOptionError, match="no field colour"):
        await client.update_schedule("nightly", {"colour": "blue"})
    with pytest.raises(InvalidOptionError):
        await client.update_schedule("nightly", {"cron": "61 * * * *"})
    with pytest.raises(InvalidOptionError):
        await client.update_schedule("nightly", {"timezone": "Mars/Olympus"})
    assert db.all("SELECT * FROM {schema}.schedules") == before
