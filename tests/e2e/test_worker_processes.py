"""Real `conveyor worker` processes: many at once, killed, stopped."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor, JobRequest
from conveyor.db.database import Database
from conveyor.jobs import Outcomes

from ..helpers import DB, REPO, subprocess_env, wait_until_sync
from . import scripted_tasks  # noqa: F401 - registers the tasks used below

pytestmark = pytest.mark.processes


def ledger(folder: Path) -> list[tuple[str, int, int, int]]:
    """Every (event, job id, attempt, pid) the scripted tasks wrote."""
    lines: list[tuple[str, int, int, int]] = []
    for path in folder.glob("*.log"):
        for line in path.read_text().splitlines():
            event, job_id, attempt, pid = line.split()
            lines.append((event, int(job_id), int(attempt), int(pid)))
    return lines


class Workers:
    """Starts `conveyor worker` processes and makes sure none outlives the test."""

    def __init__(self, database_url: str, schema: str, ledger_dir: Path) -> None:
        self.database_url = database_url
        self.schema = schema
        self.ledger_dir = ledger_dir
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "--tasks", "tests.e2e.scripted_tasks", *args],
            cwd=REPO,
            env=subprocess_env(
                self.database_url, self.schema, CONVEYOR_TEST_LEDGER=str(self.ledger_dir), **env
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        _REGISTERS_IN[process.pid] = DB(self.database_url, self.schema)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)  # reaps it and closes its pipe


@pytest.fixture
def workers(database_url: str, schema: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(database_url, schema, tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


async def enqueue_many(database_url: str, schema: str, jobs: list[JobRequest]) -> list[int]:
    # scripted_tasks registered its tasks in the default registry when it was imported.
    async with Conveyor(database_url, schema=schema) as client:
        return await client.enqueue_many(jobs)


# Where each worker started by `Workers` registers: `finish` waits for that.
_REGISTERS_IN: dict[int, DB] = {}


def finish(process: subprocess.Popen[str], *, within: float = 30) -> tuple[int, str]:
    """SIGTERM a worker and reap it: (exit code, output). A worker started by `Workers` is
    first given until it has registered (or exited): before that, still importing, it has no
    handler for the signal and dies of it, holding nothing, which a test stopping it after
    the others drained the work would take for a failed stop."""
    db = _REGISTERS_IN.pop(process.pid, None)
    if db is not None:
        registered = "select exists (select from {schema}.workers where pid = %s)"
        with contextlib.suppress(AssertionError):  # never registered: it is stopped all the same
            wait_until_sync(
                lambda: process.poll() is not None or db.one(registered, [process.pid]),
                within=within,
                interval=0.05,
            )
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=within)
    return process.returncode, output


async def test_four_worker_processes_drain_20000_jobs_each_exactly_once(
    database_url: str, schema: str, db: DB, workers: Workers
) -> None:
    ids = await enqueue_many(database_url, schema, [JobRequest("record", {"n": i}) for i in range(20_000)])
    processes = [workers.start("--queues", "drain", "--concurrency", "50") for _ in range(4)]

    wait_until_sync(
        lambda: db.one("select count(*) from {schema}.job_history") == 20_000, within=120, interval=0.2
    )
    results = [finish(p) for p in processes]
    assert [code for code, _ in results] == [0, 0, 0, 0], [out[-2000:] for _, out in results]

    runs = ledger(workers.ledger_dir)
    executions = Counter(job_id for _, job_id, _, _ in runs)
    assert set(executions) == set(ids)
    assert max(executions.values()) == 1, [j for j, n in executions.items() if n > 1][:10]
    assert len({pid for *_, pid in runs}) >= 2  # the work really was shared
    assert db.one("select count(*) from {schema}.jobs") == 0
    assert db.one("select count(*) from {schema}.dead_jobs") == 0
    assert db.one("select count(distinct id) from {schema}.job_history") == 20_000
    assert db.one("select max(attempt) from {schema}.job_history") == 1


async def test_killed_worker_job_runs_again_after_lease_expires_and_late_ack_changes_nothing(
    database_url: str, schema: str, db: DB, workers: Workers
) -> None:
    [job_id] = await enqueue_many(database_url, schema, [JobRequest("hang_first_attempt")])
    first = workers.start("--queues", "crash", "--lease", "2")
    wait_until_sync(lambda: ("start", job_id, 1, first.pid) in ledger(workers.ledger_dir), within=20)

    first.kill()  # SIGKILL: no chance to hand the job back
    first.communicate(timeout=10)
    dead_worker, lease_expiry = db.one(
        "select worker_id, lease_expires_at from {schema}.jobs where id = %s and state = 'running'", [job_id]
    )

    second = workers.start("--queues", "crash", "--lease", "2")
    wait_until_sync(
        lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1, within=30
    )
    code, output = finish(second)
    assert code == 0, output

    history = db.all(
        "select attempt, worker_id, started_at, result, errors from {schema}.job_history where id = %s",
        [job_id],
    )
    assert len(history) == 1
    attempt, worker_id, started_at, result, errors = history[0]
    assert attempt == 2
    assert worker_id != dead_worker
    assert started_at >= lease_expiry  # not re-run before the lease ran out
    assert result == "finished on attempt 2"
    assert [e["attempt"] for e in errors] == [1]
    assert errors[0]["error"].startswith("lease expired")
    assert errors[0]["worker"] == str(dead_worker)
    assert sorted((a, e, pid) for e, j, a, pid in ledger(workers.ledger_dir) if j == job_id) == [
        (1, "start", first.pid),
        (2, "done", second.pid),
        (2, "start", second.pid),
    ]

    # The killed attempt's completion, arriving late, must change nothing.
    late = Database(database_url, schema)
    await late.open()
    try:
        recorded = await late.record_outcomes(
            Outcomes(
                completed=[(job_id, 1, '"late result"')],
                retried=[(job_id, 1, 0.0, '{"error": "late"}')],
                buried=[(job_id, 1, '{"error": "late"}')],
            ),
            worker_id=dead_worker,
            now=None,
        )
    finally:
        await late.close()
    assert (recorded.completed, recorded.retried, recorded.buried) == (frozenset(), frozenset(), frozenset())
    assert db.all("select attempt, result from {schema}.job_history where id = %s", [job_id]) == [
        (2, "finished on attempt 2")
    ]
    assert db.one("select count(*) from {schema}.jobs") == 0
    assert db.one("select count(*) from {schema}.dead_jobs") == 0


async def test_sigterm_lets_running_jobs_finish_and_exits_0(
    database_url: str, schema: str, db: DB, workers: Workers
) -> None:
    ids = await enqueue_many(database_url, schema, [JobRequest("slow", {"seconds": 1.5}) for _ in range(6)])
    worker = workers.start("--queues", "slow", "--concurrency", "4", "--grace", "20")
    wait_until_sync(lambda: sum(1 for e, *_ in ledger(workers.ledger_dir) if e == "start") == 4, within=20)

    code, output = finish(worker)
    assert code == 0, output

    runs = ledger(workers.ledger_dir)
    started = {j for e, j, _, _ in runs if e == "start"}
    done = {j for e, j, _, _ in runs if e == "done"}
    assert len(started) == 4
    assert done == started  # every running job finished inside the grace period
    finished = {row[0] for row in db.all("select id from {schema}.job_history")}
    waiting = db.all("select id, state, attempt from {schema}.jobs order by id")
    assert finished == done
    assert {row[0] for row in waiting} == set(ids) - done  # the rest never started, still queued
    assert all(state == "available" and attempt == 0 for _, state, attempt in waiting)


async def test_sigterm_past_grace_hands_jobs_back_uncounted_and_another_worker_finishes_them(
    database_url: str, schema: str, db: DB, workers: Workers
) -> None:
    ids = await enqueue_many(database_url, schema, [JobRequest("slow", {"seconds": 600}) for _ in range(3)])
    worker = workers.start("--queues", "slow", "--concurrency", "3", "--grace", "0.5")
    wait_until_sync(lambda: sum(1 for e, *_ in ledger(workers.ledger_dir) if e == "start") == 3, within=20)

    code, output = finish(worker)
    assert code == 0, output
    assert "handed 3 unfinished jobs back" in output

    rows = db.all("select id, state, attempt, errors from {schema}.jobs order by id")
    assert [row[0] for row in rows] == ids
    for _, state, attempt, errors in rows:
        assert (state, attempt) == ("available", 0)
        assert errors[-1]["counted"] is False
        assert errors[-1]["error"].startswith("interrupted")

    again = workers.start("--queues", "slow", "--concurrency", "3", CONVEYOR_TEST_FAST="1")
    wait_until_sync(lambda: db.one("select count(*) from {schema}.job_history") == 3, within=20)
    code, output = finish(again)
    assert code == 0, output
    assert db.all("select attempt from {schema}.job_history") == [(1,), (1,), (1,)]
    assert db.one("select count(*) from {schema}.jobs") == 0


async def test_sigterm_with_a_sync_task_stuck_in_its_thread_exits_0_and_leaves_it_to_its_lease(
    database_url: str, schema: str, db: DB, workers: Workers
) -> None:
    [job_id] = await enqueue_many(database_url, schema, [JobRequest("blocking", {"seconds": 600})])
    worker = workers.start("--queues", "slow", "--grace", "0.5", "--lease", "2")
    wait_until_sync(lambda: ("start", job_id, 1, worker.pid) in ledger(workers.ledger_dir), within=20)

    code, output = finish(worker, within=30)  # would wait 600 s for the thread without os._exit
    assert code == 0, output
    assert "still running in threads" in output
    assert "leaving 1 sync tasks still running" in output
    # Not handed back: that would start a second run beside the one still in its thread.
    assert db.all("select state, attempt from {schema}.jobs where id = %s", [job_id]) == [("running", 1)]

    again = workers.start("--queues", "slow", "--lease", "2", CONVEYOR_TEST_FAST="1")
    wait_until_sync(lambda: db.one("select count(*) from {schema}.job_history") == 1, within=30)
    code, output = finish(again)
    assert code == 0, output
    attempt, errors = db.one("select attempt, errors from {schema}.job_history where id = %s", [job_id])
    assert attempt == 2  # the abandoned attempt counts
    assert errors[0]["error"].startswith("lease expired")
