"""Every failure, retry, burial, rescue and hand-back is one structured log line, a counter
and a call of the user's hooks; the log can be JSON lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from conveyor import Backoff, Conveyor, FrozenClock, Registry, Worker, WorkerConfig
from conveyor.errors import ConfigurationError
from conveyor.jobs import ClaimedJob, JobFailure
from conveyor.logs import configure_logging

from ..helpers import DB, wait_until
from .test_leases import claim_as_ghost


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.started.wait(), 10)
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 20)


def events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "conveyor.worker" and getattr(r, "event", None) == event]


async def test_failures_are_logged_counted_and_handed_to_the_hooks(
    database_url: str,
    schema: str,
    registry: Registry,
    client: Conveyor,
    db: DB,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="conveyor.worker")
    failures: list[tuple[int, int, str, float | None, type[BaseException] | None]] = []
    dead: list[tuple[int, str]] = []

    @registry.task(max_attempts=2, backoff=Backoff.none())
    async def charge(order: int) -> None:
        raise ValueError(f"card declined for order {order}")

    @registry.task
    async def fine() -> None:
        pass

    def on_failure(job: ClaimedJob, failure: JobFailure) -> None:
        failures.append(
            (
                job.id,
                job.attempt,
                failure.error,
                failure.retry_in,
                type(failure.exception) if failure.exception else None,
            )
        )
        raise RuntimeError("the alerting service is down")  # must not stop the worker

    def on_dead(job: ClaimedJob, failure: JobFailure) -> None:
        dead.append((job.id, failure.error))

    job_id = await client.enqueue(charge, {"order": 7})
    worker = Worker(
        database_url,
        schema=schema,
        registry=registry,
        config=WorkerConfig(poll_interval=0.2),
        on_failure=on_failure,
        on_dead=on_dead,
    )
    async with running(worker):
        await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 1)
        done = await client.enqueue(fine)
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where id = %s", [done]) == 1
        )
        await wait_until(lambda: worker.stats.completed == 1)

    error = "ValueError: card declined for order 7"
    assert failures == [(job_id, 1, error, 0.0, ValueError), (job_id, 2, error, None, ValueError)]
    assert dead == [(job_id, error)]
    [retry] = events(caplog, "retry")
    assert retry.levelno == logging.WARNING
    assert {
        k: getattr(retry, k) for k in ("job_id", "task", "queue", "attempt", "max_attempts", "error")
    } == {
        "job_id": job_id,
        "task": "charge",
        "queue": "default",
        "attempt": 1,
        "max_attempts": 2,
        "error": error,
    }
    assert retry.getMessage() == (
        f"job {job_id} (charge on default) attempt 1 of 2 failed: {error}; next attempt in 0 s"
    )
    [buried] = events(caplog, "dead")
    assert (buried.levelno, buried.attempt, buried.error) == (logging.ERROR, 2, error)  # type: ignore[attr-defined]
    tracebacks = events(caplog, "traceback")
    assert [(r.levelno, r.attempt) for r in tracebacks] == [(logging.DEBUG, 1), (logging.DEBUG, 2)]  # type: ignore[attr-defined]
    assert tracebacks[0].exc_info is not None
    assert tracebacks[0].exc_info[0] is ValueError
    hook_errors = [r for r in caplog.records if "on_failure hook raised" in r.getMessage()]
    assert len(hook_errors) == 2
    assert (worker.stats.retried, worker.stats.buried, worker.stats.completed, worker.stats.hook_errors) == (
        1,
        1,
        1,
        2,
    )


async def test_rescues_and_hand_backs_are_logged_and_counted(
    database_url: str, schema: str, registry: Registry, db: DB, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.worker")
    clock = FrozenClock()
    failures: list[tuple[int, str, float | None]] = []
    started = asyncio.Event()

    @registry.task(max_attempts=3)
    async def slow() -> None:
        started.set()
        await asyncio.sleep(3600)

    async with Conveyor(database_url, schema=schema, registry=registry, clock=clock) as client:
        job_id = await client.enqueue(slow)
    await claim_as_ghost(database_url, schema, clock, lease=30)
    worker = Worker(
        database_url,
        schema=schema,
        registry=registry,
        config=WorkerConfig(poll_interval=0.2, grace=0),
        clock=clock,
        on_failure=lambda job, failure: failures.append((job.id, failure.error, failure.retry_in)),
    )
    async with running(worker):
        clock.advance(31)  # the ghost's lease ran out: this worker rescues the job, then runs it
        worker.wake()
        await asyncio.wait_for(started.wait(), 10)
    [rescued] = events(caplog, "rescued")
    assert (rescued.job_id, rescued.task, rescued.attempt, rescued.dead) == (job_id, "slow", 1, False)  # type: ignore[attr-defined]
    assert rescued.getMessage().startswith(f"job {job_id} (slow on default) attempt 1 of 3: lease expired")
    assert failures == [(job_id, failures[0][1], 0.0)]
    assert failures[0][1].startswith("lease expired")
    [handed] = events(caplog, "handed_back")
    assert (handed.job_id, handed.attempt) == (job_id, 2)  # type: ignore[attr-defined]
    assert (worker.stats.rescued, worker.stats.handed_back) == (1, 1)
    assert db.all("select state, attempt from {schema}.jobs") == [("available", 1)]


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_json_lines_carry_the_extra_fields_and_the_traceback(
    root_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setenv("CONVEYOR_LOG_FORMAT", "json")
    configure_logging(verbose=True, stream=out)
    log = logging.getLogger("conveyor.worker")
    log.warning("job 5 failed", extra={"event": "retry", "job_id": 5, "task": "charge", "attempt": 1})
    try:
        raise ValueError("boom")
    except ValueError as exc:
        log.debug("traceback", exc_info=exc, extra={"event": "traceback", "job_id": 5})
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert {k: first[k] for k in ("level", "logger", "message", "event", "job_id", "task", "attempt")} == {
        "level": "WARNING",
        "logger": "conveyor.worker",
        "message": "job 5 failed",
        "event": "retry",
        "job_id": 5,
        "task": "charge",
        "attempt": 1,
    }
    assert "time" in first
    assert "traceback" not in first
    assert second["level"] == "DEBUG"
    assert second["traceback"].endswith("ValueError: boom")

    out = io.StringIO()
    configure_logging(verbose=False, fmt="text", stream=out)
    log.debug("hidden")
    log.info("shown")
    assert out.getvalue().rstrip().endswith("INFO conveyor.worker: shown")
    with pytest.raises(ConfigurationError, match="unknown log format 'xml'"):
        configure_logging(fmt="xml")
