"""Hostile task modules and handlers against ``conveyor worker``: module names that are no
module names, modules that do not exist or fail on import, handlers that never return,
handlers that end their own process, arguments nested deeper than Python can recurse."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor import Registry
from conveyor.ops.jobs import get_job
from conveyor.ops.roles import LOCAL_ADMIN

from ..e2e.test_cli import conveyor, env_for, expect_error, ok, sql_enqueue, started
from ..helpers import DB, wait_until, wait_until_sync
from .hostile_tasks import QUEUE

pytestmark = pytest.mark.processes

TASKS = "tests.hostile.hostile_tasks"
WORKER = ("worker", "--tasks", TASKS, "--queues", QUEUE, "--poll-interval", "0.2", "--grace", "2")


@pytest.fixture
def env(database_url: str, schema: str, db: DB) -> dict[str, str]:
    db.all("SELECT {schema}.create_queue(%s)", [QUEUE])
    return env_for(database_url, schema)


@pytest.mark.parametrize("name", ["../etc/passwd", "..tasks", "a..b", "/etc/passwd", "x y", "tasks;rm -rf"])
def test_a_task_module_name_that_is_no_module_name_is_a_usage_error(
    env: dict[str, str], db: DB, tmp_path: Path, name: str
) -> None:
    job_id = sql_enqueue(db, "plain", {"n": 1}, f", queue => '{QUEUE}'")
    run = conveyor("worker", "--tasks", name, env=env, cwd=tmp_path, timeout=20)
    assert run.returncode == 2, str(run)
    assert "Traceback" not in run.stderr, str(run)
    assert f"task module name {name!r} is not a module name" in run.stderr, str(run)
    assert db.one("SELECT state, attempt FROM {schema}.jobs WHERE id = %s", [job_id]) == ("available", 0)
    assert db.one("SELECT count(*) FROM {schema}.workers") == 0


def test_a_task_module_that_does_not_exist_or_fails_on_import_claims_nothing(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    """Both are errors of the run, not of usage: exit 1 and one line (docs/cli.md)."""
    (tmp_path / "broken_on_import.py").write_text("raise RuntimeError('no config here')\n")
    env = {**env, "PYTHONPATH": f"{tmp_path}:{env['PYTHONPATH']}"}
    job_id = sql_enqueue(db, "plain", {"n": 1}, f", queue => '{QUEUE}'")
    missing = conveyor("worker", "--tasks", "no_such_tasks_module", env=env, cwd=tmp_path, timeout=20)
    expect_error(missing, "cannot import task module 'no_such_tasks_module': ModuleNotFoundError")
    broken = conveyor("worker", "--tasks", "broken_on_import", env=env, cwd=tmp_path, timeout=20)
    line = expect_error(broken, "cannot import task module 'broken_on_import': RuntimeError: no config here")
    assert "broken_on_import.py, line 1" in line
    assert db.one("SELECT state, attempt FROM {schema}.jobs WHERE id = %s", [job_id]) == ("available", 0)
    assert db.one("SELECT count(*) FROM {schema}.workers") == 0


def test_handlers_that_never_return_time_out_and_the_worker_stays_responsive(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    """The async one is cancelled at its timeout and buried. The sync one cannot be stopped
    (docs/workers.md#timeouts): its thread keeps its slot and its job's lease; the worker
    serves other jobs meanwhile and still stops on SIGTERM within its grace; the next
    worker rescues the job after its lease and, its one attempt spent, buries it."""
    options = f", queue => '{QUEUE}', max_attempts => 1"
    hang_async, hang_sync = (sql_enqueue(db, task, {}, options) for task in ("hang_async", "hang_sync"))
    lease = ("--lease", "1", "--concurrency", "3")
    with started(*WORKER, *lease, env=env, cwd=tmp_path, name="worker") as worker:
        wait_until_sync(
            lambda: worker.alive() and db.one("SELECT count(*) FROM {schema}.dead_jobs") == 1, within=30
        )
        plain = [sql_enqueue(db, "plain", {"n": n}, f", queue => '{QUEUE}'") for n in range(5)]
        wait_until_sync(
            lambda: (
                worker.alive()
                and db.one("SELECT count(*) FROM {schema}.job_history WHERE state = 'completed'")
                == len(plain)
            ),
            within=30,
        )
        assert db.one("SELECT state FROM {schema}.jobs WHERE id = %s", [hang_sync]) == "running"
        begun = time.monotonic()
        assert worker.stop(signal.SIGTERM, within=30) == 0, str(worker)
        assert time.monotonic() - begun < 15, str(worker)
    error = db.one("SELECT errors -> -1 ->> 'error' FROM {schema}.dead_jobs WHERE id = %s", [hang_async])
    assert error.startswith("TimeoutError: the task ran longer than its 0.5 s timeout"), error
    with started(*WORKER, *lease, env=env, cwd=tmp_path, name="rescuer") as rescuer:
        wait_until_sync(
            lambda: rescuer.alive() and db.one("SELECT count(*) FROM {schema}.jobs") == 0, within=30
        )
        assert rescuer.stop(signal.SIGTERM) == 0, str(rescuer)
    attempt, error = db.one(
        "SELECT attempt, errors -> -1 ->> 'error' FROM {schema}.dead_jobs WHERE id = %s", [hang_sync]
    )
    assert attempt == 1
    assert error.startswith("lease expired"), error


@pytest.mark.parametrize("task", ["exit_process", "kill_process"])
def test_a_handler_that_ends_its_process_is_rescued_counted_and_buried_and_others_complete(
    env: dict[str, str], db: DB, tmp_path: Path, task: str
) -> None:
    """Each attempt takes its worker down; after its lease the job is rescued with the
    attempt counted, and after its last attempt (2) it is dead saying why. The plain jobs
    claimed beside it are rescued too, and complete."""
    killer = sql_enqueue(db, task, {}, f", queue => '{QUEUE}', max_attempts => 2")
    plain = [sql_enqueue(db, "plain", {"n": n}, f", queue => '{QUEUE}'") for n in range(4)]
    deadline = time.monotonic() + 90
    runs = 0
    while time.monotonic() < deadline:
        if db.one("SELECT count(*) FROM {schema}.jobs") == 0:
            break
        runs += 1
        with started(*WORKER, "--lease", "1", env=env, cwd=tmp_path, name=f"worker{runs}") as worker:
            wait_until_sync(
                lambda: worker.popen.poll() is not None or db.one("SELECT count(*) FROM {schema}.jobs") == 0,
                within=60,
            )
            if worker.popen.poll() is None:
                assert worker.stop(signal.SIGTERM) == 0, str(worker)
            else:
                assert worker.popen.returncode in (3, -signal.SIGKILL), str(worker)
    assert db.one("SELECT count(*) FROM {schema}.jobs") == 0, f"not done after {runs} workers"
    attempt, errors = db.one("SELECT attempt, errors FROM {schema}.dead_jobs WHERE id = %s", [killer])
    assert attempt == 2
    assert len(errors) == 2
    assert all("lease expired" in error["error"] for error in errors), errors
    completed = db.all("SELECT id FROM {schema}.job_history WHERE state = 'completed' ORDER BY id")
    assert [row[0] for row in completed] == plain


@pytest.fixture
def registry() -> Registry:
    registry = Registry()

    @registry.task(name="deep")
    def deep(value: Any) -> int:
        return 1

    return registry


async def test_args_stored_by_sql_past_pythons_recursion_limit_run_and_are_shown_clipped(
    client: Any, db: DB, start_worker: Any, env_for_cli: dict[str, str], tmp_path: Path
) -> None:
    """conveyor.enqueue stores args nested 10,000 deep (jsonb takes them): a worker claiming
    one used to fail the whole claim, again and again; the API, the CLI and the dashboard
    failed to show it. Now it runs, and readers show its first levels."""
    nested = '{"value": ' + "[" * 10_000 + "]" * 10_000 + "}"
    deep_id = int(db.one("SELECT {schema}.enqueue('deep', %s::jsonb)", [nested]))
    other_id = sql_enqueue(db, "deep", {"value": 1})
    async with start_worker(concurrency=4):
        await wait_until(lambda: db.one("SELECT count(*) FROM {schema}.job_history") == 2, within=20)
    assert db.all("SELECT id, state FROM {schema}.job_history ORDER BY id") == [
        (deep_id, "completed"),
        (other_id, "completed"),
    ]
    shown = await get_job(client, LOCAL_ADMIN, deep_id)
    level, depth = shown["args"]["value"], 0
    while isinstance(level, list):
        level, depth = level[0], depth + 1
    assert depth < 200
    assert "nested more than" in level
    printed = ok(conveyor("jobs", "show", str(deep_id), env=env_for_cli, cwd=tmp_path, timeout=30))
    assert "nested more than" in printed


async def test_args_stored_by_sql_with_an_integer_past_pythons_digit_limit_run_and_are_shown(
    client: Any, db: DB, start_worker: Any, env_for_cli: dict[str, str], tmp_path: Path
) -> None:
    """jsonb stores 1e5000 as an integer of 5001 digits; Python refuses to convert more than
    4300 digits of text by default, and that refusal once failed every claim that picked such
    a job up (the other jobs of the claim with it) until the job was buried, and `conveyor
    jobs show` with a traceback."""
    big_id = int(db.one("SELECT {schema}.enqueue('deep', %s::jsonb)", ['{"value": [1e5000, -2e6000]}']))
    other_id = sql_enqueue(db, "deep", {"value": 1})
    async with start_worker(concurrency=4):
        await wait_until(lambda: db.one("SELECT count(*) FROM {schema}.job_history") == 2, within=20)
    assert db.all("SELECT id, state FROM {schema}.job_history ORDER BY id") == [
        (big_id, "completed"),
        (other_id, "completed"),
    ]
    shown = await get_job(client, LOCAL_ADMIN, big_id)
    assert shown["args"]["value"][0] == "(an integer of about 5000 digits: not shown; read it with SQL)"
    printed = ok(conveyor("jobs", "show", str(big_id), env=env_for_cli, cwd=tmp_path, timeout=30))
    assert "about 6000 digits: not shown" in printed


@pytest.fixture
def env_for_cli(database_url: str, schema: str) -> dict[str, str]:
    return env_for(database_url, schema)
