"""Half-open links: every connection stops forwarding without closing (a NAT or a proxy that
keeps acknowledging). Nothing reports an error, so only deadlines get a process out."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor import Conveyor, JobContext, Registry, Worker, WorkerConfig
from conveyor.db.database import Database
from conveyor.db.errors import DeadlineExceeded, is_transient
from conveyor.queue.scheduler import Scheduler, SchedulerConfig
from conveyor.settings import Timeouts

from ..e2e import scripted_tasks  # noqa: F401 - registers the tasks the worker process runs
from ..helpers import DB, REPO, FreezingProxy, subprocess_env, wait_until, wait_until_sync

SHORT = Timeouts(statement=1.0, lock=0.5, connect=2.0, listen_check=0.5)


async def _pid(db: Database) -> int:
    async with db.connection() as conn:
        row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_statement_on_a_frozen_link_fails_at_its_deadline_and_the_next_runs_on_a_new_connection(
    proxy: FreezingProxy, schema: str
) -> None:
    db = Database(proxy.url(), schema, min_size=1, max_size=2, timeouts=SHORT)
    await db.open()
    try:
        first = await _pid(db)
        proxy.freeze()
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as failure:
            await _pid(db)
        took = time.monotonic() - started
        assert db.deadline is not None
        assert db.deadline - 0.1 <= took < db.deadline + 2
        assert is_transient(failure.value)
        proxy.heal()
        assert await _pid(db) != first  # the dropped connection was not given back healthy
    finally:
        proxy.thaw()
        await db.close()


async def test_worker_behind_a_link_that_froze_and_healed_starts_jobs_again_by_itself(
    proxy: FreezingProxy,
    database_url: str,
    schema: str,
    registry: Registry,
    db: DB,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "CONVEYOR_STATEMENT_TIMEOUT": "1",
        "CONVEYOR_CONNECT_TIMEOUT": "2",
        "CONVEYOR_LISTEN_CHECK": "0.5",
    }.items():
        monkeypatch.setenv(name, value)
    ran: list[int] = []

    @registry.task
    async def note(ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    # A long poll interval: a job that starts quickly was announced by NOTIFY (or found when
    # LISTEN was set up again), not polled for.
    worker = Worker(
        proxy.url(), schema=schema, registry=registry, config=WorkerConfig(poll_interval=30, grace=1)
    )
    running = asyncio.create_task(worker.run())
    async with Conveyor(database_url, schema=schema, registry=registry) as client:
        try:
            await asyncio.wait_for(worker.notifier.listening.wait(), 10)
            first = await client.enqueue(note)
            await wait_until(lambda: first in ran)

            proxy.freeze()
            await wait_until(lambda: proxy.held_back > 0)  # the worker waits on a frozen link
            during = await client.enqueue(note)
            proxy.heal()
            # The frozen connections are dropped at their deadlines, LISTEN is set up anew,
            # and the job enqueued meanwhile starts without waiting for a poll.
            await wait_until(lambda: during in ran, within=10)
            await wait_until(lambda: worker.notifier.connects >= 2 and worker.notifier.listening.is_set())
            after = await client.enqueue(note)
            await wait_until(lambda: after in ran, within=3)
        finally:
            worker.stop()
            await asyncio.wait_for(running, 30)
    assert db.one("select count(*) from {schema}.job_history") == 3


async def enqueue_record(url: str, schema: str) -> None:
    async with Conveyor(url, schema=schema) as client:
        await client.enqueue("record", {"n": 1})


@pytest.mark.processes
def test_worker_process_behind_a_frozen_link_exits_on_sigterm_within_grace_and_a_few_seconds(
    proxy: FreezingProxy, schema: str, db: DB, tmp_path: Path
) -> None:
    grace = 3.0
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "worker",
            "--tasks",
            "tests.e2e.scripted_tasks",
            "--queues",
            "drain",
            "--grace",
            str(grace),
            "--poll-interval",
            "0.2",
        ],
        cwd=REPO,
        env=subprocess_env(
            proxy.url(),
            schema,
            CONVEYOR_TEST_LEDGER=str(tmp_path),
            CONVEYOR_STATEMENT_TIMEOUT="2",
            CONVEYOR_CONNECT_TIMEOUT="2",
            CONVEYOR_LISTEN_CHECK="1",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Up and claiming once it has run a job.
        asyncio.run(enqueue_record(proxy.url(), schema))
        wait_until_sync(lambda: db.one("select count(*) from {schema}.job_history") == 1, within=20)
        proxy.freeze()
        wait_until_sync(lambda: proxy.held_back > 0)  # a claim is stuck on the frozen link
        process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace + 20)
        took = time.monotonic() - stopped
        assert process.poll() is not None, "the worker ignored SIGTERM behind a frozen link"
        # Grace, then at most the claim's deadline and the unregistering's (2 s + margin each).
        assert took < grace + 10, took
        print(f"exited {took:.1f}s after SIGTERM (grace {grace:g}s)")
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
        output, _ = process.communicate(timeout=10)
        print(output[-3000:])


async def test_scheduler_behind_a_link_that_froze_and_healed_leads_again_and_stops_promptly(
    proxy: FreezingProxy, schema: str, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_STATEMENT_TIMEOUT", "1")
    monkeypatch.setenv("CONVEYOR_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("CONVEYOR_LISTEN_CHECK", "0.5")
    scheduler = Scheduler(
        proxy.url(), schema=schema, registry=registry, config=SchedulerConfig(lease=3, tick=0.2)
    )
    running = asyncio.create_task(scheduler.run())
    try:
        await asyncio.wait_for(scheduler.started.wait(), 10)
        # Leading and listening: on a busy machine LISTEN may not be set up yet when the
        # scheduler has started, and a LISTEN frozen before it was answered is no connect.
        await wait_until(lambda: scheduler.elector.is_leader and scheduler.notifier.listening.is_set())
        proxy.freeze()
        await wait_until(lambda: proxy.held_back > 0)
        await wait_until(lambda: not scheduler.elector.is_leader)  # its trust window ran out
        proxy.heal()
        ticks = scheduler.ticks
        # Its statements failed at their deadlines; on new connections it leads again.
        await wait_until(lambda: scheduler.elector.is_leader and scheduler.ticks > ticks + 2, within=15)
        # A connect begun while frozen ends at its connect timeout (2 s); the next one goes through.
        await wait_until(lambda: scheduler.notifier.connects >= 2, within=30)
        proxy.freeze()
        await wait_until(lambda: proxy.held_back > 0)
    finally:
        scheduler.stop()
        stopped = time.monotonic()
        await asyncio.wait_for(running, 30)
    assert time.monotonic() - stopped < 10  # two deadlines at most (a round, then resigning)
