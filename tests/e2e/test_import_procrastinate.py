"""`conveyor import procrastinate` against a real procrastinate 3.x schema filled by
procrastinate's own defer (and its own worker, for a failed job), run as the user runs it:
a `conveyor` subprocess; then the imported jobs run in a `conveyor worker` process."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest
from procrastinate import PsycopgConnector
from psycopg import sql

from conveyor import Conveyor, Registry
from conveyor.db import migrations
from conveyor.ops import imports as ops
from conveyor.ops.roles import LOCAL_ADMIN
from conveyor.queue.imports import ImportPlan, ImportReport
from conveyor.task_map import Target, TaskMap

from ..helpers import DB, REPO, subprocess_env, wait_until_sync

pytestmark = pytest.mark.processes

TASKS = "tests.e2e.procrastinate_import_tasks"

MAP = """
[tasks]
"legacy.send_email" = "send_email"
"legacy.add" = { task = "add", queue = "sums" }
"legacy.build_report" = "build_report"

[priorities]
"5" = "critical"
"""


@dataclass
class Source:
    """A procrastinate app on its own schema of the test database, and its tasks."""

    app: procrastinate.App
    schema: str
    tasks: dict[str, Any]
    db: DB

    async def defer(self, name: str, *, queue: str | None = None, **options: Any) -> int:
        """Defer a job with procrastinate itself; its id."""
        task = self.tasks[name]
        configure = {k: v for k, v in options.items() if k != "args"}
        if queue is not None:
            configure["queue"] = queue
        deferrer = task.configure(**configure) if configure else task
        return int(await deferrer.defer_async(**options.get("args", {})))

    def statuses(self) -> dict[int, str]:
        return dict(self.db.all("select id, status::text from {schema}.procrastinate_jobs"))


@pytest.fixture
async def source(database_url: str, schema: str) -> AsyncIterator[Source]:
    name = f"{schema}_pr"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    app = procrastinate.App(
        connector=PsycopgConnector(conninfo=database_url, kwargs={"options": f"-c search_path={name}"})
    )

    @app.task(name="legacy.send_email", queue="emails")
    def send_email(to: str, subject: str) -> None: ...

    @app.task(name="legacy.add", queue="math")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="legacy.build_report", queue="doomed")
    def build_report(report_id: int) -> None:
        raise RuntimeError(f"report {report_id} is broken")

    @app.task(name="legacy.unmapped", queue="other")
    def unmapped() -> None: ...

    tasks = {"send_email": send_email, "add": add, "build_report": build_report, "unmapped": unmapped}
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        yield Source(app, name, tasks, DB(database_url, name))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def map_file(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.toml"
    path.write_text(MAP)
    return path


def conveyor(
    database_url: str, schema: str, *args: str, ledger: Path | None = None
) -> subprocess.CompletedProcess[str]:
    extra = {"CONVEYOR_TEST_LEDGER": str(ledger)} if ledger else {}
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=REPO,
        env=subprocess_env(database_url, schema, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def import_jobs(
    database_url: str, schema: str, source: Source, map_file: Path, *flags: str
) -> subprocess.CompletedProcess[str]:
    return conveyor(
        database_url,
        schema,
        "import",
        "procrastinate",
        "--map",
        str(map_file),
        "--from-schema",
        source.schema,
        "--tasks",
        TASKS,
        *flags,
    )


def start_worker(database_url: str, schema: str, ledger: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", "--tasks", TASKS],
        cwd=REPO,
        env=subprocess_env(database_url, schema, CONVEYOR_TEST_LEDGER=str(ledger)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def start(database_url: str, schema: str, command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=subprocess_env(database_url, schema),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.stdout, done.stderr
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def runs(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in folder.glob("*.log") for line in path.read_text().splitlines()]


async def test_waiting_scheduled_and_failed_jobs_move_once_and_run_in_conveyor_workers(
    database_url: str, schema: str, db: DB, source: Source, map_file: Path, tmp_path: Path
) -> None:
    emails = [
        await source.defer("send_email", args={"to": f"{n}@example.com", "subject": f"hello {n}"})
        for n in range(3)
    ]
    urgent_sum = await source.defer(
        "add", args={"a": 1, "b": 2}, priority=5, queueing_lock="sum-1", lock="account-7"
    )
    lazy_sum = await source.defer("add", args={"a": 3, "b": 4}, priority=-3)
    later = await source.defer(
        "send_email", args={"to": "later@example.com", "subject": "later"}, schedule_in={"hours": 2}
    )
    broken = await source.defer("build_report", args={"report_id": 9})
    await source.app.run_worker_async(queues=["doomed"], wait=False)  # procrastinate's worker fails it
    assert source.statuses()[broken] == "failed"

    done = import_jobs(database_url, schema, source, map_file, "--include-failed", "--json")
    assert done.returncode == 0, done.stderr
    first = report(done)
    assert (first["imported"], first["waiting"], first["scheduled"], first["dead"]) == (7, 5, 1, 1)
    assert (first["refused"], first["skipped"], first["left"]) == ({}, 0, 0)
    by_group = {(t["task"], t["status"]): (t["found"], t["imported"]) for t in first["tasks"]}
    assert by_group == {
        ("legacy.add", "todo"): (2, 2),
        ("legacy.build_report", "failed"): (1, 1),
        ("legacy.send_email", "todo"): (4, 4),
    }

    ledger = dict(db.all("select source_id, job_id from {schema}.imported_jobs"))
    assert set(ledger) == {*emails, urgent_sum, lazy_sum, later, broken}
    jobs = {
        row[0]: row[1:]
        for row in db.all(
            "select id, task, queue, state, priority, args, unique_key, key, meta -> 'procrastinate' ->> 'id',"
            " run_at from {schema}.jobs"
        )
    }
    assert jobs[ledger[emails[0]]][:6] == (
        "send_email",
        "mail",
        "available",
        2,
        {"to": "0@example.com", "subject": "hello 0"},
        None,
    )
    assert jobs[ledger[urgent_sum]][:7] == (
        "add",
        "sums",
        "available",
        0,
        {"a": 1, "b": 2},
        "sum-1",
        "account-7",
    )
    assert jobs[ledger[lazy_sum]][3] == 3  # below procrastinate's default: low
    assert jobs[ledger[later]][2] == "scheduled"
    assert jobs[ledger[later]][8] > datetime.now(UTC) + timedelta(hours=1)
    assert jobs[ledger[later]][7] == str(later)
    dead = db.one(
        "select task, queue, args, errors -> 0 ->> 'error' from {schema}.dead_jobs where id = %s",
        [ledger[broken]],
    )
    assert dead[:3] == ("build_report", "reports", {"report_id": 9})
    assert f"failed in procrastinate (job {broken}" in dead[3]
    # procrastinate will never run the imported jobs; its failed job stays failed.
    assert source.statuses() == {
        **{j: "cancelled" for j in [*emails, urgent_sum, lazy_sum, later]},
        broken: "failed",
    }

    again = import_jobs(
        database_url, schema, source, map_file, "--include-failed", "--source-rows", "keep", "--json"
    )
    assert again.returncode == 0, again.stderr
    assert (report(again)["imported"], report(again)["imported_before"]) == (0, 7)
    assert db.one("select count(*) from {schema}.jobs") == 6
    assert db.one("select count(*) from {schema}.dead_jobs") == 1

    async with Conveyor(database_url, schema=schema) as client:
        await client.run_now(ledger[later])
        await client.retry_dead(ledger[broken])
    worker = start_worker(database_url, schema, tmp_path)
    try:
        wait_until_sync(
            lambda: db.one("select count(*) from {schema}.job_history where state = 'completed'") == 7,
            within=60,
            interval=0.1,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output[-3000:]
    ran = runs(tmp_path)
    assert sorted(r["job"] for r in ran) == sorted(ledger.values())  # each job ran once
    expected = {
        ledger[emails[n]]: ("send_email", {"to": f"{n}@example.com", "subject": f"hello {n}"})
        for n in range(3)
    }
    expected[ledger[later]] = ("send_email", {"to": "later@example.com", "subject": "later"})
    expected[ledger[urgent_sum]] = ("add", {"a": 1, "b": 2})
    expected[ledger[lazy_sum]] = ("add", {"a": 3, "b": 4})
    expected[ledger[broken]] = ("build_report", {"report_id": 9})
    assert {r["job"]: (r["task"], r["args"]) for r in ran} == expected


async def test_unmapped_tasks_refuse_the_import_unless_skipped_and_are_reported(
    database_url: str, schema: str, db: DB, source: Source, map_file: Path
) -> None:
    email = await source.defer("send_email", args={"to": "a@example.com", "subject": "hi"})
    stray = await source.defer("unmapped")

    refused = import_jobs(database_url, schema, source, map_file)
    assert refused.returncode == 1
    assert (
        "1 procrastinate jobs are of tasks the mapping file does not name: 'legacy.unmapped' (1)"
        in refused.stderr
    )
    assert "--skip-unmapped" in refused.stderr
    assert db.one("select count(*) from {schema}.jobs") == 0
    assert source.statuses() == {email: "todo", stray: "todo"}

    preview = import_jobs(database_url, schema, source, map_file, "--dry-run")
    assert preview.returncode == 0, preview.stderr
    assert "legacy.unmapped" in preview.stdout
    assert "an import now would be refused: 1 procrastinate jobs are of tasks" in preview.stdout
    assert "skipped: task not in the map" in preview.stdout
    assert db.one("select count(*) from {schema}.jobs") == 0

    done = import_jobs(database_url, schema, source, map_file, "--skip-unmapped", "--json")
    assert done.returncode == 0, done.stderr
    result = report(done)
    assert (result["imported"], result["skipped"]) == (1, 1)
    assert {(t["task"], t["action"], t["found"]) for t in result["tasks"]} == {
        ("legacy.send_email", "import", 1),
        ("legacy.unmapped", "unmapped", 1),
    }
    assert source.statuses() == {email: "cancelled", stray: "todo"}


async def test_running_jobs_refuse_the_import_unless_included(
    database_url: str, schema: str, db: DB, source: Source, map_file: Path
) -> None:
    job_id = await source.defer("add", args={"a": 1, "b": 1})
    worker_id = await source.app.job_manager.register_worker()
    fetched = await source.app.job_manager.fetch_job(queues=["math"], worker_id=worker_id)
    assert fetched is not None
    assert fetched.id == job_id
    assert source.statuses() == {job_id: "doing"}

    refused = import_jobs(database_url, schema, source, map_file)
    assert refused.returncode == 1
    assert "1 procrastinate jobs are running (status doing): stop procrastinate's workers" in refused.stderr
    assert db.one("select count(*) from {schema}.jobs") == 0

    done = import_jobs(database_url, schema, source, map_file, "--include-doing", "--json")
    assert done.returncode == 0, done.stderr
    assert report(done)["waiting"] == 1
    assert db.one("select task, state, args from {schema}.jobs") == ("add", "available", {"a": 1, "b": 1})
    assert source.statuses() == {job_id: "cancelled"}


async def test_a_job_its_conveyor_task_refuses_stays_in_procrastinate_and_the_rest_move(
    database_url: str, schema: str, db: DB, source: Source, map_file: Path
) -> None:
    good = await source.defer("add", args={"a": 1, "b": 2})
    bad = await source.defer("add", args={"a": 1})  # Conveyor's add needs b
    after = await source.defer("add", args={"a": 5, "b": 6})

    done = import_jobs(database_url, schema, source, map_file, "--batch-size", "2", "--source-rows", "delete")
    assert done.returncode == 1
    assert f"refused: procrastinate job {bad}: " in done.stdout
    assert "'b'" in done.stdout
    assert "1 jobs were refused" in done.stderr
    assert "1 jobs are still there to import" in done.stdout
    assert db.all("select args from {schema}.jobs order by id") == [({"a": 1, "b": 2},), ({"a": 5, "b": 6},)]
    assert source.statuses() == {bad: "todo"}  # the imported rows were deleted
    assert good != after


async def test_bad_map_files_and_a_missing_schema_get_a_clear_error(
    database_url: str, schema: str, db: DB, source: Source, tmp_path: Path
) -> None:
    await source.defer("send_email", args={"to": "a@example.com", "subject": "hi"})
    cases = {
        "broken.toml": ('[tasks\n"a" = "b"', "broken.toml: not valid TOML"),
        "empty.json": ("{}", "empty.json: no 'tasks' table"),
        "typo.toml": ('[task]\n"a" = "b"', "typo.toml: unknown table 'task'"),
        "queue.toml": (
            '[tasks]\n"legacy.send_email" = { task = "send_email", queue = "no spaces" }',
            "queue.toml: tasks.\"legacy.send_email\": queue name 'no spaces' is not allowed",
        ),
        "priority.json": (
            '{"tasks": {"a": "b"}, "priorities": {"5": "urgent"}}',
            "unknown priority 'urgent'",
        ),
        "nobody.toml": ('[tasks]\n"legacy.send_email" = "send_mail"', "unknown task 'send_mail'"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        done = import_jobs(database_url, schema, source, path)
        assert done.returncode == 1, (name, done.stdout, done.stderr)
        assert message in done.stderr, (name, done.stderr)
        assert "Traceback" not in done.stderr
    missing = conveyor(
        database_url,
        schema,
        "import",
        "procrastinate",
        "--map",
        str(tmp_path / "nobody.toml"),
        "--from-schema",
        "no_such_schema",
    )
    assert missing.returncode == 1
    assert "no procrastinate_jobs table in schema 'no_such_schema'" in missing.stderr
    unnamed = conveyor(
        database_url,
        schema,
        "import",
        "procrastinate",
        "--map",
        str(tmp_path / "nobody.toml"),
        "--from-schema",
        "",
    )
    assert unnamed.returncode == 1
    assert "name the schema of procrastinate's tables, got ''" in unnamed.stderr
    absent = conveyor(database_url, schema, "import", "procrastinate", "--map", str(tmp_path / "none.toml"))
    assert absent.returncode == 1
    assert "cannot read the mapping file" in absent.stderr
    assert db.one("select count(*) from {schema}.jobs") == 0
    assert db.one("select count(*) from {schema}.imported_jobs") == 0

    migrations.downgrade(database_url, schema, "0013_api_key_changes")
    old = import_jobs(database_url, schema, source, tmp_path / "nobody.toml")
    assert old.returncode == 1
    assert f"Conveyor's schema '{schema}' has no import ledger" in old.stderr
    assert "run `conveyor migrate` first" in old.stderr


async def test_a_failed_batch_takes_back_all_it_wrote_and_the_next_run_goes_on_from_there(
    schema: str, db: DB, source: Source, client: Conveyor, registry: Registry
) -> None:
    @registry.task(queue="sums")
    def add(a: int, b: int) -> int:
        return a + b

    ids = [await source.defer("add", args={"a": n, "b": n}) for n in range(10)]
    # The ledger refuses the 8th job: the third batch fails at its last write but one.
    db.all("create table {schema}.refuse_import (source_id bigint)")
    db.all("insert into {schema}.refuse_import values (%s)", [ids[7]])
    db.all(
        "create function {schema}.refuse_import() returns trigger language plpgsql as $$ begin"
        " if exists (select from {schema}.refuse_import r where r.source_id = new.source_id) then"
        " raise exception 'the ledger refuses this batch'; end if; return new; end $$"
    )
    db.all(
        "create trigger refuse before insert on {schema}.imported_jobs"
        " for each row execute function {schema}.refuse_import()"
    )
    plan = ImportPlan(source.schema, TaskMap({"legacy.add": Target("add")}), batch_size=3)

    with pytest.raises(psycopg.errors.RaiseException, match="the ledger refuses this batch"):
        await ops.import_procrastinate(client, LOCAL_ADMIN, plan)
    assert db.all("select source_id from {schema}.imported_jobs order by 1") == [(i,) for i in ids[:6]]
    assert db.one("select count(*) from {schema}.jobs") == 6
    assert source.statuses() == {i: "cancelled" if i in ids[:6] else "todo" for i in ids}

    db.all("drop trigger refuse on {schema}.imported_jobs")
    again = await ops.import_procrastinate(client, LOCAL_ADMIN, plan)
    assert (again.imported, again.imported_before, again.left) == (4, 6, 0)
    args = db.all("select (args ->> 'a')::int from {schema}.jobs order by 1")
    assert args == [(n,) for n in range(10)]  # each job once
    assert set(source.statuses().values()) == {"cancelled"}


async def test_two_imports_at_once_import_each_job_once(
    database_url: str, schema: str, db: DB, source: Source, map_file: Path
) -> None:
    await source.tasks["add"].batch_defer_async(*({"a": n, "b": 0} for n in range(400)))
    command = [
        *[sys.executable, "-m", "conveyor", "import", "procrastinate", "--map", str(map_file)],
        *["--from-schema", source.schema, "--tasks", TASKS, "--batch-size", "2", "--source-rows", "keep"],
        "--json",
    ]
    both = [start(database_url, schema, command), start(database_url, schema, command)]
    outputs = [process.communicate(timeout=120) for process in both]
    assert [p.returncode for p in both] == [0, 0], [err for _, err in outputs]
    shares = [json.loads(out)["imported"] for out, _ in outputs]
    assert sum(shares) == 400
    assert db.one("select count(*) from {schema}.imported_jobs") == 400
    assert db.one("select count(distinct args ->> 'a') from {schema}.jobs") == 400
    assert db.one("select count(*) from {schema}.jobs") == 400


async def test_jobs_deferred_while_an_import_runs_are_taken_and_reported_too(
    schema: str, db: DB, source: Source, client: Conveyor, registry: Registry
) -> None:
    @registry.task(queue="sums")
    def add(a: int, b: int) -> int:
        return a + b

    @registry.task(queue="reports")
    def build_report(report_id: int) -> None: ...

    first = await source.defer("add", args={"a": 1, "b": 1})
    broken = await source.defer("build_report", args={"report_id": 1})
    await source.app.run_worker_async(queues=["doomed"], wait=False)
    task_map = TaskMap({"legacy.add": Target("add"), "legacy.build_report": Target("build_report")})
    plan = ImportPlan(source.schema, task_map, include_failed=True, batch_size=1)
    late: list[int] = []

    def defer_meanwhile(report: ImportReport) -> None:
        # After the first batch, procrastinate gets a waiting job of a task the preview saw
        # only failed: a task and status the preview did not count.
        if not late:
            with source.db.connect(autocommit=True, options=f"-c search_path={source.schema}") as conn:
                deferred = conn.execute(
                    "select (procrastinate_defer_jobs_v1(array[row('doomed', 'legacy.build_report', 0, null,"
                    " null, '{\"report_id\": 2}', null)]::procrastinate_job_to_defer_v1[]))[1]"
                ).fetchone()
            assert deferred is not None
            late.append(deferred[0])

    report = await ops.import_procrastinate(client, LOCAL_ADMIN, plan, on_batch=defer_meanwhile)
    assert (report.imported, report.waiting, report.dead, report.left) == (3, 2, 1, 0)
    rows = {(r.task, r.status): (r.found, r.imported) for r in report.rows}
    assert rows == {
        ("legacy.add", "todo"): (1, 1),
        ("legacy.build_report", "failed"): (1, 1),
        ("legacy.build_report", "todo"): (0, 1),
    }
    assert set(dict(db.all("select source_id, job_id from {schema}.imported_jobs"))) == {first, broken, *late}


async def test_a_job_whose_time_python_cannot_hold_is_refused_and_the_rest_move(
    schema: str, db: DB, source: Source, client: Conveyor, registry: Registry
) -> None:
    @registry.task(queue="sums")
    def add(a: int, b: int) -> int:
        return a + b

    ids = [await source.defer("add", args={"a": n, "b": n}) for n in range(3)]
    with source.db.connect(autocommit=True, options=f"-c search_path={source.schema}") as conn:
        conn.execute("update procrastinate_jobs set scheduled_at = 'infinity' where id = %s", [ids[1]])
    plan = ImportPlan(source.schema, TaskMap({"legacy.add": Target("add")}), batch_size=2)

    done = await ops.import_procrastinate(client, LOCAL_ADMIN, plan)

    assert (done.imported, done.left) == (2, 1)
    assert "scheduled_at" in done.refused[ids[1]]
    assert source.statuses() == {ids[0]: "cancelled", ids[1]: "todo", ids[2]: "cancelled"}
    assert db.one("select count(*) from {schema}.jobs") == 2


async def test_a_procrastinate_worker_running_during_the_import_shares_no_job_with_it(
    schema: str, db: DB, source: Source, client: Conveyor, registry: Registry
) -> None:
    @registry.task(queue="sums")
    def add(a: int, b: int) -> int:
        return a + b

    ids = await source.tasks["add"].batch_defer_async(*({"a": n, "b": 0} for n in range(200)))
    plan = ImportPlan(source.schema, TaskMap({"legacy.add": Target("add")}), batch_size=3)
    workers: list[asyncio.Task[None]] = []

    def start_procrastinate(report: ImportReport) -> None:
        # After the first batch (the preview saw no running job), procrastinate's worker
        # takes jobs while the import goes on.
        if not workers:
            worker = source.app.run_worker_async(queues=["math"], concurrency=4, wait=False)
            workers.append(asyncio.get_running_loop().create_task(worker))

    report = await ops.import_procrastinate(client, LOCAL_ADMIN, plan, on_batch=start_procrastinate)
    await workers[0]

    imported = {row[0] for row in db.all("select source_id from {schema}.imported_jobs")}
    statuses = source.statuses()
    assert set(statuses) == set(ids)
    ran_there = {job for job, status in statuses.items() if status == "succeeded"}
    assert {job for job, status in statuses.items() if status == "cancelled"} == imported
    assert ran_there | imported == set(ids)
    assert not ran_there & imported
    assert len(imported) == report.imported
    assert db.one("select count(*) from {schema}.jobs") == len(imported)


async def test_an_import_killed_mid_run_loses_nothing_and_a_re_run_doubles_nothing(
    database_url: str, schema: str, db: DB, source: Source, map_file: Path
) -> None:
    total = 2000  # batches of one: the run is still going when it is killed
    ids = await source.tasks["add"].batch_defer_async(*({"a": n, "b": 0} for n in range(total)))
    command = [
        *[sys.executable, "-m", "conveyor", "import", "procrastinate", "--map", str(map_file)],
        *["--from-schema", source.schema, "--tasks", TASKS, "--batch-size", "1", "--json"],
    ]
    process = start(database_url, schema, command)
    try:
        wait_until_sync(
            lambda: process.poll() is not None or db.one("select count(*) from {schema}.imported_jobs") >= 20,
            within=60,
        )
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGKILL)
    finally:
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    cut = db.one("select count(*) from {schema}.imported_jobs")
    assert 20 <= cut < total
    # What the killed run committed is whole: each recorded job has its Conveyor job and a cancelled row.
    assert db.one("select count(*) from {schema}.jobs") == cut
    assert sum(status == "cancelled" for status in source.statuses().values()) == cut

    again = import_jobs(database_url, schema, source, map_file, "--json")
    assert again.returncode == 0, again.stderr
    assert (report(again)["imported"], report(again)["imported_before"]) == (total - cut, cut)
    assert db.one("select count(*) from {schema}.imported_jobs") == total
    assert db.one("select count(distinct args ->> 'a') from {schema}.jobs") == total
    assert db.one("select count(*) from {schema}.jobs") == total
    assert set(source.statuses().values()) == {"cancelled"}
    assert set(source.statuses()) == set(ids)
