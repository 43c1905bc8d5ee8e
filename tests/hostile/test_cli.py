"""Hostile input against the ``conveyor`` command: every listing filter and name with
hostile text, schema names that are not, cron strings and time zones that are not, args past
the size limit. Each run ends with exit 0 (a value taken, an empty listing), 1 (an error, one
line ``conveyor: error: ...``) or 2 (wrong usage), never a traceback; no table changes but
those asked for. (Text with a NUL cannot reach a process's arguments at all.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.settings import MAX_ARGS_BYTES

from ..e2e.test_cli import conveyor_many, env_for, expect_errors, ok
from ..helpers import DB
from .strings import census

# Each run is a process start (a second or more on a busy machine): the hostile pieces of
# tests/hostile/strings.py go in together, in one text, and in the one that breaks most.
TEXTS = [
    'it\'s "q"; DROP TABLE jobs; -- $$ \\ %s {schema} \u202eevil\u202c \U0001f4a3 e\u0301',
    "x'); DELETE FROM jobs; --",
]

pytestmark = pytest.mark.processes

TASKS = ("--tasks", "tests.e2e.api_tasks")


@pytest.fixture
def env(database_url: str, schema: str, db: DB) -> dict[str, str]:
    db.all("SELECT {schema}.create_queue('api')")
    return env_for(database_url, schema)


def listings(text: str) -> list[list[str]]:
    return [
        ["jobs", "list", "--task", text],
        ["jobs", "list", "--queue", text],
        ["jobs", "list", "--state", text],
        ["jobs", "list", "--since", text],
        ["jobs", "show", text],
        ["dlq", "list", "--task", text, "--queue", text],
        ["dlq", "show", text],
        ["history", "--task", text],
        ["schedules", "show", text],
        ["queues", "pause", text],
        ["status", "--queue", text],
    ]


def test_listings_and_names_take_hostile_text_without_harm(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    before = census(db)
    calls = [call for text in TEXTS for call in listings(text)]
    for call, run in zip(calls, conveyor_many(calls, env=env, cwd=tmp_path, timeout=60), strict=True):
        assert run.returncode in (0, 1, 2), str(run)
        assert "Traceback" not in run.stderr + run.stdout, str(run)
        if run.returncode == 1:
            assert run.stderr.startswith("conveyor: error: "), str(run)
            assert len(run.stderr.splitlines()) == 1, str(run)
        if run.returncode == 0 and call[:2] == ["jobs", "list"]:
            assert "api_echo" not in run.stdout, str(run)
    assert census(db) == before


def test_free_text_round_trips_through_enqueue(env: dict[str, str], db: DB, tmp_path: Path) -> None:
    texts = TEXTS
    calls = [
        ["enqueue", "api_echo", "--args", json.dumps({"value": text}), "--unique-key", text, *TASKS]
        for text in texts
    ]
    ids = [int(ok(run).strip()) for run in conveyor_many(calls, env=env, cwd=tmp_path, timeout=60)]
    for job_id, text in zip(ids, texts, strict=True):
        assert db.one("SELECT args, unique_key FROM {schema}.jobs WHERE id = %s", [job_id]) == (
            {"value": text},
            text,
        )


def test_hostile_names_schemas_cron_and_zones_are_refused_in_one_line(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    before = census(db)
    injection = "a'; DROP TABLE jobs; --"
    cases = [
        (["enqueue", injection, *TASKS], "unknown task"),
        (["enqueue", "api_echo", "--queue", injection, *TASKS], "queue name"),
        (["queues", "create", injection], "queue name"),
        (
            ["schedules", "add", injection, "--cron", "* * * * *", "--task", "api_add", *TASKS],
            "schedule name",
        ),
        (["schedules", "add", "s", "--cron", "* * *", "--task", "api_add", *TASKS], "cron"),
        (["schedules", "add", "s", "--cron", "61 * * * *", "--task", "api_add", *TASKS], "cron"),
        (["schedules", "add", "s", "--cron", "@every", "--task", "api_add", *TASKS], "cron"),
        (
            [
                "schedules",
                "add",
                "s",
                "--cron",
                "0 9 * * *",
                "--timezone",
                "Europe/Nowhere",
                "--task",
                "api_add",
                *TASKS,
            ],
            "unknown time zone",
        ),
        (
            [
                "schedules",
                "add",
                "s",
                "--cron",
                "0 9 * * *",
                "--timezone",
                "../../etc/passwd",
                "--task",
                "api_add",
                *TASKS,
            ],
            "unknown time zone",
        ),
        (["--schema", 'x"; drop table y; --', "status"], "schema name"),
        (["--schema", "", "status"], "schema name"),
        (["--schema", "a" * 200, "status"], "schema name"),
        (["--schema", "pg_temp", "migrate"], "schema name"),
        (
            ["enqueue", "api_echo", "--args", '{"value": "\\u0000"}', *TASKS],
            "task 'api_echo': arguments are not JSON",
        ),
        (
            ["enqueue", "api_echo", "--args", '{"value": "\\ud800"}', *TASKS],
            "task 'api_echo': arguments are not JSON",
        ),
        (
            ["enqueue", "api_echo", "--args", '{"value": ' + "[" * 10_000 + "]" * 10_000 + "}", *TASKS],
            "--args",
        ),
    ]
    runs = conveyor_many([call for call, _ in cases], env=env, cwd=tmp_path, timeout=60)
    failures = []
    for (_, words), run in zip(cases, runs, strict=True):
        if run.returncode != 1 or "Traceback" in run.stderr or words not in run.stderr:
            failures.append(str(run))
    assert not failures, "\n\n".join(failures)
    expect_errors(runs[:1], ["unknown task"])
    assert census(db) == before


def test_args_over_the_size_limit_are_refused(env: dict[str, str], db: DB, tmp_path: Path) -> None:
    """The command line holds at most 128 KiB in one argument (Linux): the limit itself is
    tested through the SQL function, the Python client and the API. The CLI refuses JSON it
    cannot hold as it does every other bad argument."""
    assert MAX_ARGS_BYTES > 128 * 1024
    before = census(db)
    big = json.dumps({"value": "x" * 120_000})
    runs = conveyor_many([["enqueue", "api_echo", "--args", big, *TASKS]], env=env, cwd=tmp_path)
    assert int(ok(runs[0]).strip()) > 0
    assert census(db)["jobs"] == before["jobs"] + 1
