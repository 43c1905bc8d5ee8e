"""Helpers for testing your own tasks and the code that enqueues them (docs/how-to/testing.md).

Two kinds of check, as River's ``rivertest`` and Oban's ``Oban.Testing`` give:

- *Was it enqueued?* `enqueued_jobs`, `assert_enqueued` and
  `refute_enqueued` read the jobs table on the connection you enqueued with (a psycopg
  ``Connection`` or a SQLAlchemy ``Session``/``Connection`` on the psycopg dialect; the
  ``*_async`` twins take the async kinds). They see the jobs of your open transaction, so a test
  that rolls back at its end leaves nothing behind.
- *What does it do?* `drain` runs every job due in the served queues through a real
  `conveyor.Worker` in this process (claim, execute, record: retries, the dead-letter
  table, chains and results behave as in production), until none is left, and returns what
  became of each. Workers only see committed jobs: drain after your transaction commits.

Arguments match exactly (``args={"order_id": 7}`` matches a job whose arguments are that
object and nothing more); leave ``args`` out to match any.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .db.connections import caller_async_connection, caller_sync_connection
from .db.queries import for_schema
from .errors import ConfigurationError
from .queue.client import Conveyor
from .queue.enqueue import TaskRef
from .queue.worker import Worker, WorkerConfig
from .settings import Settings
from .tasks import Registry

__all__ = [
    "DrainTimeout",
    "EnqueuedJob",
    "JobOutcome",
    "assert_enqueued",
    "assert_enqueued_async",
    "drain",
    "drain_sync",
    "enqueued_jobs",
    "enqueued_jobs_async",
    "refute_enqueued",
    "refute_enqueued_async",
]

# More unfinished jobs than a test enqueues; a listing past it says so instead of truncating.
_LIMIT = 10_000


@dataclass(frozen=True)
class EnqueuedJob:
    """An unfinished job as the caller's transaction sees it."""

    id: int
    queue: str
    task: str
    state: str  # available, scheduled, blocked or running
    priority: int
    args: dict[str, Any]
    run_at: datetime
    unique_key: str | None
    max_attempts: int
    key: str | None
    meta: dict[str, Any] | None


@dataclass(frozen=True)
class JobOutcome:
    """What a drain made of one job: its state after the run (completed, cancelled, dead, or
    scheduled for a retry), its result and the errors of its failed attempts."""

    id: int
    task: str
    state: str
    args: dict[str, Any]
    result: Any
    errors: list[Any]


class DrainTimeout(AssertionError):
    """Jobs were still waiting or running when the drain's time was up (a paused task, a rate
    limit, a task that does not return)."""


# -- was it enqueued? -------------------------------------------------------------------


def enqueued_jobs(
    conn: Any,
    *,
    task: TaskRef | None = None,
    queue: str | None = None,
    args: Mapping[str, Any] | None = None,
    schema: str | None = None,
) -> list[EnqueuedJob]:
    """Unfinished jobs in id order, read on ``conn`` (sync), filtered by task, queue and args.

    ``schema``: Conveyor's schema (default ``CONVEYOR_SCHEMA`` or ``conveyor``)."""
    raw = caller_sync_connection(conn)
    queries = for_schema(_schema(schema))
    with raw.cursor() as cursor:
        cursor.execute(queries["testing_enqueued_jobs"], _params(task, queue, args))
        rows = cursor.fetchall()
    return _matching(rows, args)


async def enqueued_jobs_async(
    conn: Any,
    *,
    task: TaskRef | None = None,
    queue: str | None = None,
    args: Mapping[str, Any] | None = None,
    schema: str | None = None,
) -> list[EnqueuedJob]:
    """`enqueued_jobs` on an async connection or session."""
    raw = await caller_async_connection(conn)
    queries = for_schema(_schema(schema))
    async with raw.cursor() as cursor:
        await cursor.execute(queries["testing_enqueued_jobs"], _params(task, queue, args))
        rows = await cursor.fetchall()
    return _matching(rows, args)


