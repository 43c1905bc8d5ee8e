"""Hostile input through the SQL functions (docs/sql.md), called with bound parameters as
any application would: every text argument round-trips exactly or is refused with a
PostgreSQL error naming the rule; no call changes a table it should not."""

from __future__ import annotations

import contextlib
import json

import psycopg
import pytest
from psycopg.types.json import Jsonb

from ..helpers import DB
from .strings import STORABLE, census

MIB = 1024 * 1024


def call(db: DB, statement: str, params: list[object] | None = None) -> object:
    return db.one(statement, params)


def test_free_text_round_trips_through_enqueue(db: DB) -> None:
    """Task name, unique key, limit key, args and meta are data: stored as given."""
    for text in STORABLE:
        before = census(db)
        job_id = call(
            db,
            "SELECT {schema}.enqueue(task => %s, args => %s, unique_key => %s, key => %s, meta => %s)",
            [text, Jsonb({text: text}), text, text, Jsonb({"tag": text})],
        )
        row = db.one("SELECT task, args, unique_key, key, meta FROM {schema}.jobs WHERE id = %s", [job_id])
        assert row == (text, {text: text}, text, text, {"tag": text})
        after = census(db)
        assert after == before | {"jobs": before["jobs"] + 1}


def test_a_hostile_queue_name_is_refused_and_writes_nothing(db: DB) -> None:
    for text in STORABLE:
        before = census(db)
        with pytest.raises(psycopg.Error) as refused:
            call(db, "SELECT {schema}.enqueue(task => 'report', queue => %s)", [text])
        assert "queue" in str(refused.value)
        with pytest.raises(psycopg.Error) as refused:
            call(db, "SELECT {schema}.create_queue(%s)", [text])
        assert "queue" in str(refused.value)
        assert census(db) == before


def test_names_of_schedules_tasks_and_partitions_are_data_or_refused(db: DB) -> None:
    """A schedule name has a grammar (refused naming it); a task name is data (a schedule's
    task, a task pause, a purge filter); a partition name must be a past day's partition."""
    for text in STORABLE:
        before = census(db)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="schedule name"):
            call(
                db,
                "SELECT {schema}.create_schedule(name => %s, cron => '0 9 * * *', task => 'report')",
                [text],
            )
        call(db, "SELECT {schema}.create_schedule(name => 's', cron => '0 9 * * *', task => %s)", [text])
        assert db.one("SELECT name, task FROM {schema}.schedules") == ("s", text)
        for function in ("pause_schedule", "trigger_schedule", "remove_schedule"):
            with pytest.raises(psycopg.Error, match="schedule"):
                call(db, f"SELECT {{schema}}.{function}(%s)", [text])
        call(db, "SELECT {schema}.remove_schedule('s')")
        call(db, "SELECT {schema}.pause_task(%s)", [text])
        assert db.one("SELECT count(*) FROM {schema}.pauses") == 1
        call(db, "SELECT {schema}.resume_task(%s)", [text])
        assert call(db, "SELECT {schema}.purge_dead(queue => %s, task => %s)", [text, text]) == 0
        for name in (text, f"job_history_20000101; {text}", "jobs", "job_history"):
            # Only a past day's partition is dropped: any other name changes nothing or is
            # refused naming the rule.
            refusal = drop_partition_refusal(db, name)
            assert refusal is None or "not a daily partition" in refusal, (name, refusal)
        assert census(db) == before


def drop_partition_refusal(db: DB, name: str) -> str | None:
    """Why conveyor.drop_partition refused ``name``, or None when it took it."""
    try:
        call(db, "SELECT {schema}.drop_partition(%s)", [name])
    except psycopg.errors.InvalidParameterValue as exc:
        return str(exc)
    return None


def test_nul_in_text_and_jsonb_is_refused_by_the_database_and_writes_nothing(db: DB) -> None:
    before = census(db)
    with pytest.raises(psycopg.DataError, match="NUL"):
        call(db, "SELECT {schema}.enqueue(task => %s)", ["a\x00b"])
    with pytest.raises(psycopg.errors.UntranslatableCharacter):
        call(db, "SELECT {schema}.enqueue(task => 'report', args => %s::jsonb)", ['{"a": "\\u0000"}'])
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        call(db, "SELECT {schema}.enqueue(task => 'report', args => %s::jsonb)", ['{"a": "\\ud800"}'])
    assert census(db) == before


def args_of_size(size: int) -> str:
    """A JSON object of exactly ``size`` bytes as compact JSON."""
    empty = len(json.dumps({"blob": ""}, separators=(",", ":")))
    return json.dumps({"blob": "x" * (size - empty)}, separators=(",", ":"))


def test_args_at_the_limit_pass_and_one_byte_over_is_refused(db: DB) -> None:
    job_id = call(db, "SELECT {schema}.enqueue(task => 'report', args => %s::jsonb)", [args_of_size(MIB)])
    assert (
        db.one("SELECT {schema}.compact_json_octets_v1(args) FROM {schema}.jobs WHERE id = %s", [job_id])
        == MIB
    )
    before = census(db)
    with pytest.raises(psycopg.Error, match=r"1 MiB|args"):
        call(db, "SELECT {schema}.enqueue(task => 'report', args => %s::jsonb)", [args_of_size(MIB + 1)])
    assert census(db) == before


def test_deeply_nested_args_are_stored_or_refused_by_the_database_never_crash_it(db: DB) -> None:
    deep = '{"v": ' + "[" * 10_000 + "]" * 10_000 + "}"
    # PostgreSQL's own stack depth limit may refuse it: a clear error, the session lives on.
    with contextlib.suppress(psycopg.errors.StatementTooComplex):
        call(db, "SELECT {schema}.enqueue(task => 'report', args => %s::jsonb)", [deep])
    assert db.one("SELECT 1") == 1


@pytest.mark.parametrize(
    ("cron", "timezone"),
    [
        ("* * *", "UTC"),
        ("61 * * * *", "UTC"),
        ("@every", "UTC"),
        ("* * * * * * *", "UTC"),
        ("0 9 * * *", "Europe/Nowhere"),
        ("0 9 * * *", "../../etc/passwd"),
        ("0 9 * * *", "/etc/localtime"),
        ("0 9 * * *", ""),
        ("'; DROP TABLE jobs; --", "UTC"),
    ],
)
def test_cron_strings_and_time_zones_that_are_not_are_refused(db: DB, cron: str, timezone: str) -> None:
    before = census(db)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
        call(
            db,
            "SELECT {schema}.create_schedule(name => 's', cron => %s, task => 'report', timezone => %s)",
            [cron, timezone],
        )
    assert "cron" in str(refused.value) or "time zone" in str(refused.value)
    assert census(db) == before
