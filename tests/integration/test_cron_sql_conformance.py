"""The SQL functions refuse what Python refuses, with the same words.

Every expression of the grammar tables in tests/unit/test_cron.py goes through Python's
``normalize()`` and SQL's ``check_cron()``: both accept it with the same 6-field text, or
both refuse it with the same message. Time zones likewise (``check_timezone``), and the
SQL entry point users call (``create_schedule``) refuses with those messages too.

One migrated schema serves the whole module: these functions are IMMUTABLE or STABLE and
nothing here writes (except create_schedule, which must refuse).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from importlib import resources
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conveyor.cron import check_timezone, normalize
from conveyor.db import migrations
from conveyor.errors import InvalidOptionError

from ..unit.test_cron import INVALID_CRON, INVALID_ZONES, VALID_CRON, VALID_ZONES


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """An autocommit connection and a schema migrated for this module."""
    name = f"t_cron_sql_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(database_url, name)
    with psycopg.connect(database_url, autocommit=True) as connection:
        try:
            yield connection, name
        finally:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def _call(conn: tuple[psycopg.Connection[Any], str], function: str, *args: Any) -> tuple[str, str]:
    """("ok", result) or ("refused", message) of one SQL function call."""
    connection, schema = conn
    query = sql.SQL("SELECT {}.{}({})").format(
        sql.Identifier(schema), sql.Identifier(function), sql.SQL(", ").join([sql.Placeholder()] * len(args))
    )
    error: psycopg.Error | None = None
    try:
        row = connection.execute(query, args).fetchone()
    except psycopg.Error as exc:
        error = exc
    if error is not None:
        assert error.sqlstate == "22023", f"{error.sqlstate}: {error}"  # invalid_parameter_value
        assert error.diag.message_primary is not None
        return "refused", error.diag.message_primary
    assert row is not None
    return "ok", row[0]


def _python(check: Any, value: Any) -> tuple[str, str]:
    try:
        result = check(value)
    except InvalidOptionError as exc:
        return "refused", str(exc)
    return "ok", result[0] if isinstance(result, tuple) else value


# -- cron ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expression", "six", "with_seconds"), VALID_CRON)
def test_sql_accepts_what_python_accepts_with_the_same_six_fields(
    conn: tuple[psycopg.Connection[Any], str], expression: str, six: str, with_seconds: bool
) -> None:
    assert normalize(expression) == (six, with_seconds)
    assert _call(conn, "check_cron", expression) == ("ok", six)


@pytest.mark.parametrize(("expression", "message"), INVALID_CRON)
def test_sql_refuses_what_python_refuses_with_the_same_message(
    conn: tuple[psycopg.Connection[Any], str], expression: str, message: str
) -> None:
    assert _python(normalize, expression) == ("refused", message)
    assert _call(conn, "check_cron", expression) == ("refused", message)


# Beyond the tables: what the two implementations read differently if anything does. Python
# splits fields on any Unicode whitespace, and quotes the expression in its messages with
# repr(); SQL splits on \s and quotes with '...'. Each must still get the same answer.
EDGES = [
    "0 0 * *\u00a0*",  # no-break space between fields
    "0\u20030 * * *",  # em space
    "0\x1c0 * * *",  # file separator: whitespace to str.split()
    "0 0 * * MON'",  # a quote in an invalid expression
    "0 0 * * \\",  # a backslash
    "0\t0 * * * * *",  # a tab in an expression refused for its field count
    "0 0 * * 1\u200b",  # a zero-width space glued to a value
    None,
]


@pytest.mark.parametrize("expression", EDGES, ids=repr)
def test_sql_and_python_agree_on_unusual_characters(
    conn: tuple[psycopg.Connection[Any], str], expression: str | None
) -> None:
    assert _call(conn, "check_cron", expression) == _python(normalize, expression)


def test_cron_field_value_reads_numbers_and_names_like_python(
    conn: tuple[psycopg.Connection[Any], str],
) -> None:
    field = {"second": 1, "minute": 2, "hour": 3, "day-of-month": 4, "month": 5, "day-of-week": 6}
    assert _call(conn, "cron_field_value", "x", "007", field["minute"]) == ("ok", 7)
    assert _call(conn, "cron_field_value", "x", "jan", field["month"]) == ("ok", 1)
    assert _call(conn, "cron_field_value", "x", "Dec", field["month"]) == ("ok", 12)
    assert _call(conn, "cron_field_value", "x", "SUN", field["day-of-week"]) == ("ok", 0)
    assert _call(conn, "cron_field_value", "x", "sat", field["day-of-week"]) == ("ok", 6)
    assert _call(conn, "cron_field_value", "x", "7", field["day-of-week"]) == ("ok", 7)
    assert _call(conn, "cron_field_value", "x", "JAN", field["day-of-month"]) == (
        "refused",
        "cron expression 'x': day-of-month value 'JAN' is not valid",
    )
    assert _call(conn, "cron_field_value", "x", "60", field["second"]) == (
        "refused",
        "cron expression 'x': second value 60 is out of range 0-59",
    )
    assert _call(conn, "cron_field_value", "x", "0", field["month"]) == (
        "refused",
        "cron expression 'x': month value 0 is out of range 1-12",
    )


# -- time zones ---------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", VALID_ZONES)
def test_sql_accepts_the_time_zones_python_accepts(
    conn: tuple[psycopg.Connection[Any], str], zone: str
) -> None:
    check_timezone(zone)
    assert _call(conn, "check_timezone", zone) == ("ok", zone)


@pytest.mark.parametrize(("zone", "message"), INVALID_ZONES)
def test_sql_refuses_time_zones_with_python_s_message(
    conn: tuple[psycopg.Connection[Any], str], zone: str, message: str
) -> None:
    assert _call(conn, "check_timezone", zone) == ("refused", message)


# A quote in the name; a leap-second zone file; the host's own zone (a link to /etc/localtime).
@pytest.mark.parametrize("zone", ["O'Higgins", "right/UTC", "localtime"])
def test_sql_and_python_agree_on_unusual_time_zone_names(
    conn: tuple[psycopg.Connection[Any], str], zone: str
) -> None:
    assert _call(conn, "check_timezone", zone) == _python(check_timezone, zone)


def test_every_zone_the_server_knows_can_fire_in_python(conn: tuple[psycopg.Connection[Any], str]) -> None:
    """A schedule SQL accepts must not fail when the scheduler (Python) computes its fires."""
    connection, _ = conn
    # The names SQL's check_timezone accepts: the server's list without its posix/ and right/
    # copies, localtime and posixrules.
    names = [
        name
        for (name,) in connection.execute(
            "SELECT name FROM pg_timezone_names"
            " WHERE name !~ '^(posix|right)/' AND name NOT IN ('localtime', 'posixrules') ORDER BY name"
        )
    ]
    assert "Australia/Sydney" in names
    refused = [name for name in names if _python(check_timezone, name)[0] != "ok"]
    assert refused == []


def test_every_iana_zone_is_accepted_by_python_and_by_sql(conn: tuple[psycopg.Connection[Any], str]) -> None:
    """The IANA names (as the tzdata package lists them, links included) pass both checks."""
    connection, _ = conn
    known = {name for (name,) in connection.execute("SELECT name FROM pg_timezone_names")}
    iana = resources.files("tzdata").joinpath("zones").read_text().split()
    assert "America/New_York" in iana
    assert [name for name in iana if _python(check_timezone, name)[0] != "ok"] == []
    assert [name for name in iana if name not in known] == []


# -- create_schedule refuses with the same messages -----------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [case for case in INVALID_CRON if case[0] in ("* * * *", "0 0 31 2 *", "60 * * * *")],
)
def test_create_schedule_refuses_an_invalid_cron_with_python_s_message(
    conn: tuple[psycopg.Connection[Any], str], expression: str, message: str
) -> None:
    assert _call(conn, "create_schedule", "nightly", expression, "report") == ("refused", message)
    connection, schema = conn
    count = connection.execute(sql.SQL("SELECT count(*) FROM {}.schedules").format(sql.Identifier(schema)))
    assert count.fetchone() == (0,)


@pytest.mark.parametrize(("zone", "message"), [INVALID_ZONES[0], INVALID_ZONES[1]])
def test_create_schedule_refuses_an_unknown_time_zone_with_python_s_message(
    conn: tuple[psycopg.Connection[Any], str], zone: str, message: str
) -> None:
    connection, schema = conn
    query = sql.SQL("SELECT {}.create_schedule(name => %s, cron => %s, task => %s, timezone => %s)").format(
        sql.Identifier(schema)
    )
    with pytest.raises(psycopg.Error) as refused:
        connection.execute(query, ["nightly", "0 8 * * *", "report", zone])
    assert refused.value.sqlstate == "22023"
    assert refused.value.diag.message_primary == message
    count = connection.execute(sql.SQL("SELECT count(*) FROM {}.schedules").format(sql.Identifier(schema)))
    assert count.fetchone() == (0,)