def assert_enqueued(
    conn: Any,
    *,
    task: TaskRef,
    args: Mapping[str, Any] | None = None,
    queue: str | None = None,
    count: int | None = None,
    schema: str | None = None,
) -> list[EnqueuedJob]:
    """Fail unless a job of ``task`` (with these ``args``, in this ``queue``) is enqueued;
    exactly ``count`` of them when given. Returns the matching jobs."""
    _check_count(count)
    found = enqueued_jobs(conn, task=task, queue=queue, args=args, schema=schema)
    _check_found(found, task, args, queue, count, lambda: enqueued_jobs(conn, schema=schema))
    return found


async def assert_enqueued_async(
    conn: Any,
    *,
    task: TaskRef,
    args: Mapping[str, Any] | None = None,
    queue: str | None = None,
    count: int | None = None,
    schema: str | None = None,
) -> list[EnqueuedJob]:
    """`assert_enqueued` on an async connection or session."""
    _check_count(count)
    found = await enqueued_jobs_async(conn, task=task, queue=queue, args=args, schema=schema)
    everything = await enqueued_jobs_async(conn, schema=schema) if not _counts(found, count) else []
    _check_found(found, task, args, queue, count, lambda: everything)
    return found


def refute_enqueued(
    conn: Any,
    *,
    task: TaskRef | None = None,
    args: Mapping[str, Any] | None = None,
    queue: str | None = None,
    schema: str | None = None,
) -> None:
    """Fail if any unfinished job matches (with no filter: if any job is enqueued at all)."""
    _check_none(enqueued_jobs(conn, task=task, queue=queue, args=args, schema=schema))


async def refute_enqueued_async(
    conn: Any,
    *,
    task: TaskRef | None = None,
    args: Mapping[str, Any] | None = None,
    queue: str | None = None,
    schema: str | None = None,
) -> None:
    """`refute_enqueued` on an async connection or session."""
    _check_none(await enqueued_jobs_async(conn, task=task, queue=queue, args=args, schema=schema))


# -- what does it do? -------------------------------------------------------------------


async def drain(
    database_url: str | None = None,
    *,
    schema: str | None = None,
    registry: Registry | None = None,
    queues: Sequence[str] | None = None,
    concurrency: int = 1,
    timeout: float = 30.0,  # noqa: ASYNC109 - a bound on the whole drain, like the client's
) -> list[JobOutcome]:
    """Run the committed jobs due in ``queues`` (default: every queue the registry's tasks
    declare, and ``default``) through a worker in this process until none is waiting or
    running, jobs they enqueue (children, chains) included; return each job's outcome in the
    order they started. Jobs scheduled for later (a delay, a retry's backoff) are left for
    later and reported as ``scheduled``. ``concurrency`` 1 runs them one at a time, in
    claim order (priority, then run time, then id).

    Raises `DrainTimeout` if jobs are still due after ``timeout`` seconds."""
    settings = Settings.from_env(database_url, schema)
    started: list[int] = []
    worker = Worker(
        settings.database_url,
        schema=settings.schema,
        registry=registry,
        config=WorkerConfig(queues=queues, concurrency=concurrency, poll_interval=0.05, grace=timeout),
        on_start=started.append,
    )
    served = set(worker.queues)
    async with Conveyor(settings.database_url, schema=settings.schema, registry=registry) as client:
        running = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(timeout):
                await _until_drained(worker, client, served, running)
        except TimeoutError:
            left = await _due(client, served)
            raise DrainTimeout(f"drain: still due after {timeout:g} s: {left}") from None
        finally:
            worker.stop(force=True)
            await running
        return [_outcome(await client.get_job(job_id)) for job_id in dict.fromkeys(started)]


def drain_sync(
    database_url: str | None = None,
    *,
    schema: str | None = None,
    registry: Registry | None = None,
    queues: Sequence[str] | None = None,
    concurrency: int = 1,
    timeout: float = 30.0,
) -> list[JobOutcome]:
    """`drain` for sync tests (no event loop may be running in this thread)."""
    return asyncio.run(
        drain(
            database_url,
            schema=schema,
            registry=registry,
            queues=queues,
            concurrency=concurrency,
            timeout=timeout,
        )
    )


async def _until_drained(
    worker: Worker, client: Conveyor, served: set[str], running: asyncio.Task[None]
) -> None:
    """Wait until the worker is idle and the database holds no due or running job in the served
    queues (checked in that order: an outcome being written still shows as running)."""
    started = asyncio.ensure_future(worker.started.wait())
    await asyncio.wait({running, started}, return_when=asyncio.FIRST_COMPLETED)
    started.cancel()
    while True:
        if running.done():
            running.result()  # raises why the worker stopped
            raise ConfigurationError("drain: the worker stopped early")
        if worker.idle and not await _due(client, served):
            return
        worker.wake()
        await asyncio.sleep(0.02)  # a condition polled, not a timing: what is due is read again


