"""The `conveyor` command run as a user runs it: real processes against real PostgreSQL.

Every command runs as ``python -m conveyor ...`` in its own process. User mistakes must
give exit status 1 and exactly one stderr line starting ``conveyor: error:`` (no
traceback) and must write nothing; usage errors exit 2. A CLI process takes about a second
to start (it imports SQLAlchemy and Alembic), so independent commands run concurrently.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conveyor.db import embedded, migrations

from ..helpers import DB, REPO, subprocess_env, url_with_driver, wait_until_sync

pytestmark = pytest.mark.processes

TASKS = "tests.e2e.cli_tasks"
TASKS_FILE = REPO / "tests" / "e2e" / "cli_tasks.py"
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"
# Lines a worker may log to stderr besides its error: its own INFO/DEBUG logging.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO) ")
SETTINGS = ("CONVEYOR_DATABASE_URL", "DATABASE_URL", "CONVEYOR_SCHEMA", "CONVEYOR_DATA_DIR", "CONVEYOR_TASKS")


# -- running the command -----------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One finished `conveyor` process."""

    args: tuple[str, ...]
    returncode: int | None  # None: killed after its timeout
    stdout: str
    stderr: str
    seconds: float
    timeout: float

    def __str__(self) -> str:
        if self.returncode is None:
            status = f"killed after {self.timeout:g}s"
        else:
            status = f"exit {self.returncode} after {self.seconds:.1f}s"
        return (
            f"`conveyor {' '.join(self.args)}`: {status}\n"
            f"--- stdout\n{_clip(self.stdout)}--- stderr\n{_clip(self.stderr)}---"
        )


def _clip(text: str, head: int = 6, tail: int = 14) -> str:
    """Long output (a traceback) as its first and last lines."""
    lines = text.splitlines(keepends=True)
    if len(lines) <= head + tail + 1:
        return text
    return "".join([*lines[:head], f"[... {len(lines) - head - tail} lines ...]\n", *lines[-tail:]])


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def conveyor(
    *args: str, env: Mapping[str, str], cwd: Path, timeout: float = 30.0, input: str | None = None
) -> Run:
    """Run ``python -m conveyor ARGS`` to the end (or kill it after ``timeout`` seconds);
    its stdin is ``input``, or empty."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "conveyor", *args],
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input if input is not None else "",
        )
    except subprocess.TimeoutExpired as exc:
        return Run(args, None, _text(exc.stdout), _text(exc.stderr), time.monotonic() - started, timeout)
    return Run(args, done.returncode, done.stdout, done.stderr, time.monotonic() - started, timeout)


def conveyor_many(
    calls: Sequence[Sequence[str]], *, env: Mapping[str, str], cwd: Path, timeout: float = 30.0
) -> list[Run]:
    """Run independent commands at the same time; results in the order given."""
    with ThreadPoolExecutor(max_workers=min(4, len(calls))) as pool:
        futures = [pool.submit(conveyor, *call, env=env, cwd=cwd, timeout=timeout) for call in calls]
        return [future.result() for future in futures]


def ok(run: Run) -> str:
    """The stdout of a command that must succeed."""
    assert run.returncode == 0, str(run)
    assert "Traceback" not in run.stderr, str(run)
    return run.stdout


def error_problems(run: Run, start: str, *, logs: bool = False) -> list[str]:
    """What keeps ``run`` from being exit 1 with the one line ``conveyor: error: START...``.

    With ``logs``, the command's own INFO/DEBUG log lines may come before the error line.
    """
    problems = []
    if run.returncode is None:
        problems.append(f"did not finish within {run.timeout:g}s")
    elif run.returncode != 1:
        problems.append(f"exit status {run.returncode}, expected 1")
    if "Traceback" in run.stderr or "Traceback" in run.stdout:
        problems.append("printed a traceback")
    lines = run.stderr.splitlines()
    if logs:
        lines = [line for line in lines if not LOG_LINE.match(line)]
    if len(lines) != 1:
        problems.append(f"printed {len(lines)} lines on stderr{' besides its logs' if logs else ''}, not 1")
    expected = f"conveyor: error: {start}"
    if not lines or not lines[-1].startswith(expected):
        problems.append(f"last stderr line does not start with {expected!r}")
    return problems


def expect_error(run: Run, start: str, *, logs: bool = False) -> str:
    """Assert a one-line user error; returns the line."""
    problems = error_problems(run, start, logs=logs)
    assert not problems, "; ".join(problems) + "\n" + str(run)
    return run.stderr.splitlines()[-1]


def expect_errors(runs: Sequence[Run], starts: Sequence[str], *, logs: bool = False) -> None:
    """Assert a one-line user error for each run; reports every run that is wrong at once."""
    failures = [
        "; ".join(problems) + "\n" + str(run)
        for run, start in zip(runs, starts, strict=True)
        if (problems := error_problems(run, start, logs=logs))
    ]
    assert not failures, f"{len(failures)} of {len(runs)} commands failed badly:\n\n" + "\n\n".join(failures)


@dataclass
class Process:
    """A long-running `conveyor` process whose output goes to files (no pipe to fill up)."""

    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def __str__(self) -> str:
        status = "running" if self.popen.poll() is None else f"exit {self.popen.returncode}"
        return (
            f"`{' '.join(map(str, self.popen.args))}` ({status})\n"
            f"--- stdout\n{_clip(self.stdout())}--- stderr\n{_clip(self.stderr())}---"
        )

    def alive(self) -> bool:
        """True while running; fails the test at once (with the output) if the process died."""
        assert self.popen.poll() is None, f"the process exited early:\n{self}"
        return True

    def stop(self, signum: int = signal.SIGTERM, *, within: float = 30.0) -> int:
        self.popen.send_signal(signum)
        try:
            return self.popen.wait(timeout=within)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"did not stop within {within}s of {signal.Signals(signum).name}:\n{self}"
            ) from None


@contextmanager
def started(*args: str, env: Mapping[str, str], cwd: Path, name: str) -> Iterator[Process]:
    """Start ``python -m conveyor ARGS``; it is killed on the way out if still running."""
    stdout_path, stderr_path = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        popen = subprocess.Popen(
            [sys.executable, "-m", "conveyor", *args], env=dict(env), cwd=cwd, stdout=out, stderr=err
        )
    process = Process(popen, stdout_path, stderr_path)
    try:
        yield process
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait(timeout=10)


def table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """A `conveyor status` table: its header and its rows by first cell (up to a blank line)."""
    lines = text.rstrip("\n").split("\n\n")[0].splitlines()
    header = lines[0].split()
    rows = {}
    for line in lines[1:]:
        cells = line.split(None, len(header) - 1)
        rows[cells[0]] = cells
    return header, rows


# -- environments ----------------------------------------------------------------------


def _without_settings(env: dict[str, str]) -> dict[str, str]:
    for key in SETTINGS:
        env.pop(key, None)
    return env


def env_for(database_url: str, schema: str) -> dict[str, str]:
    """Environment for a `conveyor` process using that database and schema, and nothing else."""
    base = _without_settings(subprocess_env(database_url, schema))
    return {**base, "CONVEYOR_DATABASE_URL": database_url, "CONVEYOR_SCHEMA": schema}


@pytest.fixture
def env(database_url: str, schema: str) -> dict[str, str]:
    """Environment for a `conveyor` process using this test's schema."""
    return env_for(database_url, schema)


