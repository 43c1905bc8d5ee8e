"""Job control with real `conveyor worker` processes: pauses while workers are busy, aborts
reaching jobs on other processes, and the `conveyor jobs cancel|abort|run-now|delete`,
`conveyor tasks` and `conveyor pause|resume --all` commands."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor, JobRequest

from ..helpers import DB, REPO, subprocess_env, wait_until_sync
from . import control_tasks  # noqa: F401 - registers the tasks used below

pytestmark = pytest.mark.processes

# The workers poll this often: a pause is watched for several polls.
POLL = 0.2


def ledger(folder: Path) -> list[tuple[str, int, int, float]]:
    """Every (event, job id, pid, unix time) the control tasks wrote."""
    lines: list[tuple[str, int, int, float]] = []
    for path in folder.glob("*.log"):
        for line in path.read_text().splitlines():
            event, job_id, _attempt, pid, at = line.split()
            lines.append((event, int(job_id), int(pid), float(at)))
    return lines


def events(folder: Path, event: str, ids: list[int]) -> dict[int, float]:
    wanted = set(ids)
    return {job_id: at for e, job_id, _, at in ledger(folder) if e == event and job_id in wanted}


class Workers:
    """`conveyor worker` processes for the control tasks; none outlives the test."""

    def __init__(self, database_url: str, schema: str, folder: Path) -> None:
        self.database_url = database_url
        self.schema = schema
        self.folder = folder
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "worker",
                "--tasks",
                "tests.e2e.control_tasks",
                "--queues",
                "ctl_a,ctl_b",
                "--poll-interval",
                str(POLL),
                "--grace",
                "1",
                *args,
            ],
            cwd=REPO,
            env=subprocess_env(self.database_url, self.schema, CONVEYOR_TEST_LEDGER=str(self.folder)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)


@pytest.fixture
def workers(database_url: str, schema: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(database_url, schema, tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


def cli(database_url: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=REPO,
        env=subprocess_env(database_url, schema),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("scope", ["queue", "task", "all"])
async def test_pause_while_three_workers_are_busy(
    scope: str, database_url: str, schema: str, db: DB, workers: Workers
) -> None:
    """Running jobs finish; nothing paused starts until resume; other work flows throughout."""
    folder = workers.folder
    async with Conveyor(database_url, schema=schema) as client:
        for _ in range(3):
            workers.start("--concurrency", "2")
        busy = await client.enqueue_many([JobRequest("hold", {"seconds": 1.5}) for _ in range(6)])
        wait_until_sync(lambda: len(events(folder, "start", busy)) == 6, within=20)

        if scope == "queue":
            await client.pause_queue("ctl_a")
        elif scope == "task":
            await client.pause_task("hold")
        else:
            await client.pause_all()
        paused_at = time.time()
        held = await client.enqueue_many([JobRequest("hold", {"seconds": 0.01}) for _ in range(6)])
        flowing = await client.enqueue_many([JobRequest("flow") for _ in range(20)])
        if scope == "task":  # another task of the same queue
            flowing += await client.enqueue_many([JobRequest("other") for _ in range(10)])

        # The running jobs finish.
        wait_until_sync(lambda: len(events(folder, "done", busy)) == 6, within=20)
        if scope == "all":
            flowing_started = events(folder, "start", flowing)
            assert flowing_started == {}
        else:
            wait_until_sync(lambda: len(events(folder, "done", flowing)) == len(flowing), within=20)
        # Every worker is idle and polling: watch several polls (a wait for nothing to happen).
        await asyncio.sleep(6 * POLL)
        assert events(folder, "start", held) == {}
        if scope == "all":
            assert events(folder, "start", flowing) == {}
        assert db.one("select count(*) from {schema}.jobs where state = 'running'") == 0

        resumed_at = time.time()
        if scope == "queue":
            await client.resume_queue("ctl_a")
        elif scope == "task":
            await client.resume_task("hold")
        else:
            await client.resume_all()
        wait_until_sync(lambda: len(events(folder, "done", held)) == 6, within=20)
        starts = events(folder, "start", held)
        assert min(starts.values()) >= resumed_at > paused_at
        assert max(starts.values()) - resumed_at < 1.5  # woken, not left to a poll
        if scope == "all":
            wait_until_sync(lambda: len(events(folder, "done", flowing)) == len(flowing), within=20)
    # A handler writes "done" before its worker acks: wait for the acks, not only the ledger.
    wait_until_sync(lambda: db.one("select count(*) from {schema}.jobs") == 0, within=20)


async def test_abort_reaches_jobs_on_other_worker_processes_within_a_second(
    database_url: str, schema: str, db: DB, workers: Workers
) -> None:
    folder = workers.folder
    async with Conveyor(database_url, schema=schema) as client:
        workers.start("--concurrency", "2", "--lease", "3")  # a heartbeat every second
        workers.start("--concurrency", "2", "--lease", "3")
        jobs = await client.enqueue_many([JobRequest("forever"), JobRequest("spin"), JobRequest("forever")])
        wait_until_sync(lambda: len(events(folder, "start", jobs)) == 3, within=20)
        pids = {job_id: pid for e, job_id, pid, _ in ledger(folder) if e == "start"}
        assert len(set(pids.values())) == 2  # the jobs are spread over both processes

        def ended(job_id: int) -> float | None:
            rows = db.all(
                "select extract(epoch from finished_at)::float8 from {schema}.job_history where id = %s",
                [job_id],
            )
            return rows[0][0] if rows else None

        for job_id in jobs[:2]:  # the async job, then the sync one
            asked = time.time()
            assert await client.abort(job_id, reason="test") == "aborting"
            wait_until_sync(lambda: ended(job_id) is not None, within=10)  # noqa: B023 - used at once
            took = (ended(job_id) or 0.0) - asked
            assert took < 1.0, f"job {job_id} took {took:.3f}s to end after its abort"
        assert jobs[0] in events(folder, "cancelled", jobs)  # the async task saw CancelledError
        assert jobs[1] in events(folder, "aborted", jobs)  # the sync task saw ctx.aborted

        # An abort whose notification is lost (asked as abort_job asks, without the NOTIFY)
        # arrives with the next heartbeat.
        db.all("update {schema}.jobs set abort_requested_at = now() where id = %s", [jobs[2]])
        wait_until_sync(lambda: ended(jobs[2]) is not None, within=6)
    rows = db.all("select id, state, errors -> -1 ->> 'error' from {schema}.job_history order by id")
    assert rows == [(i, "cancelled", "aborted") for i in jobs]
    assert (
        db.one("select count(*) from {schema}.jobs") + db.one("select count(*) from {schema}.dead_jobs") == 0
    )


async def test_job_and_pause_commands(database_url: str, schema: str, db: DB, workers: Workers) -> None:
    async with Conveyor(database_url, schema=schema) as client:
        waiting, scheduled, doomed = await client.enqueue_many(
            [JobRequest("flow"), JobRequest("flow", delay=3600), JobRequest("flow", delay=3600)]
        )

    result = cli(database_url, schema, "jobs", "cancel", str(waiting), "--reason", "not wanted")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"job {waiting} cancelled: it will not run"
    entry = db.one("select errors -> -1 from {schema}.job_history where id = %s", [waiting])
    assert entry["error"] == "cancelled before it ran: not wanted"
    assert entry["by"].startswith("cli ")

    result = cli(database_url, schema, "jobs", "cancel", str(waiting))
    assert result.returncode == 1
    assert result.stderr.strip() == f"conveyor: error: job {waiting} has already ended (cancelled)"

    assert cli(database_url, schema, "jobs", "delete", str(doomed)).stdout.strip() == f"job {doomed} deleted"
    assert db.one("select count(*) from {schema}.jobs where id = %s", [doomed]) == 0

    result = cli(database_url, schema, "pause")
    assert result.returncode == 2
    assert "say what to pause: --all" in result.stderr
    assert cli(database_url, schema, "pause", "--all").returncode == 0
    assert cli(database_url, schema, "tasks", "pause", "flow").returncode == 0
    listing = cli(database_url, schema, "queues", "list")
    assert "everything is paused" in listing.stdout
    status = cli(database_url, schema, "status")
    assert "everything is paused" in status.stderr
    tasks = cli(database_url, schema, "tasks", "list", "--json")
    assert '"all_paused": true' in tasks.stdout
    assert '"name": "flow"' in tasks.stdout
    assert cli(database_url, schema, "tasks", "resume", "flow").returncode == 0
    assert cli(database_url, schema, "resume", "--all").returncode == 0

    workers.start("--concurrency", "2")
    result = cli(database_url, schema, "jobs", "run-now", str(scheduled))
    assert result.stdout.strip() == f"job {scheduled} is available now"
    wait_until_sync(
        lambda: db.one("select count(*) from {schema}.job_history where id = %s", [scheduled]) == 1, within=10
    )
    result = cli(database_url, schema, "jobs", "abort", str(scheduled))
    assert result.returncode == 1
    assert result.stderr.strip() == f"conveyor: error: job {scheduled} has already ended (completed)"