async def _due(client: Conveyor, served: set[str]) -> dict[str, int]:
    """Jobs waiting or running per served queue, paused queues left out."""
    return {
        stats.queue: stats.waiting + stats.running
        for stats in await client.queue_stats()
        if stats.queue in served and not (stats.paused or stats.all_paused) and stats.waiting + stats.running
    }


# -- the parts ---------------------------------------------------------------------------


def _schema(schema: str | None) -> str:
    return Settings.from_env(None, schema).schema


def _task_name(task: TaskRef | None) -> str | None:
    if task is None or isinstance(task, str):
        return task
    return str(getattr(task, "name", None) or getattr(task, "__name__", repr(task)))


def _params(task: TaskRef | None, queue: str | None, args: Mapping[str, Any] | None) -> dict[str, Any]:
    """The listing's parameters; a filter of the wrong type is refused, not left to match nothing."""
    if queue is not None and not isinstance(queue, str):
        raise ConfigurationError(f"queue must be a queue name (str), got {queue!r}")
    if args is not None and not isinstance(args, Mapping):
        raise ConfigurationError(f"args must be a mapping (the job's arguments), got {type(args).__name__}")
    return {"task": _task_name(task), "queue": queue, "limit": _LIMIT}


def _check_count(count: int | None) -> None:
    if count is not None and (type(count) is not int or count < 0):
        raise ConfigurationError(f"count must be a whole number of jobs, 0 or more, got {count!r}")


def _matching(rows: Sequence[tuple[Any, ...]], args: Mapping[str, Any] | None) -> list[EnqueuedJob]:
    jobs = [EnqueuedJob(*row) for row in rows]
    if args is None:
        return jobs
    wanted = dict(args)
    return [job for job in jobs if _same_json(job.args, wanted)]


def _same_json(found: Any, wanted: Any) -> bool:
    """Equal as JSON values: Python's ``==`` would take ``true`` for ``1`` (and ``false`` for ``0``)."""
    if isinstance(found, bool) or isinstance(wanted, bool):
        return type(found) is type(wanted) and found == wanted
    if isinstance(found, dict):
        return (
            isinstance(wanted, Mapping)
            and found.keys() == wanted.keys()
            and all(_same_json(value, wanted[key]) for key, value in found.items())
        )
    if isinstance(found, list):
        return (
            isinstance(wanted, list | tuple)
            and len(found) == len(wanted)
            and all(_same_json(a, b) for a, b in zip(found, wanted, strict=True))
        )
    return bool(found == wanted)


def _counts(found: list[EnqueuedJob], count: int | None) -> bool:
    return len(found) == count if count is not None else bool(found)


def _check_found(
    found: list[EnqueuedJob],
    task: TaskRef,
    args: Mapping[str, Any] | None,
    queue: str | None,
    count: int | None,
    everything: Callable[[], list[EnqueuedJob]],
) -> None:
    if _counts(found, count):
        return
    wanted = f"task {_task_name(task)!r}"
    if args is not None:
        wanted += f" with args {dict(args)!r}"
    if queue is not None:
        wanted += f" in queue {queue!r}"
    expected = f"{count} job(s)" if count is not None else "a job"
    listing = "".join(f"\n  {_describe(job)}" for job in everything()) or " none"
    raise AssertionError(f"expected {expected} of {wanted}, found {len(found)}; enqueued jobs:{listing}")


def _check_none(found: list[EnqueuedJob]) -> None:
    if found:
        listing = "".join(f"\n  {_describe(job)}" for job in found)
        raise AssertionError(f"expected no matching job, found {len(found)}:{listing}")


def _describe(job: EnqueuedJob) -> str:
    return f"#{job.id} {job.task}({job.args}) queue={job.queue} state={job.state}"


def _outcome(row: Mapping[str, Any]) -> JobOutcome:
    return JobOutcome(
        id=row["id"],
        task=row["task"],
        state=row["state"],
        args=row["args"],
        result=row["result"],
        errors=list(row["errors"] or []),
    )