def env_without_database(**extra: str) -> dict[str, str]:
    """Environment with no database configured at all (and the default schema)."""
    return {**_without_settings(subprocess_env("", "conveyor")), **extra}


def fresh_schema_name(database_url: str, base: str) -> str:
    """A schema name of this test's own that does not exist yet."""
    name = f"{base}_new"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    return name


def line_of(path: Path, text: str) -> int:
    """The 1-based number of the one line of ``path`` that contains ``text``."""
    numbers = [i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    assert len(numbers) == 1, (path, text, numbers)
    return numbers[0]


def sql_enqueue(db: DB, task: str, args: dict[str, Any], options: str = "") -> int:
    """Enqueue through the SQL function, as an application in any language would.

    ``options`` is SQL for more named arguments, e.g. ``", queue => 'emails'"``.
    """
    return int(db.one(f"select {{schema}}.enqueue(%s, %s::jsonb{options})", [task, json.dumps(args)]))


def insert_dead(
    db: DB, job_id: int, queue: str, task: str, errors: list[dict[str, Any]], args: dict[str, Any]
) -> None:
    """A dead job, as a worker leaves one after its last attempt (in a queue that exists: a
    worker works only those)."""
    db.all("insert into {schema}.queues (name) values (%s) on conflict do nothing", [queue])
    db.all(
        "insert into {schema}.dead_jobs (id, run_at, enqueued_at, started_at, died_at, attempt,"
        " max_attempts, priority, queue, task, args, errors)"
        " values (%s, now() - interval '2 minutes', now() - interval '3 minutes', now() - interval '1 minute',"
        " now(), %s, %s, 2, %s, %s, %s::jsonb, %s::jsonb)",
        [job_id, len(errors), len(errors), queue, task, json.dumps(args), json.dumps(errors)],
    )


# -- migrate ---------------------------------------------------------------------------


def test_migrate_installs_a_fresh_schema_shows_it_and_can_run_twice(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    name = fresh_schema_name(database_url, schema)
    env = env_for(database_url, name)
    head = migrations.head()
    assert head

    assert ok(conveyor("migrate", "--show", env=env, cwd=tmp_path)) == "none\n"
    assert ok(conveyor("migrate", env=env, cwd=tmp_path)) == f"schema {name!r} at {head}\n"
    assert DB(database_url, name).one("select count(*) from {schema}.jobs") == 0

    again, show = conveyor_many([["migrate"], ["migrate", "--show"]], env=env, cwd=tmp_path)
    assert ok(again) == f"schema {name!r} at {head}\n"
    assert ok(show) == f"{head}\n"


# -- enqueue ---------------------------------------------------------------------------


def test_enqueue_prints_the_id_and_writes_the_row_as_asked(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    full = [
        "enqueue",
        "add",
        "--args",
        '{"a": 1, "b": 2}',
        "--queue",
        "emails",
        "--priority",
        "low",
        "--delay",
        "600",
        "--unique-key",
        "sum-1-2",
        "--max-attempts",
        "3",
        "--tasks",
        TASKS,
    ]
    plain = ["enqueue", "send_email", "--args", '{"to": "a@example.com"}', "--tasks", TASKS]
    first, defaults = conveyor_many([full, plain], env=env, cwd=tmp_path)

    job_id = int(ok(first))
    assert first.stdout == f"{job_id}\n"
    row = db.one(
        "select queue, task, args, priority, state, attempt, max_attempts, unique_key,"
        " extract(epoch from run_at - enqueued_at) from {schema}.jobs where id = %s",
        [job_id],
    )
    assert row[:8] == ("emails", "add", {"a": 1, "b": 2}, 3, "scheduled", 0, 3, "sum-1-2")
    assert 599 <= float(row[8]) <= 601

    # Task defaults: send_email is declared with queue "emails" and priority "high".
    plain_id = int(ok(defaults))
    assert db.one(
        "select queue, priority, state, max_attempts, args from {schema}.jobs where id = %s", [plain_id]
    ) == ("emails", 1, "available", 5, {"to": "a@example.com"})

    # The same unique key names the same live job: no second row.
    repeat = conveyor(*full, env=env, cwd=tmp_path)
    assert ok(repeat) == f"{job_id}\n"
    assert db.one("select count(*) from {schema}.jobs") == 2


BAD_ENQUEUES: list[tuple[list[str], str]] = [
    (["add", "--args", '{"a": 1'], "--args is not valid JSON: "),
    (["add", "--args", "[1, 2]"], "--args must be a JSON object"),
    (["add", "--args", '"a"'], "--args must be a JSON object"),
    (["no_such_task", "--args", "{}"], "unknown task 'no_such_task'"),
    (["add", "--args", '{"a": 1, "c": 2}'], "task 'add': unexpected argument 'c'"),
    (["add", "--args", '{"b": 2}'], "task 'add': missing required argument 'a'"),
    (["add", "--args", '{"a": "one"}'], "task 'add': argument 'a' should be int"),
    (["add", "--args", '{"a": 1}', "--queue", "nowhere"], "unknown queue 'nowhere'"),
    (["add", "--args", '{"a": 1}', "--priority", "7"], "priority 7 is out of range"),
    (["add", "--args", '{"a": 1}', "--priority", "urgent"], "unknown priority 'urgent'"),
]


def test_enqueue_rejects_bad_input_with_one_line_and_writes_nothing(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    queues_before = db.all("select name from {schema}.queues order by name")
    calls = [["enqueue", *args, "--tasks", TASKS] for args, _ in BAD_ENQUEUES]
    calls.append(["enqueue", "--args", "{}", "--tasks", TASKS])  # no TASK: a usage error
    *runs, usage = conveyor_many(calls, env=env, cwd=tmp_path)

    expect_errors(runs, [start for _, start in BAD_ENQUEUES])
    assert usage.returncode == 2, str(usage)
    assert "Missing argument 'TASK'" in usage.stderr, str(usage)
    assert "Traceback" not in usage.stderr, str(usage)

    assert db.all("select id, task, queue, args from {schema}.jobs") == []
    assert db.all("select name from {schema}.queues order by name") == queues_before


def test_enqueue_by_name_from_a_box_without_the_task_module_on_a_sqlalchemy_url(
    database_url: str, schema: str, db: DB, tmp_path: Path
) -> None:
    # An ops box: DATABASE_URL as the application's SQLAlchemy engine has it, and no task
    # module; a worker elsewhere recorded the task and its defaults.
    env = {
        **env_without_database(PYTHONPATH=""),
        "DATABASE_URL": url_with_driver(database_url, "postgresql+psycopg"),
        "CONVEYOR_SCHEMA": schema,
    }
    db.all("select {schema}.create_queue('media')")
    db.all(
        "insert into {schema}.tasks (name, queue, priority, max_attempts, timeout_seconds)"
        " values ('resize_image', 'media', 1, 7, null)"
    )
    by_name, unknown, status = conveyor_many(
        [
            ["enqueue", "resize_image", "--args", '{"path": "a.png"}'],
            ["enqueue", "resize_imag", "--args", "{}"],
            ["status"],
        ],
        env=env,
        cwd=tmp_path,
    )
    job_id = int(ok(by_name))
    assert db.one(
        "select queue, priority, max_attempts, args from {schema}.jobs where id = %s", [job_id]
    ) == ("media", 1, 7, {"path": "a.png"})
    expect_error(unknown, "unknown task 'resize_imag'")
    assert "media" in ok(status)


# -- configuration errors --------------------------------------------------------------


def test_commands_without_any_database_say_to_set_database_url(tmp_path: Path) -> None:
    env = env_without_database()
    calls = [
        ["migrate"],
        ["worker", "--tasks", TASKS],
        ["enqueue", "add", "--args", '{"a": 1}', "--tasks", TASKS],
        ["status"],
        ["dlq", "list"],
    ]
    runs = conveyor_many(calls, env=env, cwd=tmp_path)
    expect_errors(runs, ["no database: set DATABASE_URL"] * len(calls), logs=True)
    assert not (tmp_path / ".conveyor").exists()


def test_migrate_and_worker_on_an_unreachable_database_say_cannot_reach_it(tmp_path: Path) -> None:
    env = env_without_database(CONVEYOR_DATABASE_URL=UNREACHABLE)
    runs = conveyor_many([["migrate"], ["worker", "--tasks", TASKS]], env=env, cwd=tmp_path, timeout=10)
    expect_errors(runs, ["cannot reach the database"] * 2, logs=True)


def test_client_commands_on_an_unreachable_database_say_cannot_reach_it_at_once(tmp_path: Path) -> None:
    env = env_without_database(CONVEYOR_DATABASE_URL=UNREACHABLE)
    calls = [["enqueue", "add", "--args", '{"a": 1}', "--tasks", TASKS], ["status"]]
    runs = conveyor_many(calls, env=env, cwd=tmp_path, timeout=10)
    expect_errors(runs, ["cannot reach the database"] * 2)


def test_worker_on_a_schema_never_migrated_says_to_run_migrate(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    name = fresh_schema_name(database_url, schema)
    env = env_for(database_url, name)
    run = conveyor("worker", "--tasks", TASKS, env=env, cwd=tmp_path)
    line = expect_error(run, f"Conveyor is not installed in schema {name!r}", logs=True)
    assert line.endswith("run `conveyor migrate`"), str(run)


def test_a_missing_relation_in_an_installed_schema_gives_the_databases_message(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    """Only a schema without Conveyor is "not installed"; any other missing table or function
    (a day another retention run dropped, a view dropped by hand) is said as the database says it."""
    DB(database_url, schema).all("drop table {schema}.finished_counts")
    run = conveyor("status", env=env_for(database_url, schema), cwd=tmp_path)
    line = expect_error(run, "")
    assert "finished_counts" in line, str(run)
    assert "does not exist" in line, str(run)
    assert "not installed" not in run.stderr, str(run)


def test_client_commands_on_a_schema_never_migrated_say_to_run_migrate(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    name = fresh_schema_name(database_url, schema)
    env = env_for(database_url, name)
    calls = [["status"], ["enqueue", "add", "--args", '{"a": 1}', "--tasks", TASKS], ["dlq", "list"]]
    runs = conveyor_many(calls, env=env, cwd=tmp_path)
    expect_errors(runs, [""] * len(calls))
    unclear = [run for run in runs if "conveyor migrate" not in run.stderr]
    assert not unclear, "these do not tell to run `conveyor migrate`:\n\n" + "\n\n".join(map(str, unclear))


# -- worker ----------------------------------------------------------------------------


BROKEN_MODULE = '''"""Tasks of a project, with a bug at import time."""

from conveyor import task


@task
def greet(name: str) -> str:
    return f"hello {name}"


RATIO = 1 / 0
'''


def test_worker_with_a_task_module_that_raises_on_import_loses_no_job(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    module = tmp_path / "project_tasks.py"
    module.write_text(BROKEN_MODULE)
    env = {
        **env,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    job_id = sql_enqueue(db, "greet", {"name": "Ada"})

    run = conveyor("worker", "--tasks", "project_tasks", env=env, cwd=tmp_path, timeout=20)
    line = expect_error(run, "cannot import task module 'project_tasks': ZeroDivisionError: division by zero")
    assert line.endswith(f"({module}, line {line_of(module, 'RATIO = 1 / 0')})"), str(run)
    assert run.seconds < 10, str(run)
    assert db.one("select state, attempt from {schema}.jobs where id = %s", [job_id]) == ("available", 0)
    assert db.one("select count(*) from {schema}.dead_jobs") == 0

    module.write_text(BROKEN_MODULE.replace("RATIO = 1 / 0", "RATIO = 1 / 2"))
    worker_args = ["worker", "--tasks", "project_tasks", "--poll-interval", "0.2", "--grace", "5"]
    with started(*worker_args, env=env, cwd=tmp_path, name="worker") as worker:
        wait_until_sync(
            lambda: (
                worker.alive()
                and db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1
            ),
            within=30,
        )
        assert worker.stop(signal.SIGTERM) == 0, str(worker)
    assert "Traceback" not in worker.stderr(), str(worker)
    assert db.one("select state, attempt, result from {schema}.job_history where id = %s", [job_id]) == (
        "completed",
        1,
        "hello Ada",
    )
    assert db.one("select count(*) from {schema}.jobs") == 0


# -- status ----------------------------------------------------------------------------


def test_status_prints_one_line_per_queue_with_its_counts(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    for queue in ("emails", "reports", "idle"):
        db.all("select {schema}.create_queue(%s)", [queue])
    db.all("select {schema}.pause_queue('idle')")
    past, later = ", run_at => now() - interval '5 minutes'", ", run_at => now() + interval '1 hour'"
    sql_enqueue(db, "add", {"a": 1}, past)
    sql_enqueue(db, "add", {"a": 2})
    sql_enqueue(db, "add", {"a": 3}, later)
    sql_enqueue(db, "send_email", {"to": "a@b.c"}, ", queue => 'emails'")
    running = sql_enqueue(db, "send_email", {"to": "d@e.f"}, ", queue => 'emails'")
    db.all(
        "update {schema}.jobs set state = 'running', attempt = 1, worker_id = gen_random_uuid(),"
        " started_at = now(), lease_expires_at = now() + interval '1 minute' where id = %s",
        [running],
    )
    for _ in range(2):
        sql_enqueue(
            db, "send_email", {"to": "g@h.i"}, ", queue => 'emails', run_at => now() + interval '1 day'"
        )
    for finished_ago, job_id in (("1 hour", 9001), ("2 days", 9002)):
        db.all(
            "insert into {schema}.job_history (id, run_at, enqueued_at, finished_at, attempt, max_attempts,"
            " priority, state, queue, task, args, errors) values (%s, now() - %s::interval,"
            " now() - %s::interval, now() - %s::interval, 1, 5, 2, 'completed', 'reports', 'export',"
            " '{{}}', '[]')",
            [job_id, finished_ago, finished_ago, finished_ago],
        )
    for job_id in (9003, 9004):
        insert_dead(db, job_id, "reports", "export", [{"attempt": 1, "error": "boom"}], {})

    header, rows = table(ok(conveyor("status", env=env, cwd=tmp_path)))

    assert header == [
        "queue",
        "paused",
        "waiting",
        "scheduled",
        "running",
        "completed_24h",
        "dead",
        "oldest_waiting",
        "limits",
        "limits_in_use",
    ]
    assert sorted(rows) == ["default", "emails", "idle", "reports"]
    assert rows["default"][:7] == ["default", "no", "2", "1", "0", "0", "0"]
    assert rows["default"][7].startswith("0:05:"), rows["default"]
    assert rows["emails"][:7] == ["emails", "no", "1", "2", "1", "0", "0"]
    assert re.fullmatch(r"0:0\d:\d\d", rows["emails"][7]), rows["emails"]
    assert rows["idle"] == ["idle", "yes", "0", "0", "0", "0", "0", "-", "-", "-"]
    assert rows["reports"] == ["reports", "no", "0", "0", "0", "1", "2", "-", "-", "-"]


def test_status_shows_the_scheduler_and_warns_when_schedules_exist_and_none_ticks(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    plain, as_json = conveyor_many([["status"], ["status", "--json"]], env=env, cwd=tmp_path)
    assert "scheduler: none running; 0 schedule(s) active\n" in ok(plain)
    assert plain.stderr == "", str(plain)  # no schedules: nothing to warn about
    assert json.loads(ok(as_json))["warnings"] == []

    db.all("insert into {schema}.schedules (name, cron, task) values ('nightly', '0 3 * * *', 'add')")
    never = conveyor("status", env=env, cwd=tmp_path)
    assert "scheduler: none running; 1 schedule(s) active\n" in ok(never)
    assert never.stderr == (
        "conveyor: warning: 1 schedule(s) will not fire: no scheduler has ticked within its lease"
        " (none has run on this schema); start `conveyor scheduler` (or `conveyor dev`)\n"
    ), str(never)

    db.all(
        "insert into {schema}.leaders (role, holder, hostname, pid, elected_at, expires_at) values"
        " ('scheduler', gen_random_uuid(), 'box-a', 42, now() - interval '1 hour', now() - interval '1 minute')"
    )
    lapsed = conveyor("status", env=env, cwd=tmp_path)
    assert "scheduler: none running; 1 schedule(s) active\n" in ok(lapsed)
    assert "no scheduler has ticked within its lease (the last lease ended at 20" in lapsed.stderr, str(
        lapsed
    )

    # The lease row of a scheduler that recorded its last tick: the warning counts from it.
    db.all(
        "update {schema}.leaders set renewed_at = now() - interval '75 seconds', expires_at = now() - interval '60 seconds'"
    )
    ticked = conveyor("status", env=env, cwd=tmp_path)
    assert "scheduler: none running; 1 schedule(s) active\n" in ok(ticked)
    assert re.search(
        r"no scheduler has ticked within its lease \(the last tick was 7[5-9] s ago\)", ticked.stderr
    ), str(ticked)

    with started(
        "scheduler", "--tasks", TASKS, "--tick", "0.2", "--lease", "3", env=env, cwd=tmp_path, name="s"
    ) as s:
        wait_until_sync(
            lambda: (
                s.alive()
                and db.one("select pid from {schema}.leaders where role = 'scheduler'") == s.popen.pid
            ),
            within=30,
        )
        plain, as_json = conveyor_many([["status"], ["status", "--json"]], env=env, cwd=tmp_path)
        assert re.search(
            rf"^scheduler: leader \S+ pid {s.popen.pid} since .*, last tick \d+ s ago, .*, until .*;"
            r" 1 schedule\(s\) active$",
            ok(plain),
            re.M,
        ), str(plain)
        assert plain.stderr == "", str(plain)
        document = json.loads(ok(as_json))
        assert document["scheduler"]["running"] is True
        assert document["scheduler"]["pid"] == s.popen.pid
        assert document["scheduler"]["active_schedules"] == 1
        assert 0 <= document["scheduler"]["last_tick_age"] < 3  # seconds; the lease is 3 s
        assert document["warnings"] == []
        assert [q["queue"] for q in document["queues"]] == ["default"]
        assert s.stop() == 0, str(s)


def test_a_worker_started_with_schedules_and_no_scheduler_logs_a_warning(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    db.all("insert into {schema}.schedules (name, cron, task) values ('nightly', '0 3 * * *', 'add')")
    worker_args = ["worker", "--tasks", TASKS, "--poll-interval", "0.2", "--grace", "5"]
    with started(*worker_args, env=env, cwd=tmp_path, name="worker") as worker:
        wait_until_sync(lambda: worker.alive() and "will not fire" in worker.stderr(), within=30)
        assert worker.stop() == 0, str(worker)
    # Conveyor's own warnings: a stop that interrupts a statement also gets psycopg's word
    # that the connection was closed (the worker drops such connections on purpose).
    warnings = [line for line in worker.stderr().splitlines() if " WARNING conveyor" in line]
    assert len(warnings) == 1, str(worker)
    assert warnings[0].endswith(
        "WARNING conveyor: 1 schedule(s) will not fire: no scheduler has ticked within its lease"
        " (none has run on this schema); start `conveyor scheduler` (or `conveyor dev`)"
    ), str(worker)


# -- dead-letter queue -----------------------------------------------------------------

DLQ_ROW = re.compile(r"^(\d+)\s+(\S+)\s+(\S+)\s+(\d+/\d+)\s+(\S+ \S+)\s+(.*)$")


def test_dlq_list_show_retry_and_purge_jobs_a_worker_buried(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    db.all("select {schema}.create_queue('emails')")
    first = sql_enqueue(db, "explode", {"message": "boom one"}, ", max_attempts => 1")
    second = sql_enqueue(db, "explode", {"message": "boom two"}, ", queue => 'emails', max_attempts => 1")
    worker_args = ["worker", "--tasks", TASKS, "--poll-interval", "0.2", "--grace", "5"]
    with started(*worker_args, env=env, cwd=tmp_path, name="worker") as worker:
        wait_until_sync(
            lambda: worker.alive() and db.one("select count(*) from {schema}.dead_jobs") == 2, within=30
        )
        assert worker.stop(signal.SIGTERM) == 0, str(worker)
    assert db.one("select count(*) from {schema}.jobs") == 0

    listing, emails_only, show = conveyor_many(
        [["dlq", "list"], ["dlq", "list", "--queue", "emails"], ["dlq", "show", str(first)]],
        env=env,
        cwd=tmp_path,
    )
    lines = ok(listing).splitlines()
    assert lines[0].split() == ["id", "queue", "task", "attempts", "died_at", "last_error"]
    rows = {int(m[1]): m.groups()[1:] for m in map(DLQ_ROW.match, lines[1:]) if m}
    assert len(rows) == len(lines) - 1 == 2, listing
    assert rows[first][:3] == ("default", "explode", "1/1")
    assert rows[first][4] == "RuntimeError: boom one"
    assert rows[second][:3] == ("emails", "explode", "1/1")
    assert rows[second][4] == "RuntimeError: boom two"
    assert [line.split()[0] for line in ok(emails_only).splitlines()] == ["id", str(second)]

    shown = ok(show)
    assert f"id:           {first}\n" in shown
    assert "task:         explode\n" in shown
    assert 'args:         {"message": "boom one"}\n' in shown
    assert re.search(r"^-- attempt 1 at \S+: RuntimeError: boom one$", shown, re.M), shown
    assert "Traceback (most recent call last):" in shown
    raise_line = line_of(TASKS_FILE, "raise RuntimeError(message)")
    assert f'File "{TASKS_FILE}", line {raise_line}, in explode' in shown
    assert shown.rstrip().endswith("RuntimeError: boom one")

    retry, purge = conveyor_many(
        [["dlq", "retry", str(first)], ["dlq", "purge", str(second)]], env=env, cwd=tmp_path
    )
    assert ok(retry) == f"retried 1 job(s): {first}\n"
    assert ok(purge) == "purged 1 dead job(s)\n"
    assert db.one(
        "select queue, task, state, attempt, max_attempts, jsonb_array_length(errors) from {schema}.jobs"
        " where id = %s",
        [first],
    ) == ("default", "explode", "available", 0, 1, 1)
    assert db.one("select count(*) from {schema}.dead_jobs") == 0


def _error(attempt: int, message: str) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "at": f"2026-01-01T00:0{attempt}:00+00:00",
        "error": f"ValueError: {message}",
        "traceback": (
            f'Traceback (most recent call last):\n  File "reports.py", line {10 + attempt}, in export\n'
            f"ValueError: {message}\n"
        ),
    }


def test_dlq_show_prints_every_attempt_and_retry_all_and_purge_all_work_by_queue(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    insert_dead(db, 501, "reports", "export", [_error(1, "no disk"), _error(2, "still no disk")], {"id": 7})
    insert_dead(db, 502, "reports", "export", [_error(1, "bad row")], {"id": 8})
    insert_dead(db, 503, "default", "add", [_error(1, "nope")], {"a": 1})

    shown = ok(conveyor("dlq", "show", "501", env=env, cwd=tmp_path))
    assert "attempt:      2\n" in shown
    for attempt, message in ((1, "no disk"), (2, "still no disk")):
        assert f"-- attempt {attempt} at 2026-01-01T00:0{attempt}:00+00:00: ValueError: {message}\n" in shown
        assert f'  File "reports.py", line {10 + attempt}, in export\nValueError: {message}' in shown
    assert shown.index("no disk") < shown.index("still no disk")

    assert ok(conveyor("dlq", "retry", "--all", "--queue", "reports", env=env, cwd=tmp_path)) == (
        "retried 2 job(s): 501, 502\n"
    )
    assert db.all("select id, queue, state, attempt, args from {schema}.jobs order by id") == [
        (501, "reports", "available", 0, {"id": 7}),
        (502, "reports", "available", 0, {"id": 8}),
    ]
    assert db.all("select id from {schema}.dead_jobs") == [(503,)]

    # --all asks first: no answer, or no, purges nothing.
    for answer in ("", "n\n"):
        refused = conveyor("dlq", "purge", "--all", "--queue", "default", env=env, cwd=tmp_path, input=answer)
        expect_error(
            refused, "nothing purged: confirm deleting every dead job in queue default, or pass --yes"
        )
        assert refused.stdout.startswith("Delete every dead job in queue default for good? [y/N]: "), str(
            refused
        )
    assert db.all("select id from {schema}.dead_jobs") == [(503,)]
    yes = conveyor("dlq", "purge", "--all", env=env, cwd=tmp_path, input="y\n")
    assert ok(yes).endswith("purged 1 dead job(s)\n")
    assert db.one("select count(*) from {schema}.dead_jobs") == 0
    insert_dead(db, 504, "default", "add", [_error(1, "nope")], {"a": 1})
    assert ok(conveyor("dlq", "purge", "--all", "--yes", env=env, cwd=tmp_path)) == "purged 1 dead job(s)\n"
    assert db.one("select count(*) from {schema}.dead_jobs") == 0
    assert db.one("select count(*) from {schema}.jobs") == 2


def test_dlq_refuses_unknown_ids_and_commands_without_ids_or_all(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    insert_dead(db, 601, "default", "add", [_error(1, "nope")], {"a": 1})
    calls = [
        ["dlq", "show", "999999"],
        ["dlq", "retry", "999999"],
        ["dlq", "retry"],
        ["dlq", "purge"],
        ["dlq", "retry", "601", "--all"],
    ]
    runs = conveyor_many(calls, env=env, cwd=tmp_path)
    expect_errors(
        runs,
        [
            "no dead job with id 999999",
            "job 999999: not found",
            "name the dead jobs to retry by id, or pass --all",
            "name the dead jobs to purge by id, or pass --all",
            "give ids or --all, not both",
        ],
    )
    assert db.all("select id from {schema}.dead_jobs") == [(601,)]
    assert db.one("select count(*) from {schema}.jobs") == 0


def test_dlq_retry_filters_without_all_are_usage_errors(env: dict[str, str], db: DB, tmp_path: Path) -> None:
    """The filters and --limit narrow --all; with ids alone they would be ignored, so each is
    refused before anything is retried."""
    insert_dead(db, 603, "default", "add", [_error(1, "nope")], {"a": 1})
    calls = {
        "--queue": ["dlq", "retry", "603", "--queue", "other"],
        "--task": ["dlq", "retry", "603", "--task", "add"],
        "--died-after": ["dlq", "retry", "603", "--died-after", "2h"],
        "--died-before": ["dlq", "retry", "603", "--died-before", "2026-01-01T00:00:00+00:00"],
        "--limit": ["dlq", "retry", "603", "--limit", "1"],
        "--queue, --limit": ["dlq", "retry", "-q", "default", "--limit", "5"],  # no ids either
    }
    runs = conveyor_many(list(calls.values()), env=env, cwd=tmp_path)
    for given, run in zip(calls, runs, strict=True):
        assert run.returncode == 2, str(run)
        assert f"Error: {given} narrow" in run.stderr, str(run)
        assert "pass --all with them, or name the jobs by id alone" in run.stderr, str(run)
        assert "Traceback" not in run.stderr, str(run)
        assert run.stdout == "", str(run)
    assert db.all("select id from {schema}.dead_jobs") == [(603,)]
    assert db.one("select count(*) from {schema}.jobs") == 0


def test_ids_and_attempts_out_of_range_are_usage_errors(env: dict[str, str], db: DB, tmp_path: Path) -> None:
    insert_dead(db, 602, "default", "add", [_error(1, "nope")], {"a": 1})
    calls = [
        ["dlq", "retry", "602", "99999999999999999999999"],
        ["dlq", "purge", "9223372036854775808"],
        ["jobs", "show", "0"],
        ["jobs", "list", "--before", "-1"],
        ["enqueue", "add", "--max-attempts", "99999999999", "--tasks", TASKS],
    ]
    for run in conveyor_many(calls, env=env, cwd=tmp_path):
        assert run.returncode == 2, str(run)
        assert "is not in the range" in run.stderr, str(run)
        assert "Traceback" not in run.stderr, str(run)
    assert db.all("select id from {schema}.dead_jobs") == [(602,)]
    assert db.one("select count(*) from {schema}.jobs") == 0


# -- dev -------------------------------------------------------------------------------


def _stop_embedded(pgdata: Path) -> None:
    """Stop an embedded server the dev process left behind (only if the test went wrong)."""
    if embedded.running_url(pgdata) is None:
        return
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    wait_until_sync(lambda: embedded.running_url(pgdata) is None, within=30)


def test_dev_without_database_url_runs_an_embedded_postgres_that_other_commands_find(
    tmp_path: Path,
) -> None:
    env = env_without_database(PYTHONUNBUFFERED="1")
    pgdata = tmp_path / ".conveyor" / "pgdata"
    dev_args = ["dev", "--tasks", TASKS, "--poll-interval", "0.2", "--grace", "5", "--api-port", "0"]
    try:
        with started(*dev_args, env=env, cwd=tmp_path, name="dev") as dev:
            wait_until_sync(lambda: dev.alive() and "Ctrl-C to stop" in dev.stdout(), within=60)
            found = re.search(r"^Conveyor dev: database (\S+)$", dev.stdout(), re.M)
            assert found, str(dev)
            url = found[1]
            assert pgdata.is_dir()
            assert embedded.running_url(pgdata) == url

            job_id = int(
                ok(
                    conveyor(
                        "enqueue",
                        "add",
                        "--args",
                        '{"a": 2, "b": 3}',
                        "--tasks",
                        TASKS,
                        env=env,
                        cwd=tmp_path,
                    )
                )
            )

            def completed() -> bool:
                dev.alive()
                _, rows = table(ok(conveyor("status", env=env, cwd=tmp_path)))
                return rows["default"][2:6] == ["0", "0", "0", "1"]

            wait_until_sync(completed, within=30)
            with psycopg.connect(url) as conn:
                assert conn.execute(
                    "select result from conveyor.job_history where id = %s", [job_id]
                ).fetchone() == (5,)

            assert dev.stop(signal.SIGINT) == 0, str(dev)
            assert "Traceback" not in dev.stderr(), str(dev)
        assert embedded.running_url(pgdata) is None, "conveyor dev left its PostgreSQL running"
    finally:
        _stop_embedded(pgdata)


# -- a worker with no task module ------------------------------------------------------


def test_worker_started_where_no_task_module_is_refuses_to_start_and_loses_no_job(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    # Outside the project: no `tasks` module in this folder nor on the path (the repo root,
    # which has one, is left off PYTHONPATH; Conveyor itself is installed).
    env = {**env, "PYTHONPATH": ""}
    job_id = sql_enqueue(db, "add", {"a": 1})
    empty_list = {**env, "CONVEYOR_TASKS": " , "}
    # With --queues it has work to claim, and used to bury every job as "unknown task".
    default = conveyor("worker", "--queues", "default", env=env, cwd=tmp_path, timeout=15)
    empty = conveyor("worker", "--queues", "default", env=empty_list, cwd=tmp_path, timeout=15)
    line = expect_error(default, f"no task module 'tasks' in {tmp_path}", logs=True)
    assert line.endswith("or name your task modules with --tasks or CONVEYOR_TASKS"), str(default)
    expect_error(empty, "no task module named", logs=True)
    dev = conveyor("dev", env=env_without_database(PYTHONPATH=""), cwd=tmp_path, timeout=15)
    expect_error(dev, f"no task module 'tasks' in {tmp_path}", logs=True)
    assert not (tmp_path / ".conveyor").exists()  # refused before starting a database
    assert db.one("select state, attempt from {schema}.jobs where id = %s", [job_id]) == ("available", 0)
    assert db.one("select count(*) from {schema}.dead_jobs") == 0
    assert db.one("select count(*) from {schema}.workers") == 0


def test_dev_without_the_embedded_postgres_installed_says_how_to_install_it(tmp_path: Path) -> None:
    # An install without the `dev` extra: the module is absent (None in sys.modules makes
    # its import fail as a missing module does).
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\n\nsys.modules['embedded_postgres'] = None\n")
    env = env_without_database(PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    project = tmp_path / "project"
    project.mkdir()
    run = conveyor("dev", "--tasks", TASKS, env=env, cwd=project, timeout=20)
    line = expect_error(run, "conveyor dev needs the embedded PostgreSQL", logs=True)
    assert "pip install 'conveyor[dev]'" in line, str(run)
    assert "DATABASE_URL" in line, str(run)
    assert not (project / ".conveyor").exists()


# -- jobs --------------------------------------------------------------------------------


def insert_finished(
    db: DB, job_id: int, *, task: str, result: Any, errors: list[dict[str, Any]], queue: str = "default"
) -> None:
    """A finished job, as a worker leaves one in job_history."""
    db.all(
        "insert into {schema}.job_history (id, run_at, enqueued_at, started_at, finished_at, worker_id,"
        " attempt, max_attempts, priority, state, queue, task, args, result, errors) values"
        " (%s, '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00', '2026-01-01 00:02:30+00',"
        " '2026-01-01 00:03:00+00', gen_random_uuid(), %s, 5, 2, 'completed', %s, %s, %s::jsonb,"
        " %s::jsonb, %s::jsonb)",
        [job_id, len(errors) + 1, queue, task, json.dumps({"a": 2}), json.dumps(result), json.dumps(errors)],
    )


def test_jobs_show_prints_a_job_wherever_it_is_with_its_timeline(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    insert_finished(db, 9001, task="add", result={"total": 5}, errors=[_error(1, "flaky")])
    running = sql_enqueue(db, "add", {"a": 1})
    db.all(
        "update {schema}.jobs set state = 'running', attempt = 1, worker_id = gen_random_uuid(),"
        " started_at = now(), lease_expires_at = now() + interval '1 minute', progress = 40,"
        " progress_message = 'querying' where id = %s",
        [running],
    )
    insert_dead(db, 9002, "default", "explode", [_error(1, "boom"), _error(2, "boom again")], {"m": 1})
    finished, live, dead, as_json, missing = conveyor_many(
        [
            ["jobs", "show", "9001"],
            ["jobs", "show", str(running)],
            ["jobs", "show", "9002"],
            ["jobs", "show", "9001", "--json"],
            ["jobs", "show", "999999"],
        ],
        env=env,
        cwd=tmp_path,
    )

    shown = ok(finished)
    for line in (
        "id:           9001",
        "state:        completed",
        "attempts:     2/5",
        'args:         {"a": 2}',
    ):
        assert f"{line}\n" in shown, shown
    assert 'result:       {"total": 5}\n' in shown
    timeline = shown.split("timeline:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split("  ", 2)[2] for line in timeline] == [
        "enqueued",
        "attempt 1 failed: ValueError: flaky",
        "attempt 2 started",
        "completed",
    ], shown
    assert timeline[0].startswith("  2026-01-01 00:00:00+0000"), shown
    assert "-- attempt 1 at 2026-01-01T00:01:00+00:00: ValueError: flaky\n" in shown

    shown = ok(live)
    assert "state:        running\n" in shown
    assert "progress:     40% querying\n" in shown
    assert shown.rstrip().endswith("lease expires unless renewed"), shown

    shown = ok(dead)
    assert "state:        dead\n" in shown
    assert shown.index("attempt 1 failed: ValueError: boom") < shown.index("attempt 2 failed")

    document = json.loads(ok(as_json))
    assert (document["id"], document["state"], document["result"]) == (9001, "completed", {"total": 5})
    assert [event["event"] for event in document["timeline"]][-1] == "completed"
    assert document["timeline"][-1]["at"] == "2026-01-01T00:03:00+00:00"
    expect_error(missing, "no job with id 999999")


def test_jobs_list_filters_and_pages_by_cursor(env: dict[str, str], db: DB, tmp_path: Path) -> None:
    db.all("select {schema}.create_queue('emails')")
    live = [sql_enqueue(db, "add", {"a": n}) for n in range(3)]
    email = sql_enqueue(db, "send_email", {"to": "a@b.c"}, ", queue => 'emails'")
    later = sql_enqueue(db, "add", {"a": 9}, ", run_at => now() + interval '1 hour'")
    insert_finished(db, 9001, task="add", result=3, errors=[])
    insert_dead(db, 9100, "emails", "send_email", [_error(1, "smtp down")], {"to": "x@y.z"})

    everything, dead, emails, adds, scheduled, page_one, as_json, bad = conveyor_many(
        [
            ["jobs", "list"],
            ["jobs", "list", "--state", "dead"],
            ["jobs", "list", "--queue", "emails"],
            ["jobs", "list", "--task", "add", "--state", "available"],
            ["jobs", "list", "--state", "scheduled"],
            ["jobs", "list", "--limit", "3"],
            ["jobs", "list", "--limit", "3", "--json"],
            ["jobs", "list", "--state", "lost"],
        ],
        env=env,
        cwd=tmp_path,
    )

    def ids(run: Run) -> list[int]:
        header, rows = table(ok(run))
        assert header == [
            "id",
            "queue",
            "task",
            "state",
            "attempts",
            "enqueued_at",
            "finished_at",
            "last_error",
        ]
        return [int(i) for i in rows]

    assert ids(everything) == [9100, 9001, later, email, *reversed(live)]
    assert ids(dead) == [9100]
    assert "smtp down" in dead.stdout
    assert ids(emails) == [9100, email]
    assert ids(adds) == list(reversed(live))
    assert ids(scheduled) == [later]
    assert ids(page_one) == [9100, 9001, later]
    cursor = page_one.stdout.rstrip("\n").rsplit("\nnext page: --cursor ", 1)[1]
    assert "next page" not in everything.stdout  # a short page is the last

    page = json.loads(ok(as_json))
    assert [job["id"] for job in page["jobs"]] == [9100, 9001, later]
    assert page["next_cursor"] == cursor
    page_two, from_id = conveyor_many(
        [
            ["jobs", "list", "--limit", "3", "--cursor", cursor, "--json"],
            ["jobs", "list", "--limit", "3", "--before", str(later), "--json"],
        ],
        env=env,
        cwd=tmp_path,
    )
    assert [job["id"] for job in json.loads(ok(page_two))["jobs"]] == [email, live[2], live[1]]
    assert json.loads(ok(from_id)) == json.loads(page_two.stdout)
    assert bad.returncode == 2, str(bad)
    assert "'lost' is not one of" in bad.stderr, str(bad)


def test_every_read_command_prints_json_with_json(env: dict[str, str], db: DB, tmp_path: Path) -> None:
    insert_dead(db, 9100, "default", "add", [_error(1, "nope")], {"a": 1})
    db.all("insert into {schema}.schedules (name, cron, task) values ('nightly', '0 3 * * *', 'add')")
    db.all("select {schema}.trigger_schedule('nightly')")
    runs = conveyor_many(
        [
            ["queues", "list", "--json"],
            ["dlq", "list", "--json"],
            ["dlq", "show", "9100", "--json"],
            ["schedules", "list", "--json"],
            ["schedules", "fires", "nightly", "--json"],
            ["retention", "show", "--json"],
        ],
        env=env,
        cwd=tmp_path,
    )
    queues, dead, one_dead, schedule_list, fires, retention = (json.loads(ok(run)) for run in runs)
    assert queues == [
        {"queue": "default", "paused": False, "all_paused": False, "paused_tasks": [], "limits": None}
    ]
    assert [(d["id"], d["last_error"]) for d in dead["dead_jobs"]] == [(9100, "ValueError: nope")]
    assert dead["next_cursor"] is None
    assert (one_dead["id"], one_dead["args"], one_dead["errors"][0]["error"]) == (
        9100,
        {"a": 1},
        "ValueError: nope",
    )
    assert [(s["name"], s["cron"], s["paused"]) for s in schedule_list] == [("nightly", "0 3 * * *", False)]
    assert [f["kind"] for f in fires] == ["manual"]
    assert isinstance(fires[0]["job_id"], int)
    assert any(r["queue"] == "*" for r in retention)


def test_dlq_retry_reports_each_ids_outcome(env: dict[str, str], db: DB, tmp_path: Path) -> None:
    insert_dead(db, 208, "default", "add", [_error(1, "nope")], {"a": 1})
    live = sql_enqueue(db, "add", {"a": 2})
    run = conveyor("dlq", "retry", "208", str(live), "999999", env=env, cwd=tmp_path)
    assert run.returncode == 1, str(run)
    assert run.stdout == "retried 1 job(s): 208\n", str(run)
    assert run.stderr.splitlines() == [
        f"conveyor: error: job {live}: not dead (it is available)",
        "conveyor: error: job 999999: not found",
    ], str(run)
    assert db.all("select id, state from {schema}.jobs order by id") == [
        (live, "available"),
        (208, "available"),
    ]
    assert db.one("select count(*) from {schema}.dead_jobs") == 0


def test_durations_take_units_everywhere(env: dict[str, str], db: DB, tmp_path: Path) -> None:
    for job_id, days in ((301, 8), (302, 1)):
        insert_dead(db, job_id, "default", "add", [_error(1, "nope")], {"a": 1})
        db.all(
            "update {schema}.dead_jobs set died_at = now() - %s * interval '1 day' where id = %s",
            [days, job_id],
        )
    half_hour, bare, purge, keep, bad = conveyor_many(
        [
            ["enqueue", "add", "--args", '{"a": 1}', "--delay", "30m", "--tasks", TASKS],
            ["enqueue", "add", "--args", '{"a": 2}', "--delay", "90", "--tasks", TASKS],
            ["dlq", "purge", "--all", "--older-than", "7d", "--yes"],
            ["retention", "set", "--dead", "12h", "--completed", "45s"],
            ["enqueue", "add", "--args", '{"a": 3}', "--delay", "soon", "--tasks", TASKS],
        ],
        env=env,
        cwd=tmp_path,
    )
    delays = {int(ok(run)): seconds for run, seconds in ((half_hour, 1800), (bare, 90))}
    for job_id, seconds in delays.items():
        waited = db.one(
            "select extract(epoch from run_at - enqueued_at) from {schema}.jobs where id = %s", [job_id]
        )
        assert seconds - 1 <= float(waited) <= seconds + 1, (job_id, waited)
    assert ok(purge) == "purged 1 dead job(s)\n"
    assert db.all("select id from {schema}.dead_jobs") == [(302,)]
    ok(keep)
    assert db.one(
        "select extract(epoch from dead_keep), extract(epoch from completed_keep) from {schema}.retention"
        " where queue = '*'"
    ) == (43200, 45)
    assert bad.returncode == 2, str(bad)
    assert "duration 'soon' is not valid: use a number and a unit, like 45s, 30m, 12h, 7d" in bad.stderr, str(
        bad
    )


def test_worker_logs_a_failed_attempt_as_one_json_line_with_log_format_json(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    job_id = sql_enqueue(db, "explode", {"message": "boom"}, ", max_attempts => 2")
    args = ["--log-format", "json", "worker", "--tasks", TASKS, "--poll-interval", "0.2", "--grace", "5"]
    with started(*args, env=env, cwd=tmp_path, name="worker") as worker:
        wait_until_sync(
            lambda: (
                worker.alive()
                and db.one("select count(*) from {schema}.dead_jobs where id = %s", [job_id]) == 1
            ),
            within=60,
        )
        assert worker.stop(signal.SIGTERM) == 0, str(worker)
    lines = [json.loads(line) for line in worker.stderr().splitlines() if line.strip()]
    events = {line.get("event"): line for line in lines if line.get("job_id") == job_id}
    assert set(events) >= {"retry", "dead"}, str(worker)
    assert events["retry"]["error"].startswith("RuntimeError: boom"), events["retry"]
    assert (events["retry"]["task"], events["retry"]["queue"], events["retry"]["attempt"]) == (
        "explode",
        "default",
        1,
    )
    assert events["dead"]["attempt"] == 2
