"""Bad schedules are refused alike at every entry point, with a clear message, writing nothing.

Entry points: ``Registry.schedule`` (declared in code), ``Conveyor.create_schedule`` and the
other schedule operations (Python), the SQL functions (psql or any language), and the
``conveyor schedules ...`` command.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor import Conveyor, ConveyorError, InvalidOptionError, NotFoundError, Registry

from ..helpers import DB, subprocess_env

ZONES = "use an IANA name like UTC, Europe/Paris or Australia/Sydney"
# (cron, time zone, the message every entry point gives)
INVALID = [
    pytest.param(
        "61 * * * *", "UTC", "cron expression '61 * * * *': minute value 61 is out of range 0-59", id="range"
    ),
    pytest.param(
        "* * * *",
        "UTC",
        "cron expression '* * * *' has 4 fields: give 5 (minute hour day month weekday) or 6 (second first)",
        id="fields",
    ),
    pytest.param(
        "0 0 30 2 *",
        "UTC",
        "cron expression '0 0 30 2 *' never fires: no month in it has such a day",
        id="never",
    ),
    pytest.param(
        "*/0 * * * *", "UTC", "cron expression '*/0 * * * *': minute step must be at least 1", id="step"
    ),
    pytest.param(
        "@fortnightly",
        "UTC",
        "unknown cron shorthand '@fortnightly': use one of @yearly, @annually, @monthly, @weekly, @daily,"
        " @midnight, @hourly",
        id="shorthand",
    ),
    pytest.param("0 9 * * *", "Mars/Olympus", f"unknown time zone 'Mars/Olympus': {ZONES}", id="zone"),
    pytest.param("0 9 * * *", "utc", f"unknown time zone 'utc': {ZONES}", id="zone-case"),
    # A folder of the time zone database, not a zone in it.
    pytest.param("0 9 * * *", "Europe", f"unknown time zone 'Europe': {ZONES}", id="zone-folder"),
]
CASES: list[tuple[str, str, str]] = [(str(p.values[0]), str(p.values[1]), str(p.values[2])) for p in INVALID]
TASKS = "tests.e2e.cli_tasks"  # the CLI tests' task module: add(a, b=0), send_email(to, subject)


def add(a: int, b: int = 0) -> int:
    return a + b


def schedule_count(db: DB) -> int:
    return int(db.one("select count(*) from {schema}.schedules"))


def sql_refusal(db: DB, query: str, params: Any = None) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        db.all(query, params)
    return info.value


# -- invalid cron or time zone ---------------------------------------------------------


@pytest.mark.parametrize(("cron", "timezone", "message"), INVALID)
def test_declaring_in_code_refuses(cron: str, timezone: str, message: str) -> None:
    registry = Registry()
    registry.task(add)
    with pytest.raises(InvalidOptionError) as info:
        registry.schedule("bad", cron, add, {"a": 1}, timezone=timezone)
    assert str(info.value) == message
    assert registry.schedules() == []


@pytest.mark.parametrize(("cron", "timezone", "message"), INVALID)
async def test_the_client_refuses(
    client: Conveyor, registry: Registry, db: DB, cron: str, timezone: str, message: str
) -> None:
    registry.task(add)
    with pytest.raises(ConveyorError) as info:
        await client.create_schedule("bad", cron, add, {"a": 1}, timezone=timezone)
    assert str(info.value) == message
    assert schedule_count(db) == 0


@pytest.mark.parametrize(("cron", "timezone", "message"), INVALID)
def test_the_sql_function_refuses(db: DB, cron: str, timezone: str, message: str) -> None:
    error = sql_refusal(
        db, "select {schema}.create_schedule('bad', %s, 'add', '{{\"a\": 1}}', %s)", [cron, timezone]
    )
    assert error.sqlstate == "22023"
    assert error.diag.message_primary == message
    assert schedule_count(db) == 0


def test_replacing_a_schedule_with_an_invalid_one_keeps_the_old_one(db: DB) -> None:
    db.all("select {schema}.create_schedule('nightly', '0 3 * * *', 'add')")
    for cron, timezone in [("0 3 * *", "UTC"), ("0 3 * * *", "Mars/Olympus")]:
        error = sql_refusal(
            db,
            "select {schema}.create_schedule('nightly', %s, 'add', timezone => %s, replace => true)",
            [cron, timezone],
        )
        assert error.sqlstate == "22023"
    assert db.all("select name, cron, timezone from {schema}.schedules") == [("nightly", "0 3 * * *", "UTC")]


# -- other mistakes: unknown queue, unknown schedule, duplicate name --------------------


async def test_the_client_refuses_unknown_queues_unknown_schedules_and_duplicates(
    client: Conveyor, registry: Registry, db: DB
) -> None:
    registry.task(add)
    with pytest.raises(ConveyorError) as info:
        await client.create_schedule("nightly", "0 3 * * *", add, {"a": 1}, queue="nope")
    assert str(info.value) == "unknown queue 'nope'"
    assert schedule_count(db) == 0

    for operation in ("pause_schedule", "resume_schedule", "trigger_schedule", "remove_schedule"):
        with pytest.raises(NotFoundError) as missing:
            await getattr(client, operation)("nope")
        assert str(missing.value) == "no schedule named 'nope'", operation
    assert db.one("select count(*) from {schema}.jobs") == 0
    assert db.one("select count(*) from {schema}.schedule_fires") == 0

    await client.create_schedule("nightly", "0 3 * * *", add, {"a": 1})
    with pytest.raises(ConveyorError) as duplicate:
        await client.create_schedule("nightly", "0 4 * * *", add, {"a": 2})
    assert str(duplicate.value) == "a schedule named 'nightly' exists already"
    assert db.all("select cron, args from {schema}.schedules") == [("0 3 * * *", {"a": 1})]
    await client.create_schedule("nightly", "0 4 * * *", add, {"a": 2}, replace=True)
    assert db.all("select cron, args from {schema}.schedules") == [("0 4 * * *", {"a": 2})]


def test_the_sql_functions_refuse_unknown_queues_unknown_schedules_and_duplicates(db: DB) -> None:
    error = sql_refusal(db, "select {schema}.create_schedule('nightly', '0 3 * * *', 'add', queue => 'nope')")
    assert (error.sqlstate, error.diag.message_primary) == (
        "22023",
        "conveyor.create_schedule: unknown queue 'nope'",
    )
    for function in ("pause_schedule", "resume_schedule", "trigger_schedule", "remove_schedule"):
        error = sql_refusal(db, f"select {{schema}}.{function}('nope')")
        assert (error.sqlstate, error.diag.message_primary) == (
            "P0002",
            "conveyor.find_schedule: no schedule named 'nope'",
        ), function
    db.all("select {schema}.create_schedule('nightly', '0 3 * * *', 'add')")
    error = sql_refusal(db, "select {schema}.create_schedule('nightly', '0 4 * * *', 'add')")
    assert (error.sqlstate, error.diag.message_primary) == (
        "23505",
        "conveyor.create_schedule: a schedule named 'nightly' exists already",
    )
    assert db.all("select name, cron from {schema}.schedules") == [("nightly", "0 3 * * *")]
    assert db.one("select count(*) from {schema}.jobs") == 0


# -- the command line -------------------------------------------------------------------


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli_problems(done: subprocess.CompletedProcess[str], message: str) -> list[str]:
    """What keeps a run from being exit 1 with the one stderr line `conveyor: error: MESSAGE`."""
    problems = []
    if done.returncode != 1:
        problems.append(f"exit status {done.returncode}")
    if "Traceback" in done.stderr or "Traceback" in done.stdout:
        problems.append("a traceback")
    lines = done.stderr.splitlines()
    if lines != [f"conveyor: error: {message}"]:
        problems.append(f"{len(lines)} stderr lines, the last {lines[-1] if lines else None!r}")
    return problems


@pytest.mark.processes
def test_the_command_refuses_each_mistake_with_one_line(
    database_url: str, schema: str, db: DB, tmp_path: Path
) -> None:
    env = subprocess_env(database_url, schema, CONVEYOR_TASKS=TASKS)
    env.pop("DATABASE_URL", None)
    db.all("select {schema}.create_schedule('taken', '0 3 * * *', 'add', '{{\"a\": 1}}')")

    def add_schedule(name: str, cron: str, timezone: str, *more: str) -> list[str]:
        return [
            "schedules",
            "add",
            name,
            "--cron",
            cron,
            "--tz",
            timezone,
            "--task",
            "add",
            "--args",
            '{"a": 1}',
            *more,
        ]

    calls: list[tuple[list[str], str]] = [
        (add_schedule("bad", cron, timezone), message) for cron, timezone, message in CASES
    ]
    calls += [
        (add_schedule("bad", "0 3 * * *", "UTC", "--queue", "nope"), "unknown queue 'nope'"),
        (add_schedule("taken", "0 4 * * *", "UTC"), "a schedule named 'taken' exists already"),
    ]
    calls += [
        (["schedules", verb, "nope"], "no schedule named 'nope'")
        for verb in ("pause", "resume", "trigger", "remove")
    ]
    good = add_schedule("good", "0 9 * * MON-FRI", "Europe/Paris")  # the same command, right

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(run_cli, args, env, tmp_path) for args, _ in calls]
        accepted = run_cli(good, env, tmp_path)
        runs = [future.result() for future in futures]

    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout == "schedule 'good' added: 0 9 * * MON-FRI (Europe/Paris)\n"
    failures = [
        f"`conveyor {' '.join(args)}`: {', '.join(problems)}"
        for (args, message), done in zip(calls, runs, strict=True)
        if (problems := cli_problems(done, message))
    ]
    assert not failures, f"{len(failures)} of {len(calls)} commands failed badly:\n" + "\n".join(failures)
    assert db.all("select name, cron, args from {schema}.schedules order by name") == [
        ("good", "0 9 * * MON-FRI", {"a": 1}),
        ("taken", "0 3 * * *", {"a": 1}),
    ]
    assert db.one("select count(*) from {schema}.jobs") == 0
