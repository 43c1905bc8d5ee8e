"""A sync task past its timeout: its attempt fails, and the next attempt waits for its thread."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from conveyor import Backoff, Conveyor, JobContext, Registry

from ..helpers import DB, wait_until


async def test_a_timed_out_sync_task_runs_again_only_after_its_thread_returned(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="conveyor.worker")
    runs: list[tuple[int, float, float]] = []  # attempt, start, end (appended from job threads)
    started = threading.Event()
    second_started = threading.Event()
    release = threading.Event()

    @registry.task(timeout=0.2, max_attempts=2, backoff=Backoff.none())
    def stubborn(ctx: JobContext) -> None:
        start = time.monotonic()
        if ctx.attempt == 1:
            started.set()
            release.wait(30)
        else:
            second_started.set()
        runs.append((ctx.attempt, start, time.monotonic()))

    def timeout_logged() -> bool:
        return any("ran past its 0.2 s timeout" in r.getMessage() for r in caplog.records)

    job_id = await client.enqueue(stubborn)
    async with start_worker(concurrency=2) as worker:
        await wait_until(started.is_set)
        # The old way: the retry is recorded at the timeout and starts on the free slot.
        await wait_until(lambda: second_started.is_set() or timeout_logged())
        if not second_started.is_set():
            worker.wake()
            passes = worker.maintenance.passes
            await wait_until(lambda: worker.maintenance.passes >= passes + 2)
            assert db.all("select state, attempt from {schema}.jobs where id = %s", [job_id]) == [
                ("running", 1)
            ]
            assert worker.running_jobs == [job_id]  # the slot is still taken
        release.set()
        await wait_until(lambda: db.one("select count(*) from {schema}.job_history") == 1)
    [(_, _, first_end), (attempt, second_start, _)] = runs
    assert attempt == 2
    assert second_start >= first_end
    errors = db.one("select errors from {schema}.job_history where id = %s", [job_id])
    assert [(e["attempt"], e["error"]) for e in errors] == [
        (1, "TimeoutError: the task ran longer than its 0.2 s timeout")
    ]
