"""Values no worker could read never get into a job row, and values written by hand into a
job's errors never stop the engine: the jobs table refuses times outside Python's years 1 to
9999 and negative counts, every enqueue door says so in one line, and append_error_v1 takes
whatever JSON it finds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conveyor import Conveyor, InvalidOptionError, Registry
from conveyor.db.database import Database

from ..helpers import DB

UNREADABLE_TIMES = ["-infinity", "infinity", "0044-03-15 BC", "10000-01-01 00:00+00", "0001-01-01 00:00+00"]


def direct_insert(db: DB, column: str, value: Any) -> Any:
    """A row written by hand, as psql would: one column given besides the required ones."""
    return db.one(
        sql.SQL(
            "insert into {{schema}}.jobs (queue, task, max_attempts, {}) values ('default', 'plain', 1, %s) returning id"
        )
        .format(sql.Identifier(column))
        .as_string(None),
        [value],
    )


@pytest.mark.parametrize("value", UNREADABLE_TIMES)
@pytest.mark.parametrize("column", ["run_at", "enqueued_at"])
def test_the_jobs_table_refuses_a_time_python_cannot_read(db: DB, column: str, value: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        direct_insert(db, column, value)
    assert refused.value.diag.constraint_name == "time_within_years_1_to_9999"
    assert db.one("select count(*) from {schema}.jobs") == 0


@pytest.mark.parametrize("column", ["attempt", "claims", "handbacks"])
def test_the_jobs_table_refuses_a_negative_count(db: DB, column: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        direct_insert(db, column, -5)
    assert refused.value.diag.constraint_name == "count_not_negative"


@pytest.mark.parametrize("value", UNREADABLE_TIMES)
def test_sql_enqueue_refuses_a_run_at_outside_years_1_to_9999(db: DB, value: str) -> None:
    with pytest.raises(psycopg.errors.DatetimeFieldOverflow, match="outside the years 1 to 9999"):
        db.one("select {schema}.enqueue('plain', '{{}}', run_at => %s)", [value])
    assert db.one("select count(*) from {schema}.jobs") == 0


def test_the_edges_of_the_range_are_accepted_and_read_back(db: DB) -> None:
    first = datetime(1, 1, 2, tzinfo=UTC)
    last = datetime(9999, 12, 30, 23, 59, tzinfo=UTC)
    ids = [db.one("select {schema}.enqueue('plain', '{{}}', run_at => %s)", [at]) for at in (first, last)]
    assert [db.one("select run_at from {schema}.jobs where id = %s", [i]) for i in ids] == [first, last]


async def test_python_enqueue_refuses_a_run_at_or_delay_past_year_9999(
    client: Conveyor, registry: Registry
) -> None:
    @registry.task
    async def plain() -> None:
        pass

    with pytest.raises(InvalidOptionError, match="lands past the year 9999"):
        await client.enqueue("plain", delay=timedelta(days=99999999))
    with pytest.raises(InvalidOptionError, match="outside the years 1 to 9999"):
        await client.enqueue("plain", run_at=datetime(9999, 12, 31, 12, tzinfo=UTC))
    with pytest.raises(InvalidOptionError, match="outside the years 1 to 9999"):
        await client.enqueue("plain", run_at=datetime(1, 1, 1, 12, tzinfo=UTC))
    assert await client.enqueue("plain", delay=timedelta(days=3000 * 365)) > 0


def append(db: DB, errors: Any, entry: Any) -> Any:
    return db.one(
        "select {schema}.append_error_v1(%s::jsonb, %s::jsonb)", [json.dumps(errors), json.dumps(entry)]
    )


def test_append_error_takes_any_json_it_finds_without_raising(db: DB) -> None:
    poisoned: list[Any] = [1, 2, 3, {"dropped": "x"}, 5, 6, 7, 8, 9, 10, 11]
    kept = append(db, poisoned, {"attempt": 12, "error": "boom"})
    assert kept[:3] == [1, 2, 3]
    assert kept[3]["dropped"] == 2  # {"dropped": "x"} and 5 stand for one entry each
    assert kept[4:] == [6, 7, 8, 9, 10, 11, {"attempt": 12, "error": "boom"}]

    for odd in ([1, 2, 3, {"dropped": -4}, *range(5, 12)], [1, 2, 3, {"dropped": 1e30}, *range(5, 12)]):
        assert len(append(db, odd, "e")) == 11
    for not_an_array in ("not an array", {"a": 1}, 7, None):
        assert append(db, not_an_array, {"error": "e"}) == [{"error": "e"}]


async def test_rescue_of_a_job_with_hand_edited_errors_goes_on(
    database_url: str, schema: str, db: DB, client: Conveyor
) -> None:
    """One expired job whose errors hold {"dropped": "x"} beside an ordinary expired job: the
    maintenance statement that rescues them both succeeds, and both are back."""
    await client.create_queue("p")
    poisoned = [1, 2, 3, {"dropped": "x"}, 5, 6, 7, 8, 9, 10, 11]
    for errors in (poisoned, []):
        db.one(
            "insert into {schema}.jobs (queue, task, args, max_attempts, state, worker_id, lease_expires_at,"
            " attempt, claims, errors) values ('p', 'plain', '{{}}', 3, 'running', gen_random_uuid(),"
            " now() - interval '1 hour', 1, 1, %s) returning id",
            [json.dumps(errors)],
        )
    seam = Database(database_url, schema)
    await seam.open()
    try:
        retried, dead = await seam.rescue_expired_jobs(now=None)
    finally:
        await seam.close()
    assert (len(retried), len(dead)) == (2, 0)
    assert db.all("select state from {schema}.jobs order by id") == [("available",), ("available",)]
