"""Enqueueing: checking a request against its task, then writing it.

:func:`prepare` turns what the caller asked for into a checked :class:`PreparedJob`;
:func:`enqueue_one` and :func:`enqueue_many` are the database conversations that write
prepared jobs (see ``db.steps``), the same for async and sync connections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..db.steps import Copy, Flow, Query
from ..errors import ConveyorError, InvalidOptionError, UnknownQueueError, UnknownTaskError
from ..tasks import (
    DEFAULT_QUEUE,
    Registry,
    Task,
    check_queue_name,
    encode_args,
    parse_priority,
    unknown_task_message,
)

MAX_UNIQUE_KEY = 512

TaskRef = str | Task | Callable[..., Any]


@dataclass(frozen=True)
class JobRequest:
    """One job to enqueue: the task, its arguments and options that override the task's."""

    task: TaskRef
    args: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | str | None = None
    delay: float | timedelta | None = None
    run_at: datetime | None = None
    unique_key: str | None = None
    max_attempts: int | None = None


@dataclass(frozen=True, slots=True)
class PreparedJob:
    """A request checked against its task, with every default filled in."""

    task: str
    args_json: str
    queue: str
    declared_queue: bool
    priority: int
    max_attempts: int
    run_at: datetime | None
    delay: timedelta
    unique_key: str | None


def prepare(registry: Registry, request: JobRequest) -> PreparedJob:
    """Check a request; raise a ConveyorError that names the task and the problem."""
    task = _resolve(registry, request)
    return PreparedJob(
        task.name,
        encode_args(task.name, request.args),
        *_check_options(registry, task, request),
        _check_unique_key(task, request.unique_key),
    )


def prepare_many(registry: Registry, requests: Iterable[JobRequest]) -> list[PreparedJob]:
    """Check requests (all of them before any is used). Options shared by many requests, as
    in a bulk enqueue, are checked once."""
    checked: dict[tuple[Any, ...], _Options] = {}
    prepared = []
    for request in requests:
        task = _resolve(registry, request)
        args_json = encode_args(task.name, request.args)
        # Types too: 1, 1.0 and True are equal keys, but not equally valid options.
        key: tuple[Any, ...] | None = (
            task.name,
            request.queue,
            request.priority,
            type(request.priority),
            request.max_attempts,
            type(request.max_attempts),
            request.delay,
            type(request.delay),
            request.run_at,
        )
        try:
            options = checked.get(key) if key is not None else None
        except TypeError:  # an unhashable option: checked below, and refused there
            options, key = None, None
        if options is None:
            options = _check_options(registry, task, request)
            if key is not None:
                checked[key] = options
        prepared.append(
            PreparedJob(task.name, args_json, *options, _check_unique_key(task, request.unique_key))
        )
    return prepared


def _resolve(registry: Registry, request: JobRequest) -> Task:
    """The request's task, its arguments checked against the task's signature."""
    task = registry.resolve(request.task)
    if task is None:
        raise UnknownTaskError(unknown_task_message(registry, _task_name(request.task)))
    task.check_args(request.args)
    return task


def _check_unique_key(task: Task, unique_key: str | None) -> str | None:
    if unique_key is not None and not (isinstance(unique_key, str) and 0 < len(unique_key) <= MAX_UNIQUE_KEY):
        raise InvalidOptionError(f"task {task.name!r}: unique_key must be 1 to {MAX_UNIQUE_KEY} characters")
    return unique_key


# queue, declared_queue, priority, max_attempts, run_at, delay: PreparedJob's fields in order
_Options = tuple[str, bool, int, int, datetime | None, timedelta]


def _check_options(registry: Registry, task: Task, request: JobRequest) -> _Options:
    queue = request.queue if request.queue is not None else task.queue
    check_queue_name(queue)
    priority = task.priority if request.priority is None else parse_priority(request.priority)
    max_attempts = task.max_attempts if request.max_attempts is None else request.max_attempts
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise InvalidOptionError(f"task {task.name!r}: max_attempts must be a whole number >= 1")
    if request.run_at is not None and request.delay is not None:
        raise InvalidOptionError(f"task {task.name!r}: give run_at or delay, not both")
    if request.run_at is not None and request.run_at.tzinfo is None:
        raise InvalidOptionError(
            f"task {task.name!r}: run_at must carry a time zone (got naive {request.run_at.isoformat()})"
        )
    delay = _as_timedelta(request.delay)
    if delay < timedelta(0):
        raise InvalidOptionError(f"task {task.name!r}: delay must not be negative")
    declared = queue == task.queue or queue == DEFAULT_QUEUE or queue in registry.queues()
    return queue, declared, priority, max_attempts, request.run_at, delay


def enqueue_one(
    job: PreparedJob,
    *,
    channel: str,
    now: datetime | None,
    known_queues: set[str] | None = None,
    learn: bool = False,
) -> Flow[int]:
    """Insert one job; returns its id, or the id of the live job holding its unique key.

    ``known_queues`` names queues whose rows are known to exist (queue rows are never
    deleted): a job for one of them, without a unique key, takes the short insert. With
    ``learn``, a queue this insert found or created is added to it; only for writes that
    commit on their own, since a caller's transaction may roll the queue's creation back.
    """
    if known_queues is not None and job.unique_key is None and job.queue in known_queues:
        rows = yield Query(
            "enqueue_job_in_known_queue",
            {
                "now": now,
                "queue": job.queue,
                "task": job.task,
                "args": job.args_json,
                "priority": job.priority,
                "max_attempts": job.max_attempts,
                "run_at": job.run_at,
                "delay": job.delay,
                "channel": channel,
            },
        )
        return int(rows[0][0])
    params = {
        "now": now,
        "queue": job.queue,
        "declared_queue": job.declared_queue,
        "task": job.task,
        "args": job.args_json,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "unique_key": job.unique_key,
        "run_at": job.run_at,
        "delay": job.delay,
        "channel": channel,
    }
    for _ in range(5):
        rows = yield Query("enqueue_job", params)
        if rows:
            if learn and known_queues is not None:
                known_queues.add(job.queue)
            return int(rows[0][0])
        if job.unique_key is not None:
            rows = yield Query("find_unique_job", {"unique_key": job.unique_key})
            if rows:
                return int(rows[0][0])
        rows = yield Query("queue_exists", {"queue": job.queue})
        if not rows[0][0]:
            raise UnknownQueueError(_unknown_queue_message([job.queue]))
        # The job holding the unique key finished between the insert and the look-up: the
        # key is free again, so insert once more.
    raise ConveyorError(f"task {job.task!r}: unique key {job.unique_key!r} kept changing hands; try again")


def enqueue_many(
    jobs: Sequence[PreparedJob], *, channel: str, jobs_table: str, now: datetime | None
) -> Flow[list[int]]:
    """Insert many jobs in one go (COPY when no unique keys are involved); ids in order."""
    if not jobs:
        return []
    declared: dict[str, bool] = {}
    for job in jobs:
        declared[job.queue] = declared.get(job.queue, False) or job.declared_queue
    rows = yield Query("ensure_queues", {"names": list(declared), "declared": list(declared.values())})
    unknown = sorted(set(declared) - {row[0] for row in rows})
    if unknown:
        raise UnknownQueueError(_unknown_queue_message(unknown))

    rows = yield Query("prepare_bulk", {"now": now, "jobs_table": jobs_table, "count": len(jobs)})
    clock_now: datetime = rows[0][0]
    ids: list[int] = list(rows[0][1])
    records = [_record(job_id, job, clock_now) for job_id, job in zip(ids, jobs, strict=True)]

    if any(job.unique_key is not None for job in jobs):
        ids = yield from _insert_unique(records, clock_now)
    else:
        yield Copy("copy_jobs", copy_text(records))

    waking = sorted({record[1] for record in records if record[4] == "available"})
    if waking:
        yield Query("notify_queues", {"channel": channel, "names": waking})
    return ids


# Column order of copy_jobs and insert_jobs.
Record = tuple[int, str, str, str, str, int, datetime, int, str | None, datetime]


def _record(job_id: int, job: PreparedJob, now: datetime) -> Record:
    run_at = job.run_at if job.run_at is not None else now + job.delay
    state = "available" if run_at <= now else "scheduled"
    return (
        job_id,
        job.queue,
        job.task,
        job.args_json,
        state,
        job.priority,
        run_at,
        job.max_attempts,
        job.unique_key,
        now,
    )


def copy_text(records: Sequence[Record]) -> list[bytes]:
    """The records in COPY's text format, in chunks of about a megabyte.

    Written here rather than by psycopg's write_row because a bulk enqueue repeats the same
    queue, task, state and times on every row: those are formatted once, and only the id and
    the arguments are formatted per row (the per-row formatting was most of a bulk enqueue).
    """
    chunks: list[bytes] = []
    lines: list[str] = []
    size = 0
    middles: dict[tuple[object, ...], tuple[str, str]] = {}
    for job_id, queue, task, args, state, priority, run_at, max_attempts, unique_key, now in records:
        key = (queue, task, state, priority, run_at, max_attempts, unique_key, now)
        around = middles.get(key)
        if around is None:
            around = middles[key] = (
                f"\t{_copy_field(queue)}\t{_copy_field(task)}\t",
                f"\t{state}\t{priority}\t{run_at.isoformat()}\t{max_attempts}"
                f"\t{_copy_field(unique_key)}\t{now.isoformat()}\n",
            )
        line = f"{job_id}{around[0]}{_copy_field(args)}{around[1]}"
        lines.append(line)
        size += len(line)
        if size >= 1 << 20:
            chunks.append("".join(lines).encode())
            lines, size = [], 0
    if lines:
        chunks.append("".join(lines).encode())
    return chunks


def _copy_field(value: str | None) -> str:
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _insert_unique(records: list[Record], now: datetime) -> Flow[list[int]]:
    columns = list(zip(*records, strict=True))
    rows = yield Query(
        "insert_jobs",
        {
            "now": now,
            "ids": list(columns[0]),
            "queues": list(columns[1]),
            "tasks": list(columns[2]),
            "args": list(columns[3]),
            "states": list(columns[4]),
            "priorities": list(columns[5]),
            "run_ats": list(columns[6]),
            "max_attempts": list(columns[7]),
            "unique_keys": list(columns[8]),
        },
    )
    inserted = {row[0] for row in rows}
    clashing = sorted({r[8] for r in records if r[0] not in inserted and r[8] is not None})
    holders: dict[str, int] = {}
    if clashing:
        rows = yield Query("find_unique_jobs", {"unique_keys": clashing})
        holders = {row[0]: row[1] for row in rows}
    ids: list[int] = []
    for record in records:
        if record[0] in inserted:
            ids.append(record[0])
        elif record[8] in holders:
            ids.append(holders[record[8]])
        else:
            raise ConveyorError(
                f"unique key {record[8]!r} was released while this batch was enqueued; try again"
            )
    return ids


def _as_timedelta(delay: float | timedelta | None) -> timedelta:
    if delay is None:
        return timedelta(0)
    if isinstance(delay, timedelta):
        return delay
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise InvalidOptionError(f"delay must be seconds or a timedelta, got {delay!r}")
    try:
        return timedelta(seconds=delay)
    except (ValueError, OverflowError):
        raise InvalidOptionError(f"delay of {delay!r} seconds cannot be scheduled") from None


def _task_name(task: TaskRef) -> str:
    if isinstance(task, str):
        return task
    return str(getattr(task, "name", None) or getattr(task, "__name__", repr(task)))


def _unknown_queue_message(queues: Sequence[str]) -> str:
    names = ", ".join(repr(q) for q in queues)
    return (
        f"unknown queue {names}: no registered task declares it and it does not exist; "
        "create it (`conveyor queues create NAME`, or SQL create_queue('NAME') in Conveyor's schema) "
        "or start a worker for it"
    )
